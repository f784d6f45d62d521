"""Synthesis transform of one level: its quantised grid to the full-size image.

Every level has its own decoder, so any single stored level reconstructs the
image on its own.  The decoder upsamples by sub-pixel convolutions (Shi et al.
2016), one doubling per stage, with channel widths tapered as resolution grows
(``ModelConfig.decoder_channels``): the full-resolution convolutions dominate
the cost, so they are the narrowest.  Residual blocks run only at 1/4 and
coarser, where they are cheap.

``config.decoder_blocks`` sets how many residual blocks run at the level's
own grid (1 in the product), where a convolution costs 16-256x less per
pixel than at full resolution.  With ``config.shared_tail`` each level's
decoder stops at 1/4 and one ``DecoderTail`` (the 1/4-to-image stages)
serves every level.
"""

from __future__ import annotations

import torch
from torch import nn

from hvq.codec.model.config import ModelConfig
from hvq.codec.model.layers import ResidualBlock, conv3x3, subpel_conv3x3


class LevelDecoder(nn.Module):
    """One level's grid up to the image (or, with a shared tail, up to 1/4).

    ::

        z_q (B, D, H/f, W/f) --conv, decoder_blocks x ResidualBlock--> (B, C_f, H/f, W/f)
            --[subpel x2, ResidualBlock while at 1/4 or coarser]--> ... --conv--> x_hat (B, 3, H, W)

    ``in_channels`` is what the first conv reads: the code dimension, or more
    when a top-down decoder concatenates the coarser levels' codewords.
    """

    def __init__(self, config: ModelConfig, factor: int, in_channels: int | None = None):
        super().__init__()
        width = config.decoder_width(factor)
        layers: list[nn.Module] = [conv3x3(in_channels or config.code_dim, width)]
        layers += [ResidualBlock(width, width) for _ in range(config.decoder_blocks)]
        f = factor
        stop = 4 if config.shared_tail else 1
        while f > stop:
            out = config.decoder_width(f // 2)
            layers += [subpel_conv3x3(width, out, 2), nn.LeakyReLU(inplace=True)]
            f //= 2
            width = out
            if f >= 4:
                layers.append(ResidualBlock(width, width))
        if stop == 1:
            layers.append(conv3x3(width, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:  # (B, D, H/f, W/f) -> (B, 3, H, W) or (B, C_4, H/4, W/4)
        return self.net(z_q)


class DecoderTail(nn.Module):
    """The stages from 1/4 to the image, shared by every level (``config.shared_tail``).

    ::

        (B, C_4, H/4, W/4) --subpel x2--> (B, C_2, H/2, W/2) --subpel x2--> (B, C_1, H, W) --conv--> (B, 3, H, W)

    Each level's own decoder ends at 1/4 with ``C_4`` channels; sharing the
    full-resolution stages (the costly ones) lets training spend their
    capacity once for all levels.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = config.decoder_width(4)
        for f in (2, 1):
            out = config.decoder_width(f)
            layers += [subpel_conv3x3(width, out, 2), nn.LeakyReLU(inplace=True)]
            width = out
        layers.append(conv3x3(width, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, C_4, H/4, W/4) -> (B, 3, H, W)
        return self.net(h)
