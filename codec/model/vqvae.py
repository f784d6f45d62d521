"""The hierarchical VQ-VAE: encoder, shared codebook, one decoder per level.

::

    x --Encoder--> z[f] --codebook.quantize--> indices[f], z_q[f] --decoders[f]--> x_hat[f]

With ``config.shared_codebook`` False (the ablation's baseline, not the
product) each level quantises with a codebook of its own, ``codebooks[f]``,
fitted to that level's latents alone; ``codebook_of(f)`` hides the difference.

The design study's options (``ModelConfig``) plug in here: ``level_heads``
False picks ``CodeSpaceEncoder``; ``shared_tail`` adds one ``DecoderTail``
after every level's decoder; ``topdown`` feeds each level's decoder the
coarser levels' codewords too (``hvq.codec.model.topdown``), so
``decode`` then needs them as ``parents``.

Refinement depths (``config.depths``, ``hvq.codec.model.residual``): a level
with D depths quantises its latent's residual D - 1 more times with the same
codebook; ``encode_depths`` returns every depth, and ``decode(...,
refinements=)`` adds depths 2..R+1 to depth 1.  In training each crop draws
how many depths its level's decoder sees (quantiser dropout).  A level
without depths, and ``decode`` without refinements, run exactly as before.

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
from hvq.codec.model.decoder import DecoderTail, LevelDecoder
from hvq.codec.model.encoder import CodeSpaceEncoder, Encoder
from hvq.codec.model.residual import ResidualDepths, drawn_depths, reconstruction
from hvq.codec.model.topdown import topdown_input


@dataclass(frozen=True)
class LevelOutput:
    """One level's training output."""

    factor: int
    x_hat: torch.Tensor  # (B, 3, H, W), unclamped
    latent: torch.Tensor  # (B, D, H/f, W/f), before quantisation
    indices: torch.Tensor  # (B, H/f, W/f)
    codebook: torch.Tensor  # scalar ||sg(z) - e||^2 (optimised by the EMA, logged here)
    commitment: torch.Tensor  # scalar ||z - sg(e)||^2 (with depths: mean over depths of ||z - sg(z_q(d))||^2)
    depth_indices: torch.Tensor | None = None  # (B, D, H/f, W/f) of a level with depths, else None
    drawn: torch.Tensor | None = None  # (B,) depths each crop was reconstructed from (quantiser dropout)


@dataclass(frozen=True)
class ForwardOutput:
    levels: tuple[LevelOutput, ...]
    vq_loss: torch.Tensor  # sum over levels of codebook (detached: EMA) + beta * commitment


