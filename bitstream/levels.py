"""Which prior codes each stored level, and coding, decoding and re-coding levels with it.

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
    LevelChunk,
    ParsedFile,
    parse,
    strip_levels,
    write_file,
)
from hvq.bitstream.errors import HvqModelError, HvqRecodeNeeded, HvqTruncatedError
from hvq.bitstream.prior_tables import PriorTables


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


def decode_grid(parsed: ParsedFile, factor: int, prior: PriorTables, decoded: dict | None = None) -> np.ndarray:
    """One stored level's index grid, decoding the parents it is coded given first; CRC-checked.

    ``decoded`` ({factor: grid}) caches grids across calls on one file.
    """
    decoded = {} if decoded is None else decoded
    if factor in decoded:
        return decoded[factor]
    chunk = parsed.level(factor)
    shape = (chunk.grid_height, chunk.grid_width)
    if chunk.coder == CODER_RANGE_STATIC:
        grid = decode_indices(chunk.payload, prior.static[factor], shape, level=factor)
    else:
        prior.check_file(parsed.header)
        model = prior.context.get(factor)
        if model is None:
            raise HvqModelError(f"the model's context prior has no tables for level {factor}")
        parent = None
        if chunk.coder == CODER_CONTEXT_PARENT:
            try:
                parent = decode_grid(parsed, 2 * factor, prior, decoded)
            except HvqTruncatedError:  # a cut file whose parent chunk never came (a writer puts it first)
                raise HvqTruncatedError(f"level {factor} needs level {2 * factor}, which is missing") from None
        grid = decode_indices_in_context(chunk.payload, model, parent, shape, level=factor)
    decoded[factor] = check_level(grid, chunk.index_crc, factor)
    return decoded[factor]


def strip(data: bytes, keep, prior: PriorTables | None = None) -> bytes:
    """Keep only the levels in ``keep``.

    Chunks are copied verbatim where they can be; a level coded given a
    dropped parent is decoded and re-coded with spatial context alone, which
    needs ``prior`` (the model's tables) and raises ``HvqRecodeNeeded``
    without it.
    """
    try:
        return strip_levels(data, keep)
    except HvqRecodeNeeded:
        if prior is None:
            raise
    parsed = parse(data)  # complete: strip_levels checked
    kept = tuple(sorted(set(int(f) for f in keep), reverse=True))
    decoded: dict[int, np.ndarray] = {}
    chunks = []
    for factor in kept:
        chunk = parsed.level(factor)
        coder = prior.coder_for(factor, kept) if chunk.coder == CODER_CONTEXT_PARENT else chunk.coder
        if coder == chunk.coder:
            chunks.append(chunk)
            continue
        grid = decode_grid(parsed, factor, prior, decoded)
        payload = encode_level(grid, factor, coder, {factor: grid}, prior)  # its parent is dropped: spatial context only
        chunks.append(LevelChunk(factor, chunk.grid_height, chunk.grid_width, coder, chunk.index_crc, payload))
    return write_file(parsed.header, chunks)


def encode_level(grid: np.ndarray, factor: int, coder: int, grids: dict[int, np.ndarray], prior: PriorTables) -> bytes:
    """One level's payload with the given coder; ``grids`` holds its parent (level 2f) for coder 3."""
    if coder == CODER_RANGE_STATIC:
        return encode_indices(grid, prior.static[factor])
    parent = grids[2 * factor] if coder == CODER_CONTEXT_PARENT else None
    return encode_indices_in_context(grid, prior.context[factor], parent)
