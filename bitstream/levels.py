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
when the level is.  A level may carry refinement depths (format 3): depth d
is coded given depth d - 1 of the same level (coder 4), and comes right
after it, so that a file cut anywhere still holds whole depths::

    16:1 | 8:1 context+parent(16) | 4:1 context+parent(8) | 4:2 given 4:1 | 4:3 given 4:2

Decoding a level decodes its chain of parents first
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
    CODER_DEPTH,
    MAX_DEPTH,
    CODER_RANGE_STATIC,
    PRIOR_STATIC,
    Header,
    LevelChunk,
    ParsedFile,
    kept_chunks,
    kept_depths,
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
    the model's levels may be present.  A level may carry refinement depths::

        refinements[4]  (R, H'/4, W'/4) uint16   depths 2..R+1 of level 4, each refining the one before
    """

    grids: Mapping[int, np.ndarray]  # factor -> (H'/f, W'/f) uint16, coarse first
    width: int
    height: int
    model_fingerprint: bytes  # 16 bytes: the model whose codebook the indices point into
    grid_multiple: int  # the model's coarsest factor: sides are padded up to a multiple of it
    codebook_size: int  # the vocabulary of every level: indices lie in [0, codebook_size)
    refinements: Mapping[int, np.ndarray] = field(default_factory=dict)  # factor -> (R, H'/f, W'/f) uint16, R >= 1
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
        refinements = {}
        for factor in sorted((int(f) for f in self.refinements), reverse=True):
            stack = np.asarray(self.refinements[factor])
            if factor not in grids:
                raise HvqFormatError(f"refinements of level {factor}, which these tokens do not hold")
            if stack.ndim != 3 or stack.shape[1:] != grids[factor].shape or not 1 <= stack.shape[0] < MAX_DEPTH:
                raise HvqFormatError(
                    f"level {factor} refinements are {stack.shape}, expected (R, {grids[factor].shape[0]}, "
                    f"{grids[factor].shape[1]}) with 1 <= R < {MAX_DEPTH}"
                )
            if not np.issubdtype(stack.dtype, np.integer) or stack.min() < 0 or stack.max() >= self.codebook_size:
                raise HvqFormatError(f"level {factor} refinements hold indices outside [0, {self.codebook_size})")
            stack = np.array(stack, dtype=np.uint16)  # a copy, read-only like the grids
            stack.setflags(write=False)
            refinements[factor] = stack
        object.__setattr__(self, "grids", MappingProxyType(grids))
        object.__setattr__(self, "refinements", MappingProxyType(refinements))
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

    def depth(self, factor: int) -> int:
        """How many depths a held level has: 1 + its refinements."""
        self.grid(factor)  # names a level these tokens lack
        stack = self.refinements.get(factor)
        return 1 if stack is None else 1 + stack.shape[0]

    @property
    def depths(self) -> dict[int, int]:
        """{factor: depth} of every held level, coarse first."""
        return {f: self.depth(f) for f in self.levels}

    def refinement(self, factor: int, depth: int) -> np.ndarray:
        """The grid of one depth of a level: depth 1 is ``grid(factor)``, depth d >= 2 a refinement."""
        if depth == 1:
            return self.grid(factor)
        if not 2 <= depth <= self.depth(factor):
            raise HvqFormatError(f"level {factor}:{depth} is not in these tokens (level {factor} has depths 1..{self.depth(factor)})")
        return self.refinements[factor][depth - 2]

    def select(self, levels, depths=None) -> "Tokens":
        """The same tokens with only ``levels`` (factors), each at most ``depths[f]`` deep (default: all it has)."""
        levels = tuple(levels)
        depths = dict(depths or {})
        for factor, depth in depths.items():
            if factor not in levels:
                raise HvqUsageError(f"a depth for level {factor}, which is not selected")
            if not 1 <= depth <= self.depth(factor):
                raise HvqUsageError(f"level {factor} has depths 1..{self.depth(factor)}, not {depth}")
        refinements = {}
        for factor in levels:
            kept = depths.get(factor, self.depth(factor))
            if kept > 1:
                refinements[factor] = self.refinements[factor][: kept - 1]
        return Tokens(
            {f: self.grid(f) for f in levels}, self.width, self.height,
            self.model_fingerprint, self.grid_multiple, self.codebook_size, refinements,
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, Tokens):
            return NotImplemented
        return (
            (self.width, self.height, self.model_fingerprint, self.grid_multiple, self.codebook_size, self.levels)
            == (other.width, other.height, other.model_fingerprint, other.grid_multiple, other.codebook_size, other.levels)
            and self.depths == other.depths
            and all(np.array_equal(self.grids[f], other.grids[f]) for f in self.levels)
            and all(np.array_equal(self.refinements[f], other.refinements[f]) for f in self.refinements)
        )

    __hash__ = None

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{f}: {g.shape[0]}x{g.shape[1]}" + (f" x{self.depth(f)} depths" if self.depth(f) > 1 else "")
            for f, g in self.grids.items()
        )
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


def as_selection(selection) -> tuple[tuple[int, int | None], ...] | None:
    """Levels with optional depths: "16,8,4:2" -> ((16, None), (8, None), (4, 2)); None means all.

    An entry is a factor (every depth the level has) or "F:D" / (F, D): depths
    1..D of level F (D = 1: the level's grid alone).  Ints and iterables of
    ints or such strings are accepted as in ``as_levels``.
    """
    if selection is None:
        return None
    if isinstance(selection, str):
        parts = [p.strip() for p in selection.split(",") if p.strip()]
        if not parts:
            raise HvqUsageError(f"levels {selection!r} names no level; give factors such as \"16,8,4:2\"")
        return tuple(_level_depth(p) for p in parts)
    if isinstance(selection, numbers.Integral) and not isinstance(selection, bool):
        return ((int(selection), None),)
    try:
        items = list(selection)
    except TypeError:
        raise HvqUsageError(f"levels are factors such as (16, 8) or \"16,8,4:2\", not {selection!r}") from None
    return tuple(_level_depth(item) for item in items)


def _level_depth(entry) -> tuple[int, int | None]:
    """One entry of ``as_selection``: F, "F", "F:D" or (F, D)."""
    if isinstance(entry, tuple) and len(entry) == 2:
        factor, depth = as_level(entry[0]), entry[1]
    elif isinstance(entry, str) and ":" in entry:
        factor_text, _, depth = entry.partition(":")
        factor = as_level(factor_text)
        depth = depth.strip()
        if not depth.isdigit():
            raise HvqUsageError(f"{entry!r} is not a level with a depth such as 4:2")
    else:
        return as_level(entry), None
    if depth is None:
        return factor, None
    if isinstance(depth, bool) or not (isinstance(depth, numbers.Integral) or (isinstance(depth, str) and depth.isdigit())):
        raise HvqUsageError(f"a depth is a whole number such as 2, not {depth!r}")
    depth = int(depth)
    if not 1 <= depth <= MAX_DEPTH:
        raise HvqUsageError(f"{factor}:{depth} names depth {depth}; depths count from 1 (the level's grid) to {MAX_DEPTH}")
    return factor, depth


# -- the writer: tokens -> bytes --------------------------------------------------


def write_tokens(tokens: Tokens, prior: PriorTables, ancillary=()) -> bytes:
    """A whole .hvq file holding every level of ``tokens``, each coded with ``prior``; builds HEAD.

    ``ancillary``: (type, data) chunks written after HEAD (``rate``: ``hvq.bitstream.settings``).
    Tokens with refinements make a format-3 file, which needs the prior's
    depth tables; without refinements the file is format 2.
    """
    for factor in tokens.levels:
        table = prior.static.get(factor)
        if table is None or len(table) != tokens.codebook_size:
            raise HvqModelError(
                f"the prior has no table for level {factor} with codebook size {tokens.codebook_size}"
            )
        for depth in range(2, tokens.depth(factor) + 1):
            prior.depth_model(factor, depth)  # refinements cannot be written without depth tables
    chunks = encode_levels(tokens.grids, tokens.levels, prior) + encode_refinements(tokens, prior)
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


def encode_refinements(tokens: Tokens, prior: PriorTables) -> list[LevelChunk]:
    """Code every refinement depth of the tokens, each given the depth before it (coder 4)."""
    chunks = []
    for factor, stack in tokens.refinements.items():
        for depth in range(2, tokens.depth(factor) + 1):
            grid = stack[depth - 2]
            payload = encode_indices_in_context(grid, prior.depth_model(factor, depth), tokens.refinement(factor, depth - 1), previous=True)
            chunks.append(LevelChunk(factor, grid.shape[0], grid.shape[1], CODER_DEPTH, index_checksum(grid), payload, depth=depth))
    return chunks


def header_prior_fields(prior: PriorTables, chunks: list[LevelChunk]) -> dict:
    """HEAD's prior kind and fingerprint: the context prior's, if any chunk needs it."""
    if all(c.coder == CODER_RANGE_STATIC for c in chunks):
        return {"prior_kind": PRIOR_STATIC, "prior_fingerprint": bytes(16)}
    return {"prior_kind": prior.kind, "prior_fingerprint": prior.context_fingerprint}


# -- the reader: bytes -> tokens ----------------------------------------------------


def read_tokens(parsed: ParsedFile, factors, prior: PriorTables, depths=None) -> Tokens:
    """The grids of the stored levels ``factors`` of a parsed file, the prior checked once.

    ``depths`` ({factor: depth}) limits how deep a level is read; a level it
    does not name is read at every depth that is whole in the file.
    """
    prior.check_file(parsed.header)
    depths = dict(depths or {})
    decoded: dict[tuple[int, int], np.ndarray] = {}
    grids = {f: _decode(parsed, f, prior, decoded) for f in factors}
    refinements = {}
    for factor in factors:
        deepest = depths.get(factor) or parsed.depth_of(factor)
        parsed.chunk(factor, deepest)  # names a depth that is cut off or not stored
        if deepest > 1:
            refinements[factor] = np.stack([_decode(parsed, factor, prior, decoded, d) for d in range(2, deepest + 1)])
    h = parsed.header
    return Tokens(grids, h.width, h.height, h.model_fingerprint, h.grid_multiple, h.codebook_size, refinements)


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


def decode_grid(
    parsed: ParsedFile, factor: int, prior: PriorTables, decoded: dict | None = None, depth: int = 1
) -> np.ndarray:
    """One stored level's index grid (at ``depth``) after checking the prior once; CRC-checked.

    What it is coded given (its parents, its previous depths) is decoded
    first.  ``decoded`` ({(factor, depth): grid}) caches grids across calls on one file.
    """
    prior.check_file(parsed.header)
    return _decode(parsed, factor, prior, {} if decoded is None else decoded, depth)


def _decode(parsed: ParsedFile, factor: int, prior: PriorTables, decoded: dict, depth: int = 1) -> np.ndarray:
    if (factor, depth) in decoded:
        return decoded[(factor, depth)]
    chunk = parsed.chunk(factor, depth)
    shape = (chunk.grid_height, chunk.grid_width)
    if depth > 1:
        model = prior.depth.get((factor, depth))
        if model is None:  # the fingerprint matched: the file claims more depths than its model has
            raise HvqFormatError(
                f"chunk LEVL ({chunk.name}) is deeper than the model's depth prior (level {factor}: depths 1..{prior.depth_of(factor)})"
            )
        previous = _decode(parsed, factor, prior, decoded, depth - 1)
        grid = decode_indices_in_context(chunk.payload, model, previous, shape, level=f"{factor}:{depth}", previous=True)
        decoded[(factor, depth)] = check_level(grid, chunk.index_crc, f"{factor}:{depth}")
        return decoded[(factor, depth)]
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
    decoded[(factor, 1)] = check_level(grid, chunk.index_crc, factor)
    return decoded[(factor, 1)]


# -- strip: fewer levels, re-coding only what must be ------------------------------


def strip(data: bytes | ParsedFile, keep, prior: PriorTables | None = None) -> bytes:
    """Keep only the levels (and depths) in ``keep``; the file is parsed once.

    ``keep`` holds factors (a level with all its depths) and (factor, depth)
    pairs (``as_selection``).  Chunks are copied verbatim where they can be;
    dropping depths drops the tail of a level's chunks, never re-codes (a
    depth is coded given only the one before it).  A level coded given a
    dropped parent (``orphaned_levels``) is decoded and re-coded with spatial
    context alone, which needs ``prior`` (the model's tables): without it
    that raises ``HvqRecodeNeeded``.  Ask ``needs_prior`` first to load the
    prior only when it is needed.
    """
    parsed = data if isinstance(data, ParsedFile) else parse(data)
    depths = kept_depths(parsed, keep)
    kept = tuple(depths)
    orphans = orphaned_levels(parsed, kept)
    if orphans and prior is None:
        raise recode_needed(orphans)
    if orphans:
        prior.check_file(parsed.header)
    decoded: dict[tuple[int, int], np.ndarray] = {}
    chunks = [c for c in kept_chunks(parsed, depths) if c.depth > 1]  # refinements: always verbatim
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
