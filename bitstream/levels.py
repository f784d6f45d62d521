"""Tokens, and the levels of a file that code them: the writer (tokens -> bytes), the reader, strip.

``Tokens`` is the image as its codebook indices, the API's middle::

    image --tokenize--> Tokens --write_tokens--> .hvq bytes
    image <--detokenize-- Tokens <--read_tokens-- .hvq bytes

Every level draws on the one shared codebook, so the vocabulary is
``range(codebook_size)`` at every level.  The writer builds HEAD from the
tokens and the prior, so nothing above the bitstream assembles a header; the
reader checks the file's prior once and returns grids.

A model's prior, as the bitstream sees it, is integer tables only
(``PriorTables``): a static frequency table per level and, optionally, a
context model per level (``hvq.bitstream.context``).  With a context model,
a level is coded given its parent (the level of twice its factor) when the
file stores the parent, and with spatial context alone when it does not::

    stored 16, 8, 4:   16 context | 8 context+parent(16) | 4 context+parent(8)
    stored 16, 4:      16 context | 4 context

Coarse levels come first in the file, so a level's parent is always complete
when the level is.  Decoding a level decodes its chain of parents first
(entropy decoding only: no transform runs), and every grid is checked against
its index CRC.  Dropping a level that another level is coded given re-codes
that level, from indices to indices: no transform runs there either.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from hvq.bitstream.coder import (
    check_level,
    decode_indices,
    decode_indices_in_context,
    encode_indices,
    encode_indices_in_context,
    index_checksum,
)
from hvq.bitstream.container import (
    CODER_CONTEXT_PARENT,
    CODER_RANGE_STATIC,
    PRIOR_STATIC,
    Header,
    LevelChunk,
    ParsedFile,
    kept_levels,
    orphaned_levels,
    parse,
    recode_needed,
    write_file,
)
from hvq.bitstream.errors import HvqFormatError, HvqModelError, HvqTruncatedError, HvqUsageError
from hvq.bitstream.prior_tables import PriorTables


# -- tokens, and levels named by factor ---------------------------------------------


@dataclass(frozen=True, eq=False)
class Tokens:
    """One read-only index grid per level, coarse first, and what they need to become an image.

    ::

        grids[16]  (H'/16, W'/16) uint16   coarsest: a 16x16 pixel block per token
        grids[8]   (H'/8,  W'/8)  uint16
        grids[4]   (H'/4,  W'/4)  uint16   finest

    H' x W' is the image's size padded up to a multiple of ``grid_multiple``;
    decoding crops back to ``width`` x ``height``.  Any non-empty subset of
    the model's levels may be present.
    """

    grids: Mapping[int, np.ndarray]  # factor -> (H'/f, W'/f) uint16, coarse first
    width: int
    height: int
    model_fingerprint: bytes  # 16 bytes: the model whose codebook the indices point into
    grid_multiple: int  # the model's coarsest factor: sides are padded up to a multiple of it
    codebook_size: int  # the vocabulary of every level: indices lie in [0, codebook_size)
    levels: tuple[int, ...] = field(init=False)  # factors, coarse first

    def __post_init__(self):
        if not self.grids:
            raise HvqFormatError("tokens must hold at least one level")
        if len(self.model_fingerprint) != 16:
            raise HvqFormatError("a model fingerprint is 16 bytes")
        height, width, m = int(self.height), int(self.width), int(self.grid_multiple)
        if width < 1 or height < 1 or m < 1:
            raise HvqFormatError(f"tokens of a {width}x{height} image with grid multiple {m}")
        padded = (-(-height // m) * m, -(-width // m) * m)
        grids = {}
        for factor in sorted((int(f) for f in self.grids), reverse=True):
            grid = np.asarray(self.grids[factor])
            if factor < 1 or m % factor:
                raise HvqFormatError(f"level {factor} does not divide the grid multiple {m}")
            shape = (padded[0] // factor, padded[1] // factor)
            if grid.shape != shape:
                raise HvqFormatError(f"level {factor} grid is {grid.shape}, expected {shape} for a {width}x{height} image")
            if grid.size and (not np.issubdtype(grid.dtype, np.integer) or grid.min() < 0 or grid.max() >= self.codebook_size):
                raise HvqFormatError(f"level {factor} holds indices outside [0, {self.codebook_size})")
            grid = np.array(grid, dtype=np.uint16)  # a copy: the caller's array stays theirs
            grid.setflags(write=False)
            grids[factor] = grid
        object.__setattr__(self, "grids", MappingProxyType(grids))
        object.__setattr__(self, "levels", tuple(grids))
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "grid_multiple", m)
        object.__setattr__(self, "model_fingerprint", bytes(self.model_fingerprint))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image, as PIL gives it."""
        return self.width, self.height

    def grid(self, factor: int) -> np.ndarray:
        """One level's grid; a level these tokens lack is an error naming the ones they hold."""
        if factor not in self.grids:
            held = ",".join(map(str, self.levels))
            raise HvqFormatError(f"level {factor} is not in these tokens (levels: {held})")
        return self.grids[factor]

    def select(self, levels) -> "Tokens":
        """The same tokens with only ``levels`` (factors)."""
        return Tokens(
            {f: self.grid(f) for f in levels}, self.width, self.height,
            self.model_fingerprint, self.grid_multiple, self.codebook_size,
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, Tokens):
            return NotImplemented
        return (
            (self.width, self.height, self.model_fingerprint, self.grid_multiple, self.codebook_size, self.levels)
            == (other.width, other.height, other.model_fingerprint, other.grid_multiple, other.codebook_size, other.levels)
            and all(np.array_equal(self.grids[f], other.grids[f]) for f in self.levels)
        )

    __hash__ = None

    def __repr__(self) -> str:
        shapes = ", ".join(f"{f}: {g.shape[0]}x{g.shape[1]}" for f, g in self.grids.items())
        return f"Tokens({self.width}x{self.height}, levels {{{shapes}}}, model {self.model_fingerprint.hex()[:8]})"


