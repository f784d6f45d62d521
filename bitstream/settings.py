"""The ``rate`` chunk: which rate-control setting made a file (FORMAT.md, section 5.1).

Ancillary (lowercase type, PNG's rule), so every reader that does not know
it, hvq 0.2's included, checks its CRC and skips it; the decoder never needs
it.  It says how the encoder chose the indices, for ``hvq info``::

    version u8 (1) | mode u8 | quality u16 (hundredths) | requested f32              all big-endian
    version u8 (2) | mode u8 | quality u16 (hundredths) | requested f32 | effort u8

``mode`` is what was asked for: a quality (``requested`` is that quality),
a target size (bits per pixel) or a target PSNR (dB).  ``quality`` is the
quality the encoder ran at, the one a target search settled on; ``effort``
is how hard it searched (1: the latent-distance choice alone; 2: with the
pixel-error passes through the decoders).  Compressing again with that
quality and effort makes the same levels.  Version 1 has no effort byte and
means effort 2, the only one hvq had when it was written; a writer uses
version 1 for effort 2 still, so those files keep their bytes, and version 2
for any other effort.  A file coded with the nearest codewords (no rate
control) has no ``rate`` chunk.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

CHUNK_TYPE = b"rate"
MODES = {1: "quality", 2: "target-bpp", 3: "target-psnr"}
_CODES = {name: code for code, name in MODES.items()}
_PAYLOADS = {1: struct.Struct(">BBHf"), 2: struct.Struct(">BBHfB")}
MAX_QUALITY_HUNDREDTHS = 10000
EFFORTS = (1, 2)
IMPLIED_EFFORT = 2  # version 1's: the pixel-error passes


@dataclass(frozen=True)
class RateSetting:
    """What the user asked for (``mode``, ``requested``) and the quality the encoder used."""

    mode: str  # quality | target-bpp | target-psnr
    requested: float  # the quality, bits per pixel or dB asked for
    quality: float  # 0..100, in hundredths: the quality the indices were chosen at
    effort: int = IMPLIED_EFFORT  # 1: latent distance alone; 2: with the pixel-error passes

    def describe(self) -> str:
        if self.mode == "quality":
            return f"quality {self.quality:g}, effort {self.effort}"
        unit = "bpp" if self.mode == "target-bpp" else "dB"
        return f"{self.mode} {self.requested:g} {unit} (reached at quality {self.quality:g}, effort {self.effort})"


def encode_setting(setting: RateSetting) -> bytes:
    """The chunk's data for a setting (its quality rounded to hundredths); version 1 where it says it all."""
    hundredths = round(setting.quality * 100)
    if setting.mode not in _CODES or not 0 <= hundredths <= MAX_QUALITY_HUNDREDTHS or setting.effort not in EFFORTS:
        raise ValueError(f"not a rate setting: {setting}")
    if not math.isfinite(setting.requested):
        raise ValueError(f"requested value {setting.requested} is not finite")
    fields = (_CODES[setting.mode], hundredths, setting.requested)
    if setting.effort == IMPLIED_EFFORT:
        return _PAYLOADS[1].pack(1, *fields)
    return _PAYLOADS[2].pack(2, *fields, setting.effort)


def decode_setting(data: bytes) -> RateSetting | None:
    """The setting in a chunk's data, or None where this hvq cannot read it (a newer version, damage).

    None, not an error: the chunk is ancillary, and nothing the decoder
    does depends on it.
    """
    version = data[0] if data else None
    if version not in _PAYLOADS or len(data) != _PAYLOADS[version].size:
        return None
    version, mode, hundredths, requested, *rest = _PAYLOADS[version].unpack(data)
    effort = rest[0] if rest else IMPLIED_EFFORT
    if mode not in MODES or hundredths > MAX_QUALITY_HUNDREDTHS or effort not in EFFORTS:
        return None
    if not math.isfinite(requested):
        return None
    return RateSetting(MODES[mode], float(f"{requested:.6g}"), hundredths / 100, effort)
