"""The one codebook that every level quantises with.

Nearest-codeword quantisation with the straight-through estimator.  The
codewords are not trained by gradient: they follow an exponential moving
average of the vectors assigned to them (van den Oord et al. 2017, appendix
A.1), which is the fixed point of the codebook loss ``||sg(z) - e||^2`` and
converges faster.  The codebook is initialised by k-means on the first batch
and codewords that fall out of use are restarted on random encoder outputs, so
that no codeword stays dead (ideas from vector-quantize-pytorch's Codebook).
All state lives in registered buffers, so it saves with the weights.

The design study's options (``hvq.codec.model.quantizers``) change how
latents meet the codewords: ``lookup="cosine"`` l2-normalises both,
``balance="level"`` weighs every level alike in the EMA and restarts dead
codewords on the starved level, ``stochastic`` samples indices in training.
Their defaults are the product's codebook, unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from hvq.codec.model.quantizers import codeword_spacing, level_weights, normalise, sample_indices, starved_level


class SharedCodebook(nn.Module):
    """K codewords of dimension D, fitted by EMA to the latents of every level it serves.

    ::

        z[f] (B, D, h, w) --project--> z[f] --nearest--> indices[f] (B, h, w) --lookup--> z_q[f] (B, D, h, w)
        training only:  (z[f], indices[f]) for all f --update--> EMA of the vectors assigned to each
                        codeword, then dead codewords restart on fresh vectors
    """

    def __init__(
        self,
        size: int,
        dim: int,
        decay: float = 0.99,
        dead_threshold: float = 1.0,
        lookup: str = "euclidean",
        balance: str = "pooled",
        stochastic: bool = False,
    ):
        super().__init__()
        self.size = size
        self.dim = dim
        self.decay = decay
        self.dead_threshold = dead_threshold
        self.cosine = lookup == "cosine"
        self.balanced = balance == "level"
        self.stochastic = stochastic
        self.register_buffer("embed", torch.randn(size, dim) * 0.1)  # (K, D)
        self.register_buffer("cluster_size", torch.ones(size))  # EMA count per step
        self.register_buffer("embed_sum", self.embed.clone())  # EMA sum of assigned vectors
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """The latent as the codebook compares it (B, D, H, W): l2-normalised under cosine lookup, else as is."""
        return normalise(z) if self.cosine else z

    def distances(self, flat: torch.Tensor) -> torch.Tensor:
        """Squared distance of each row of ``flat`` (N, D) to every codeword: (N, K)."""
        embed = self.embed
        return flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed.t() + embed.pow(2).sum(1)[None, :]

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codeword for each row of ``flat`` (N, D)."""
        return self.distances(flat).argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codewords for an index grid (B, H, W) -> (B, D, H, W)."""
        return self.embed[indices].permute(0, 3, 1, 2).contiguous()

    def quantize(self, z: torch.Tensor, stochastic: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codewords for latents z (B, D, H, W): (indices (B, H, W), z_q (B, D, H, W)).

        ``stochastic`` True draws the indices in training whatever the codebook's
        own setting (the RSQ depths of ``hvq.codec.model.residual``); None follows it.
        """
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if (self.stochastic if stochastic is None else stochastic) and self.training:
            indices = sample_indices(self.distances(flat), codeword_spacing(self.embed)).view(b, h, w)
        else:
            indices = self.nearest(flat).view(b, h, w)
        return indices, self.lookup(indices)

    @torch.no_grad()
    def update(self, latents: list[torch.Tensor], indices: list[torch.Tensor]) -> None:
        """EMA step over the vectors of all levels at once, then dead-code restarts."""
        rows = [z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim) for z in latents]
        if self.balanced:
            # Each level weighs the same, and restarts come from the level using the fewest codewords.
            counts = torch.zeros(self.size, dtype=rows[0].dtype, device=rows[0].device)
            sums = torch.zeros_like(self.embed)
            for weight, level_rows, level_idx in zip(level_weights([r.shape[0] for r in rows]), rows, indices):
                level_idx = level_idx.reshape(-1)
                counts += weight * torch.bincount(level_idx, minlength=self.size).to(counts.dtype)
                sums.index_add_(0, level_idx, level_rows, alpha=weight)
            flat = rows[starved_level(indices)]
        else:
            flat = torch.cat(rows)
            idx = torch.cat([i.reshape(-1) for i in indices])
            counts = torch.bincount(idx, minlength=self.size).to(flat.dtype)
            sums = torch.zeros_like(self.embed).index_add_(0, idx, flat)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used codewords from dividing by zero.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.size * 1e-5) * n
        embed = self.embed_sum / smoothed[:, None]
        self.embed.copy_(normalise(embed, -1) if self.cosine else embed)
        self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        picks = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
        fresh = flat[picks]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, 0)  # every rank restarts to the same vectors
        self.embed[dead] = fresh
        self.embed_sum[dead] = fresh * self.dead_threshold
        self.cluster_size[dead] = self.dead_threshold

    @torch.no_grad()
    def kmeans_init(self, latents: list[torch.Tensor], iters: int = 10) -> None:
        """Initialise the codewords by k-means on one batch of latents from all levels."""
        flat = torch.cat([z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim) for z in latents])
        picks = torch.randperm(flat.shape[0], device=flat.device)[: self.size]
        if picks.numel() < self.size:  # tiny batches: sample with replacement
            picks = torch.randint(0, flat.shape[0], (self.size,), device=flat.device)
        centroids = flat[picks].clone()
        counts = torch.ones(self.size, device=flat.device)
        for _ in range(iters):
            self.embed.copy_(centroids)
            idx = self.nearest(flat)
            counts = torch.bincount(idx, minlength=self.size).to(flat.dtype)
            sums = torch.zeros_like(centroids).index_add_(0, idx, flat)
            used = counts > 0
            centroids[used] = sums[used] / counts[used, None]
            if self.cosine:  # spherical k-means: the means back onto the sphere
                centroids = normalise(centroids, -1)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(centroids, 0)
            dist.broadcast(counts, 0)
        # The EMA starts from this batch's counts: a codeword k-means left empty
        # is dead from the start and restarted on the first update.
        self.embed.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(centroids * counts[:, None])
        self.initialised.fill_(True)
