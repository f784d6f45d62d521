"""The .hvq container: one reader, one writer.  Specified in FORMAT.md beside this file.

Layout (PNG's)::

    \\x89HVQ\\r\\n\\x1a\\n | HEAD | LEVL (coarsest) | ... | LEVL (finest) | DONE

Each chunk is ``length u32 | type 4 ASCII | data | crc32(type + data)``, all
big-endian.  A LEVL chunk holds one level's range-coded indices and is
decodable from HEAD plus itself, so a prefix of the file that ends on a chunk
boundary still yields every level it holds, and dropping a level drops a chunk.

Format 3 adds refinement depths: a level's depth 1 is its ordinary grid,
depths 2..D refine it, each in its own LEVL chunk right after the one it is
coded given (16:1 | 8:1 | 4:1 | 4:2 | 4:3 | DONE), so every prefix is still
a valid file of lower quality and dropping a depth drops a tail of chunks.

Everything read is bounded before anything is allocated: chunk lengths
against the bytes present, image sides and pixel counts against the limits
below, payload lengths against the worst case of the coder for the grid.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from hvq.bitstream.errors import HvqFormatError, HvqRecodeNeeded, HvqTruncatedError, HvqUsageError

SIGNATURE = b"\x89HVQ\r\n\x1a\n"
FORMAT_VERSION = 2  # written for files without refinement depths (byte for byte as hvq 0.2)
DEPTH_VERSION = 3  # written for files with refinement depths; versions 1 to 3 are read (FORMAT.md, section 13)
MAX_DEPTH = 16  # depths per level: a LEVL's depth byte and HEAD's depth table hold 1..16

# Limits, checked before any allocation (like Pillow's decompression-bomb guard).
MAX_CODEBOOK_SIZE = 1 << 16  # indices are stored as uint16 (HEAD's codebook size, Tokens' grids)
MAX_SIDE = 1 << 15  # pixels, each of width and height
MAX_PIXELS = 1 << 28  # width * height
MAX_FILE_BYTES = 1 << 30

# How a LEVL payload is coded (its coder byte); all use constriction's range coder.
CODER_RANGE_STATIC = 1  # the model's static frequency table for the level
CODER_CONTEXT = 2  # the context prior, spatial context only (the level's parent is not stored)
CODER_CONTEXT_PARENT = 3  # the context prior given the next coarser level (factor * 2), stored before it
CODER_DEPTH = 4  # version 3: a refinement depth, given the previous depth of its level (same grid), stored before it
CODER_NAMES = {
    CODER_RANGE_STATIC: "static", CODER_CONTEXT: "context", CODER_CONTEXT_PARENT: "context+parent",
    CODER_DEPTH: "depth+previous",
}

# The prior a file's context-coded levels need (HEAD, version 2).
PRIOR_STATIC = 0  # only static tables: no context tables needed
PRIOR_CHECKERBOARD = 1  # checkerboard context prior, conditioned on the parent level
PRIOR_NAMES = {PRIOR_STATIC: "static", PRIOR_CHECKERBOARD: "checkerboard-parent"}

# version, flags, width, height, grid multiple, level mask, K, model fingerprint
_HEAD_V1 = struct.Struct(">HHIIHHI16s")
# ... then prior kind, reserved, prior fingerprint
_HEAD = struct.Struct(">HHIIHHI16sHH16s")
# ... then a depth table: byte b is how many depths level 2**b stores (0: the level is not stored)
_HEAD_V3 = struct.Struct(">HHIIHHI16sHH16s16s")
_HEAD_SIZES = {1: _HEAD_V1.size, 2: _HEAD.size, 3: _HEAD_V3.size}
HEAD_PREFIX_BYTES = len(SIGNATURE) + 12 + max(_HEAD_SIZES.values())  # enough to read HEAD of any version
_LEVL = struct.Struct(">HHHBBII")  # factor, grid h, grid w, coder, depth (v3; reserved 0 before), index crc, payload length
_CHUNK_PREFIX = struct.Struct(">I4s")
_CRC = struct.Struct(">I")


@dataclass(frozen=True)
class Header:
    """What HEAD declares: the image, the grid geometry, the model and the stored levels."""

    width: int
    height: int
    grid_multiple: int  # sides are padded up to a multiple of this before the transforms
    codebook_size: int
    model_fingerprint: bytes  # 16 bytes: truncated SHA-256 of the weights and static prior tables
    factors: tuple[int, ...]  # stored levels, coarse first
    version: int = FORMAT_VERSION
    prior_kind: int = PRIOR_STATIC  # what the context-coded levels need (version 1: static only)
    prior_fingerprint: bytes = bytes(16)  # truncated SHA-256 of the context prior's tables; zeros if static
    depths: tuple[tuple[int, int], ...] = ()  # (factor, D) of the levels storing D >= 2 depths (version 3), coarse first

    def depth_of(self, factor: int) -> int:
        """How many depths HEAD declares for a stored level (1 unless it has refinements)."""
        return dict(self.depths).get(factor, 1)

    @property
    def padded_size(self) -> tuple[int, int]:
        m = self.grid_multiple
        return -(-self.height // m) * m, -(-self.width // m) * m

    def grid_shape(self, factor: int) -> tuple[int, int]:
        """(rows, columns) of a level's index grid."""
        h, w = self.padded_size
        return h // factor, w // factor


