"""Refinement depths: residual quantisation of one level's latent with the one shared codebook (issue 14).

RQ-VAE (Lee et al. 2022) quantises what the previous depths left of a
latent, one depth at a time, with a single codebook for every depth; that
fits hvq's codebook shared by all levels.  The residual shrinks with each
depth and centres on zero, while the codewords stay where the latents are,
so depth d scales its residual by 1 / s_d and moves it to the codebook's
centre c (the mean codeword) before the look-up, and takes the codeword
back, times a gain g_d, after (depth 1 is today's quantisation)::

    z --codebook--> i_1                                          r_2 = z - e[i_1]
    r_d / s_d + c --project, codebook--> i_d  (d = 2..D)         r_{d+1} = r_d - g_d (e[i_d] - c)
    z_q(n) = e[i_1] + g_2 (e[i_2] - c) + ... + g_n (e[i_n] - c)  (the first n depths)

Without the centre, the residual (about zero) falls where the codebook has
few codewords and a refinement often moves away from the latent.  The
look-up scale s_d is the ratio of the residual's RMS at depth d to the RMS
of the latent about c, so the scaled residual spreads as the codewords do.
The gain g_d is the least-squares fit of the residual by the chosen
(e - c), so a refinement can only shrink the training residual on average
even where the codebook fits residuals badly (its codewords are the
latents'; with s_d as the gain, the error of a tiny random model grew with
every depth).  Two numbers, because tying them feeds back: a gain that
grows moves the look-up towards c, where short (e - c) call for a larger
gain still.  Both follow an exponential moving average in training and are
frozen at inference; they live in buffers and c is computed from the
codebook, so all are saved with the weights and the encoder and the
decoder of a file use the same numbers.  Under cosine look-up the moved
residual is l2-normalised like any latent.

RSQ-VAE (seed 001, ``ModelConfig.residual_quantiser`` "rsq") draws every
depth's index in training from the SQ-VAE softmax
(``hvq.codec.model.quantizers.sample_indices``); inference stays
nearest-codeword, so no file depends on a draw.

Training also drops depths (quantiser dropout, SoundStream, Zeghidour et al.
2021; EnCodec): each crop of a batch draws how many depths n in [1, D] its
decoder reconstructs from (``drawn_depths``), so one decoder serves every
depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from hvq.codec.model.codebook import SharedCodebook


@dataclass(frozen=True)
class DepthCodes:
    """What ``ResidualDepths.quantize`` makes of one level's latent."""

    indices: torch.Tensor  # (B, D, h, w) int64, depth 1 first
    vectors: tuple[torch.Tensor, ...]  # per depth, what met the codebook (B, C, h, w): z, then r_d / s_d + c
    codewords: tuple[torch.Tensor, ...]  # per depth, its share of the reconstruction: e[i_1], g_d (e[i_d] - c)


