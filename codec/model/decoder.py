"""Synthesis transform of one level: its quantised grid to the full-size image.

Every level has its own decoder, so any single stored level reconstructs the
image on its own.  The decoder upsamples by sub-pixel convolutions (Shi et al.
2016), one doubling per stage, with channel widths tapered as resolution grows
(``ModelConfig.decoder_channels``): the full-resolution convolutions dominate
the cost, so they are the narrowest.  Residual blocks run only at 1/4 and
coarser, where they are cheap.
"""

from __future__ import annotations

import torch
from torch import nn

from hvq.codec.model.config import ModelConfig
from hvq.codec.model.layers import ResidualBlock, conv3x3, subpel_conv3x3


class LevelDecoder(nn.Module):
    def __init__(self, config: ModelConfig, factor: int):
        super().__init__()
        width = config.decoder_width(factor)
        layers: list[nn.Module] = [conv3x3(config.code_dim, width), ResidualBlock(width, width)]
        f = factor
        while f > 1:
            out = config.decoder_width(f // 2)
            layers += [subpel_conv3x3(width, out, 2), nn.LeakyReLU(inplace=True)]
            f //= 2
            width = out
            if f >= 4:
                layers.append(ResidualBlock(width, width))
        layers.append(conv3x3(width, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:  # (B, D, H/f, W/f) -> (B, 3, H, W)
        return self.net(z_q)
