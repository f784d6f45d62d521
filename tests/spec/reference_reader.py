"""A minimal, independent `.hvq` reader, written from bitstream/FORMAT.md alone.

It imports nothing from hvq and not constriction: the range decoder below is
the pseudo-code of FORMAT.md section 8.2 in Python integers, so that its
decoding hvq's files shows that the spec is complete.  It covers the
container (sections 2-6) of formats 1 to 3, the four coders (8.2-8.5), the payload's end rule
and index CRC (8.3), the model file's tables and both fingerprints (9).  It
does not run the networks (section 10).  ``tests/spec/test_reference_reader.py``
runs it beside hvq's reader over the fuzz corpus, mutated files and the
coder test vectors, so the spec and the code cannot drift apart unnoticed.

The range *encoder* of 8.2 is here too: the test vectors check it against
constriction word for word, which pins the carry handling and the sealing.

    python tests/spec/reference_reader.py [--seed] FILE.hvq [MODEL.safetensors]

``--seed`` drops byte 0 first: the mode byte of the fuzz corpus's files.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np


class FormatError(Exception):
    """The bytes are not a valid .hvq file (FORMAT.md: "error")."""


class TruncatedError(FormatError):
    """The file ends before what it declares."""


class ModelError(Exception):
    """The model file is unusable or does not match the file."""


SIGNATURE = b"\x89HVQ\r\n\x1a\n"
HEAD_SIZES = {1: 36, 2: 56, 3: 72}
MAX_FILE_BYTES = 1 << 30

# -- section 8.2: the range coder (constriction 0.5.0 queue coder, 32-bit words, 64-bit state) --

PRECISION = 24
STATE_MASK = (1 << 64) - 1
WORD_MASK = (1 << 32) - 1


def quantised_cdf(freqs) -> list[int]:
    """left[0..n]: symbol i occupies [left[i], left[i+1]) of 2**24 (perfect=False quantisation)."""
    rows = quantised_cdfs(np.asarray(freqs)[None, :])
    return rows[0]


def quantised_cdfs(rows: np.ndarray) -> list[list[int]]:
    """``quantised_cdf`` of every row of an (N, K) integer array, in float32 as specified."""
    t = np.asarray(rows, dtype=np.float32)
    n, k = t.shape
    cumulative = np.cumsum(t, axis=1, dtype=np.float32)  # exact: integers, total <= 2**16
    scale = np.float32((1 << PRECISION) - k) / cumulative[:, -1:]  # float32 division
    before = np.concatenate([np.zeros((n, 1), np.float32), cumulative[:, :-1]], axis=1)
    left = (before * scale).astype(np.int64) + np.arange(k)  # float32 product, truncated
    return [row + [1 << PRECISION] for row in left.tolist()]


class RangeEncoder:
    """FORMAT.md 8.2, encoder: lower, range, a pending run of inverted words, and the seal."""

    def __init__(self):
        self.lower, self.range = 0, STATE_MASK
        self.words: list[int] = []
        self.inverted, self.first_inverted = 0, 0  # pending words whose carry is unknown

    def encode(self, symbol: int, left: list[int]) -> None:
        scale = self.range >> PRECISION
        new_lower = (self.lower + scale * left[symbol]) & STATE_MASK
        new_range = scale * (left[symbol + 1] - left[symbol])
        if self.inverted and new_lower + new_range <= STATE_MASK:  # the carry is now known
            if new_lower < self.lower:  # the addition wrapped: carry into the pending words
                self.words += [self.first_inverted + 1] + [0] * (self.inverted - 1)
            else:
                self.words += [self.first_inverted] + [WORD_MASK] * (self.inverted - 1)
            self.inverted = 0
        self.lower, self.range = new_lower, new_range
        if self.range < 1 << 32:  # renormalise: one word out
            word = self.lower >> 32
            self.lower = (self.lower << 32) & STATE_MASK
            self.range <<= 32
            if self.inverted:
                self.inverted += 1
            elif self.lower + self.range <= STATE_MASK:
                self.words.append(word)
            else:
                self.inverted, self.first_inverted = 1, word

    def sealed(self) -> list[int]:
        if self.range == STATE_MASK:  # nothing encoded
            return list(self.words)
        words = list(self.words)
        point = (self.lower + WORD_MASK) & STATE_MASK
        if self.inverted:
            if point >= self.lower:
                words += [self.first_inverted] + [WORD_MASK] * (self.inverted - 1)
            else:
                words += [self.first_inverted + 1] + [0] * (self.inverted - 1)
        point_word = point >> 32
        words.append(point_word)
        if ((self.lower + self.range) & STATE_MASK) >> 32 == point_word:
            words.append(0)
        return words


class RangeDecoder:
    """FORMAT.md 8.2, decoder, with the end rule of 8.3."""

    def __init__(self, words: list[int]):
        self.words, self.read = words, 0
        self.lower, self.range = 0, STATE_MASK
        self.point = (self._next() << 32) | self._next()

    def _next(self) -> int:
        word = self.words[self.read] if self.read < len(self.words) else 0  # past the end: zeros
        self.read += 1
        return word

    def decode(self, left: list[int]) -> int:
        scale = self.range >> PRECISION
        quantile = ((self.point - self.lower) & STATE_MASK) // scale
        if quantile >= 1 << PRECISION:
            raise FormatError("payload does not decode")
        symbol = bisect_right(left, quantile) - 1
        self.lower = (self.lower + scale * left[symbol]) & STATE_MASK
        self.range = scale * (left[symbol + 1] - left[symbol])
        if self.range < 1 << 32:
            self.lower = (self.lower << 32) & STATE_MASK
            self.range <<= 32
            self.point = ((self.point << 32) & STATE_MASK) | self._next()
        return symbol

    def ends_exactly(self) -> bool:
        """The payload is exactly the sealed stream: its last words are the seal of this state."""
        point_word = ((self.lower + WORD_MASK) & STATE_MASK) >> 32
        trailing_zero = ((self.lower + self.range) & STATE_MASK) >> 32 == point_word
        return len(self.words) == self.read - 1 + trailing_zero and self.point == point_word << 32


# -- sections 2-6: the container -------------------------------------------------


@dataclass(frozen=True)
class Header:
    version: int
    width: int
    height: int
    grid_multiple: int
    factors: tuple[int, ...]  # coarse first
    codebook_size: int
    model_fingerprint: bytes
    prior_kind: int
    prior_fingerprint: bytes
    depths: dict = field(default_factory=dict)  # factor -> declared depths (version 3; otherwise 1 each)

    def depth(self, factor: int) -> int:
        return self.depths.get(factor, 1)

    def grid(self, factor: int) -> tuple[int, int]:
        m = self.grid_multiple
        return -(-self.height // m) * m // factor, -(-self.width // m) * m // factor


@dataclass(frozen=True)
class Level:
    factor: int
    grid: tuple[int, int]
    coder: int
    index_crc: int
    payload: bytes
    depth: int = 1


@dataclass(frozen=True)
class File:
    header: Header
    levels: tuple[Level, ...]  # every LEVL chunk, depths included, in file order
    complete: bool

    @property
    def missing(self) -> tuple[int, ...]:
        stored = {level.factor for level in self.levels}
        return () if self.complete else tuple(f for f in self.header.factors if f not in stored)

    @property
    def missing_depths(self) -> tuple[tuple[int, int], ...]:
        stored = {(level.factor, level.depth) for level in self.levels}
        declared = [(f, d) for f in self.header.factors for d in range(2, self.header.depth(f) + 1)]
        return () if self.complete else tuple(fd for fd in declared if fd not in stored)


def _version(data: bytes, at: int) -> int | None:
    if len(data) < at + 2:
        return None
    (version,) = struct.unpack_from(">H", data, at)
    if version > 3:
        raise FormatError(f"format version {version} is newer than this reader reads (up to 3)")
    if version == 0:
        raise FormatError("format version 0 is not valid")
    return version


def _frame_checks(data: bytes, pos: int, kind: bytes, length: int, header: Header | None) -> None:
    """6.1: the size a critical chunk states a second time, checked before its end is looked for."""
    if kind == b"DONE" and length:
        raise FormatError("DONE chunk must be empty")
    if kind == b"HEAD":
        if length < 2:
            raise FormatError("HEAD too short for its version")
        version = _version(data, pos + 8)  # present: 12 bytes from pos are in the file
        if length != HEAD_SIZES[version]:
            raise FormatError(f"HEAD has {length} bytes")
    if kind == b"LEVL":
        if length < 16:
            raise FormatError("LEVL shorter than its fixed fields")
        if header is not None and len(data) >= pos + 24:
            (payload_length,) = struct.unpack_from(">I", data, pos + 20)
            if length != 16 + payload_length:
                raise FormatError("LEVL length disagrees with its payload length")


def _head(body: bytes) -> Header:
    version = _version(body, 0)
    if len(body) != HEAD_SIZES[version]:
        raise FormatError("HEAD size")
    fields = struct.unpack(">HHIIHHI16s" + {1: "", 2: "HH16s", 3: "HH16s16s"}[version], body)
    _, flags, width, height, multiple, mask, k, model_fp = fields[:8]
    prior_kind, reserved, prior_fp = fields[8:11] if version >= 2 else (0, 0, bytes(16))
    if flags or reserved:
        raise FormatError("HEAD reserved bits set")
    if mask == 0:
        raise FormatError("HEAD declares no levels")
    if not (1 <= width <= 32768 and 1 <= height <= 32768) or width * height > 1 << 28:
        raise FormatError("image size out of range")
    if multiple < 1 or multiple & (multiple - 1) or multiple > 1024:
        raise FormatError("grid multiple")
    factors = tuple(1 << b for b in range(15, -1, -1) if mask >> b & 1)
    if any(f > multiple for f in factors):
        raise FormatError("a level above the grid multiple")
    if not 2 <= k <= 65536:
        raise FormatError("codebook size")
    if prior_kind not in (0, 1) or (prior_kind == 0 and any(prior_fp)):
        raise FormatError("prior kind")
    depths = {}
    if version == 3:  # section 4.1: byte b of the depth table = depths of level 2**b
        table = fields[11]
        for b in range(16):
            if (mask >> b & 1) != (table[b] > 0) or table[b] > 16:
                raise FormatError("depth table disagrees with the level mask")
            if table[b] > 1:
                depths[1 << b] = table[b]
        if not depths:
            raise FormatError("a version-3 HEAD without refinement depths")
    return Header(version, width, height, multiple, factors, k, model_fp, prior_kind, prior_fp, depths)


def _levl(body: bytes, header: Header, previous: Level | None) -> Level:
    factor, gh, gw, coder, depth_byte, crc, length = struct.unpack_from(">HHHBBII", body)
    depth = depth_byte if header.version == 3 else 1  # the byte is reserved before version 3
    if not 1 <= depth <= 16:
        raise FormatError(f"level {factor}:{depth} depth out of range")
    if factor not in header.factors or depth > header.depth(factor):
        raise FormatError(f"level {factor}:{depth} not declared")
    if (gh, gw) != header.grid(factor):
        raise FormatError(f"level {factor} grid")
    if coder not in ((1,) if header.version == 1 else (1, 2, 3) if header.version == 2 else (1, 2, 3, 4)):
        raise FormatError(f"level {factor} coder {coder}")
    if (coder == 4) != (depth > 1):
        raise FormatError(f"level {factor}:{depth} coder {coder} does not suit its depth")
    if coder != 1 and header.prior_kind != 1:
        raise FormatError(f"level {factor} context-coded without a context prior")
    if coder == 3 and 2 * factor not in header.factors:
        raise FormatError(f"level {factor} coded given an undeclared level")
    if header.version < 3 and depth_byte:
        raise FormatError(f"level {factor} reserved byte")
    if length % 4 or length > 4 * (-(-24 * gh * gw // 32) + 2):
        raise FormatError(f"level {factor} payload length")
    if depth == 1 and previous is not None and factor >= previous.factor:
        raise FormatError(f"level {factor} out of order")
    if depth > 1 and (previous is None or (previous.factor, previous.depth) != (factor, depth - 1)):
        raise FormatError(f"level {factor}:{depth} does not follow depth {depth - 1}")
    return Level(factor, (gh, gw), coder, crc, bytes(body[16:]), depth)


def read_file(data: bytes) -> File:
    """Sections 2-6: a complete or truncated file, or FormatError / TruncatedError."""
    size = len(data)
    if size > MAX_FILE_BYTES:
        raise FormatError("file too large")
    if data[:8] != SIGNATURE:
        if 0 < size < 8 and SIGNATURE.startswith(data):
            raise TruncatedError("inside the signature")
        raise FormatError("bad signature")
    pos, header, levels = 8, None, []

    def cut() -> File:
        if header is None:
            raise TruncatedError("no complete HEAD")
        return File(header, tuple(levels), False)

    while True:
        if size - pos < 12:  # on a chunk boundary, or inside a chunk's frame
            return cut()
        length, kind = struct.unpack_from(">I4s", data, pos)
        _frame_checks(data, pos, kind, length, header)
        end = pos + 12 + length
        if end > size:
            return cut()
        if zlib.crc32(data[pos + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise FormatError(f"chunk at byte {pos} fails its CRC")
        body = data[pos + 8 : end - 4]
        if header is None and kind != b"HEAD":
            raise FormatError("first chunk is not HEAD")
        if kind == b"HEAD":
            if header is not None:
                raise FormatError("second HEAD")
            header = _head(body)
        elif kind == b"LEVL":
            levels.append(_levl(body, header, levels[-1] if levels else None))
        elif kind == b"DONE":
            if end != size:
                raise FormatError("bytes after DONE")
            if tuple(level.factor for level in levels if level.depth == 1) != header.factors:
                raise FormatError("stored levels differ from HEAD's")
            if any(max(lv.depth for lv in levels if lv.factor == f) != header.depth(f) for f in header.factors):
                raise FormatError("stored depths differ from HEAD's")
            return File(header, tuple(levels), True)
        elif not 0x61 <= kind[0] <= 0x7A:
            raise FormatError("unknown critical chunk")
        pos = end


# -- section 9: the model file's tables and fingerprints ----------------------------

_NUMPY_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "|i1", "I16": "<i2", "I32": "<i4", "I64": "<i8", "U8": "|u1"}
_CONTEXT_TABLES = ("bias", "horizontal", "vertical", "parent", "parent_horizontal", "parent_vertical")


@dataclass(frozen=True)
class Tables:
    """A model's prior (8.1, 8.4): static tables and, optionally, context tables, per level."""

    static: dict[int, np.ndarray]
    context: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    prior_fingerprint: bytes = bytes(16)
    depth: dict[tuple[int, int], dict[str, np.ndarray]] = field(default_factory=dict)  # (factor, depth >= 2): 8.5


