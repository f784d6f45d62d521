"""Convolution blocks: compressai's, imported once here, and the ones it lacks (the DownSample variants)."""

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

__all__ = [
    "DOWNSAMPLERS",
    "AveragePoolDown",
    "ConvDown",
    "DownSample",
    "ResidualBlock",
    "SubSample",
    "conv1x1",
    "conv3x3",
    "subpel_conv3x3",
]


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


# The other ways to halve a grid, kept for the ablation of seed 002 (benchmarks/ablation.py):
# the product uses residual pooling, and these show what each of its two paths does alone.


class SubSample(nn.Module):
    """Keeps every other row and column: the coarse grid sees a quarter of the fine one's cells, unmixed."""

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return x[..., ::2, ::2]


class AveragePoolDown(nn.Module):
    """2x2 average pool alone: residual pooling's fixed path, with nothing learned."""

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return F.avg_pool2d(x, 2)


class ConvDown(nn.Module):
    """Stride-2 3x3 conv alone: residual pooling's learned path, with no pooled shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(x)


# ModelConfig.downsample names one of these; "residual" is the product's.
DOWNSAMPLERS: dict[str, type[nn.Module]] = {
    "subsample": SubSample,
    "avgpool": AveragePoolDown,
    "conv": ConvDown,
    "residual": DownSample,
}