@dataclass(frozen=True)
class LevelChunk:
    """One stored level: its geometry, coder, checksum and where its bytes lie in the file."""

    factor: int
    grid_height: int
    grid_width: int
    coder: int
    index_crc: int
    payload: bytes
    offset: int = 0  # byte offset of the chunk in the file
    chunk_bytes: int = 0  # whole chunk: length, type, data, CRC
    depth: int = 1  # 1: the level's grid; 2..: a refinement, coded given depth - 1 (version 3)

    @property
    def bits_per_index(self) -> float:
        return 8 * len(self.payload) / max(1, self.grid_height * self.grid_width)

    @property
    def name(self) -> str:
        """"level 4", or "level 4:2" for a refinement depth: how messages name the chunk."""
        return level_name(self.factor, self.depth)


def level_name(factor: int, depth: int = 1) -> str:
    """"level F" for depth 1 (as formats 1 and 2 name it), "level F:D" for a refinement depth."""
    return f"level {factor}" if depth == 1 else f"level {factor}:{depth}"


@dataclass(frozen=True)
class ParsedFile:
    """A parsed .hvq file: header, the complete level chunks in file order, and completeness.

    ``levels`` are the depth-1 chunks (a level's grid), ``refinements`` the
    chunks of depths 2.. (format 3), each in file order.
    """

    header: Header
    levels: tuple[LevelChunk, ...]
    complete: bool  # DONE was reached
    total_bytes: int
    missing: tuple[int, ...] = ()  # factors declared in HEAD but absent (truncated file)
    truncated_reason: str = ""
    ancillary: tuple[tuple[bytes, bytes], ...] = ()  # (type, data) of the ancillary chunks read, in file order
    refinements: tuple[LevelChunk, ...] = ()  # depth >= 2, in file order
    missing_refinements: tuple[tuple[int, int], ...] = ()  # (factor, depth) declared but absent (truncated file)

    @property
    def chunks(self) -> tuple[LevelChunk, ...]:
        """Every LEVL chunk read, in file order (coarse first, then by depth)."""
        return tuple(sorted(self.levels + self.refinements, key=lambda c: (-c.factor, c.depth)))

    def depth_of(self, factor: int) -> int:
        """How many depths of a stored level are whole in the file (0 if not even its grid is)."""
        if not any(c.factor == factor for c in self.levels):
            return 0
        return 1 + sum(1 for c in self.refinements if c.factor == factor)

    def chunk(self, factor: int, depth: int = 1) -> LevelChunk:
        """One stored chunk; a depth that is cut off or not stored is an error naming it."""
        if depth == 1:
            return self.level(factor)
        for c in self.refinements:
            if (c.factor, c.depth) == (factor, depth):
                return c
        self.level(factor)  # names a level that is missing or not stored
        if (factor, depth) in self.missing_refinements:
            raise HvqTruncatedError(f"{level_name(factor, depth)} is missing: {self.truncated_reason}")
        raise HvqFormatError(
            f"{level_name(factor, depth)} is not stored (level {factor} stores {self.header.depth_of(factor)} depths)"
        )

    def level(self, factor: int) -> LevelChunk:
        for chunk in self.levels:
            if chunk.factor == factor:
                return chunk
        if factor in self.missing:
            raise HvqTruncatedError(f"level {factor} is missing: {self.truncated_reason}")
        stored = ", ".join(str(c.factor) for c in self.levels) or "none"
        raise HvqFormatError(f"level {factor} is not stored (stored: {stored})")


