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

The chain of DownSample blocks always reaches the coarsest level, but only
the levels in ``config.factors`` get a head: a single-level model at 1/16
pools through 1/8 without coding it.  ``config.downsample`` picks the block
(residual pooling in the product; the others for the ablation).

``CodeSpaceEncoder`` (``config.level_heads`` False, seed 002's sharing) puts
the one head before the chain instead, so the chain pools the code-space
latent itself::

    image --trunk--> h (1/4) --head--> z[4] (D) --DownSample--> z[8] (D) --DownSample--> z[16] (D)
"""

from __future__ import annotations

import torch
from torch import nn

from hvq.codec.model.config import ModelConfig
from hvq.codec.model.layers import DOWNSAMPLERS, ResidualBlock, conv1x1, conv3x3


def trunk(config: ModelConfig) -> nn.Sequential:
    """The image to features at 1/4: two stride-2 convs with residual blocks."""
    half, quarter = config.encoder_channels
    return nn.Sequential(
        conv3x3(3, half, stride=2),
        nn.LeakyReLU(inplace=True),
        ResidualBlock(half, half),
        conv3x3(half, quarter, stride=2),
        ResidualBlock(quarter, quarter),
        ResidualBlock(quarter, quarter),
    )


class Encoder(nn.Module):
    """The product's encoder: features pooled down the chain, then one head per level into the code space.

    ::

        x (B, 3, H, W) --trunk--> h (B, C, H/4, W/4) --downs--> h at 1/8, 1/16, ...
                                  each coded grid --heads[f]--> z[f] (B, D, H/f, W/f)
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        quarter = config.encoder_channels[1]
        self.factors = config.factors
        self.trunk = trunk(config)
        # One block per halving after the trunk: 4 -> 8, 8 -> 16, ...
        self.chain_factors = config.chain_factors
        down = DOWNSAMPLERS[config.downsample]
        self.downs = nn.ModuleList(down(quarter) for _ in self.chain_factors[1:])
        self.heads = nn.ModuleList(
            nn.Sequential(ResidualBlock(quarter, quarter), conv1x1(quarter, config.code_dim))
            for _ in config.factors
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Latents fine to coarse: x (B, 3, H, W) -> [z (B, D, H/f, W/f) for f in factors]."""
        h = self.trunk(x)  # (B, C, H/4, W/4)
        features = {4: h}
        for factor, down in zip(self.chain_factors[1:], self.downs):
            h = down(h)
            features[factor] = h
        return [head(features[f]) for head, f in zip(self.heads, self.factors)]


class CodeSpaceEncoder(nn.Module):
    """Seed 002's sharing: one head at 1/4 into the code space, then the chain pools the latent itself.

    ::

        x (B, 3, H, W) --trunk--> h (B, C, H/4, W/4) --head--> z (B, D, H/4, W/4) --downs--> z at 1/8, 1/16, ...
                                                   the coded grids: [z[f] for f in factors]

    Every coarse latent is a (learned) pooling of the same code-space vectors,
    so all levels describe their content in one region of the shared
    codebook; no level has a projection of its own to move elsewhere.  The
    head is today's level-4 head (a residual block and a 1x1 projection).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        quarter = config.encoder_channels[1]
        self.factors = config.factors
        self.trunk = trunk(config)
        self.head = nn.Sequential(ResidualBlock(quarter, quarter), conv1x1(quarter, config.code_dim))
        self.chain_factors = config.chain_factors
        down = DOWNSAMPLERS[config.downsample]
        self.downs = nn.ModuleList(down(config.code_dim) for _ in self.chain_factors[1:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Latents fine to coarse: x (B, 3, H, W) -> [z (B, D, H/f, W/f) for f in factors]."""
        z = self.head(self.trunk(x))  # (B, D, H/4, W/4)
        latents = {4: z}
        for factor, down in zip(self.chain_factors[1:], self.downs):
            z = down(z)
            latents[factor] = z
        return [latents[f] for f in self.factors]
