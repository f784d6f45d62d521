"""Rate-distortion optimised quantisation: choosing each index for its cost in bits, not only its distance.

The encoder's nearest codeword minimises the distortion ``D`` alone.  The
context prior says what every index costs (``R``, in bits, given the parent
level and the neighbours already chosen), so the encoder can instead take,
per cell, the candidate that minimises ``D + lambda * R``::

    candidates_tiled (k nearest codewords, squared latent distances)
        -> per stored level, coarse to fine (the decoder's order):
             anchors      R from the parent's context (or the static table)
             non-anchors  R from the parent and the four anchors just chosen
        -> (optionally, per level) refinement passes in pixel space (pixel_rdoq)
        -> index grids for encode_levels (an ordinary format-2 file)

Greedy in the decoder's order is exact for each decision's own rate: every
context a cell is coded in is fixed by the time it is chosen.  What it
ignores is the effect of a choice on later cells' rates (an anchor is
context for four non-anchors; a level is the parent of the next finer).
``ANCHOR_PASSES`` can re-choose the anchors, counting those four
neighbours' rates as well (off by default: it does not pay for its time).

``D`` is the squared distance in latent space to the encoder's output, the
quantity the nearest codeword minimises, so ``lambda = 0`` picks column 0
of the candidates: today's grids, bit for bit.  Latent distance alone lost
to downscaling the image (BD-rate +6 to +11% on Kodak): the decoder is not
an isometry, so the pixel passes of ``pixel_rdoq`` re-choose the cells with
the error measured in pixels, using ``cell_code_lengths`` for the rates.  The rates come from
``hvq.bitstream.context.candidate_code_lengths``, the coder's own integer
frequency rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hvq.bitstream.container import CODER_CONTEXT_PARENT, CODER_RANGE_STATIC
from hvq.bitstream.context import (
    anchor_mask,
    candidate_code_lengths,
    frequencies,
    neighbours,
    parent_contexts,
    score_terms,
)
from hvq.bitstream.prior_tables import PriorTables

DEFAULT_CANDIDATES = 6  # nearest codewords per cell; 12 only moved points along the same RD curve (a training image)
# Re-choices of the anchors counting their non-anchor neighbours' rates.  Off by default: on a
# training image it saved 3% of level 4's bytes at equal PSNR, but took 16 times as long as the
# greedy pass and 1.4-2.1x the whole encode (README, "The quality knob").
ANCHOR_PASSES = 0


def static_code_lengths(table: np.ndarray) -> np.ndarray:
    """Bits of every index under a static frequency table: (K,) -> (K,) float64."""
    table = np.asarray(table, dtype=np.float64)
    return np.log2(table.sum()) - np.log2(table)


def choose_indices(
    candidates: dict[int, tuple[np.ndarray, np.ndarray]],
    factors: tuple[int, ...],
    prior: PriorTables,
    lambdas: dict[int, float],
    refine: Callable[[int, np.ndarray, np.ndarray | None, dict[int, np.ndarray]], np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """Index grids of the stored ``factors`` minimising ``D + lambdas[f] * R`` level by level.

    ``candidates`` is ``candidates_tiled``'s output; ``lambdas`` are in
    squared latent distance per bit.  A level with lambda 0 takes its
    nearest codewords.  ``refine(factor, grid, parent, coarser)``, if given,
    replaces each level's grid before the next finer level is chosen in its
    context (the pixel-distortion passes of ``pixel_rdoq``); ``parent`` is
    the grid the level is coded with, or None, and ``coarser`` ({factor:
    grid}) the coarser levels' final grids (what a top-down decoder reads).
    """
    grids: dict[int, np.ndarray] = {}
    for factor in sorted(factors, reverse=True):  # coarse first: a level's parent is chosen before it
        indices, distances = candidates[factor]
        lam = float(lambdas.get(factor, 0.0))
        coder = prior.coder_for(factor, factors)
        parent = grids[2 * factor] if coder == CODER_CONTEXT_PARENT else None
        if lam <= 0.0:
            grids[factor] = np.ascontiguousarray(indices[..., 0])
        elif coder == CODER_RANGE_STATIC:
            bits = static_code_lengths(prior.static[factor])[indices]
            grids[factor] = _pick(indices, distances + lam * bits)
        else:
            grids[factor] = _choose_in_context(indices, distances, prior.context[factor], parent, lam)
        if refine is not None:
            grids[factor] = refine(factor, grids[factor], parent, {g: grids[g] for g in grids if g > factor})
    return grids


def _pick(indices: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """The candidate of least cost per cell (the nearest on ties: column order)."""
    best = cost.argmin(axis=-1)[..., None]
    return np.take_along_axis(indices, best, axis=-1)[..., 0].astype(np.uint16)


def _choose_in_context(indices, distances, model, parent, lam: float) -> np.ndarray:
    """One context-coded level: anchors, then non-anchors given them; then the anchors once more."""
    shape = indices.shape[:2]
    k = model.codebook_size
    anchors = anchor_mask(shape)
    others = ~anchors
    pctx = None if parent is None else parent_contexts(parent, shape, outside=k)
    grid = np.ascontiguousarray(indices[..., 0]).astype(np.uint16)

    if pctx is None:
        anchor_bits = static_code_lengths(model.static)[indices[anchors]]
    else:
        terms = score_terms(model, parent_terms=True, spatial_terms=False)
        anchor_bits = candidate_code_lengths(terms, [c[anchors] for c in pctx], indices[anchors])
    grid[anchors] = _pick(indices[anchors], distances[anchors] + lam * anchor_bits)
    if not others.any():
        return grid

    other_terms = score_terms(model, parent_terms=pctx is not None, spatial_terms=True)
    other_bias = None if pctx is not None else model.bias

    def choose_others():
        contexts = ([] if pctx is None else [c[others] for c in pctx]) + [
            n[others] for n in neighbours(grid, outside=k)
        ]
        bits = candidate_code_lengths(other_terms, contexts, indices[others], other_bias)
        grid[others] = _pick(indices[others], distances[others] + lam * bits)

    choose_others()
    for _ in range(ANCHOR_PASSES):
        cost = distances[anchors] + lam * anchor_bits
        cost += lam * _neighbour_bits(grid, indices[anchors], anchors, model, pctx, other_terms, other_bias)
        grid[anchors] = _pick(indices[anchors], cost)
        choose_others()
    return grid


def _neighbour_bits(grid, anchor_candidates, anchors, model, pctx, terms, bias) -> np.ndarray:
    """For each anchor and candidate: the bits its (up to four) non-anchor neighbours would then cost.

    A non-anchor's score row is a sum of table rows, one per context; an
    anchor candidate replaces one of them (its own direction's), so each
    neighbour's row is re-scored with that row swapped and re-normalised with
    the coder's integer ``frequencies``.  (N_anchor, c) float64.
    """
    k = model.codebook_size
    rows_n, cols_n = grid.shape
    ar, ac = np.nonzero(anchors)
    n_anchor, c = anchor_candidates.shape
    total = np.zeros((n_anchor, c), dtype=np.float64)
    padded = np.pad(grid.astype(np.intp), 1, constant_values=k)
    # (neighbour offset, table through which the anchor is that neighbour's context, anchor's role there)
    sides = (
        ((0, 1), model.horizontal),  # the neighbour to the right sees the anchor as its left
        ((0, -1), model.horizontal),  # the neighbour to the left sees it as its right
        ((1, 0), model.vertical),  # below: the anchor is its upper
        ((-1, 0), model.vertical),  # above: its lower
    )
    for (dr, dc), table in sides:
        nr, nc = ar + dr, ac + dc
        inside = (nr >= 0) & (nr < rows_n) & (nc >= 0) & (nc < cols_n)
        if not inside.any():
            continue
        sel = np.nonzero(inside)[0]
        nr, nc = nr[sel], nc[sel]
        # the neighbour's current score row: parent terms + its four anchors (+ bias)
        contexts = [] if pctx is None else [p[nr, nc] for p in pctx]
        contexts += [padded[nr + 1, nc], padded[nr + 1, nc + 2], padded[nr, nc + 1], padded[nr + 2, nc + 1]]
        symbol = grid[nr, nc].astype(np.intp)
        current = padded[ar[sel] + 1, ac[sel] + 1]  # the anchor's present choice, inside the neighbour's row
        for start in range(0, len(sel), 256):
            part = slice(start, start + 256)
            scores = terms[0][contexts[0][part]].astype(np.int16)
            for t, idx in zip(terms[1:], contexts[1:]):
                scores += t[idx[part]]
            if bias is not None:
                scores += bias
            scores -= table[current[part]]
            # (m, c, K): the row with each candidate in the anchor's place
            trial = scores[:, None, :] + table[anchor_candidates[sel[part]].astype(np.intp)]
            m = trial.shape[0]
            freq = frequencies(trial.reshape(m * c, k)).reshape(m, c, k)
            own = np.take_along_axis(freq, np.broadcast_to(symbol[part, None, None], (m, c, 1)), axis=2)[..., 0]
            total[sel[part]] += np.log2(freq.sum(axis=2, dtype=np.float64)) - np.log2(own)
    return total


def cell_code_lengths(
    grid: np.ndarray,
    indices: np.ndarray,
    factor: int,
    factors: tuple[int, ...],
    prior: PriorTables,
    parent: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What changing one cell alone would cost in bits, for every cell and candidate, given the rest of ``grid``.

    Returns (bits (h, w, k) float64, own (h, w) float64): a candidate's
    bits are its own code length in the cell's context plus, for an anchor,
    the code lengths of its (up to four) non-anchor neighbours, whose
    context it is; ``own`` is each current index's own code length, so
    ``own.sum()`` is the level's payload in bits (to within the coder's
    rounding).  ``parent`` is the next coarser grid where the level is coded
    with it (``prior.coder_for``).  The refinement passes of
    ``hvq.codec.runtime.pixel_rdoq`` weigh these.
    """
    coder = prior.coder_for(factor, factors)
    grid = np.asarray(grid)
    if coder == CODER_RANGE_STATIC:
        lengths = static_code_lengths(prior.static[factor])
        return lengths[indices], lengths[grid]
    model = prior.context[factor]
    k = model.codebook_size
    shape = grid.shape
    anchors = anchor_mask(shape)
    others = ~anchors
    pctx = parent_contexts(parent, shape, outside=k) if coder == CODER_CONTEXT_PARENT else None
    bits = np.empty(indices.shape, dtype=np.float64)
    own = np.empty(shape, dtype=np.float64)
    both = np.concatenate([indices, grid[..., None]], axis=-1)  # the candidates, then the current index
    if pctx is None:
        anchor_bits = static_code_lengths(model.static)[both[anchors]]
    else:
        terms = score_terms(model, parent_terms=True, spatial_terms=False)
        anchor_bits = candidate_code_lengths(terms, [c[anchors] for c in pctx], both[anchors])
    other_terms = score_terms(model, parent_terms=pctx is not None, spatial_terms=True)
    other_bias = None if pctx is not None else model.bias
    own[anchors] = anchor_bits[:, -1]
    bits[anchors] = anchor_bits[:, :-1]
    if others.any():
        bits[anchors] += _neighbour_bits(grid, indices[anchors], anchors, model, pctx, other_terms, other_bias)
        contexts = ([] if pctx is None else [c[others] for c in pctx]) + [
            n[others] for n in neighbours(grid, outside=k)
        ]
        other_bits = candidate_code_lengths(other_terms, contexts, both[others], other_bias)
        bits[others] = other_bits[:, :-1]
        own[others] = other_bits[:, -1]
    return bits, own