def as_level(level) -> int | None:
    """One level factor (16, 8 or 4), given as an int or a string of digits; None passes through."""
    if level is None:
        return None
    if isinstance(level, numbers.Integral) and not isinstance(level, bool):
        return int(level)
    if isinstance(level, str) and level.strip().isdigit():
        return int(level)
    raise HvqUsageError(f"a level is a factor such as 16, 8 or 4, not {level!r}")


def as_levels(levels) -> tuple[int, ...] | None:
    """Level factors from an int (16), a comma-separated string ("16,8") or an iterable; None means all."""
    if levels is None:
        return None
    if isinstance(levels, str):
        parts = [p for p in levels.split(",") if p.strip()]
        if not parts:
            raise HvqUsageError(f"levels {levels!r} names no level; give factors such as \"16,8\"")
        return tuple(as_level(p) for p in parts)
    if isinstance(levels, numbers.Integral) and not isinstance(levels, bool):
        return (int(levels),)
    try:
        items = list(levels)
    except TypeError:
        raise HvqUsageError(f"levels are factors such as (16, 8) or \"16,8\", not {levels!r}") from None
    return tuple(as_level(f) for f in items)


# -- the writer: tokens -> bytes --------------------------------------------------


def write_tokens(tokens: Tokens, prior: PriorTables, ancillary=()) -> bytes:
    """A whole .hvq file holding every level of ``tokens``, each coded with ``prior``; builds HEAD.

    ``ancillary``: (type, data) chunks written after HEAD (``rate``: ``hvq.bitstream.settings``).
    """
    for factor in tokens.levels:
        table = prior.static.get(factor)
        if table is None or len(table) != tokens.codebook_size:
            raise HvqModelError(
                f"the prior has no table for level {factor} with codebook size {tokens.codebook_size}"
            )
    chunks = encode_levels(tokens.grids, tokens.levels, prior)
    header = Header(
        width=tokens.width,
        height=tokens.height,
        grid_multiple=tokens.grid_multiple,
        codebook_size=tokens.codebook_size,
        model_fingerprint=tokens.model_fingerprint,
        factors=tokens.levels,
        **header_prior_fields(prior, chunks),
    )
    return write_file(header, chunks, ancillary)


def encode_levels(grids: dict[int, np.ndarray], factors: tuple[int, ...], prior: PriorTables) -> list[LevelChunk]:
    """Code the chosen levels' grids (coarse to fine), each given its parent when that is stored too."""
    chunks = []
    for factor in sorted(factors, reverse=True):
        grid = grids[factor]
        coder = prior.coder_for(factor, factors)
        payload = encode_level(grid, factor, coder, grids, prior)
        chunks.append(LevelChunk(factor, grid.shape[0], grid.shape[1], coder, index_checksum(grid), payload))
    return chunks


def header_prior_fields(prior: PriorTables, chunks: list[LevelChunk]) -> dict:
    """HEAD's prior kind and fingerprint: the context prior's, if any chunk needs it."""
    if all(c.coder == CODER_RANGE_STATIC for c in chunks):
        return {"prior_kind": PRIOR_STATIC, "prior_fingerprint": bytes(16)}
    return {"prior_kind": prior.kind, "prior_fingerprint": prior.context_fingerprint}


# -- the reader: bytes -> tokens ----------------------------------------------------


