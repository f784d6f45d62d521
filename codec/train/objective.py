"""The training objective: distortion per level, the VQ terms, and a codebook-usage term.

::

    loss = sum over levels f of
             mse * MSE(x_hat_f, x) + l1 * L1(x_hat_f, x) + ms_ssim * (1 - MS-SSIM(x_hat_f, x))
           + codebook_f + beta * commitment_f                       (from the model's forward)
           + usage * (1 - H(mean_batch p_f) / log K)

The usage term is why every level uses the whole shared codebook.  Coarser
grids are averages of finer ones, so their latents are smoother and gather in
a small region of the space that the finer levels shape; with the codebook
fitted to all levels at once, the 1/16 grid of a model trained on distortion
alone used about 6% of the codewords (hvq 0.1).  ``p_f`` is a soft assignment
of each latent of level ``f`` to the codewords (a softmax over negative squared
distances, in units of the mean squared distance between neighbouring
codewords, so that the temperature does not depend on the latents' scale); maximising the entropy of its batch
mean pushes each level's encoder head to spread its latents over all codewords
(the "entropy penalty" of MAGVIT-v2 and of Yu et al. 2023, batch term only:
the commitment term already makes single assignments confident).  The
codebook itself follows its EMA and gets no gradient from it.

A level with refinement depths is scored like any level, on the
reconstruction each crop's drawn depths give (quantiser dropout,
``hvq.codec.model.residual``); its log also gets the MSE at each depth over
the crops that drew it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from hvq.codec.model.codebook import SharedCodebook
from hvq.codec.model.vqvae import ForwardOutput
from hvq.codec.train.config import MS_SSIM_MIN_CROP, LossWeights

MS_SSIM_WINDOW = 11  # Wang et al. 2003


@dataclass(frozen=True)
class LevelTerms:
    """One level's share of the loss, detached for logging."""

    factor: int
    mse: float
    l1: float
    ms_ssim: float  # NaN when not computed (weight 0)
    commitment: float
    usage: float  # 1 - normalised entropy of the batch's mean soft assignment
    depth_mse: tuple[float, ...] = ()  # a level with depths: MSE over the crops drawn at depth 1, 2, ... (NaN: none)
    depth_share: tuple[float, ...] = ()  # ... and the share of the batch's crops drawn at each depth


def ms_ssim_window(side: int) -> int:
    """The Gaussian window for MS-SSIM on crops of ``side`` px: the standard 11, or the widest odd one that fits.

    pytorch-msssim always runs the five standard scales and needs
    ``side > (window - 1) * 16``; training crops are usually smaller than
    the 161 px the standard window asks for, so the window shrinks instead
    of the scale count (64 px crops: window 3; 96 px: 5; 128 px: 7).
    """
    if side < MS_SSIM_MIN_CROP:
        raise ValueError(f"MS-SSIM needs crops of at least {MS_SSIM_MIN_CROP} px")
    window = min(MS_SSIM_WINDOW, (side - 1) // 16 + 1)
    return window if window % 2 else window - 1


def multiscale_ssim(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of [0, 1] images (B, 3, H, W), averaged over the batch."""
    return ms_ssim(x_hat, x, data_range=1.0, win_size=ms_ssim_window(min(x.shape[-2:])))


@torch.no_grad()
def codebook_spacing(codebook: SharedCodebook) -> torch.Tensor:
    """Mean squared distance from each codeword to its nearest neighbour: the temperature's unit."""
    dist2 = codebook.distances(codebook.embed)
    dist2.fill_diagonal_(float("inf"))
    return dist2.min(1).values.mean().clamp_min(1e-8)


def usage_penalty(codebook: SharedCodebook, latent: torch.Tensor, temperature: float) -> torch.Tensor:
    """1 - H(batch-mean soft assignment) / log K for one level's latents (B, D, h, w); 0 = uniform use."""
    flat = latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1])  # (N, D)
    dist2 = codebook.distances(flat)  # (N, K)
    nearest = dist2.min(1, keepdim=True).values
    scale = temperature * codebook_spacing(codebook)
    mean_p = torch.softmax(-(dist2 - nearest) / scale, dim=1).mean(0)  # (K,)
    entropy = -(mean_p * torch.log(mean_p.clamp_min(1e-12))).sum()
    return 1 - entropy / math.log(codebook.size)


def objective(
    x: torch.Tensor, out: ForwardOutput, codebooks: dict[int, SharedCodebook], weights: LossWeights
) -> tuple[torch.Tensor, list[LevelTerms]]:
    """The loss to minimise for a batch x (B, 3, H, W), and each level's terms for the log.

    ``codebooks`` maps each level to the codebook it quantises with
    (``HierarchicalVQVAE.level_codebooks()``): the usage term spreads a level
    over its own codebook.
    """
    total = out.vq_loss
    terms = []
    for level in out.levels:
        mse = F.mse_loss(level.x_hat, x)
        l1 = F.l1_loss(level.x_hat, x)
        total = total + weights.mse * mse + weights.l1 * l1
        similarity = torch.tensor(float("nan"))
        if weights.ms_ssim > 0:
            similarity = multiscale_ssim(level.x_hat, x)
            total = total + weights.ms_ssim * (1 - similarity)
        usage = torch.zeros(())
        if weights.usage > 0:
            usage = usage_penalty(codebooks[level.factor], level.latent, weights.usage_temperature)
            total = total + weights.usage * usage
        depth_mse, depth_share = depth_scores(level.x_hat, x, level.drawn, level.depth_indices)
        terms.append(LevelTerms(level.factor, mse.item(), l1.item(), similarity.item(), level.commitment.item(),
                                usage.item(), depth_mse, depth_share))
    return total, terms


@torch.no_grad()
def depth_scores(x_hat: torch.Tensor, x: torch.Tensor, drawn: torch.Tensor | None,
                 depth_indices: torch.Tensor | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per depth d = 1..D: the MSE over the crops reconstructed from d depths (NaN when none), and their share."""
    if drawn is None or depth_indices is None:
        return (), ()
    per_crop = (x_hat.detach() - x).pow(2).mean((1, 2, 3))  # (B,)
    mse, share = [], []
    for d in range(1, depth_indices.shape[1] + 1):
        chosen = drawn == d
        mse.append(per_crop[chosen].mean().item() if bool(chosen.any()) else float("nan"))
        share.append(chosen.float().mean().item())
    return tuple(mse), tuple(share)
