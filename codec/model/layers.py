"""Convolution blocks: the 3x3/1x1 helpers, the residual block, the sub-pixel upsampler, the DownSample variants.

The first four have the shapes and parameter names of CompressAI's
``compressai.layers`` (``conv1``/``conv2``/``skip`` in the residual block, a
``Sequential`` of conv and pixel shuffle in the upsampler), so checkpoints
trained when hvq imported them load unchanged.  They are written here
because importing ``compressai.layers`` loads the whole package
(torchvision, its datasets and zoo, scipy, pandas) in about two seconds,
which every ``hvq compress`` would pay for four small layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, zero-padded by 1 so that stride 1 keeps the grid."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution: a per-cell linear map between channel counts."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride)


def subpel_conv3x3(in_ch: int, out_ch: int, r: int = 1) -> nn.Sequential:
    """Upsampling by ``r``: a 3x3 conv to ``out_ch * r * r`` channels, then a pixel shuffle.

    Module ``0`` is the conv and ``1`` the shuffle, as in CompressAI, so the
    weights keep their names (``...0.weight``).
    """
    return nn.Sequential(nn.Conv2d(in_ch, out_ch * r * r, kernel_size=3, padding=1), nn.PixelShuffle(r))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions, each followed by a leaky ReLU, added to the input (1x1-mapped if the widths differ).

    ::

        x -> conv1 -> leaky_relu -> conv2 -> leaky_relu -> (+) -> out
        |                                                   ^
        +------------------- skip (1x1, or identity) -------+
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch)
        self.leaky_relu = nn.LeakyReLU(inplace=True)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_ch, H, W) -> (B, out_ch, H, W)
        out = self.leaky_relu(self.conv2(self.leaky_relu(self.conv1(x))))
        return out + (x if self.skip is None else self.skip(x))


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
