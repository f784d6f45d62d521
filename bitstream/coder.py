"""Entropy coding of one level's index grid with constriction's range coder.

The model is a categorical distribution given as an integer frequency table
(every entry >= 1, total <= 2**16, so no index costs much more than 16 bits
and the container can bound payload sizes).  Integers are exact in float32, and
constriction turns them into its fixed-point table by a deterministic
algorithm, so encoder and decoder build bit-identical probabilities on any
machine.  ``perfect=False`` is passed explicitly: it selects constriction's
fast, documented quantisation, and the library has announced that its default
will change.

The coder's 32-bit words are serialised big-endian here, never in native
order.  The payload carries no length of its own: the grid size comes from
the container.  A payload must be exactly the sealed stream of the indices it
decodes to (FORMAT.md, section 8.3): constriction's decoder reads past its
seal without noticing, so the decoders re-encode what they decoded and
compare, which refuses appended, cut or altered words.
"""

from __future__ import annotations

import zlib

import constriction
import numpy as np

from hvq.bitstream.context import (
    FREQUENCY_TOTAL,
    LevelContextModel,
    anchor_mask,
    frequencies_of,
    neighbours,
    parent_contexts,
    previous_contexts,
    score_terms,
)
from hvq.bitstream.errors import HvqFormatError, HvqModelError

MAX_TABLE_TOTAL = FREQUENCY_TOTAL  # the tables the coder accepts are those the priors make


def check_freqs(freqs: np.ndarray) -> np.ndarray:
    """Validate an integer frequency table and return it as the float32 array constriction takes."""
    table = np.asarray(freqs)
    if table.ndim != 1 or table.size < 2:
        raise HvqModelError("frequency table must be 1-D with at least 2 entries")
    if not np.issubdtype(table.dtype, np.integer):
        raise HvqModelError("frequency table must hold integers")
    if table.min() < 1:
        raise HvqModelError("frequency table has an entry below 1: some index could not be coded")
    if int(table.sum(dtype=np.int64)) > MAX_TABLE_TOTAL:
        raise HvqModelError(f"frequency table total exceeds {MAX_TABLE_TOTAL}")
    return table.astype(np.float32)


def _model(freqs: np.ndarray):
    return constriction.stream.model.Categorical(check_freqs(freqs), perfect=False)


def index_checksum(indices: np.ndarray) -> int:
    """CRC-32 of the indices in raster order as big-endian uint16: a desync check."""
    return zlib.crc32(np.ascontiguousarray(indices, dtype=">u2").tobytes())


def _check_symbols(indices: np.ndarray, k: int) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= k):
        raise ValueError(f"indices must lie in [0, {k})")


def payload_of(encoder) -> bytes:
    """A sealed range encoder's words as the payload: big-endian u32, never native order."""
    return encoder.get_compressed().astype(">u4").tobytes()


def words_of(payload: bytes) -> np.ndarray:
    """Inverse of ``payload_of``: the u32 words a range decoder takes."""
    if len(payload) % 4:
        raise HvqFormatError("payload length is not a multiple of 4 bytes")
    return np.frombuffer(payload, dtype=">u4").astype(np.uint32)


def _level_name(level: int | None) -> str:
    return "payload" if level is None else f"level {level} payload"


def _decoded(decoder, level: int | None, *args) -> np.ndarray:
    """One constriction decode call; only its own refusal is the file's fault.

    constriction 0.5 reports a stream that leaves its model's range with an
    ``AssertionError``; anything else (a bad table from hvq's own frequency
    computation, say) is a bug and propagates as itself.
    """
    try:
        return decoder.decode(*args)
    except AssertionError as exc:
        raise HvqFormatError(f"{_level_name(level)} does not decode: {exc}") from None


def _check_end(words: np.ndarray, sealed: np.ndarray, level: int | None) -> None:
    """Refuse a payload that is not exactly the sealed stream of its decoded indices.

    Appended words would otherwise decode to the same indices (two files, one
    image, room for hidden data), and a cut one reads as zeros.
    """
    ending = f"{_level_name(level)} does not end where its indices end"
    if len(sealed) != len(words):
        raise HvqFormatError(
            f"{ending}: {len(words)} words, the sealed code of its indices has {len(sealed)} (words appended or cut)"
        )
    differ = np.flatnonzero(sealed != words)
    if differ.size:
        raise HvqFormatError(f"{ending}: word {int(differ[0])} of {len(words)} differs from the sealed code of its indices")


def encode_indices(indices: np.ndarray, freqs: np.ndarray) -> bytes:
    """Range-code a grid of indices (raster order) with a frequency table; returns the payload."""
    symbols = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
    _check_symbols(symbols, len(freqs))
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols.astype(np.int32), _model(freqs))
    return payload_of(encoder)


def decode_indices(
    payload: bytes, freqs: np.ndarray, shape: tuple[int, int], level: int | None = None
) -> np.ndarray:
    """Inverse of ``encode_indices``: payload -> (H, W) uint16 grid; ``level`` names it in errors."""
    words = words_of(payload)
    model = _model(freqs)  # a bad table is the model's fault, not the file's
    decoder = constriction.stream.queue.RangeDecoder(words)
    symbols = _decoded(decoder, level, model, int(shape[0]) * int(shape[1]))
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols.astype(np.int32), model)
    _check_end(words, encoder.get_compressed(), level)
    return np.asarray(symbols, dtype=np.uint16).reshape(shape)


def check_level(grid: np.ndarray, index_crc: int, factor: int | str) -> np.ndarray:
    """Compare a decoded grid with its stored CRC, so that a desync is an error, not a wrong image.

    ``factor`` names the level (an int, or "4:2" for a refinement depth).
    """
    if index_checksum(grid) != index_crc:
        raise HvqFormatError(f"level {factor} indices fail their checksum: the stream and prior disagree")
    return grid


