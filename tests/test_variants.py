"""The ablation's model variants: coded levels, DownSample blocks and per-level codebooks, all config options.

The product's model is the default of every option, so its config (hashed
into the shipped model's fingerprint) must serialise exactly as before.
"""

from __future__ import annotations

import numpy as np
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
    net = HierarchicalVQVAE(ModelConfig(**{**TINY, **options}))
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


def test_the_installed_0_2_model_still_loads_with_its_fingerprint():
    """The 0.2 model ships beside v2 so that its files still decode; ModelConfig()'s defaults are its config."""
    from hvq.codec.runtime.registry import MODELS_DIR
    from hvq.codec.runtime.weights import load_model

    model = load_model(MODELS_DIR / "hvq-0.2.safetensors")
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


# ---- the design study's options (issue 12, benchmarks/design.py) ----

DESIGN_OPTIONS = [
    {"level_heads": False},
    {"lookup": "cosine"},
    {"codebook_balance": "level"},
    {"stochastic_quantisation": True},
    {"decoder_blocks": 3},
    {"shared_tail": True},
    {"topdown": True},
    {"code_dim": 4, "lookup": "cosine"},
]


def test_design_options_at_their_defaults_leave_the_config_as_before():
    defaults = ModelConfig(level_heads=True, lookup="euclidean", codebook_balance="pooled",
                           stochastic_quantisation=False, decoder_blocks=1, shared_tail=False, topdown=False)
    assert defaults.to_json() == DEFAULT_JSON


def test_design_options_leave_the_default_state_dict_keys_unchanged():
    """ModelConfig()'s tensors are named as in the 0.2 model's file, so it loads and keeps its fingerprint."""
    from safetensors import safe_open

    from hvq.codec.runtime.registry import MODELS_DIR
    from hvq.codec.runtime.weights import _training_only

    with safe_open(str(MODELS_DIR / "hvq-0.2.safetensors"), "numpy") as f:
        shipped = {k for k in f.keys() if not k.startswith("prior.")}
    fresh = {k for k in HierarchicalVQVAE(ModelConfig()).state_dict() if not _training_only(k)}
    assert fresh == shipped


def test_design_option_validation():
    with pytest.raises(ValueError, match="lookup must be one of"):
        ModelConfig(lookup="manhattan")
    with pytest.raises(ValueError, match="codebook_balance must be one of"):
        ModelConfig(codebook_balance="random")
    with pytest.raises(ValueError, match="decoder_blocks must be >= 1"):
        ModelConfig(decoder_blocks=0)


@pytest.mark.parametrize("overrides", DESIGN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_design_options_train_a_step(overrides):
    net = _trained_once(**overrides)
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    assert [lv.x_hat.shape for lv in out.levels] == [x.shape] * 3
    loss = out.vq_loss + sum(F.mse_loss(lv.x_hat, x) for lv in out.levels)
    loss.backward()
    assert torch.isfinite(loss)
    assert net.encoder.trunk[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for name, p in net.named_parameters() if name.startswith("decoders."))


@pytest.mark.parametrize("overrides", DESIGN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_design_options_save_load_and_code_like_the_product(tmp_path, photo, overrides):
    """Every design candidate is a model like any other: exported, loaded, compressed, decompressed."""
    import numpy as np

    from conftest import make_tiny_model
    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.runtime.weights import load_model

    path = make_tiny_model(tmp_path / "candidate.safetensors", context=True, **overrides)
    model = load_model(path)
    assert model.config == ModelConfig(**{**TINY, **overrides})
    codec = Codec.for_model(model)
    data = codec.compress(photo)
    x = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)[None].float() / 255
    for factor in model.config.factors:
        decoded = np.asarray(codec.decompress(data, factor))
        assert decoded.shape == (photo.height, photo.width, 3)
        # the product decodes what the network decodes on the whole padded image
        padded = F.pad(x, (0, 48 - 45, 0, 48 - 37), mode="replicate")
        indices = model.net.encode(padded)
        expected = model.net.decode(indices[factor], factor, indices)[0, :, :37, :45]
        assert np.abs(decoded.astype(int) - np.asarray(expected.permute(1, 2, 0) * 255).round()).max() <= 1


def test_code_space_sharing_pools_the_latent_itself():
    from hvq.codec.model.encoder import CodeSpaceEncoder

    net = _trained_once(level_heads=False)
    assert isinstance(net.encoder, CodeSpaceEncoder) and not hasattr(net.encoder, "heads")
    net.eval()
    x = torch.rand(1, 3, 32, 32)
    z4, z8, z16 = net.encoder(x)
    assert z4.shape == (1, 8, 8, 8) and z8.shape == (1, 8, 4, 4) and z16.shape == (1, 8, 2, 2)
    assert torch.allclose(net.encoder.downs[0](z4), z8)  # the coarse latent is the fine one, pooled


def test_cosine_lookup_puts_latents_and_codewords_on_the_sphere():
    net = _trained_once(lookup="cosine")
    norms = net.codebook.embed.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    out = net(torch.rand(2, 3, 32, 32))
    for lv in out.levels:
        assert torch.allclose(lv.latent.norm(dim=1), torch.ones(()), atol=1e-5)
    norms = net.codebook.embed.norm(dim=1)  # after the EMA step too
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_level_weights_give_every_level_the_same_say():
    from hvq.codec.model.quantizers import level_weights, starved_level

    sizes = [128, 32, 8]
    weights = level_weights(sizes)
    assert [w * n for w, n in zip(weights, sizes)] == pytest.approx([56, 56, 56])
    assert sum(w * n for w, n in zip(weights, sizes)) == pytest.approx(sum(sizes))
    assert starved_level([torch.arange(10), torch.tensor([1, 1, 2]), torch.arange(4)]) == 1


def test_balanced_ema_moves_a_coarse_levels_codeword_as_much_as_a_fine_ones():
    from hvq.codec.model.codebook import SharedCodebook

    def step(balance: str) -> torch.Tensor:
        book = SharedCodebook(2, 1, decay=0.0, dead_threshold=0.0, balance=balance)
        book.embed.copy_(torch.tensor([[0.0], [10.0]]))
        fine = torch.full((1, 1, 4, 4), 1.0)  # 16 vectors at 1 -> codeword 0
        coarse = torch.full((1, 1, 1, 1), -1.0)  # 1 vector at -1 -> codeword 0
        book.update([fine, coarse], [torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 1, 1, dtype=torch.long)])
        return book.embed[0, 0]

    assert step("pooled") == pytest.approx((16 - 1) / 17, abs=1e-3)
    assert step("level") == pytest.approx(0.0, abs=1e-3)  # each level weighs half


