"""A summary of a .hvq file for people and tools (``hvq.inspect``, ``hvq info``); no weights needed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from hvq.bitstream.container import CODER_NAMES, PRIOR_NAMES, parse, read_bytes
from hvq.bitstream.settings import CHUNK_TYPE as RATE_CHUNK, decode_setting


@dataclass(frozen=True)
class DepthInfo:
    """One refinement depth of a level (format 3): depth d >= 2, coded given depth d - 1."""

    depth: int
    chunk_bytes: int  # what dropping this depth (and any deeper) saves, for this depth alone
    payload_bytes: int
    bits_per_index: float
    bpp: float
    index_crc: str
    coder: str  # depth+previous


@dataclass(frozen=True)
class LevelInfo:
    factor: int  # downsampling factor: image side / grid side
    grid_height: int
    grid_width: int
    chunk_bytes: int  # what dropping this level saves
    payload_bytes: int
    bits_per_index: float
    bpp: float  # chunk bytes * 8 / image pixels
    index_crc: str  # hex
    coder: str  # static | context | context+parent (FORMAT.md, section 8)
    depths: tuple[DepthInfo, ...] = ()  # its refinement depths 2.. as stored (format 3); () for a level of depth 1


@dataclass(frozen=True)
class FileInfo:
    version: int
    width: int
    height: int
    grid_multiple: int
    codebook_size: int
    model_fingerprint: str  # hex
    prior: str  # static | checkerboard-parent: what the context-coded levels need
    prior_fingerprint: str  # hex; zeros for a static prior
    file_bytes: int
    bpp: float  # whole file
    complete: bool  # False: truncated, ``missing`` lists the absent levels
    missing: tuple[int, ...]
    levels: tuple[LevelInfo, ...]  # coarse first, as stored
    rate_control: str | None = None  # the setting in a ``rate`` chunk (e.g. "quality 75"); None: nearest codewords
    missing_depths: tuple[str, ...] = ()  # "4:3": refinement depths declared but cut off (truncated file)

    def to_dict(self) -> dict:
        return asdict(self)


def _chunk_summary(chunk, pixels: int) -> dict:
    """What a level and a depth report alike of their chunk: sizes, bits per index, bpp, CRC, coder."""
    return dict(
        chunk_bytes=chunk.chunk_bytes,
        payload_bytes=len(chunk.payload),
        bits_per_index=round(chunk.bits_per_index, 4),
        bpp=round(8 * chunk.chunk_bytes / pixels, 5),
        index_crc=f"{chunk.index_crc:08x}",
        coder=CODER_NAMES[chunk.coder],
    )


def inspect_file(source: bytes | str | Path) -> FileInfo:
    """Parse and summarise a file; raises ``HvqFormatError`` on anything malformed."""
    parsed = parse(read_bytes(source))
    h = parsed.header
    pixels = h.width * h.height
    levels = tuple(
        LevelInfo(
            factor=c.factor,
            grid_height=c.grid_height,
            grid_width=c.grid_width,
            **_chunk_summary(c, pixels),
            depths=tuple(
                DepthInfo(depth=r.depth, **_chunk_summary(r, pixels))
                for r in parsed.refinements
                if r.factor == c.factor
            ),
        )
        for c in parsed.levels
    )
    return FileInfo(
        version=h.version,
        width=h.width,
        height=h.height,
        grid_multiple=h.grid_multiple,
        codebook_size=h.codebook_size,
        model_fingerprint=h.model_fingerprint.hex(),
        prior=PRIOR_NAMES[h.prior_kind],
        prior_fingerprint=h.prior_fingerprint.hex(),
        file_bytes=parsed.total_bytes,
        bpp=round(8 * parsed.total_bytes / pixels, 5),
        complete=parsed.complete,
        missing=parsed.missing,
        levels=levels,
        rate_control=_rate_setting(parsed.ancillary),
        missing_depths=tuple(f"{f}:{d}" for f, d in parsed.missing_refinements),
    )


def _rate_setting(ancillary) -> str | None:
    for kind, data in ancillary:
        if kind == RATE_CHUNK:
            setting = decode_setting(data)
            return "unreadable rate chunk" if setting is None else setting.describe()
    return None
