"""The ablation's model variants: coded levels, DownSample blocks and per-level codebooks, all config options.

The product's model is the default of every option, so its config (hashed
into the shipped model's fingerprint) must serialise exactly as before.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from hvq.codec.model.config import DOWNSAMPLE_KINDS, ModelConfig
from hvq.codec.model.layers import DOWNSAMPLERS, AveragePoolDown, ConvDown, SubSample
from hvq.codec.model.vqvae import HierarchicalVQVAE

# ModelConfig().to_json() of hvq 0.1, before the variant options existed.
DEFAULT_JSON = (
    '{"code_dim": 64, "codebook_size": 512, "commitment_beta": 0.25, "dead_code_threshold": 1.0, '
    '"decoder_channels": [[16, 96], [8, 96], [4, 96], [2, 48], [1, 24]], "ema_decay": 0.99, '
    '"encoder_channels": [48, 96], "factors": [4, 8, 16]}'
)


def _trained_once(**options) -> HierarchicalVQVAE:
    torch.manual_seed(0)
    net = HierarchicalVQVAE(ModelConfig(**TINY, **options))
    net.train()
    net(torch.rand(2, 3, 32, 32))  # k-means initialisation
    return net


def test_the_default_config_serialises_as_before_the_options():
    assert ModelConfig().to_json() == DEFAULT_JSON
    assert ModelConfig.from_json(DEFAULT_JSON) == ModelConfig()
    assert ModelConfig(downsample="residual", shared_codebook=True).to_json() == DEFAULT_JSON


def test_options_away_from_their_defaults_are_saved_and_read_back():
    config = ModelConfig(**TINY, factors=(16,), downsample="conv", shared_codebook=False)
    text = config.to_json()
    assert '"downsample": "conv"' in text and '"shared_codebook": false' in text
    assert ModelConfig.from_json(text) == config


def test_the_shipped_model_still_loads_with_its_fingerprint():
    from hvq.codec.runtime.weights import load_model

    model = load_model()
    assert model.fingerprint_hex == "55a1cbc11a02d92e1e92f23fdde98a71"
    assert model.config == ModelConfig()


def test_config_validation():
    with pytest.raises(ValueError, match="powers of two from 4"):
        ModelConfig(factors=(2, 4))
    with pytest.raises(ValueError, match="powers of two from 4"):
        ModelConfig(factors=(4, 12))
    with pytest.raises(ValueError, match="fine to coarse"):
        ModelConfig(factors=(16, 8))
    with pytest.raises(ValueError, match="downsample must be one of"):
        ModelConfig(downsample="maxpool")
    assert ModelConfig(factors=(16,)).chain_factors == (4, 8, 16)
    assert set(DOWNSAMPLERS) == set(DOWNSAMPLE_KINDS)


def test_each_downsample_block_halves_the_grid_its_own_way():
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(SubSample(4)(x), x[..., ::2, ::2])
    assert torch.equal(AveragePoolDown(4)(x), F.avg_pool2d(x, 2))
    conv = ConvDown(4)
    assert torch.equal(conv(x), conv.conv(x))
    for kind, block in DOWNSAMPLERS.items():
        assert block(4)(x).shape == (1, 4, 4, 4), kind
    assert not list(SubSample(4).parameters()) and not list(AveragePoolDown(4).parameters())


@pytest.mark.parametrize("kind", DOWNSAMPLE_KINDS)
def test_every_downsample_variant_trains(kind):
    net = _trained_once(downsample=kind)
    assert all(isinstance(down, DOWNSAMPLERS[kind]) for down in net.encoder.downs)
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    assert [lv.indices.shape for lv in out.levels] == [(2, 8, 8), (2, 4, 4), (2, 2, 2)]
    (out.vq_loss + sum(F.mse_loss(lv.x_hat, x) for lv in out.levels)).backward()
    assert all(p.grad is not None for p in net.encoder.parameters())


@pytest.mark.parametrize("factor", [4, 8, 16])
def test_a_single_level_model_codes_only_its_grid(factor):
    net = _trained_once(factors=(factor,))
    assert len(net.encoder.downs) == {4: 0, 8: 1, 16: 2}[factor]  # the chain still reaches the grid
    assert list(net.decoders) == [str(factor)] and len(net.encoder.heads) == 1
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    assert [lv.factor for lv in out.levels] == [factor]
    assert out.levels[0].indices.shape == (2, 32 // factor, 32 // factor)
    assert out.levels[0].x_hat.shape == x.shape
    F.mse_loss(out.levels[0].x_hat, x).backward()
    assert net.encoder.trunk[0].weight.grad.abs().sum() > 0
    net.eval()
    indices = net.encode(x)
    assert list(indices) == [factor]
    assert net.decode(indices[factor], factor).shape == x.shape


def test_separate_codebooks_each_follow_their_own_level():
    net = _trained_once(shared_codebook=False)
    codebooks = net.level_codebooks()
    assert len({id(c) for c in codebooks.values()}) == 3
    assert not hasattr(net, "codebook")
    assert all(c.initialised for c in codebooks.values())
    before = {f: c.embed.clone() for f, c in codebooks.items()}
    out = net(torch.rand(2, 3, 32, 32))
    for lv in out.levels:  # every codebook took its EMA step, on its own level's vectors
        assert not torch.equal(codebooks[lv.factor].embed, before[lv.factor])
    net.eval()
    x = torch.rand(1, 3, 32, 32)
    latents = net.encoder(x - 0.5)
    for (f, indices), z in zip(net.encode(x).items(), latents):
        assert torch.equal(indices, codebooks[f].quantize(z)[0])
        assert torch.equal(codebooks[f].lookup(indices), codebooks[f].quantize(z)[1])


def test_a_shared_codebook_is_one_object_for_every_level():
    net = _trained_once()
    assert len({id(c) for c in net.level_codebooks().values()}) == 1
    assert net.codebook_groups() == [(net.codebook, [0, 1, 2])]


@pytest.mark.parametrize("overrides", [{"shared_codebook": False}, {"factors": (16,)}, {"downsample": "conv"}])
def test_variants_save_load_and_code_like_the_product(tmp_path, photo, overrides):
    """An ablation variant is a model like any other: exported, loaded, compressed and decompressed."""
    import numpy as np

    from conftest import make_tiny_model
    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.runtime.weights import load_model

    path = make_tiny_model(tmp_path / "variant.safetensors", context=True, **overrides)
    model = load_model(path)
    assert model.config == ModelConfig(**{**TINY, **overrides})
    codec = Codec.for_model(model)
    data = codec.compress(photo)
    for factor in model.config.factors:
        assert np.asarray(codec.decompress(data, factor)).shape == (photo.height, photo.width, 3)
