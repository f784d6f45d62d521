"""The context prior's model: integer scores in, integer frequency rows out.

Each level's grid is coded in two passes of a checkerboard (He et al. 2021,
"Checkerboard context model for efficient learned image compression")::

    anchors      (row + column even):  P(x | parent context)
    non-anchors  (row + column odd):   P(x | parent context, left, right, up, down)

The parent context comes from the next coarser level (stored in the file and
decoded first; coarse levels come first): the parent ``p``, the coarser index
at the same place, and the parent's horizontal and vertical neighbours on
the side of the cell (``ph``, ``pv``: a cell in the right half of its parent
looks at the parent's right neighbour).  The four neighbours are anchors,
decoded in the first pass.  A level stored without its parent uses the same
model without the parent terms: the static table for the anchors and a bias
for the non-anchors.

A refinement depth (format 3) is coded by the same model with the previous
depth of its level in the parent's place (``previous_contexts``): the
"parent" is the previous depth's index at the same cell, and ``ph``/``pv``
its neighbours on the side the parent rule picks for a cell of that parity.

The model is log-linear: a cell's score for each codeword is a sum of rows
of small integer tables, one row per context value::

    score[x] = parent[p, x] + parent_horizontal[ph, x] + parent_vertical[pv, x]
               + horizontal[l, x] + horizontal[r, x] + vertical[u, x] + vertical[d, x]

Scores are integers in units of 1/8 bit.  ``frequencies`` turns them into a
frequency table with integer operations only (shift, add, multiply, floor
division, on values whose bounds are stated there), so the table the coder
sees is a function of the integer contexts alone: bit-identical on any
machine, thread count or batch (FORMAT.md, sections 8.4 and 11).  No float
network runs at coding time; the tables are fitted offline and rounded once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hvq.bitstream.errors import HvqModelError

SCORE_UNITS_PER_BIT = 8
# The one bound on a frequency table's total, for every table hvq codes with (the static
# tables of hvq.codec.model.prior, these rows, the coder's check): exact in float32, and no
# index costs much more than 16 bits.
FREQUENCY_TOTAL = 1 << 16
MAX_CONTEXT_CODEBOOK = 4096
MAX_BIAS = 1 << 14  # |bias| + four int8 entries stays inside int16
_DEFICIT_CAP = 127  # 16 bits below the best score: weight 1 of 2**15, the floor frequency
_BLOCK_ROWS = 256  # rows per block: a block's temporaries stay in cache


@dataclass(frozen=True)
class LevelContextModel:
    """One level's integer context tables (scores in 1/8-bit units), checked on construction.

    The three parent tables are present together (a level with a coarser
    level) or absent together (the coarsest level).
    """

    static: np.ndarray  # (K,) int32 frequency table: anchors when the parent is absent
    bias: np.ndarray  # (K,) int16 scores: non-anchors when the parent is absent
    horizontal: np.ndarray  # (K + 1, K) int8: left and right neighbours; row K: outside the grid
    vertical: np.ndarray  # (K + 1, K) int8: upper and lower neighbours
    parent: np.ndarray | None = None  # (K, K) int8: the coarser level's index at the cell
    parent_horizontal: np.ndarray | None = None  # (K + 1, K) int8: the parent's neighbour on the cell's side
    parent_vertical: np.ndarray | None = None  # (K + 1, K) int8

    def __post_init__(self) -> None:
        k = self.codebook_size
        if not 2 <= k <= MAX_CONTEXT_CODEBOOK:
            raise HvqModelError(f"context prior needs a codebook of 2..{MAX_CONTEXT_CODEBOOK} codewords, not {k}")
        expected = {"bias": ((k,), np.int16), "horizontal": ((k + 1, k), np.int8), "vertical": ((k + 1, k), np.int8)}
        parents = [self.parent, self.parent_horizontal, self.parent_vertical]
        if any(t is not None for t in parents):
            if any(t is None for t in parents):
                raise HvqModelError("context tables parent, parent_horizontal and parent_vertical come together")
            expected.update(
                parent=((k, k), np.int8), parent_horizontal=((k + 1, k), np.int8), parent_vertical=((k + 1, k), np.int8)
            )
        for name, (shape, dtype) in expected.items():
            table = getattr(self, name)
            if not isinstance(table, np.ndarray) or table.shape != shape or table.dtype != dtype:
                found = f"{table.dtype} {table.shape}" if isinstance(table, np.ndarray) else type(table).__name__
                raise HvqModelError(f"context table {name} must be {np.dtype(dtype).name} {shape}, not {found}")
        if np.abs(self.bias.astype(np.int32)).max() > MAX_BIAS:
            raise HvqModelError(f"context table bias exceeds +-{MAX_BIAS}")

    @property
    def codebook_size(self) -> int:
        return int(self.static.shape[0])

    @property
    def has_parent(self) -> bool:
        return self.parent is not None


def frequencies(scores: np.ndarray) -> np.ndarray:
    """Integer frequency rows from integer scores: (N, K) int16 -> (N, K) uint32, each >= 1, row sum <= 2**16.

    A codeword ``deficit = best - score`` units (1/8 bit) below the row's
    best gets the weight ``2**(15 - q) * (1 - r/16)``, where ``q, r =
    divmod(deficit, 8)``: two shifts and a subtraction, the classic
    piecewise-linear 2**(-deficit/8), within 6% of it.  The fitted tables
    assume the exact power; the difference costs little (FORMAT.md, 8.4).
    Widths (FORMAT.md, 8.4): scores lie in [-16896, 16892] (|bias| <= 2**14
    plus four int8 terms), so ``best - score`` lies in [0, 33788]: beyond
    int16, inside uint16.  The int16 subtraction wraps, and read as uint16
    it is the exact difference.  Weights are integers in [0, 2**15], so a
    row of K <= 4096 sums to at most 2**27, the scale is at most 2**16 - K
    and ``weight * scale`` stays below 2**31: every step is an unsigned
    32-bit (or smaller) integer operation that cannot overflow, so the
    result is exact on any machine.
    """
    if scores.dtype != np.int16:
        raise TypeError(f"scores must be int16, not {scores.dtype}")
    k = scores.shape[1]
    deficit = (scores.max(axis=1, keepdims=True) - scores).view(np.uint16)  # exact: see above
    np.minimum(deficit, _DEFICIT_CAP, out=deficit)
    weights = np.bitwise_and(deficit, 7).astype(np.uint16)
    np.subtract(16, weights, out=weights)
    weights <<= 11
    weights >>= (deficit >> 3).astype(np.uint16)
    weights = weights.astype(np.uint32)
    scale = np.uint32((FREQUENCY_TOTAL - k) << 15) // weights.sum(axis=1, keepdims=True, dtype=np.uint32)
    weights *= scale
    weights >>= 15
    weights += 1
    return weights


def anchor_mask(shape: tuple[int, int]) -> np.ndarray:
    """True where a token is coded in the first pass (row + column even)."""
    rows, cols = np.indices(shape)
    return (rows + cols) % 2 == 0


def parent_contexts(parent: np.ndarray, shape: tuple[int, int], outside: int) -> tuple[np.ndarray, ...]:
    """The parent ``p`` of every cell of a grid twice the parent's size, and its neighbours on the cell's side.

    (H/2, W/2) -> three (H, W) arrays: ``p``; ``ph``, the parent's left
    neighbour for a cell in an even column and its right neighbour for an
    odd one; ``pv`` likewise above or below; ``outside`` beyond the edge.
    """
    if (parent.shape[0] * 2, parent.shape[1] * 2) != tuple(shape):
        raise ValueError(f"parent grid {parent.shape} is not half of the grid {tuple(shape)}")
    padded = np.pad(parent.astype(np.intp), 1, constant_values=outside)  # (H/2 + 2, W/2 + 2)
    rows = np.arange(shape[0])
    cols = np.arange(shape[1])
    prow, pcol = rows // 2 + 1, cols // 2 + 1  # the parent, in padded coordinates
    side_row = prow + np.where(rows % 2, 1, -1)
    side_col = pcol + np.where(cols % 2, 1, -1)
    return padded[np.ix_(prow, pcol)], padded[np.ix_(prow, side_col)], padded[np.ix_(side_row, pcol)]


def previous_contexts(previous: np.ndarray, outside: int) -> tuple[np.ndarray, ...]:
    """The parent contexts of a refinement depth: the previous depth's grid, at the same resolution.

    (H, W) -> three (H, W) arrays: ``p``, the previous depth's index at the
    cell; ``ph``, its left neighbour for a cell in an even column and its
    right neighbour for an odd one; ``pv`` likewise above or below;
    ``outside`` beyond the edge.  The parity rule is ``parent_contexts``'s
    with a parent of the grid's own size, so one table layout serves both.
    """
    padded = np.pad(previous.astype(np.intp), 1, constant_values=outside)  # (H + 2, W + 2)
    rows = np.arange(previous.shape[0]) + 1
    cols = np.arange(previous.shape[1]) + 1
    side_row = rows + np.where(rows % 2, -1, 1)  # padded row r + 1: even r looks up, odd r down
    side_col = cols + np.where(cols % 2, -1, 1)
    return padded[np.ix_(rows, cols)], padded[np.ix_(rows, side_col)], padded[np.ix_(side_row, cols)]


def neighbours(grid: np.ndarray, outside: int) -> tuple[np.ndarray, ...]:
    """Left, right, upper and lower neighbour of every token, ``outside`` beyond the grid's edge."""
    padded = np.pad(grid.astype(np.intp), 1, constant_values=outside)
    return padded[1:-1, :-2], padded[1:-1, 2:], padded[:-2, 1:-1], padded[2:, 1:-1]


