"""Refinement passes that measure distortion in pixels, through the level's decoder.

The latent distance that ``rdoq.choose_indices`` weighs is a poor stand-in
for the pixel error: the decoder is not an isometry, and on Kodak the
second-nearest codeword of about a third of level 4's cells decodes closer
to the image than the nearest.  These passes start from a grid (the nearest
codewords, or the latent-distance choice) and re-choose cells among their
``k`` candidates for ``D_pixel + lambda * R``::

    grid --decode with gradient (tiled)--> per-cell SSE, dSSE/dcodeword g
         --predict every candidate: g.delta + s |delta|^2 + lambda * dR-->
         --change the cells whose gain is the largest within one cell (a local maximum)-->
         --decode the proposal; keep a change only where its window's SSE + lambda R fell-->
         --> the next pass

``delta`` is the candidate's codeword minus the current one; ``s`` (the
decoder's gain, squared error per unit of squared latent distance) is
measured once per level on cells far enough apart that their receptive
fields do not overlap.  ``dR`` is exact for each change alone
(``rdoq.cell_code_lengths``: a cell's own bits, and for an anchor its
non-anchor neighbours' bits too).  Changed cells are at least two cells
apart, so no two changes share a context except two anchors that share a
non-anchor neighbour, whose rate changes are then summed, not joint (the
file's size is measured exactly afterwards anyway).  Every decode is tiled
like ``decode_tiled``: the gradient of a tile's interior error with respect
to its window's codewords is exact, and the windows' gradients add up.

A top-down model's decoder of level f also reads every coarser level's
codewords (``net.parents_needed``).  Levels are refined coarse first
(``rdoq.choose_indices``' order), so when level f is refined its parents
are the grids already chosen: they are held fixed (no gradient) and cut to
the same windows as ``decode_tiled(parents=)`` cuts them, the halo a whole
number of the coarsest parent's cells (``decoder_halo_cells``).  Every
decode of the passes (the gain ``s``, the gradient, the proposal and the
window checks) reads them, so what the passes weigh is what the decoder
will show.  What they do not weigh: a coarser level's changes also move
what the finer decoders read, and those errors are not counted when the
coarser level is refined (the finer level's own passes then start from
the moved parents; on a tiny random model this cost level 8 about 0.002 dB
against the nearest codewords everywhere).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hvq.codec.runtime.imageio import to_tensor
from hvq.codec.runtime.tiling import DEFAULT_TILE, cut, decoder_halo_cells, decoder_tiles

DEFAULT_PASSES = 2  # each pass is a decode with gradient and one without; a third added ~0.04 dB at level 4 (kodim05)


def refines(net, factors) -> bool:
    """Whether these passes serve the levels: every coarser level a level's decoder reads is among them."""
    chosen = set(factors)
    return all(set(net.parents_needed(f)) <= chosen for f in factors)