class ResidualDepths(nn.Module):
    """The D depths of one level: per-depth scales and gains in buffers, the codebook passed in (it is shared).

    ::

        z (B, C, h, w) --quantize--> indices (B, D, h, w), codewords g_d (e[i_d] - c) per depth
        indices[:, 1:R+1] --refinement--> g_2 (e[i_2] - c) + ... + g_{R+1} (e[i_{R+1}] - c)  (added to e[i_1])
    """

    def __init__(self, depth: int, decay: float = 0.99):
        super().__init__()
        self.depth = depth
        self.decay = decay
        self.register_buffer("scales", torch.ones(depth))  # look-up scales s_1 .. s_D; s_1 stays 1
        self.register_buffer("gains", torch.ones(depth))  # reconstruction gains g_1 .. g_D; g_1 stays 1
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def quantize(self, codebook: SharedCodebook, z: torch.Tensor, stochastic: bool | None = None,
                 first: torch.Tensor | None = None) -> DepthCodes:
        """Every depth of latents z (B, C, h, w), as the codebook compares them.

        In training each depth's scale follows its EMA before its look-up (from
        the residual the depths before it left) and its gain after (from the
        codewords chosen); ``stochastic`` is passed to
        ``SharedCodebook.quantize`` (True: RSQ's draws).  ``first`` (B, h, w)
        gives depth 1's indices instead of the nearest codewords (rate control
        chooses them for their bits), and the refinements quantise what that
        choice leaves of the latent.
        """
        if first is None:
            indices, codeword = codebook.quantize(z, stochastic)
        else:
            indices, codeword = first, codebook.lookup(first)
        all_indices, vectors, codewords = [indices], [z], [codeword]
        residual = z - codeword
        centre = codebook_centre(codebook)
        for d in range(1, self.depth):
            if self.training:
                self._follow_scale(d, residual, z - centre)
            residual = residual.detach()
            vector = codebook.project(residual / self.scales[d] + centre)
            indices, codeword = codebook.quantize(vector, stochastic)
            direction = codeword - centre
            if self.training:
                self._follow_gain(d, residual, direction)
            codeword = self.gains[d] * direction
            all_indices.append(indices)
            vectors.append(vector)
            codewords.append(codeword)
            residual = residual - codeword
        if self.training:
            self.initialised.fill_(True)
        return DepthCodes(torch.stack(all_indices, 1), tuple(vectors), tuple(codewords))

    @torch.no_grad()
    def _follow_scale(self, d: int, residual: torch.Tensor, spread: torch.Tensor) -> None:
        """EMA step of s_{d+1}: RMS of the residual over RMS of the latent about c (summed over DDP ranks)."""
        squares = torch.stack([residual.detach().pow(2).sum(), spread.detach().pow(2).sum()])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(squares)  # every rank keeps the same scales
        ratio = (squares[0] / squares[1].clamp_min(1e-12)).sqrt().clamp_min(1e-4)
        self._follow(self.scales, d, ratio)

    @torch.no_grad()
    def _follow_gain(self, d: int, residual: torch.Tensor, direction: torch.Tensor) -> None:
        """EMA step of g_{d+1}: the least-squares gain <r, e - c> / |e - c|^2 over the batch (and DDP ranks)."""
        sums = torch.stack([(residual * direction).sum(), direction.pow(2).sum()])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        self._follow(self.gains, d, (sums[0] / sums[1].clamp_min(1e-12)).clamp_min(0.0))

    def _follow(self, buffer: torch.Tensor, d: int, value: torch.Tensor) -> None:
        if bool(self.initialised):
            buffer[d] = self.decay * buffer[d] + (1 - self.decay) * value
        else:
            buffer[d] = value

    def refinement(self, codebook: SharedCodebook, refinements: torch.Tensor) -> torch.Tensor:
        """What depths 2..R+1 add to depth 1's codewords: refinements (B, R, h, w) -> (B, C, h, w)."""
        if refinements.shape[1] >= self.depth:
            raise ValueError(f"{refinements.shape[1]} refinements given; this level has {self.depth - 1}")
        total = None
        centre = codebook_centre(codebook)
        for r in range(refinements.shape[1]):
            part = self.gains[r + 1] * (codebook.lookup(refinements[:, r]) - centre)
            total = part if total is None else total + part
        return total


def codebook_centre(codebook: SharedCodebook) -> torch.Tensor:
    """The mean codeword c, shaped to broadcast over (B, C, h, w) latents: (1, C, 1, 1)."""
    return codebook.embed.mean(0)[None, :, None, None]


def drawn_depths(batch: int, depth: int, device: torch.device) -> torch.Tensor:
    """Quantiser dropout: how many depths each crop's decoder uses, uniform in [1, D] (B,) int64.

    Drawn from torch's global generator, which the training loop re-seeds at
    every step, so a resumed run draws the same.
    """
    return torch.randint(1, depth + 1, (batch,), device=device)


def reconstruction(codewords: tuple[torch.Tensor, ...], drawn: torch.Tensor) -> torch.Tensor:
    """Each crop's sum of its first ``drawn[b]`` depths' codewords: (B, C, h, w)."""
    keep = torch.arange(len(codewords), device=drawn.device)[None, :] < drawn[:, None]  # (B, D)
    total = codewords[0]
    for d in range(1, len(codewords)):
        total = total + codewords[d] * keep[:, d, None, None, None].to(codewords[d].dtype)
    return total
