"""VQ-VAE-2's injected top-down decoding: a finer level's decoder also reads the coarser levels' codewords.

Seed 001's deterministic hierarchical baseline (Razavi et al. 2019): the
decoder of level f sees its own codewords and those of every coarser level,
each repeated up to f's grid, concatenated along channels::

    z_q[f] (B, D, H/f, W/f) ----------------------------------+
    z_q[2f] (B, D, H/2f, W/2f) --nearest x2-----------------> cat --> (B, D * (1 + coarser), H/f, W/f)
    z_q[4f] (B, D, H/4f, W/4f) --nearest x4-------------------+

The file stores levels coarse first, so the coarser codes are in any file
that holds level f together with its parents; the coarsest level decodes
alone.  ``ModelConfig.topdown`` switches it on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def topdown_input(z_q: dict[int, torch.Tensor], factor: int, parents: tuple[int, ...]) -> torch.Tensor:
    """Level ``factor``'s codewords with its parents' (``ModelConfig.decoder_parents``) repeated to its grid."""
    own = z_q[factor]
    parts = [own] + [F.interpolate(z_q[g], size=own.shape[-2:], mode="nearest") for g in parents]
    return torch.cat(parts, dim=1)
