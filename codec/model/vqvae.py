"""The hierarchical VQ-VAE: encoder, shared codebook, one decoder per level.

::

    x --Encoder--> z[f] --codebook.quantize--> indices[f], z_q[f] --decoders[f]--> x_hat[f]

With ``config.shared_codebook`` False (the ablation's baseline, not the
product) each level quantises with a codebook of its own, ``codebooks[f]``,
fitted to that level's latents alone; ``codebook_of(f)`` hides the difference.

``forward`` serves training (every level's reconstruction and VQ terms; the
distortion part of the objective lives in ``hvq.codec.train.objective``);
``encode`` and ``decode`` are what the codec runs, in eval mode and without
gradients.  Images are float tensors in [0, 1] whose sides are multiples of
``config.max_factor``; padding is the codec's job (``hvq.codec.runtime.imageio``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hvq.codec.model.codebook import SharedCodebook
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.decoder import LevelDecoder
from hvq.codec.model.encoder import Encoder


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
        if config.shared_codebook:
            self.codebook = self._new_codebook()
        else:
            self.codebooks = nn.ModuleDict({str(f): self._new_codebook() for f in config.factors})
        self.decoders = nn.ModuleDict({str(f): LevelDecoder(config, f) for f in config.factors})

    def _new_codebook(self) -> SharedCodebook:
        c = self.config
        return SharedCodebook(c.codebook_size, c.code_dim, c.ema_decay, c.dead_code_threshold)

    def codebook_of(self, factor: int) -> SharedCodebook:
        """The codebook that level ``factor`` quantises with."""
        return self.codebook if self.config.shared_codebook else self.codebooks[str(factor)]

    def level_codebooks(self) -> dict[int, SharedCodebook]:
        """Each level's codebook, by factor (the same object for every level when shared)."""
        return {f: self.codebook_of(f) for f in self.config.factors}

    def codebook_groups(self) -> list[tuple[SharedCodebook, list[int]]]:
        """Each distinct codebook with the positions (in ``config.factors``) of the levels it quantises."""
        if self.config.shared_codebook:
            return [(self.codebook, list(range(len(self.config.factors))))]
        return [(self.codebooks[str(f)], [i]) for i, f in enumerate(self.config.factors)]

    def forward(self, x: torch.Tensor) -> ForwardOutput:
        """Training pass: x (B, 3, H, W) in [0, 1] -> every level's reconstruction and VQ terms."""
        latents = self.encoder(x - 0.5)
        groups = self.codebook_groups()
        if self.training:
            for codebook, members in groups:
                if not bool(codebook.initialised):
                    codebook.kmeans_init([latents[i] for i in members])
        quantised = [self.codebook_of(f).quantize(z) for f, z in zip(self.config.factors, latents)]
        if self.training:
            # A codebook's EMA step sees the vectors of all the levels it serves at once.
            for codebook, members in groups:
                codebook.update([latents[i] for i in members], [quantised[i][0] for i in members])
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
        return {f: self.codebook_of(f).quantize(z)[0] for f, z in zip(self.config.factors, latents)}

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, factor: int) -> torch.Tensor:
        """Reconstruction from one level: indices (B, H/f, W/f) -> x_hat (B, 3, H, W) in [0, 1]."""
        z_q = self.codebook_of(factor).lookup(indices)
        return (self.decoders[str(factor)](z_q) + 0.5).clamp_(0.0, 1.0)