def pixel_errors(net, grid: np.ndarray, factor: int, image: np.ndarray, tile: int = DEFAULT_TILE,
                 gradient: bool = False, parents: dict[int, np.ndarray] | None = None):
    """Squared pixel error of each cell's block (8-bit units, 3 channels summed), and optionally its gradient.

    ``image`` is the (H, W, 3) uint8 image the grid covers (padded or not):
    the grid's padding beyond it does not count.  ``parents`` ({factor:
    grid}) are the coarser levels a top-down decoder reads, fixed (no gradient).
    Returns (cell_sse (h, w) float64, gradient (h, w, D) float32 or None),
    the gradient being d(total SSE)/d(codeword) of every cell.
    """
    codebook = net.codebook_of(factor)
    height, width = image.shape[:2]
    rows, cols = grid.shape
    sse = np.zeros((rows, cols), dtype=np.float64)
    grad = np.zeros((rows, cols, codebook.embed.shape[1]), dtype=np.float32) if gradient else None
    for t in decoder_tiles(rows, cols, factor, width, height, tile, decoder_halo_cells(net, factor, parents)):
        w = t.window
        indices = torch.from_numpy(cut(grid, w))[None]
        z = codebook.lookup(indices)
        codewords = {factor: z, **_parent_codewords(net, parents, w, factor)}
        if gradient:
            z.requires_grad_(True)
        with torch.set_grad_enabled(gradient):
            x_hat = (net._synthesise(codewords, factor) + 0.5).clamp(0.0, 1.0)[0]
            h, wd = (w.bottom - w.top) * factor, (w.right - w.left) * factor
            target = to_tensor(image[t.pixels])[0]  # (3, h', w'): the padding cut off
            hi, wi = target.shape[1:]
            error = ((x_hat[(slice(None), *t.crop)] - target) * 255.0).square().sum(0)  # (h', w')
            if gradient:
                error.sum().backward()
        blocks = F.avg_pool2d(F.pad(error.detach(), (0, wd - wi, 0, h - hi))[None, None], factor)[0, 0] * factor**2
        sse[w.top : w.bottom, w.left : w.right] = blocks.double().numpy()
        if gradient:
            grad[w.win_top : w.win_bottom, w.win_left : w.win_right] += z.grad[0].permute(1, 2, 0).numpy()
    return sse, grad