# -- writing ----------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return _CHUNK_PREFIX.pack(len(data), kind) + data + _CRC.pack(zlib.crc32(kind + data))


def _factor_mask(factors) -> int:
    mask = 0
    for f in factors:
        mask |= f
    return mask


def _check_header(header: Header) -> None:
    if not (1 <= header.width <= MAX_SIDE and 1 <= header.height <= MAX_SIDE):
        raise HvqFormatError(f"image size {header.width}x{header.height} outside 1..{MAX_SIDE}")
    if header.width * header.height > MAX_PIXELS:
        raise HvqFormatError(f"image of {header.width * header.height} pixels exceeds {MAX_PIXELS}")
    m = header.grid_multiple
    if m < 1 or m & (m - 1) or m > 1024:
        raise HvqFormatError(f"grid multiple {m} is not a power of two up to 1024")
    for f in header.factors:
        if f < 1 or f & (f - 1) or f > m:
            raise HvqFormatError(f"level factor {f} is not a power of two up to the grid multiple {m}")
    if len(header.model_fingerprint) != 16:
        raise HvqFormatError("model fingerprint must be 16 bytes")
    if not 2 <= header.codebook_size <= MAX_CODEBOOK_SIZE:
        raise HvqFormatError(f"codebook size {header.codebook_size} outside 2..{MAX_CODEBOOK_SIZE}")
    if header.prior_kind not in PRIOR_NAMES:
        raise HvqFormatError(f"unknown prior kind {header.prior_kind}")
    if len(header.prior_fingerprint) != 16:
        raise HvqFormatError("prior fingerprint must be 16 bytes")
    if header.prior_kind == PRIOR_STATIC and any(header.prior_fingerprint):
        raise HvqFormatError("a static-prior file has a non-zero prior fingerprint")
    for factor, depth in header.depths:
        if factor not in header.factors:
            raise HvqFormatError(f"HEAD declares depths for level {factor}, which it does not store")
        if not 2 <= depth <= MAX_DEPTH:
            raise HvqFormatError(f"HEAD declares {depth} depths for level {factor}, outside 1..{MAX_DEPTH}")


def _check_coder(header: Header, factor: int, coder: int, depth: int = 1) -> None:
    """A level's coder must exist in the file's version, suit its depth and have what it conditions on."""
    name = f"LEVL ({level_name(factor, depth)})"
    known = (CODER_RANGE_STATIC,) if header.version < 2 else (1, 2, 3) if header.version < 3 else tuple(CODER_NAMES)
    if coder not in known:
        raise HvqFormatError(f"chunk {name} uses unknown coder {coder}")
    if (coder == CODER_DEPTH) != (depth > 1):
        raise HvqFormatError(f"chunk {name} uses coder {coder}, but depth {depth} needs coder "
                             + ("4" if depth > 1 else "1, 2 or 3"))
    if coder != CODER_RANGE_STATIC and header.prior_kind != PRIOR_CHECKERBOARD:
        raise HvqFormatError(f"chunk {name} is context-coded but HEAD declares no context prior")
    if coder == CODER_CONTEXT_PARENT and 2 * factor not in header.factors:
        raise HvqFormatError(f"chunk {name} is coded given level {2 * factor}, which the file does not store")


def _chunk_order(levels) -> list[LevelChunk]:
    """Coarse first, then by depth: a chunk follows whatever it is coded given (FORMAT.md, section 3.1)."""
    return sorted(levels, key=lambda c: (-c.factor, c.depth))


