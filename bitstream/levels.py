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
    Header,
    LevelChunk,
    ParsedFile,
    kept_levels,
    orphaned_levels,
    parse,
    recode_needed,
    write_file,
)
from hvq.bitstream.errors import HvqModelError, HvqTruncatedError
from hvq.bitstream.prior_tables import PriorTables
from hvq.bitstream.tokens import Tokens


# -- the writer: tokens -> bytes --------------------------------------------------


def write_tokens(tokens: Tokens, prior: PriorTables) -> bytes:
    """A whole .hvq file holding every level of ``tokens``, each coded with ``prior``; builds HEAD."""
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
    return write_file(header, chunks)


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
        grid = decode_indices(chunk.payload, prior.static[factor], shape)
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
        grid = decode_indices_in_context(chunk.payload, model, parent, shape)
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