def _parent_codewords(net, parents, w, factor: int) -> dict[int, torch.Tensor]:
    """The parents' codewords over window ``w`` of level ``factor``'s grid, as ``decode_tiled`` cuts them."""
    return {g: net.codebook_of(g).lookup(torch.from_numpy(cut(p, w, g // factor))[None])
            for g, p in (parents or {}).items()}


def _window_sum(values: np.ndarray, radius: int) -> np.ndarray:
    """Sum of each cell's (2r+1)^2 neighbourhood, zero beyond the edge."""
    t = torch.from_numpy(values)[None, None]
    return (F.avg_pool2d(t, 2 * radius + 1, 1, radius, count_include_pad=True) * (2 * radius + 1) ** 2)[0, 0].numpy()


def _local_maxima(gain: np.ndarray, radius: int) -> np.ndarray:
    """Cells with a positive gain not exceeded within ``radius`` cells: changes that do not touch."""
    t = torch.from_numpy(gain)[None, None]
    peak = F.max_pool2d(t, 2 * radius + 1, 1, radius)[0, 0].numpy()
    chosen = (gain > 0) & (gain >= peak)
    # equal gains side by side (exact ties happen, e.g. in the edge padding): of chosen cells
    # within reach of each other only the first in raster order stays (conservative: it may drop a few more)
    order = np.where(chosen, -np.arange(gain.size, dtype=np.float64).reshape(gain.shape), -np.inf)
    first = F.max_pool2d(torch.from_numpy(order)[None, None], 2 * radius + 1, 1, radius)[0, 0].numpy()
    chosen &= order == first
    return chosen


def decoder_gain(net, grid, indices, factor, image, tile, base_sse, grad, parents=None) -> float:
    """Squared pixel error per unit of squared latent distance that a codeword change adds beyond first order.

    Cells on a lattice wider than the decoder's receptive field each move to
    their nearest other candidate; each one's window then holds its change's
    error alone, and ``s`` is the median of (actual - g.delta) / |delta|^2.
    """
    embed = net.codebook_of(factor).embed.numpy()
    halo = decoder_halo_cells(net, factor, parents)
    step = 2 * halo + 1
    rows, cols = np.meshgrid(np.arange(min(halo, grid.shape[0] // 2), grid.shape[0], step),
                             np.arange(min(halo, grid.shape[1] // 2), grid.shape[1], step), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    other = np.where(indices[rows, cols, 0] == grid[rows, cols], indices[rows, cols, 1], indices[rows, cols, 0])
    probe = grid.copy()
    probe[rows, cols] = other
    sse, _ = pixel_errors(net, probe, factor, image, tile, parents=parents)
    actual = _window_sum(sse - base_sse, halo)[rows, cols]
    delta = embed[other] - embed[grid[rows, cols]]
    linear = (grad[rows, cols] * delta).sum(1)
    norm = (delta**2).sum(1)
    keep = norm > 0
    if not keep.any():
        return 0.0
    return max(0.0, float(np.median((actual[keep] - linear[keep]) / norm[keep])))


def refine(
    net,
    grid: np.ndarray,
    indices: np.ndarray,
    factor: int,
    image: np.ndarray,
    bits: Callable[[np.ndarray], np.ndarray],
    mu: float,
    passes: int = DEFAULT_PASSES,
    tile: int = DEFAULT_TILE,
    parents: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Level ``factor``'s grid after ``passes`` of pixel-distortion refinement at rate weight ``mu``.

    ``indices`` (h, w, k) are the cell's candidates (``candidates_tiled``),
    which must hold ``grid``'s index; ``bits(grid)`` gives (h, w, k) exact
    bits of each candidate given the rest of the grid, with the own bits of
    the current indices at [..., 0] of its second output (see
    ``rdoq.cell_code_lengths``).  ``mu`` is scale-free: lambda = mu * SSE / R
    of the starting grid, so ``mu`` = 1 trades a one-percent rise in squared
    error for a one-percent fall in bits (3 dB per halving of the rate).
    Never returns a grid whose measured cost ``SSE + lambda * R`` is above
    the start's.  ``parents`` are a top-down model's coarser grids, already
    chosen (``net.parents_needed(factor)``; None for a model without them).
    """
    grid = np.ascontiguousarray(grid).astype(np.int64)
    indices = indices.astype(np.int64)
    embed = net.codebook_of(factor).embed.numpy()  # (K, D)
    parents = parents or None
    sse, grad = pixel_errors(net, grid, factor, image, tile, gradient=True, parents=parents)
    gain_s = decoder_gain(net, grid, indices, factor, image, tile, sse, grad, parents)
    if mu > 0:
        cand_bits, own = bits(grid)
        lam = mu * sse.sum() / max(own.sum(), 1.0)
    else:  # distortion alone: no rates needed
        lam = 0.0
        bits = lambda g: (np.zeros(indices.shape), np.zeros(g.shape))  # noqa: E731
        cand_bits, own = bits(grid)
    cost = sse.sum() + lam * own.sum()
    radius = 1
    for done in range(1, passes + 1):
        current = embed[grid]  # (h, w, D)
        delta = embed[indices] - current[..., None, :]  # (h, w, k, D)
        predicted = np.einsum("hwd,hwkd->hwk", grad, delta) + gain_s * np.einsum("hwkd,hwkd->hwk", delta, delta)
        at = (indices == grid[..., None]).argmax(-1)[..., None]
        rate = cand_bits - np.take_along_axis(cand_bits, at, -1)
        if lam:
            predicted = predicted + lam * rate
        best = predicted.argmin(-1)
        gain = -np.take_along_axis(predicted, best[..., None], -1)[..., 0]
        change = _local_maxima(gain, radius)
        if not change.any():
            break
        proposal = grid.copy()
        proposal[change] = indices[change, best[change]]
        new_sse, _ = pixel_errors(net, proposal, factor, image, tile, parents=parents)
        d_rate = np.take_along_axis(rate, best[..., None], -1)[..., 0]
        local = _window_sum(new_sse - sse, radius) + lam * d_rate
        keep = change & (local < 0)
        if not keep.any():
            break
        kept = np.where(keep, proposal, grid)
        kept_sse, kept_grad = pixel_errors(net, kept, factor, image, tile, gradient=done < passes, parents=parents)
        kept_bits, kept_own = bits(kept)
        kept_cost = kept_sse.sum() + lam * kept_own.sum()
        if kept_cost >= cost:  # the changes kept, together, did not pay: stop at the last grid that did
            break
        grid, sse, grad, cand_bits, own, cost = kept, kept_sse, kept_grad, kept_bits, kept_own, kept_cost
    return grid.astype(np.uint16)
