"""Validation during training: per-level PSNR, L1, MS-SSIM, bits per index and codebook usage.

Run on whole held-out images (Kodak in hvq's own runs, never trained on).
Bits per index is the cross-entropy of the validation indices under the
static prior that ``hvq export`` would fit from the training indices counted
since the last validation, so it tracks the rate the shipped file would pay.
A level with refinement depths is also scored at every depth (PSNR decoded
from depths 1..d, and each depth's codebook usage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_msssim import ms_ssim

from hvq.codec.model.prior import table_from_counts
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.runtime.distortion import psnr_from_mse
from hvq.codec.runtime.image_files import list_images, read_image
from hvq.codec.runtime.imageio import pad_to_multiple, to_tensor
from hvq.codec.train.records import DepthValidation, LevelValidation, ValidationRecord

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-px window


def load_validation_images(folder: str, limit: int = 0) -> list[torch.Tensor]:
    """The images of ``folder`` (sorted; the first ``limit`` when > 0) as (1, 3, H, W) tensors."""
    files = list_images([folder])
    if limit > 0:
        files = files[:limit]
    return [to_tensor(read_image(path)) for path in files]


@dataclass(frozen=True)
class CodebookUsage:
    """Shares of the codebook chosen at least once, by each level and across them.

    The two across-level shares show whether the levels of a shared
    codebook use the same codewords or split it between them.
    """

    levels: dict[int, float]  # level -> share chosen by that level
    all_levels: float  # chosen by some level
    every_level: float  # chosen by every level


def codebook_usage(counts: dict[int, np.ndarray]) -> CodebookUsage:
    """Usage from each level's index histogram (K,)."""
    used = {f: c > 0 for f, c in counts.items()}
    return CodebookUsage(
        {f: float(u.mean()) for f, u in used.items()},
        float(np.logical_or.reduce(list(used.values())).mean()),
        float(np.logical_and.reduce(list(used.values())).mean()),
    )


def perplexity(counts: np.ndarray) -> float:
    """exp(entropy) of a histogram of indices: the number of equally used codewords it is worth."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


def cross_entropy_bits(counts: np.ndarray, train_counts: np.ndarray) -> float:
    """Mean bits per index of indices with histogram ``counts`` coded with the table fitted on ``train_counts``."""
    table = table_from_counts(train_counts).astype(np.float64)
    bits = -np.log2(table / table.sum())
    return float((counts * bits).sum() / max(1, counts.sum()))


@torch.no_grad()
def validate(model: HierarchicalVQVAE, images: list[torch.Tensor], train_counts: dict[int, np.ndarray],
             step: int = 0) -> ValidationRecord:
    """Every level's scores over ``images`` (whole (1, 3, H, W) images), as the record of step ``step``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    factors = model.config.factors
    size = model.config.codebook_size
    psnr = {f: [] for f in factors}
    l1 = {f: [] for f in factors}
    similarity = {f: [] for f in factors}
    counts = {f: np.zeros(size, dtype=np.int64) for f in factors}
    depth_psnr = {(f, d): [] for f, depth in model.config.depths for d in range(2, depth + 1)}
    depth_counts = {(f, d): np.zeros(size, dtype=np.int64) for f, depth in model.config.depths
                    for d in range(1, depth + 1)}
    for image in images:
        x = image.to(device)
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, model.config.max_factor)
        encoded = model.encode(padded)
        for factor, indices in encoded.items():
            counts[factor] += np.bincount(indices.reshape(-1).cpu().numpy(), minlength=size)
            x_hat = model.decode(indices, factor, encoded)[..., :h, :w]  # top-down models read the coarser levels
            x_hat = torch.round(x_hat * 255) / 255  # score what a decoded 8-bit file holds
            l1[factor].append(torch.mean(torch.abs(x_hat - x)).item())
            psnr[factor].append(psnr_from_mse(torch.mean((x_hat - x) ** 2).item()))
            if min(h, w) >= MS_SSIM_MIN_SIDE:
                similarity[factor].append(ms_ssim(x_hat.double(), x.double(), data_range=1.0).item())
        if model.config.depths:
            for factor, grids in model.encode_depths(padded).items():
                if grids.shape[1] == 1:
                    continue
                for d in range(1, grids.shape[1] + 1):
                    depth_counts[factor, d] += np.bincount(grids[:, d - 1].reshape(-1).cpu().numpy(), minlength=size)
                    if d > 1:
                        x_hat = model.decode(grids[:, 0], factor, encoded, grids[:, 1:d])[..., :h, :w]
                        x_hat = torch.round(x_hat * 255) / 255
                        depth_psnr[factor, d].append(psnr_from_mse(torch.mean((x_hat - x) ** 2).item()))
    model.train(was_training)
    used, train_used = codebook_usage(counts), codebook_usage(train_counts)
    levels = tuple(
        LevelValidation(
            factor=f,
            psnr=float(np.mean(psnr[f])),
            l1=float(np.mean(l1[f])),  # mean absolute error, [0, 1] scale like training's l1
            ms_ssim=float(np.mean(similarity[f])) if similarity[f] else float("nan"),
            bits_per_index=cross_entropy_bits(counts[f], train_counts[f]),
            usage=used.levels[f],
            train_usage=train_used.levels[f],
        )
        for f in factors
    )
    depths = tuple(
        DepthValidation(f, d, float(np.mean(psnr[f] if d == 1 else depth_psnr[f, d])),
                        float((depth_counts[f, d] > 0).mean()))
        for f, depth in model.config.depths for d in range(1, depth + 1)
    )
    return ValidationRecord(step, levels, used.all_levels, used.every_level, depths)