@dataclass(frozen=True)
class Model:
    fingerprint: bytes
    codebook_size: int
    factors: tuple[int, ...]
    tables: Tables


def _digest(text: str, tensors: dict[str, tuple[str, tuple, bytes]]) -> bytes:
    digest = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        digest.update(f"{name}|{dtype}|{shape}|".encode())
        digest.update(raw)
    return digest.digest()[:16]


def read_model(raw: bytes) -> Model:
    """Section 9: parse the safetensors file by hand, recompute both fingerprints, check the tables."""
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    if meta.get("format") != "hvq-model" or meta.get("model_file_version") != "1":
        raise ModelError("not an hvq model file of version 1")
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        tensors[name] = (_NUMPY_DTYPES[info["dtype"]], tuple(info["shape"]), raw[8 + n + begin : 8 + n + end])
    context = {k: v for k, v in tensors.items() if k.startswith("prior.context.")}
    fingerprint = _digest(meta["config"], {k: v for k, v in tensors.items() if k not in context})
    if fingerprint.hex() != meta["fingerprint"]:
        raise ModelError("model fingerprint does not match the metadata")
    prior_fp = _digest("checkerboard-parent-v1", context) if context else bytes(16)
    if context and prior_fp.hex() != meta["prior_fingerprint"]:
        raise ModelError("prior fingerprint does not match the metadata")
    config = json.loads(meta["config"])

    def array(name):
        dtype, shape, data = tensors[name]
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    factors, k = tuple(config["factors"]), config["codebook_size"]
    static = {f: array(f"prior.table.{f}").astype(np.int64) for f in factors}
    levels, depths = {}, {}
    for name in context:
        level, _, table = name[len("prior.context.") :].partition(".")
        if table.startswith("depth"):  # prior.context.<f>.depth<d>.<table>, section 9
            depth, _, table = table[len("depth") :].partition(".")
            depths.setdefault((int(level), int(depth)), {})[table] = array(name).astype(np.int64)
            continue
        levels.setdefault(int(level), {})[table] = array(name).astype(np.int64)
    tables = Tables(static, levels, prior_fp, depths)
    check_tables(tables, k)
    return Model(fingerprint, k, factors, tables)