def test_stochastic_quantisation_samples_in_training_only():
    net = _trained_once(stochastic_quantisation=True)
    book = net.codebook
    z = torch.randn(1, 8, 16, 16)
    nearest = book.nearest(z.permute(0, 2, 3, 1).reshape(-1, 8)).view(1, 16, 16)
    book.train()
    torch.manual_seed(1)
    sampled = book.quantize(z)[0]
    assert not torch.equal(sampled, nearest)
    torch.manual_seed(1)
    assert torch.equal(book.quantize(z)[0], sampled)  # the training loop's per-step seed replays it
    book.eval()
    assert torch.equal(book.quantize(z)[0], nearest)


def test_a_topdown_decoder_reads_the_coarser_codes_and_needs_them():
    net = _trained_once(topdown=True)
    net.eval()
    assert [net.parents_needed(f) for f in (4, 8, 16)] == [(8, 16), (16,), ()]
    x = torch.rand(1, 3, 32, 32)
    indices = net.encode(x)
    with pytest.raises(ValueError, match="decodes only with level 8"):
        net.decode(indices[4], 4)
    changed = dict(indices)
    changed[16] = (indices[16] + 1) % 16
    assert not torch.equal(net.decode(indices[4], 4, indices), net.decode(indices[4], 4, changed))
    assert torch.equal(net.decode(indices[16], 16), net.decode(indices[16], 16, changed))


def test_a_topdown_file_without_its_coarser_levels_is_refused(tmp_path, photo):
    from conftest import make_tiny_model
    from hvq.bitstream.errors import HvqModelError
    from hvq.codec.runtime.pipeline import Codec

    from hvq.bitstream.levels import strip

    codec = Codec.for_model(make_tiny_model(tmp_path / "topdown.safetensors", topdown=True))
    data = strip(codec.compress(photo), ((16, None), (4, None)), codec.model.prior)  # the model-blind cut
    with pytest.raises(HvqModelError, match="level 4 of this model decodes only with level 8"):
        codec.decompress(data, 4)
    assert codec.decompress(data, 16).size == photo.size


def test_a_topdown_level_is_written_and_kept_with_its_coarser_levels(tmp_path, photo):
    """--levels 4 and strip --keep 8 give the smallest files that decode them: the coarser levels come too."""
    from conftest import make_tiny_model
    from hvq.bitstream.container import parse
    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.runtime.tokens import strip_file

    path = make_tiny_model(tmp_path / "topdown.safetensors", topdown=True)
    codec = Codec.for_model(path)
    whole = codec.compress(photo)
    assert codec.compress(photo, levels=(4,)) == whole
    assert [c.factor for c in parse(codec.compress(photo, levels="8")).levels] == [16, 8]
    kept = strip_file(whole, "8", model=path)
    assert [c.factor for c in parse(kept).levels] == [16, 8]
    assert np.array_equal(np.asarray(codec.decompress(kept)), np.asarray(codec.decompress(whole, 8)))
    assert [c.factor for c in parse(strip_file(whole, "16", model=codec.model)).levels] == [16]


def test_the_shared_tail_serves_every_level():
    from hvq.codec.model.decoder import DecoderTail

    net = _trained_once(shared_tail=True, decoder_blocks=2)
    assert isinstance(net.tail, DecoderTail)
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    sum(F.mse_loss(lv.x_hat, x) for lv in out.levels).backward()
    assert all(p.grad is not None for p in net.tail.parameters())
