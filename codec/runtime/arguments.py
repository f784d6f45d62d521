"""The Python API's arguments, checked once: which levels, which level, and what counts as an image.

The command line parses its own options (``cli/options.py``); these are for
``hvq.compress(image, levels)`` and friends, where a caller may pass
``levels=16``, ``levels="16,8"``, a numpy array or PNG bytes.  What cannot be
meant (``level=8.5``, ``decompress(123)``, a tensor) is refused with an
``HvqUsageError`` naming it instead of being guessed at.
"""

from __future__ import annotations

import io
import numbers
from pathlib import Path

import numpy as np
from PIL import Image

from hvq.bitstream.errors import HvqImageError, HvqUsageError

_IMAGE_KINDS = "a PIL image, a path, image file bytes, a binary file object or an HxWx3 uint8 array"


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


def image_source(image):
    """What ``load_image`` opens: a PIL image, a path or a binary file; bytes and arrays are wrapped."""
    if isinstance(image, (Image.Image, str, Path)) or hasattr(image, "read"):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(image))  # the bytes of an image file, not a path
    if isinstance(image, np.ndarray):
        return _array_image(image)
    raise HvqUsageError(f"an image is {_IMAGE_KINDS}, not {type(image).__name__}")


def _array_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise HvqImageError(
            f"an array image must be HxWx3 (RGB) or HxW (gray) uint8, not shape {array.shape} {array.dtype}"
        )
    if not array.size:
        raise HvqImageError("image is empty")
    return Image.fromarray(np.ascontiguousarray(array), "RGB" if array.ndim == 3 else "L")