class HierarchicalVQVAE(nn.Module):
    """Encoder, codebook(s) and one decoder per level.

    ::

        x (B, 3, H, W) --encoder--> z[f] --codebook_of(f).project, quantize--> indices[f], z_q[f]
                       --decoders[f] (--tail, when shared)--> x_hat[f] (B, 3, H, W)
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config) if config.level_heads else CodeSpaceEncoder(config)
        if config.shared_codebook:
            self.codebook = self._new_codebook()
        else:
            self.codebooks = nn.ModuleDict({str(f): self._new_codebook() for f in config.factors})
        d = config.code_dim
        self.decoders = nn.ModuleDict({
            str(f): LevelDecoder(config, f, d * (1 + len(config.decoder_parents(f))))
            for f in config.factors
        })
        if config.shared_tail:
            self.tail = DecoderTail(config)
        if config.depths:  # absent otherwise, so older models' weights keep their keys
            self.residuals = nn.ModuleDict({str(f): ResidualDepths(d, config.ema_decay) for f, d in config.depths})
        self.codebook_frozen = False  # set by freeze(): no k-means, EMA or restarts

    def freeze(self, parts: tuple[str, ...]) -> None:
        """Stop training ``parts`` ("encoder": no gradients; "codebook": no EMA, k-means or restarts).

        Fine-tuning depths onto a trained model keeps its depth-1 codes: with
        both frozen, every depth-1 index of every level stays what it was.
        """
        if "encoder" in parts:
            self.encoder.requires_grad_(False)
        if "codebook" in parts:
            self.codebook_frozen = True

    def _new_codebook(self) -> SharedCodebook:
        c = self.config
        return SharedCodebook(c.codebook_size, c.code_dim, c.ema_decay, c.dead_code_threshold,
                              c.lookup, c.codebook_balance, c.stochastic_quantisation)

    def _latents(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every level's latent as its codebook compares it: x (B, 3, H, W) in [0, 1] -> [z (B, D, H/f, W/f)]."""
        return [self.codebook_of(f).project(z) for f, z in zip(self.config.factors, self.encoder(x - 0.5))]

    def _synthesise(self, z_q: dict[int, torch.Tensor], factor: int) -> torch.Tensor:
        """Level ``factor``'s decoder (and the shared tail) on its codewords: unclamped x_hat - 0.5.

        ``z_q[factor]`` holds the level's codewords with its refinements added;
        the coarser levels' (top-down parents) are always depth 1.
        """
        z = topdown_input(z_q, factor, self.config.decoder_parents(factor)) if self.config.topdown else z_q[factor]
        h = self.decoders[str(factor)](z)
        return self.tail(h) if self.config.shared_tail else h

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
        latents = self._latents(x)
        groups = self.codebook_groups()
        if self.training and not self.codebook_frozen:
            for codebook, members in groups:
                if not bool(codebook.initialised):
                    codebook.kmeans_init([latents[i] for i in members])
        factors = self.config.factors
        quantised, depth_codes = [], {}
        for f, z in zip(factors, latents):
            if self.depth_of(f) > 1:
                codes = self._quantize_depths(f, z)
                depth_codes[f] = codes
                quantised.append((codes.indices[:, 0], codes.codewords[0]))
            else:
                quantised.append(self.codebook_of(f).quantize(z))
        if self.training and not self.codebook_frozen:
            # A codebook's EMA step sees the vectors of all the levels it serves at once,
            # and every depth's (scaled) residuals as vectors of their level.
            rows = [torch.cat(depth_codes[f].vectors) if f in depth_codes else z for f, z in zip(factors, latents)]
            picks = [depth_codes[f].indices.transpose(0, 1).reshape(-1, *z.shape[-2:]) if f in depth_codes else q[0]
                     for f, z, q in zip(factors, latents, quantised)]
            for codebook, members in groups:
                codebook.update([rows[i] for i in members], [picks[i] for i in members])
        levels = []
        total = x.new_zeros(())
        # straight-through estimator: the decoders see codewords, the encoder gets their gradients
        z_st = {f: z + (z_q - z).detach() for f, z, (_, z_q) in zip(factors, latents, quantised)}
        for factor, z, (indices, z_q) in zip(factors, latents, quantised):
            codes, drawn, inputs = depth_codes.get(factor), None, z_st
            if codes is None:
                codebook_term = F.mse_loss(z_q, z.detach())
                commitment = F.mse_loss(z, z_q.detach())
            else:
                depth = len(codes.codewords)
                drawn = drawn_depths(z.shape[0], depth, z.device) if self.training else torch.full(
                    (z.shape[0],), depth, dtype=torch.int64, device=z.device)
                z_q = reconstruction(codes.codewords, drawn)
                inputs = {**z_st, factor: z + (z_q - z).detach()}
                codebook_term = F.mse_loss(z_q, z.detach())
                # commitment per depth: z pulled towards each partial sum, averaged so beta keeps its scale
                partial = torch.cumsum(torch.stack(codes.codewords), 0)
                commitment = torch.stack([F.mse_loss(z, p.detach()) for p in partial]).mean()
            x_hat = self._synthesise(inputs, factor) + 0.5
            # The codebook term carries no gradient under EMA updates; it is part
            # of the reported loss so runs stay comparable with gradient codebooks.
            total = total + codebook_term.detach() + self.config.commitment_beta * commitment
            levels.append(LevelOutput(factor, x_hat, z, indices, codebook_term, commitment,
                                      None if codes is None else codes.indices, drawn))
        return ForwardOutput(tuple(levels), total)

    def _quantize_depths(self, factor: int, z: torch.Tensor, first: torch.Tensor | None = None):
        """Every depth of level ``factor``'s latent z (B, C, h, w): a ``DepthCodes`` (depth 1 ``first`` if given)."""
        stochastic = True if self.config.residual_quantiser == "rsq" else None  # rsq draws at every depth
        return self.residuals[str(factor)].quantize(self.codebook_of(factor), z, stochastic, first)

    def depth_of(self, factor: int) -> int:
        """How many depths level ``factor`` has: 1 + the refinements ``decode`` takes."""
        return self.config.depth_of(factor)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Codebook indices of every level: x (B, 3, H, W) in [0, 1] -> {factor: (B, H/f, W/f) int64}."""
        latents = self._latents(x)
        return {f: self.codebook_of(f).quantize(z)[0] for f, z in zip(self.config.factors, latents)}

    @torch.no_grad()
    def encode_depths(self, x: torch.Tensor, first: dict[int, torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
        """Every depth's indices of every level: x -> {factor: (B, D_f, H/f, W/f) int64}, depth 1 first.

        ``[:, 0]`` is ``encode(x)[f]``; a level without depths has D_f = 1.
        ``first`` ({factor: (B, H/f, W/f)}, for levels with depths) fixes depth
        1 to indices chosen elsewhere (rate control), and the refinements are
        quantised after them.
        """
        latents = self._latents(x)
        first = first or {}
        out = {}
        for f, z in zip(self.config.factors, latents):
            if self.depth_of(f) > 1:
                out[f] = self._quantize_depths(f, z, first.get(f)).indices
            else:
                out[f] = self.codebook_of(f).quantize(z)[0][:, None]
        return out

    def parents_needed(self, factor: int) -> tuple[int, ...]:
        """The coarser levels whose indices ``decode`` needs beside level ``factor``'s (none unless top-down)."""
        return self.config.decoder_parents(factor)

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, factor: int, parents: dict[int, torch.Tensor] | None = None,
               refinements: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction from one level: indices (B, H/f, W/f) -> x_hat (B, 3, H, W) in [0, 1].

        A top-down model also needs ``parents``: the indices of every level in
        ``parents_needed(factor)``, by factor, on grids covering the same region
        (depth 1 only).  ``refinements`` (B, R, H/f, W/f) are the indices of
        depths 2..R+1 (R < ``depth_of(factor)``); None or R = 0 decode depth 1.
        """
        z_q = {factor: self.codebook_of(factor).lookup(indices)}
        if refinements is not None and refinements.shape[1] > 0:
            if self.depth_of(factor) == 1:
                raise ValueError(f"level {factor} of this model has no refinement depths")
            z_q[factor] = z_q[factor] + self.residuals[str(factor)].refinement(self.codebook_of(factor), refinements)
        for g in self.parents_needed(factor):
            if parents is None or g not in parents:
                raise ValueError(f"level {factor} of a top-down model decodes only with level {g}'s indices")
            z_q[g] = self.codebook_of(g).lookup(parents[g])
        return (self._synthesise(z_q, factor) + 0.5).clamp_(0.0, 1.0)
