"""The transforms: shapes, residual pooling, the shared codebook and the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.layers import DownSample
from hvq.codec.model.vqvae import HierarchicalVQVAE


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = HierarchicalVQVAE(ModelConfig(**TINY))
    model.train()
    model(torch.rand(2, 3, 32, 32))  # k-means initialisation
    return model


def test_config_json_round_trip_and_validation():
    config = ModelConfig(**TINY)
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="powers of two from 4"):
        ModelConfig(factors=(2, 4, 8))
    with pytest.raises(ValueError, match="fine to coarse"):
        ModelConfig(factors=(4, 16, 8))
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_json('{"colour": 1}')


def test_downsample_is_strided_conv_plus_average_pool():
    block = DownSample(4)
    x = torch.randn(1, 4, 8, 8)
    expected = block.conv(x) + F.avg_pool2d(x, 2)
    assert torch.equal(block(x), expected)
    torch.nn.init.zeros_(block.conv.weight)
    torch.nn.init.zeros_(block.conv.bias)
    assert torch.allclose(block(x), F.avg_pool2d(x, 2))


def test_every_level_has_its_grid_and_a_full_size_reconstruction(net):
    out = net(torch.rand(2, 3, 64, 48))
    assert [lv.factor for lv in out.levels] == [4, 8, 16]
    for lv in out.levels:
        assert lv.indices.shape == (2, 64 // lv.factor, 48 // lv.factor)
        assert lv.x_hat.shape == (2, 3, 64, 48)
        assert lv.latent.shape == (2, 8, 64 // lv.factor, 48 // lv.factor)
    total = sum(lv.codebook + 0.25 * lv.commitment for lv in out.levels)
    assert torch.allclose(out.vq_loss, total)


def test_one_codebook_is_shared_by_all_levels(net):
    assert sum(isinstance(m, type(net.codebook)) for m in net.modules()) == 1
    assert len(net.decoders) == 3
    assert not any("codebook" in name for name, _ in net.named_parameters())  # EMA, not gradients


def test_lookup_matches_quantised_latents_in_eval(net):
    net.eval()
    latents = net.encoder(torch.rand(1, 3, 32, 32) - 0.5)
    for z in latents:
        indices, z_q = net.codebook.quantize(z)
        assert torch.equal(net.codebook.lookup(indices), z_q)
        # nearest codeword: no codeword is closer than the chosen one
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        dists = torch.cdist(flat, net.codebook.embed)
        chosen = dists.gather(1, indices.reshape(-1, 1)).squeeze(1)
        assert torch.all(chosen <= dists.min(1).values + 1e-5)


def test_straight_through_gradients_reach_the_encoder(net):
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    (out.vq_loss + sum(torch.mean((lv.x_hat - x) ** 2) for lv in out.levels)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoder.parameters() if p.requires_grad)


def test_dead_codewords_are_restarted_on_batch_vectors(net):
    cb = net.codebook
    cb.cluster_size[:4] = 0.0
    latents = [torch.randn(1, cb.dim, 4, 4)]
    idx, _ = cb.quantize(latents[0])
    cb.update(latents, [idx])
    flat = latents[0].permute(0, 2, 3, 1).reshape(-1, cb.dim)
    for k in range(4):
        assert any(torch.equal(cb.embed[k], v) for v in flat) or cb.cluster_size[k] >= cb.dead_threshold


def test_encode_decode_in_eval_are_deterministic_and_clamped(net):
    net.eval()
    x = torch.rand(1, 3, 32, 32)
    first, second = net.encode(x), net.encode(x)
    for f in (4, 8, 16):
        assert torch.equal(first[f], second[f])
        x_hat = net.decode(first[f], f)
        assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