def score_terms(model: LevelContextModel, parent_terms: bool, spatial_terms: bool) -> list[np.ndarray]:
    """The tables a pass sums, in the order of its context arrays: (p, ph, pv) then (l, r, u, d)."""
    terms = []
    if parent_terms:
        terms += [model.parent, model.parent_horizontal, model.parent_vertical]
    if spatial_terms:
        terms += [model.horizontal, model.horizontal, model.vertical, model.vertical]
    return terms


def frequencies_of(terms: list[np.ndarray], contexts: list[np.ndarray], bias: np.ndarray | None = None) -> np.ndarray:
    """Frequency rows from summed table rows: ``terms[i][contexts[i]]`` (+ bias), (N,) arrays -> (N, K) float32.

    Works in blocks of rows so the temporaries stay small; each row depends
    on its own contexts only, so the blocking cannot change a value.
    float32 because that is what constriction takes; the values are exact integers.
    """
    n, k = len(contexts[0]), terms[0].shape[1]
    rows = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, _BLOCK_ROWS):
        part = slice(start, start + _BLOCK_ROWS)
        scores = terms[0][contexts[0][part]].astype(np.int16)
        for table, index in zip(terms[1:], contexts[1:]):
            scores += table[index[part]]
        if bias is not None:
            scores += bias
        rows[part] = frequencies(scores)
    return rows


def candidate_code_lengths(
    terms: list[np.ndarray], contexts: list[np.ndarray], candidates: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray:
    """Bits each candidate index would cost under the row the coder builds for its cell: (N, c) float64.

    The rows are ``frequencies_of``'s, the integer tables the coder hands to
    constriction, and a candidate ``x`` costs ``log2(row sum / row[x])``: the
    code length of that table (constriction's fixed-point copy of it differs
    by far less than a bit per index).  Works in blocks like
    ``frequencies_of``, so only (N, c) is held, never (N, K).  Rate control
    (``hvq.codec.runtime.rdoq``) weighs these against distortion.
    """
    n = len(contexts[0])
    bits = np.empty(candidates.shape, dtype=np.float64)
    for start in range(0, n, _BLOCK_ROWS):
        part = slice(start, start + _BLOCK_ROWS)
        rows = frequencies_of(terms, [c[part] for c in contexts], bias)
        chosen = np.take_along_axis(rows, candidates[part].astype(np.intp), axis=1)
        bits[part] = np.log2(rows.sum(axis=1, dtype=np.float64))[:, None] - np.log2(chosen)
    return bits