def check_tables(tables: Tables, k: int) -> None:
    """8.1 and 8.4: the limits a model's tables must meet."""
    for table in tables.static.values():
        if table.shape != (k,) or table.min() < 1 or table.sum() > 1 << 16:
            raise ModelError("static table out of its limits")
    for parts in tables.context.values():
        if not 2 <= k <= 4096 or np.abs(parts["bias"]).max() > 1 << 14:
            raise ModelError("context prior out of its limits")


def check_model(file: File, model: Model) -> None:
    """Section 4's last paragraph: the file must name this model (and its context prior)."""
    h = file.header
    if h.model_fingerprint != model.fingerprint:
        raise ModelError("file was made with another model")
    if h.grid_multiple != max(model.factors) or h.codebook_size != model.codebook_size:
        raise ModelError("grid multiple or codebook size differs")
    if not set(h.factors) <= set(model.factors):
        raise ModelError("a stored level the model does not have")
    if h.prior_kind == 1 and h.prior_fingerprint != model.tables.prior_fingerprint:
        raise ModelError("file was coded with another context prior")


# -- sections 8.3 and 8.4: decoding a level ---------------------------------------------


def frequencies(scores: np.ndarray, k: int) -> np.ndarray:
    """8.4 in wide integers: (N, K) scores -> (N, K) frequency rows."""
    deficit = np.minimum(scores.max(axis=1, keepdims=True) - scores, 127)
    weight = ((16 - (deficit & 7)) << 11) >> (deficit >> 3)
    scale = ((65536 - k) << 15) // weight.sum(axis=1, keepdims=True)
    return 1 + ((weight * scale) >> 15)