# -- the context prior: two checkerboard passes in one stream ----------------
#
# The anchors (row + column even) come first, in raster order, then the
# non-anchors in raster order.  Every non-anchor's four neighbours are
# anchors, so the decoder knows all of its context after the first pass.


# Cells per coder call in a pass with a table per cell.  The tables of one
# call are (cells, K) float32 (32 MB at K = 512), so memory stays bounded
# whatever the grid (a whole 4096x4096 image's level 4 took 2 GB at once).
# A range coder's stream is the same however its symbols are split into
# calls, so this bound cannot change a file.
CODING_CELLS = 1 << 14


def _row_family():
    return constriction.stream.model.Categorical(perfect=False)


def _blocks(count: int):
    return (slice(start, start + CODING_CELLS) for start in range(0, count, CODING_CELLS))


def _encode_pass(encoder, symbols: np.ndarray, coder_model, rows) -> None:
    """Encode one pass; ``rows`` (terms, contexts, bias) makes the per-cell tables block by block."""
    if rows is None:
        encoder.encode(symbols, coder_model)
        return
    terms, contexts, bias = rows
    for part in _blocks(len(symbols)):
        encoder.encode(symbols[part], coder_model, frequencies_of(terms, [c[part] for c in contexts], bias))


def _decode_pass(decoder, encoder, level: int | None, count: int, coder_model, rows) -> np.ndarray:
    """Inverse of ``_encode_pass``: ``count`` symbols of one pass, re-encoded into ``encoder`` for the end check."""
    if rows is None:
        symbols = np.asarray(_decoded(decoder, level, coder_model, count), dtype=np.int32)
        encoder.encode(symbols, coder_model)
        return symbols
    terms, contexts, bias = rows
    symbols = np.empty(count, dtype=np.int32)
    for part in _blocks(count):
        table = frequencies_of(terms, [c[part] for c in contexts], bias)
        symbols[part] = _decoded(decoder, level, coder_model, table)
        encoder.encode(symbols[part], coder_model, table)
    return symbols


class _Passes:
    """The two passes' coder models for one grid: what encoder and decoder share."""

    def __init__(self, model: LevelContextModel, shape: tuple[int, int], parent: np.ndarray | None, previous: bool):
        if parent is not None and not model.has_parent:
            raise HvqModelError("this level's context model has no parent tables")
        self.model = model
        self.anchors = anchor_mask(shape)
        self.others = ~self.anchors
        k = model.codebook_size
        if parent is None:
            self.parent_context = None
        elif previous:  # a refinement depth: the previous depth, same grid
            if parent.shape != tuple(shape):
                raise ValueError(f"previous depth grid {parent.shape} is not the grid's {tuple(shape)}")
            self.parent_context = previous_contexts(parent, outside=k)
        else:
            self.parent_context = parent_contexts(parent, shape, outside=k)

    def _parent_terms(self, mask):
        return [] if self.parent_context is None else [c[mask] for c in self.parent_context]

    def first(self):
        """(coder model, rows) for the anchors: the static table (rows None), or a table per anchor from its parent."""
        if self.parent_context is None:
            return _model(self.model.static), None
        terms = score_terms(self.model, parent_terms=True, spatial_terms=False)
        return _row_family(), (terms, self._parent_terms(self.anchors), None)

    def second(self, grid: np.ndarray):
        """(coder model, rows) for the non-anchors, from the anchors in ``grid`` (other cells unread)."""
        spatial = [n[self.others] for n in neighbours(grid, outside=self.model.codebook_size)]
        with_parent = self.parent_context is not None
        terms = score_terms(self.model, parent_terms=with_parent, spatial_terms=True)
        contexts = self._parent_terms(self.others) + spatial
        return _row_family(), (terms, contexts, None if with_parent else self.model.bias)


def encode_indices_in_context(
    grid: np.ndarray, model: LevelContextModel, parent: np.ndarray | None, previous: bool = False
) -> bytes:
    """Range-code a grid with the context prior, given the coarser level's grid (or None); returns the payload.

    ``previous``: ``parent`` is the previous depth of the same level (coder 4), not the coarser level.
    """
    grid = np.asarray(grid)
    _check_symbols(grid, model.codebook_size)
    passes = _Passes(model, grid.shape, parent, previous)
    encoder = constriction.stream.queue.RangeEncoder()
    _encode_pass(encoder, grid[passes.anchors].astype(np.int32), *passes.first())
    if passes.others.any():
        _encode_pass(encoder, grid[passes.others].astype(np.int32), *passes.second(grid))
    return payload_of(encoder)


def decode_indices_in_context(
    payload: bytes,
    model: LevelContextModel,
    parent: np.ndarray | None,
    shape: tuple[int, int],
    level: int | str | None = None,
    previous: bool = False,
) -> np.ndarray:
    """Inverse of ``encode_indices_in_context``: payload -> (H, W) uint16 grid; ``level`` names it in errors."""
    words = words_of(payload)
    passes = _Passes(model, shape, parent, previous)
    grid = np.zeros(shape, dtype=np.intp)
    decoder = constriction.stream.queue.RangeDecoder(words)
    encoder = constriction.stream.queue.RangeEncoder()  # re-codes what is decoded: the end check
    grid[passes.anchors] = _decode_pass(decoder, encoder, level, int(passes.anchors.sum()), *passes.first())
    if passes.others.any():
        grid[passes.others] = _decode_pass(decoder, encoder, level, int(passes.others.sum()), *passes.second(grid))
    _check_end(words, encoder.get_compressed(), level)
    return grid.astype(np.uint16)