def _declared_depths(ordered: list[LevelChunk]) -> tuple[tuple[int, int], ...]:
    """HEAD's depth table for these chunks; each refinement must follow the depth before it."""
    depths: dict[int, int] = {}
    for c in ordered:
        expected = depths.get(c.factor, 0) + 1
        if c.depth < expected:
            raise HvqFormatError(f"{c.name} is written twice")
        if c.depth > expected:
            raise HvqFormatError(f"{c.name} is written without {level_name(c.factor, c.depth - 1)}")
        depths[c.factor] = c.depth
    return tuple((f, d) for f, d in depths.items() if d > 1)


def write_file(header: Header, levels: list[LevelChunk] | tuple[LevelChunk, ...], ancillary=()) -> bytes:
    """Serialise a header and level chunks (any subset of the model's levels) to .hvq bytes.

    ``ancillary`` is (type, data) pairs, written after HEAD (``rate``: hvq.bitstream.settings).
    """
    ordered = _chunk_order(levels)  # coarse first, then by depth: a prefix must decode
    factors = tuple(c.factor for c in ordered if c.depth == 1)
    if not factors:
        raise HvqFormatError("a file must hold at least one level")
    if len(set(factors)) != len(factors):
        raise HvqFormatError("a level may be stored once")
    depths = _declared_depths(ordered)
    version = DEPTH_VERSION if depths else FORMAT_VERSION  # without refinements: format 2, byte for byte
    header = replace(header, factors=factors, version=version, depths=depths)
    _check_header(header)
    fields = (
        version, 0, header.width, header.height, header.grid_multiple,
        _factor_mask(header.factors), header.codebook_size, header.model_fingerprint,
        header.prior_kind, 0, header.prior_fingerprint,
    )
    head = _HEAD_V3.pack(*fields, _depth_table(header)) if depths else _HEAD.pack(*fields)
    parts = [SIGNATURE, _chunk(b"HEAD", head)]
    for kind, data in ancillary:
        if not (len(kind) == 4 and kind[:1].isalpha() and kind[:1].islower()):
            raise ValueError(f"{kind!r} is not an ancillary chunk type")
        parts.append(_chunk(kind, data))
    for c in ordered:
        if (c.grid_height, c.grid_width) != header.grid_shape(c.factor):
            raise ValueError(f"level {c.factor} grid does not match the image size")
        _check_coder(header, c.factor, c.coder, c.depth)
        depth_byte = c.depth if depths else 0  # reserved (0) before version 3
        fixed = _LEVL.pack(c.factor, c.grid_height, c.grid_width, c.coder, depth_byte, c.index_crc, len(c.payload))
        parts.append(_chunk(b"LEVL", fixed + c.payload))
    parts.append(_chunk(b"DONE", b""))
    return b"".join(parts)


def _depth_table(header: Header) -> bytes:
    """HEAD's 16-byte depth table (version 3): byte b = depths stored of level 2**b, 0 if not stored."""
    table = bytearray(16)
    for factor in header.factors:
        table[factor.bit_length() - 1] = header.depth_of(factor)
    return bytes(table)


def kept_levels(parsed: ParsedFile, keep) -> tuple[int, ...]:
    """The factors of ``keep`` (any order, repeats allowed) that a strip keeps, coarse first; all must be stored.

    An entry is a factor ``f`` (the level with every depth it stores) or a
    pair ``(f, d)`` (depths 1..d; ``d`` None: every depth).
    """
    return tuple(kept_depths(parsed, keep))