def _at(grid: np.ndarray, r: int, c: int, outside: int) -> int:
    return int(grid[r, c]) if 0 <= r < grid.shape[0] and 0 <= c < grid.shape[1] else outside


def _context_rows(cells, parent, grid, parts, k, spatial: bool, same_grid: bool = False) -> np.ndarray:
    """Scores of the given cells (8.4; 8.5 with ``same_grid``: the parent is the previous depth), then frequency rows."""
    scores = np.zeros((len(cells), k), dtype=np.int64)
    for n, (r, c) in enumerate(cells):
        if parent is not None:
            i, j = (r, c) if same_grid else (r // 2, c // 2)
            scores[n] += parts["parent"][int(parent[i, j])]
            scores[n] += parts["parent_horizontal"][_at(parent, i, j + (1 if c % 2 else -1), k)]
            scores[n] += parts["parent_vertical"][_at(parent, i + (1 if r % 2 else -1), j, k)]
        else:
            scores[n] += parts["bias"]
        if spatial:
            scores[n] += parts["horizontal"][_at(grid, r, c - 1, k)] + parts["horizontal"][_at(grid, r, c + 1, k)]
            scores[n] += parts["vertical"][_at(grid, r - 1, c, k)] + parts["vertical"][_at(grid, r + 1, c, k)]
    return frequencies(scores, k)


def _start_decoding(level: Level):
    """A level's range decoder, its empty grid, and its cells in checkerboard order: anchors, then the others."""
    words = list(struct.unpack(f">{len(level.payload) // 4}I", level.payload))
    gh, gw = level.grid
    anchors = [(r, c) for r in range(gh) for c in range(gw) if (r + c) % 2 == 0]
    others = [(r, c) for r in range(gh) for c in range(gw) if (r + c) % 2]
    return RangeDecoder(words), np.zeros((gh, gw), dtype=np.int64), anchors, others


def decode_level(file: File, factor: int, tables: Tables, decoded: dict | None = None, depth: int = 1) -> np.ndarray:
    """8.2-8.5: one level's (gh, gw) index grid at a depth, what it is coded given first, end rule and CRC checked."""
    decoded = {} if decoded is None else decoded
    if (factor, depth) in decoded:
        return decoded[(factor, depth)]
    level = next((lv for lv in file.levels if (lv.factor, lv.depth) == (factor, depth)), None)
    if level is None:
        if factor in file.missing or (factor, depth) in file.missing_depths:
            raise TruncatedError(f"level {factor}:{depth} is missing")
        raise FormatError(f"level {factor}:{depth} is not stored")
    if factor not in tables.static:
        raise ModelError(f"the model has no level {factor}")
    if depth > 1:
        return _decode_depth(file, level, tables, decoded)
    k = len(tables.static[factor])  # = HEAD's K once check_model has passed
    decoder, grid, anchors, others = _start_decoding(level)
    if level.coder == 1:
        left = quantised_cdf(tables.static[factor])
        gh, gw = grid.shape
        for n in range(gh * gw):
            grid[n // gw, n % gw] = decoder.decode(left)
    else:
        if file.header.prior_fingerprint != tables.prior_fingerprint or not tables.context:
            raise ModelError("file was coded with another context prior")
        parts = tables.context.get(factor)
        if parts is None:
            raise ModelError(f"no context tables for level {factor}")
        parent = None
        if level.coder == 3:
            try:
                parent = decode_level(file, 2 * factor, tables, decoded)
            except TruncatedError:
                raise TruncatedError(f"level {factor} needs level {2 * factor}, which is missing") from None
        if parent is None:
            lefts = [quantised_cdf(tables.static[factor])] * len(anchors)
        else:
            lefts = quantised_cdfs(_context_rows(anchors, parent, grid, parts, k, spatial=False))
        for (r, c), left in zip(anchors, lefts):
            grid[r, c] = decoder.decode(left)
        if others:
            for (r, c), left in zip(others, quantised_cdfs(_context_rows(others, parent, grid, parts, k, spatial=True))):
                grid[r, c] = decoder.decode(left)
    if not decoder.ends_exactly():
        raise FormatError(f"level {factor} payload does not end where its indices end")
    if zlib.crc32(grid.astype(">u2").tobytes()) != level.index_crc:
        raise FormatError(f"level {factor} indices fail their checksum")
    decoded[(factor, 1)] = grid
    return grid


def _decode_depth(file: File, level: Level, tables: Tables, decoded: dict) -> np.ndarray:
    """8.5: a refinement depth (coder 4), given the previous depth of its level at the same cells."""
    factor, depth = level.factor, level.depth
    if file.header.prior_fingerprint != tables.prior_fingerprint or not tables.context:
        raise ModelError("file was coded with another context prior")
    parts = tables.depth.get((factor, depth))
    if parts is None:  # the file names this model: it claims a depth the model cannot have coded
        raise FormatError(f"level {factor}:{depth} is deeper than the model's depth prior")
    previous = decode_level(file, factor, tables, decoded, depth - 1)
    k = len(tables.static[factor])
    decoder, grid, anchors, others = _start_decoding(level)
    for (r, c), left in zip(anchors, quantised_cdfs(_context_rows(anchors, previous, grid, parts, k, False, True))):
        grid[r, c] = decoder.decode(left)
    if others:
        for (r, c), left in zip(others, quantised_cdfs(_context_rows(others, previous, grid, parts, k, True, True))):
            grid[r, c] = decoder.decode(left)
    if not decoder.ends_exactly():
        raise FormatError(f"level {factor}:{depth} payload does not end where its indices end")
    if zlib.crc32(grid.astype(">u2").tobytes()) != level.index_crc:
        raise FormatError(f"level {factor}:{depth} indices fail their checksum")
    decoded[(factor, depth)] = grid
    return grid


def main(argv: list[str]) -> int:
    seed = "--seed" in argv
    argv = [a for a in argv if a != "--seed"]
    data = open(argv[1], "rb").read()[1 if seed else 0 :]
    file = read_file(data)
    h = file.header
    print(f"version {h.version}, {h.width}x{h.height}, K={h.codebook_size}, levels {h.factors}, complete {file.complete}")
    if len(argv) > 2:
        model = read_model(open(argv[2], "rb").read())
        check_model(file, model)
        decoded: dict = {}
        for level in file.levels:
            grid = decode_level(file, level.factor, model.tables, decoded, level.depth)
            print(f"level {level.factor}:{level.depth}: coder {level.coder}, {grid.shape[0]}x{grid.shape[1]} indices, CRC ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
