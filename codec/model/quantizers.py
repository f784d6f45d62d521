"""The codebook's options for the design study (issue 12): cosine lookup, level-balanced EMA, stochastic picks.

Each function is one behaviour that ``SharedCodebook`` switches on from the
model config (``ModelConfig.lookup``, ``codebook_balance``,
``stochastic_quantisation``); with every option at its default the codebook
does exactly what hvq 0.1's did.

- **Cosine lookup** (``normalise``): latents and codewords live on the unit
  sphere, so nearest-by-distance is nearest-by-angle.  Average pooling
  shrinks the coarse levels' vectors towards the origin, where few codewords
  are; on the sphere the norm is gone and only the direction is coded
  (ViT-VQGAN, Yu et al. 2022, l2-normalised codes).
- **Level-balanced EMA** (``level_weights``, ``starved_level``): the finest
  level has 16x the vectors of the coarsest, so a pooled EMA fits the
  codebook to level 4; weighing each level's vectors by 1 / its count gives
  every level the same say, and dead codewords restart on vectors of the
  level using the fewest codewords, where they are missing.
- **Stochastic quantisation** (``sample_indices``): during training each
  index is drawn from a softmax over negative squared distances instead of
  taken as the nearest (SQ-VAE, Takida et al. 2022, seed 001), in units of
  the codebook's own spacing; codewords near a latent all get assignments
  and EMA updates, so fewer die.  Inference stays nearest-codeword, so the
  file does not depend on a random draw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalise(z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """l2-normalise along ``dim`` (the code dimension: 1 for (B, D, H, W), -1 for (N, D) rows)."""
    return F.normalize(z, dim=dim, eps=1e-6)


def level_weights(sizes: list[int]) -> list[float]:
    """Per-vector EMA weight of each level so that every level weighs the same, and the total is unchanged.

    ``sizes`` are the levels' vector counts; level i's vectors weigh
    total / (levels * sizes[i]), so each level sums to total / levels.
    """
    total = sum(sizes)
    return [total / (len(sizes) * max(1, n)) for n in sizes]


def starved_level(indices: list[torch.Tensor]) -> int:
    """Position of the level whose indices use the fewest distinct codewords (the first on ties)."""
    distinct = [int(torch.unique(i).numel()) for i in indices]
    return distinct.index(min(distinct))


@torch.no_grad()
def codeword_spacing(embed: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from each codeword (K, D) to its nearest neighbour: the sampling temperature's unit."""
    dist2 = torch.cdist(embed, embed).pow(2)
    dist2.fill_diagonal_(float("inf"))
    return dist2.min(1).values.mean().clamp_min(1e-8)


def sample_indices(distances: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """One index per row of squared distances (N, K), drawn with p ~ exp(-(d - d_min) / spacing).

    Draws from torch's global generator, which the training loop re-seeds at
    every step, so a resumed run draws the same indices.
    """
    nearest = distances.min(1, keepdim=True).values
    probs = torch.softmax(-(distances - nearest) / spacing, dim=1)
    return torch.multinomial(probs, 1).squeeze(1)
