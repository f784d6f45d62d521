"""Building blocks that compressai does not provide."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import conv3x3
from torch import nn


class DownSample(nn.Module):
    """Residual pooling: halves a grid with a stride-2 3x3 conv plus a 2x2 average pool, summed.

    The pooled path carries the finer grid's content down unchanged (so the
    coarse level starts as a faithful summary of the fine one); the conv learns
    what to add to it.  Inputs must have even height and width.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(x) + F.avg_pool2d(x, 2)
