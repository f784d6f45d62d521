"""Convolution blocks: compressai's, imported once here, and the one it lacks (DownSample)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    # compressai calls torch.jit.script at import, which recent torch deprecates
    # with a FutureWarning that users of the CLI cannot act on.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from compressai.layers import ResidualBlock, conv1x1, conv3x3, subpel_conv3x3

__all__ = ["DownSample", "ResidualBlock", "conv1x1", "conv3x3", "subpel_conv3x3"]


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
