"""The ``rate`` chunk: which rate-control setting made a file (FORMAT.md, section 5.1).

Ancillary (lowercase type, PNG's rule), so every reader that does not know
it, hvq 0.2's included, checks its CRC and skips it; the decoder never needs
it.  It says how the encoder chose the indices, for ``hvq info``::

    version u8 (1) | mode u8 | quality u16 (hundredths) | requested f32    all big-endian

``mode`` is what was asked for: a quality (``requested`` is that quality),
a target size (bits per pixel) or a target PSNR (dB).  ``quality`` is the
quality the encoder ran at, the one a target search settled on; compressing
again with that quality makes the same levels.  A file coded with the nearest
codewords (no rate control) has no ``rate`` chunk.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

CHUNK_TYPE = b"rate"
SETTINGS_VERSION = 1
MODES = {1: "quality", 2: "target-bpp", 3: "target-psnr"}
_CODES = {name: code for code, name in MODES.items()}
_PAYLOAD = struct.Struct(">BBHf")
MAX_QUALITY_HUNDREDTHS = 10000


@dataclass(frozen=True)
class RateSetting:
    """What the user asked for (``mode``, ``requested``) and the quality the encoder used."""

    mode: str  # quality | target-bpp | target-psnr
    requested: float  # the quality, bits per pixel or dB asked for
    quality: float  # 0..100, in hundredths: the quality the indices were chosen at

    def describe(self) -> str:
        if self.mode == "quality":
            return f"quality {self.quality:g}"
        unit = "bpp" if self.mode == "target-bpp" else "dB"
        return f"{self.mode} {self.requested:g} {unit} (reached at quality {self.quality:g})"


def encode_setting(setting: RateSetting) -> bytes:
    """The chunk's data for a setting (its quality rounded to hundredths)."""
    hundredths = round(setting.quality * 100)
    if setting.mode not in _CODES or not 0 <= hundredths <= MAX_QUALITY_HUNDREDTHS:
        raise ValueError(f"not a rate setting: {setting}")
    if not math.isfinite(setting.requested):
        raise ValueError(f"requested value {setting.requested} is not finite")
    return _PAYLOAD.pack(SETTINGS_VERSION, _CODES[setting.mode], hundredths, setting.requested)


def decode_setting(data: bytes) -> RateSetting | None:
    """The setting in a chunk's data, or None where this hvq cannot read it (a newer version, damage).

    None, not an error: the chunk is ancillary, and nothing the decoder
    does depends on it.
    """
    if len(data) != _PAYLOAD.size:
        return None
    version, mode, hundredths, requested = _PAYLOAD.unpack(data)
    if version != SETTINGS_VERSION or mode not in MODES or hundredths > MAX_QUALITY_HUNDREDTHS:
        return None
    if not math.isfinite(requested):
        return None
    return RateSetting(MODES[mode], float(f"{requested:.6g}"), hundredths / 100)