def kept_depths(parsed: ParsedFile, keep) -> dict[int, int]:
    """{factor: depths kept}, coarse first, for the entries of ``keep`` (see ``kept_levels``); checked against the file."""
    if not parsed.complete:
        raise HvqTruncatedError(f"cannot strip a truncated file: {parsed.truncated_reason}")
    asked: dict[int, int | None] = {}
    for entry in keep:
        factor, depth = (entry, None) if not isinstance(entry, tuple) else entry
        factor = int(factor)
        if factor in asked and asked[factor] != depth:
            raise HvqUsageError(f"level {factor} is named twice with different depths")
        asked[factor] = depth
    kept = {}
    for factor in sorted(asked, reverse=True):
        parsed.level(factor)  # names a level that is not stored
        stored = parsed.depth_of(factor)
        depth = stored if asked[factor] is None else int(asked[factor])
        if not 1 <= depth <= stored:
            raise HvqUsageError(
                f"cannot keep {level_name(factor, depth) if depth > 1 else f'level {factor}:{depth}'}: "
                f"level {factor} stores depths 1..{stored}"
            )
        kept[factor] = depth
    return kept


def kept_chunks(parsed: ParsedFile, kept: dict[int, int]) -> list[LevelChunk]:
    """The chunks a strip to ``kept`` ({factor: depths}) copies: each level's first depths, a tail dropped."""
    return [c for c in parsed.chunks if c.factor in kept and c.depth <= kept[c.factor]]


def orphaned_levels(parsed: ParsedFile, kept: tuple[int, ...]) -> tuple[int, ...]:
    """The kept levels coded given a parent level that is dropped: they cannot be copied, only re-coded."""
    return tuple(
        f for f in kept if parsed.level(f).coder == CODER_CONTEXT_PARENT and 2 * f not in kept
    )


def recode_needed(orphans: tuple[int, ...]) -> HvqRecodeNeeded:
    """The error of a strip that must re-code ``orphans`` but was given no prior."""
    return HvqRecodeNeeded(
        f"level {orphans[0]} is coded given level {2 * orphans[0]}: dropping that level "
        "re-codes it, which needs the model's prior"
    )


def strip_levels(data: bytes | ParsedFile, keep: tuple[int, ...] | list[int]) -> bytes:
    """Keep only the levels in ``keep``, their chunks copied verbatim (nothing re-coded).

    A level coded given a parent level that is dropped cannot be copied:
    that raises ``HvqRecodeNeeded``; ``hvq.bitstream.levels.strip`` asks
    ``orphaned_levels`` first and re-codes such a level with the model's
    prior tables instead.
    """
    parsed = data if isinstance(data, ParsedFile) else parse(data)
    kept = kept_depths(parsed, keep)
    orphans = orphaned_levels(parsed, tuple(kept))
    if orphans:
        raise recode_needed(orphans)
    return write_file(parsed.header, kept_chunks(parsed, kept))


# -- reading ----------------------------------------------------------------