def read_tokens(parsed: ParsedFile, factors, prior: PriorTables) -> Tokens:
    """The grids of the stored levels ``factors`` of a parsed file, the prior checked once."""
    prior.check_file(parsed.header)
    decoded: dict[int, np.ndarray] = {}
    grids = {f: _decode(parsed, f, prior, decoded) for f in factors}
    h = parsed.header
    return Tokens(grids, h.width, h.height, h.model_fingerprint, h.grid_multiple, h.codebook_size)


def stored_levels(parsed: ParsedFile, levels: tuple[int, ...] | None, partial: bool) -> tuple[int, ...]:
    """The levels to decode: ``levels``, or every complete one (a truncated file only with ``partial``)."""
    if levels is not None:
        for factor in levels:
            parsed.level(factor)  # names a level that is missing or not stored
        return tuple(sorted(set(levels), reverse=True))
    if not parsed.complete and not partial:
        held = ",".join(str(c.factor) for c in parsed.levels) or "none"
        raise HvqTruncatedError(f"file is truncated ({parsed.truncated_reason}); complete levels: {held}")
    if not parsed.levels:
        raise HvqTruncatedError(f"no complete level: {parsed.truncated_reason}")
    return tuple(c.factor for c in parsed.levels)


def decode_grid(parsed: ParsedFile, factor: int, prior: PriorTables, decoded: dict | None = None) -> np.ndarray:
    """One stored level's index grid after checking the prior once; its parents are decoded first; CRC-checked.

    ``decoded`` ({factor: grid}) caches grids across calls on one file.
    """
    prior.check_file(parsed.header)
    return _decode(parsed, factor, prior, {} if decoded is None else decoded)


def _decode(parsed: ParsedFile, factor: int, prior: PriorTables, decoded: dict) -> np.ndarray:
    if factor in decoded:
        return decoded[factor]
    chunk = parsed.level(factor)
    shape = (chunk.grid_height, chunk.grid_width)
    if chunk.coder == CODER_RANGE_STATIC:
        grid = decode_indices(chunk.payload, prior.static[factor], shape, level=factor)
    else:
        model = prior.context.get(factor)
        if model is None:
            raise HvqModelError(f"the model's context prior has no tables for level {factor}")
        parent = None
        if chunk.coder == CODER_CONTEXT_PARENT:
            try:
                parent = _decode(parsed, 2 * factor, prior, decoded)
            except HvqTruncatedError:  # a cut file whose parent chunk never came (a writer puts it first)
                raise HvqTruncatedError(f"level {factor} needs level {2 * factor}, which is missing") from None
        grid = decode_indices_in_context(chunk.payload, model, parent, shape, level=factor)
    decoded[factor] = check_level(grid, chunk.index_crc, factor)
    return decoded[factor]


# -- strip: fewer levels, re-coding only what must be ------------------------------


def strip(data: bytes | ParsedFile, keep, prior: PriorTables | None = None) -> bytes:
    """Keep only the levels in ``keep``; the file is parsed once.

    Chunks are copied verbatim where they can be; a level coded given a
    dropped parent (``orphaned_levels``) is decoded and re-coded with spatial
    context alone, which needs ``prior`` (the model's tables): without it
    that raises ``HvqRecodeNeeded``.  Ask ``needs_prior`` first to load the
    prior only when it is needed.
    """
    parsed = data if isinstance(data, ParsedFile) else parse(data)
    kept = kept_levels(parsed, keep)
    orphans = orphaned_levels(parsed, kept)
    if orphans and prior is None:
        raise recode_needed(orphans)
    if orphans:
        prior.check_file(parsed.header)
    decoded: dict[int, np.ndarray] = {}
    chunks = []
    for factor in kept:
        chunk = parsed.level(factor)
        if factor not in orphans:
            chunks.append(chunk)
            continue
        coder = prior.coder_for(factor, kept)
        grid = _decode(parsed, factor, prior, decoded)
        payload = encode_level(grid, factor, coder, {factor: grid}, prior)  # its parent is dropped: spatial context only
        chunks.append(LevelChunk(factor, chunk.grid_height, chunk.grid_width, coder, chunk.index_crc, payload))
    return write_file(parsed.header, chunks)


def needs_prior(parsed: ParsedFile, keep) -> bool:
    """Whether stripping ``parsed`` to ``keep`` re-codes a level (and so needs the model's prior)."""
    return bool(orphaned_levels(parsed, kept_levels(parsed, keep)))


def encode_level(grid: np.ndarray, factor: int, coder: int, grids: dict[int, np.ndarray], prior: PriorTables) -> bytes:
    """One level's payload with the given coder; ``grids`` holds its parent (level 2f) for coder 3."""
    if coder == CODER_RANGE_STATIC:
        return encode_indices(grid, prior.static[factor])
    parent = grids[2 * factor] if coder == CODER_CONTEXT_PARENT else None
    return encode_indices_in_context(grid, prior.context[factor], parent)
