"""Analysis transform: one image to a latent grid per level.

::

    image --trunk--> h (1/4) --DownSample--> h (1/8) --DownSample--> h (1/16)
                       |                       |                        |
                     head                    head                     head
                       v                       v                        v
                    z[4] (D)                z[8] (D)                z[16] (D)

The trunk runs once; the coarser grids are pooled from its features, so all
levels describe the same content at different resolutions.  Each level's head
(a residual block and a 1x1 projection) maps features into the code space
shared through the one codebook.
"""

from __future__ import annotations

import torch
from torch import nn

from hvq.codec.config import ModelConfig
from hvq.codec.layers import DownSample, ResidualBlock, conv1x1, conv3x3


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        half, quarter = config.encoder_channels
        self.factors = config.factors
        self.trunk = nn.Sequential(
            conv3x3(3, half, stride=2),
            nn.LeakyReLU(inplace=True),
            ResidualBlock(half, half),
            conv3x3(half, quarter, stride=2),
            ResidualBlock(quarter, quarter),
            ResidualBlock(quarter, quarter),
        )
        self.downs = nn.ModuleList(DownSample(quarter) for _ in config.factors[1:])
        self.heads = nn.ModuleList(
            nn.Sequential(ResidualBlock(quarter, quarter), conv1x1(quarter, config.code_dim))
            for _ in config.factors
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Latents fine to coarse: x (B, 3, H, W) -> [z (B, D, H/f, W/f) for f in factors]."""
        h = self.trunk(x)  # (B, C, H/4, W/4)
        features = [h]
        for down in self.downs:
            h = down(h)
            features.append(h)
        return [head(f) for head, f in zip(self.heads, features)]
