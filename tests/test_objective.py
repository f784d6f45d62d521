"""The training objective: MS-SSIM on small crops, and the codebook-usage term."""

from __future__ import annotations

import math

import pytest
import torch

from hvq.codec.model.codebook import SharedCodebook
from hvq.codec.train.objective import ms_ssim_window, multiscale_ssim, usage_penalty


def test_ms_ssim_window_shrinks_to_fit_five_scales():
    assert [ms_ssim_window(s) for s in (33, 64, 96, 128, 161, 512)] == [3, 3, 5, 7, 11, 11]
    for side in range(33, 300):
        assert side > (ms_ssim_window(side) - 1) * 16
    with pytest.raises(ValueError, match="at least 33"):
        ms_ssim_window(32)


def test_ms_ssim_is_one_for_identical_crops_and_lower_for_noisy_ones():
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert multiscale_ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert multiscale_ssim((x + 0.2 * torch.randn_like(x)).clamp(0, 1), x).item() < 0.9


def test_usage_penalty_is_low_for_spread_latents_and_high_for_collapsed_ones():
    torch.manual_seed(0)
    codebook = SharedCodebook(32, 4)
    codebook.embed.copy_(torch.randn(32, 4))
    spread = codebook.embed[torch.arange(32).repeat(4)].T.reshape(1, 4, 8, 16)  # every codeword, equally often
    collapsed = codebook.embed[torch.zeros(128, dtype=torch.long)].T.reshape(1, 4, 8, 16)
    low = usage_penalty(codebook, spread, temperature=0.1).item()
    high = usage_penalty(codebook, collapsed, temperature=0.1).item()
    assert low < 0.05 and high > 0.5
    assert 0 <= low <= 1 and 0 <= high <= 1


def test_usage_penalty_sends_gradients_to_the_latents_only():
    codebook = SharedCodebook(16, 4)
    latent = torch.randn(1, 4, 4, 4, requires_grad=True)
    usage_penalty(codebook, latent, temperature=1.0).backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in codebook.parameters())
    assert math.isfinite(latent.grad.sum().item())