def max_payload_bytes(symbols: int) -> int:
    """Upper bound of a range-coded payload: <= 24 bits per symbol, plus the coder's final words."""
    return 4 * (-(-symbols * 24 // 32) + 2)


def _head_version(data) -> int | None:
    """The version HEAD starts with, refused here if this hvq cannot read it."""
    if len(data) < 2:
        return None
    (version,) = struct.unpack_from(">H", data)
    if version > DEPTH_VERSION:
        raise HvqFormatError(
            f"format version {version} is newer than this hvq reads (up to {DEPTH_VERSION}); upgrade hvq"
        )
    if version < 1:
        raise HvqFormatError(f"format version {version} is not valid")
    return version


def _parse_head(data: bytes) -> Header:
    version = _head_version(data)  # the version comes first: each version's HEAD has its own size
    expected = _HEAD_SIZES.get(version, _HEAD.size)
    if len(data) != expected:
        raise HvqFormatError(f"HEAD chunk has {len(data)} bytes, expected {expected}")
    table = bytes(16)  # the depth table: version 3 only
    if version == 1:
        version, flags, width, height, multiple, mask, k, fingerprint = _HEAD_V1.unpack(data)
        prior_kind, reserved, prior_fingerprint = PRIOR_STATIC, 0, bytes(16)
    elif version == 2:
        version, flags, width, height, multiple, mask, k, fingerprint, prior_kind, reserved, prior_fingerprint = (
            _HEAD.unpack(data)
        )
    else:
        version, flags, width, height, multiple, mask, k, fingerprint, prior_kind, reserved, prior_fingerprint, table = (
            _HEAD_V3.unpack(data)
        )
    if flags:
        raise HvqFormatError(f"HEAD flags 0x{flags:04x} are reserved in version {version}")
    if reserved:
        raise HvqFormatError(f"HEAD reserved field 0x{reserved:04x} is not zero")
    factors = tuple(sorted((1 << b for b in range(16) if mask >> b & 1), reverse=True))
    if not factors:
        raise HvqFormatError("HEAD declares no levels")
    header = Header(width, height, multiple, k, fingerprint, factors, version, prior_kind, prior_fingerprint)
    _check_header(header)
    if version >= 3:  # the depth table is checked last (FORMAT.md, section 4, check 11)
        header = replace(header, depths=_parse_depth_table(table, mask))
    return header


def _parse_depth_table(table: bytes, mask: int) -> tuple[tuple[int, int], ...]:
    """(factor, D) for D >= 2 from HEAD's depth table; a stored level has 1..MAX_DEPTH depths, others 0."""
    depths = []
    for b in reversed(range(16)):
        stored, depth = bool(mask >> b & 1), table[b]
        if stored and not 1 <= depth <= MAX_DEPTH:
            raise HvqFormatError(f"HEAD declares {depth} depths for level {1 << b}, outside 1..{MAX_DEPTH}")
        if not stored and depth:
            raise HvqFormatError(f"HEAD declares {depth} depths for level {1 << b}, which it does not store")
        if depth > 1:
            depths.append((1 << b, depth))
    if not depths:
        raise HvqFormatError("a version-3 HEAD declares no refinement depth (version 2 is written then)")
    return tuple(depths)


def _parse_levl(data: bytes, header: Header, offset: int, chunk_bytes: int) -> LevelChunk:
    # _check_length_field has checked the chunk's length against its payload length
    factor, gh, gw, coder, depth_byte, crc, length = _LEVL.unpack_from(data)
    depth = depth_byte if header.version >= 3 else 1  # the byte is reserved before version 3
    name = f"LEVL ({level_name(factor, depth)})"
    if header.version >= 3 and not 1 <= depth <= MAX_DEPTH:
        raise HvqFormatError(f"chunk LEVL (level {factor}:{depth}) has depth {depth}, outside 1..{MAX_DEPTH}")
    if factor not in header.factors:
        raise HvqFormatError(f"chunk {name} is not declared in HEAD")
    if depth > header.depth_of(factor):
        raise HvqFormatError(f"chunk {name} is not declared in HEAD (level {factor} has {header.depth_of(factor)} depths)")
    if (gh, gw) != header.grid_shape(factor):
        raise HvqFormatError(f"chunk {name} grid {gh}x{gw} does not match the image size")
    _check_coder(header, factor, coder, depth)
    if header.version < 3 and depth_byte:
        raise HvqFormatError(f"chunk {name} has a non-zero reserved byte")
    if length % 4 or length > max_payload_bytes(gh * gw):
        raise HvqFormatError(f"chunk {name} payload length {length} is impossible for its grid")
    return LevelChunk(factor, gh, gw, coder, crc, bytes(data[_LEVL.size :]), offset, chunk_bytes, depth)


def _check_order(previous: LevelChunk | None, chunk: LevelChunk) -> None:
    """Coarse levels first, each followed by its depths in order (FORMAT.md, section 3.1)."""
    if chunk.depth == 1:
        if previous is not None and chunk.factor >= previous.factor:
            raise HvqFormatError(f"chunk LEVL (level {chunk.factor}) is out of order: coarse levels come first")
        return
    if previous is not None and (previous.factor, previous.depth) == (chunk.factor, chunk.depth):
        raise HvqFormatError(f"chunk LEVL ({chunk.name}) is stored twice")
    if previous is not None and previous.factor == chunk.factor and previous.depth > chunk.depth:
        raise HvqFormatError(f"chunk LEVL ({chunk.name}) is out of order: a level's depths come in increasing order")
    if previous is None or (previous.factor, previous.depth) != (chunk.factor, chunk.depth - 1):
        raise HvqFormatError(
            f"chunk LEVL ({chunk.name}) does not follow {level_name(chunk.factor, chunk.depth - 1)}, the depth it is coded given"
        )


def parse(data: bytes) -> ParsedFile:
    """Parse and check a whole or truncated file.

    Raises ``HvqFormatError`` for anything malformed.  A file that ends on a
    chunk boundary after HEAD parses with ``complete=False`` and the levels it
    holds; one that ends inside HEAD raises ``HvqTruncatedError``.
    """
    data = memoryview(bytes(data))
    size = len(data)
    if size > MAX_FILE_BYTES:
        raise HvqFormatError(f"file of {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    if size < len(SIGNATURE):
        if SIGNATURE.startswith(bytes(data)) and size:
            raise HvqTruncatedError(f"file ends after {size} bytes, inside the signature")
        raise HvqFormatError("not an .hvq file (bad signature)")
    if bytes(data[: len(SIGNATURE)]) != SIGNATURE:
        raise HvqFormatError("not an .hvq file (bad signature)")
    pos = len(SIGNATURE)
    header: Header | None = None
    levels: list[LevelChunk] = []  # every LEVL chunk, in file order
    ancillary: list[tuple[bytes, bytes]] = []
    while True:
        if pos == size:
            if header is None:
                raise HvqTruncatedError("file ends before its HEAD chunk")
            return _truncated(header, levels, size, f"file ends at byte {size}, before DONE")
        if size - pos < 12:
            return _cut(header, levels, size, f"file ends at byte {size}, inside a chunk header")
        length, kind = _CHUNK_PREFIX.unpack_from(data, pos)
        end = pos + 12 + length
        _check_length_field(data, pos, kind, length, header)
        if end > size:
            what = kind.decode("latin-1") if kind.isascii() else "chunk"
            return _cut(header, levels, size, f"file ends at byte {size}, inside {what} at byte {pos}")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = _CRC.unpack_from(data, end - 4)
        name = kind.decode("latin-1") if kind.isalpha() and kind.isascii() else repr(bytes(kind))
        if zlib.crc32(data[pos + 4 : pos + 8 + length]) != crc:
            raise HvqFormatError(f"chunk {name} at byte {pos} fails its CRC")
        if header is None and kind != b"HEAD":
            raise HvqFormatError(f"first chunk is {name}, expected HEAD")
        if kind == b"HEAD":
            if header is not None:
                raise HvqFormatError(f"second HEAD chunk at byte {pos}")
            header = _parse_head(bytes(body))
        elif kind == b"LEVL":
            chunk = _parse_levl(body, header, pos, end - pos)
            _check_order(levels[-1] if levels else None, chunk)
            levels.append(chunk)
        elif kind == b"DONE":  # its length was checked with its frame
            if end != size:
                raise HvqFormatError(f"{size - end} bytes follow the DONE chunk")
            stored = tuple(c.factor for c in levels if c.depth == 1)
            held = {f: max(c.depth for c in levels if c.factor == f) for f in stored}
            if stored != header.factors or any(held[f] != header.depth_of(f) for f in stored):
                declared = {f: header.depth_of(f) for f in header.factors}
                raise HvqFormatError(f"HEAD declares levels {_names(declared)} but the file holds {_names(held)}")
            return _parsed(header, levels, True, size, ancillary=tuple(ancillary))
        elif not (kind[:1].isalpha() and kind[:1].islower()):  # lowercase first letter: ancillary, skipped
            raise HvqFormatError(f"unknown critical chunk {name} at byte {pos}")
        else:
            ancillary.append((bytes(kind), bytes(body)))
        pos = end


def _check_length_field(data: memoryview, pos: int, kind: bytes, length: int, header: Header | None) -> None:
    """Catch a damaged length field before it can pass for a truncated file.

    A length that grew by a flipped bit points past the end of the file, which
    is what a cut file looks like.  The critical chunks state their size twice
    (HEAD and DONE have fixed sizes, LEVL repeats its payload length in its
    fixed fields), so a length that disagrees is reported as damage even when
    the chunk's CRC lies beyond the end.  Only an ancillary chunk's length can
    still read as truncation (FORMAT.md, section 6).
    """
    if kind == b"DONE" and length:
        raise HvqFormatError("DONE chunk must be empty")
    if kind == b"HEAD":
        if length < 2:
            raise HvqFormatError(f"HEAD chunk has {length} bytes, too few to hold its version")
        version = _head_version(data[pos + 8 : pos + 10])  # a newer version is refused by name here
        if length != _HEAD_SIZES[version]:  # the caller saw 12 bytes from pos: the version is there
            raise HvqFormatError(f"HEAD chunk has {length} bytes, expected {_HEAD_SIZES[version]}")
    if kind == b"LEVL" and length < _LEVL.size:
        raise HvqFormatError(f"LEVL chunk at byte {pos} is shorter than its fixed fields")
    if kind == b"LEVL" and header is not None and len(data) >= pos + 8 + _LEVL.size:
        factor, *_, payload_length = _LEVL.unpack_from(data, pos + 8)
        if length != _LEVL.size + payload_length:
            raise HvqFormatError(
                f"chunk LEVL (level {factor}) at byte {pos} is damaged: "
                f"payload length {payload_length} disagrees with its chunk length {length}"
            )


def _names(factors) -> str:
    """"16,8,4" (a dict {factor: depths} writes "4:3" for a level of three depths)."""
    depths = factors if isinstance(factors, dict) else {}
    return ",".join(f"{f}:{depths[f]}" if depths.get(f, 1) > 1 else str(f) for f in factors) or "none"


def _parsed(header: Header, chunks: list[LevelChunk], complete: bool, size: int, **rest) -> ParsedFile:
    """A ``ParsedFile`` with the chunks split into levels (depth 1) and refinements."""
    levels = tuple(c for c in chunks if c.depth == 1)
    refinements = tuple(c for c in chunks if c.depth > 1)
    return ParsedFile(header, levels, complete, size, refinements=refinements, **rest)


def _cut(header, levels, size, reason) -> ParsedFile:
    if header is None:
        raise HvqTruncatedError(f"{reason} (no complete HEAD)")
    return _truncated(header, levels, size, reason)


def _truncated(header: Header, levels: list[LevelChunk], size: int, reason: str) -> ParsedFile:
    stored = {(c.factor, c.depth) for c in levels}
    missing = tuple(f for f in header.factors if (f, 1) not in stored)
    cut = tuple((f, d) for f in header.factors for d in range(2, header.depth_of(f) + 1) if (f, d) not in stored)
    return _parsed(header, levels, False, size, missing=missing, truncated_reason=reason, missing_refinements=cut)


def read_file(source) -> ParsedFile:
    """Parse a file given as bytes, a path or a binary file object (a ``ParsedFile`` passes through)."""
    return source if isinstance(source, ParsedFile) else parse(read_bytes(source))


def read_bytes(source) -> bytes:
    """The bytes of a file given as bytes, a path or a binary file object, bounded by the file-size limit."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):  # an open binary file, BytesIO: read from where it stands
        data = source.read(MAX_FILE_BYTES + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise HvqUsageError("a file object given to hvq must be opened in binary mode")
        if len(data) > MAX_FILE_BYTES:
            raise HvqFormatError(f"file exceeds the {MAX_FILE_BYTES}-byte limit")
        return bytes(data)
    if not isinstance(source, (str, Path)):
        raise HvqUsageError(
            f"expected .hvq bytes, a path or a binary file object, not {type(source).__name__}"
        )
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise HvqFormatError(f"file of {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
        with path.open("rb") as f:
            # A device or a pipe has no size to check first (/dev/zero says 0 and never
            # ends): read the signature, stop there when it is wrong (the parser then says
            # so), and never read past the limit.
            head = f.read(len(SIGNATURE))
            if head != SIGNATURE:
                return head
            data = head + f.read(MAX_FILE_BYTES + 1 - len(head))
    except OSError as exc:
        raise HvqFormatError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise HvqFormatError(f"file exceeds the {MAX_FILE_BYTES}-byte limit")
    return data
