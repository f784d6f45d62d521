"""hvq: a neural image codec with progressive, level-by-level files.

Public API::

    data = hvq.compress("photo.png")            # bytes of a .hvq file, all levels
    image = hvq.decompress(data, level=8)      # PIL.Image at the 1/8 level
    info = hvq.inspect(data)                   # header and chunks, no weights needed

Torch and the model load on first use of ``compress``/``decompress``, so
``inspect`` and the format tools stay light.
"""

from __future__ import annotations

from hvq.bitstream.errors import (
    HvqConfigError,
    HvqDataError,
    HvqError,
    HvqFormatError,
    HvqImageError,
    HvqModelError,
    HvqTruncatedError,
)

__version__ = "0.2.0"

__all__ = [
    "compress",
    "decompress",
    "inspect",
    "HvqError",
    "HvqConfigError",
    "HvqDataError",
    "HvqFormatError",
    "HvqImageError",
    "HvqModelError",
    "HvqTruncatedError",
]


def compress(image, levels=None, model=None) -> bytes:
    """Compress a PIL image or image path to .hvq bytes; ``levels`` are factors (default: all)."""
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(model).compress(image, levels)


def decompress(data, level=None, model=None):
    """Decode .hvq bytes (or a path) to a PIL RGB image at ``level`` (default: the finest stored)."""
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(model).decompress(data, level)


def inspect(data):
    """Parse .hvq bytes (or a path) into a frozen ``FileInfo`` without decoding any level."""
    from hvq.bitstream.info import inspect_file

    return inspect_file(data)
