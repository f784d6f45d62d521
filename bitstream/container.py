"""The .hvq container: one reader, one writer.  Specified in FORMAT.md beside this file.

Layout (PNG's)::

    \\x89HVQ\\r\\n\\x1a\\n | HEAD | LEVL (coarsest) | ... | LEVL (finest) | DONE

Each chunk is ``length u32 | type 4 ASCII | data | crc32(type + data)``, all
big-endian.  A LEVL chunk holds one level's range-coded indices and is
decodable from HEAD plus itself, so a prefix of the file that ends on a chunk
boundary still yields every level it holds, and dropping a level drops a chunk.

Everything read is bounded before anything is allocated: chunk lengths
against the bytes present, image sides and pixel counts against the limits
below, payload lengths against the worst case of the coder for the grid.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from hvq.bitstream.errors import HvqFormatError, HvqRecodeNeeded, HvqTruncatedError

SIGNATURE = b"\x89HVQ\r\n\x1a\n"
FORMAT_VERSION = 2  # written; versions 1 and 2 are read (FORMAT.md, section 13)

# Limits, checked before any allocation (like Pillow's decompression-bomb guard).
MAX_SIDE = 1 << 15  # pixels, each of width and height
MAX_PIXELS = 1 << 28  # width * height
MAX_FILE_BYTES = 1 << 30

# How a LEVL payload is coded (its coder byte); all use constriction's range coder.
CODER_RANGE_STATIC = 1  # the model's static frequency table for the level
CODER_CONTEXT = 2  # the context prior, spatial context only (the level's parent is not stored)
CODER_CONTEXT_PARENT = 3  # the context prior given the next coarser level (factor * 2), stored before it
CODER_NAMES = {CODER_RANGE_STATIC: "static", CODER_CONTEXT: "context", CODER_CONTEXT_PARENT: "context+parent"}

# The prior a file's context-coded levels need (HEAD, version 2).
PRIOR_STATIC = 0  # only static tables: no context tables needed
PRIOR_CHECKERBOARD = 1  # checkerboard context prior, conditioned on the parent level
PRIOR_NAMES = {PRIOR_STATIC: "static", PRIOR_CHECKERBOARD: "checkerboard-parent"}

# version, flags, width, height, grid multiple, level mask, K, model fingerprint
_HEAD_V1 = struct.Struct(">HHIIHHI16s")
# ... then prior kind, reserved, prior fingerprint
_HEAD = struct.Struct(">HHIIHHI16sHH16s")
_HEAD_SIZES = {1: _HEAD_V1.size, 2: _HEAD.size}
HEAD_PREFIX_BYTES = len(SIGNATURE) + 12 + max(_HEAD_SIZES.values())  # enough to read HEAD of any version
_LEVL = struct.Struct(">HHHBBII")  # factor, grid h, grid w, coder, reserved, index crc, payload length
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

    @property
    def bits_per_index(self) -> float:
        return 8 * len(self.payload) / max(1, self.grid_height * self.grid_width)


@dataclass(frozen=True)
class ParsedFile:
    """A parsed .hvq file: header, the complete level chunks in file order, and completeness."""

    header: Header
    levels: tuple[LevelChunk, ...]
    complete: bool  # DONE was reached
    total_bytes: int
    missing: tuple[int, ...] = ()  # factors declared in HEAD but absent (truncated file)
    truncated_reason: str = ""

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
    if not 2 <= header.codebook_size <= 65536:
        raise HvqFormatError(f"codebook size {header.codebook_size} outside 2..65536")
    if header.prior_kind not in PRIOR_NAMES:
        raise HvqFormatError(f"unknown prior kind {header.prior_kind}")
    if len(header.prior_fingerprint) != 16:
        raise HvqFormatError("prior fingerprint must be 16 bytes")
    if header.prior_kind == PRIOR_STATIC and any(header.prior_fingerprint):
        raise HvqFormatError("a static-prior file has a non-zero prior fingerprint")


def _check_coder(header: Header, factor: int, coder: int) -> None:
    """A level's coder must exist in the file's version and have what it conditions on."""
    name = f"LEVL (level {factor})"
    if coder not in CODER_NAMES or (header.version < 2 and coder != CODER_RANGE_STATIC):
        raise HvqFormatError(f"chunk {name} uses unknown coder {coder}")
    if coder != CODER_RANGE_STATIC and header.prior_kind != PRIOR_CHECKERBOARD:
        raise HvqFormatError(f"chunk {name} is context-coded but HEAD declares no context prior")
    if coder == CODER_CONTEXT_PARENT and 2 * factor not in header.factors:
        raise HvqFormatError(f"chunk {name} is coded given level {2 * factor}, which the file does not store")


def write_file(header: Header, levels: list[LevelChunk] | tuple[LevelChunk, ...]) -> bytes:
    """Serialise a header and level chunks (any subset of the model's levels) to .hvq bytes."""
    ordered = sorted(levels, key=lambda c: -c.factor)  # coarse first: a prefix must decode
    header = replace(header, factors=tuple(c.factor for c in ordered), version=FORMAT_VERSION)
    if not header.factors:
        raise HvqFormatError("a file must hold at least one level")
    if len(set(header.factors)) != len(header.factors):
        raise HvqFormatError("a level may be stored once")
    _check_header(header)
    head = _HEAD.pack(
        FORMAT_VERSION, 0, header.width, header.height, header.grid_multiple,
        _factor_mask(header.factors), header.codebook_size, header.model_fingerprint,
        header.prior_kind, 0, header.prior_fingerprint,
    )
    parts = [SIGNATURE, _chunk(b"HEAD", head)]
    for c in ordered:
        if (c.grid_height, c.grid_width) != header.grid_shape(c.factor):
            raise ValueError(f"level {c.factor} grid does not match the image size")
        _check_coder(header, c.factor, c.coder)
        fixed = _LEVL.pack(c.factor, c.grid_height, c.grid_width, c.coder, 0, c.index_crc, len(c.payload))
        parts.append(_chunk(b"LEVL", fixed + c.payload))
    parts.append(_chunk(b"DONE", b""))
    return b"".join(parts)


def strip_levels(data: bytes, keep: tuple[int, ...] | list[int]) -> bytes:
    """Keep only the levels in ``keep``, their chunks copied verbatim (nothing re-coded).

    A level coded given a parent level that is dropped cannot be copied:
    that raises ``HvqRecodeNeeded``, and ``hvq.bitstream.levels.strip``
    re-codes it with the model's prior tables instead.
    """
    parsed = parse(data)
    if not parsed.complete:
        raise HvqTruncatedError(f"cannot strip a truncated file: {parsed.truncated_reason}")
    kept = [parsed.level(f) for f in sorted(set(keep), reverse=True)]
    factors = {c.factor for c in kept}
    orphans = [c.factor for c in kept if c.coder == CODER_CONTEXT_PARENT and 2 * c.factor not in factors]
    if orphans:
        raise HvqRecodeNeeded(
            f"level {orphans[0]} is coded given level {2 * orphans[0]}: dropping that level "
            "re-codes it, which needs the model's prior"
        )
    return write_file(parsed.header, kept)


# -- reading ----------------------------------------------------------------


def max_payload_bytes(symbols: int) -> int:
    """Upper bound of a range-coded payload: <= 24 bits per symbol, plus the coder's final words."""
    return 4 * (-(-symbols * 24 // 32) + 2)


def _head_version(data) -> int | None:
    """The version HEAD starts with, refused here if this hvq cannot read it."""
    if len(data) < 2:
        return None
    (version,) = struct.unpack_from(">H", data)
    if version > FORMAT_VERSION:
        raise HvqFormatError(
            f"format version {version} is newer than this hvq reads (up to {FORMAT_VERSION}); upgrade hvq"
        )
    if version < 1:
        raise HvqFormatError(f"format version {version} is not valid")
    return version


def _parse_head(data: bytes) -> Header:
    version = _head_version(data)  # the version comes first: each version's HEAD has its own size
    expected = _HEAD_SIZES.get(version, _HEAD.size)
    if len(data) != expected:
        raise HvqFormatError(f"HEAD chunk has {len(data)} bytes, expected {expected}")
    if version == 1:
        version, flags, width, height, multiple, mask, k, fingerprint = _HEAD_V1.unpack(data)
        prior_kind, reserved, prior_fingerprint = PRIOR_STATIC, 0, bytes(16)
    else:
        version, flags, width, height, multiple, mask, k, fingerprint, prior_kind, reserved, prior_fingerprint = (
            _HEAD.unpack(data)
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
    return header


def _parse_levl(data: bytes, header: Header, offset: int, chunk_bytes: int) -> LevelChunk:
    # _check_length_field has checked the chunk's length against its payload length
    factor, gh, gw, coder, reserved, crc, length = _LEVL.unpack_from(data)
    name = f"LEVL (level {factor})"
    if factor not in header.factors:
        raise HvqFormatError(f"chunk {name} is not declared in HEAD")
    if (gh, gw) != header.grid_shape(factor):
        raise HvqFormatError(f"chunk {name} grid {gh}x{gw} does not match the image size")
    _check_coder(header, factor, coder)
    if reserved:
        raise HvqFormatError(f"chunk {name} has a non-zero reserved byte")
    if length % 4 or length > max_payload_bytes(gh * gw):
        raise HvqFormatError(f"chunk {name} payload length {length} is impossible for its grid")
    return LevelChunk(factor, gh, gw, coder, crc, bytes(data[_LEVL.size :]), offset, chunk_bytes)


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
    levels: list[LevelChunk] = []
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
            if levels and chunk.factor >= levels[-1].factor:
                raise HvqFormatError(f"chunk LEVL (level {chunk.factor}) is out of order: coarse levels come first")
            levels.append(chunk)
        elif kind == b"DONE":  # its length was checked with its frame
            if end != size:
                raise HvqFormatError(f"{size - end} bytes follow the DONE chunk")
            stored = tuple(c.factor for c in levels)
            if stored != header.factors:
                raise HvqFormatError(f"HEAD declares levels {_names(header.factors)} but the file holds {_names(stored)}")
            return ParsedFile(header, tuple(levels), True, size)
        elif not (kind[:1].isalpha() and kind[:1].islower()):  # lowercase first letter: ancillary, skipped
            raise HvqFormatError(f"unknown critical chunk {name} at byte {pos}")
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
    return ",".join(map(str, factors)) or "none"


def _cut(header, levels, size, reason) -> ParsedFile:
    if header is None:
        raise HvqTruncatedError(f"{reason} (no complete HEAD)")
    return _truncated(header, levels, size, reason)


def _truncated(header: Header, levels: list[LevelChunk], size: int, reason: str) -> ParsedFile:
    stored = {c.factor for c in levels}
    missing = tuple(f for f in header.factors if f not in stored)
    return ParsedFile(header, tuple(levels), False, size, missing, reason)


def read_bytes(source: bytes | bytearray | memoryview | str | Path) -> bytes:
    """The bytes of a file given as bytes or a path, bounded by the file-size limit."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
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
