"""The hierarchical VQ-VAE: encoder, shared codebook, one decoder per level.

::

    x --Encoder--> z[f] --codebook.quantize--> indices[f], z_q[f] --decoders[f]--> x_hat[f]

``forward`` serves training (every level's reconstruction and VQ terms; the
distortion part of the objective lives in ``hvq.codec.objective``);
``encode`` and ``decode`` are what the codec runs, in eval mode and without
gradients.  Images are float tensors in [0, 1] whose sides are multiples of
``config.max_factor``; padding is the codec's job (``hvq.codec.imageio``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hvq.codec.codebook import SharedCodebook
from hvq.codec.config import ModelConfig
from hvq.codec.decoder import LevelDecoder
from hvq.codec.encoder import Encoder


@dataclass(frozen=True)
class LevelOutput:
    """One level's training output."""

    factor: int
    x_hat: torch.Tensor  # (B, 3, H, W), unclamped
    latent: torch.Tensor  # (B, D, H/f, W/f), before quantisation
    indices: torch.Tensor  # (B, H/f, W/f)
    codebook: torch.Tensor  # scalar ||sg(z) - e||^2 (optimised by the EMA, logged here)
    commitment: torch.Tensor  # scalar ||z - sg(e)||^2


@dataclass(frozen=True)
class ForwardOutput:
    levels: tuple[LevelOutput, ...]
    vq_loss: torch.Tensor  # sum over levels of codebook (detached: EMA) + beta * commitment


class HierarchicalVQVAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.codebook = SharedCodebook(
            config.codebook_size, config.code_dim, config.ema_decay, config.dead_code_threshold
        )
        self.decoders = nn.ModuleDict({str(f): LevelDecoder(config, f) for f in config.factors})

    def forward(self, x: torch.Tensor) -> ForwardOutput:
        """Training pass: x (B, 3, H, W) in [0, 1] -> every level's reconstruction and VQ terms."""
        latents = self.encoder(x - 0.5)
        if self.training and not bool(self.codebook.initialised):
            self.codebook.kmeans_init(latents)
        quantised = [self.codebook.quantize(z) for z in latents]
        if self.training:
            self.codebook.update(latents, [idx for idx, _ in quantised])
        levels = []
        total = x.new_zeros(())
        for factor, z, (indices, z_q) in zip(self.config.factors, latents, quantised):
            codebook_term = F.mse_loss(z_q, z.detach())
            commitment = F.mse_loss(z, z_q.detach())
            z_st = z + (z_q - z).detach()  # straight-through estimator
            x_hat = self.decoders[str(factor)](z_st) + 0.5
            # The codebook term carries no gradient under EMA updates; it is part
            # of the reported loss so runs stay comparable with gradient codebooks.
            total = total + codebook_term.detach() + self.config.commitment_beta * commitment
            levels.append(LevelOutput(factor, x_hat, z, indices, codebook_term, commitment))
        return ForwardOutput(tuple(levels), total)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Codebook indices of every level: x (B, 3, H, W) in [0, 1] -> {factor: (B, H/f, W/f) int64}."""
        latents = self.encoder(x - 0.5)
        return {f: self.codebook.quantize(z)[0] for f, z in zip(self.config.factors, latents)}

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, factor: int) -> torch.Tensor:
        """Reconstruction from one level: indices (B, H/f, W/f) -> x_hat (B, 3, H, W) in [0, 1]."""
        z_q = self.codebook.lookup(indices)
        return (self.decoders[str(factor)](z_q) + 0.5).clamp_(0.0, 1.0)
