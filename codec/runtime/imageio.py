"""Images in and out of the codec: reading, colour conversion, padding and cropping.

What hvq codes is 8-bit RGB.  Other inputs are converted as follows (README,
"Inputs"):

- EXIF orientation is applied first, so the output looks as viewers show the input.
- Grayscale (L, 1), palette (P), CMYK, YCbCr and LAB become RGB through Pillow.
- 16-bit grayscale (I;16*, I) is scaled to 8 bits (value / 257, rounded).
- An alpha channel that is fully opaque is dropped; real transparency is
  refused, because flattening it onto a background would silently change
  the picture.  Flatten it yourself first.
- Float images (mode F) are refused.

Sides are padded on the bottom and right, by repeating the last row and
column, up to a multiple of the model's coarsest factor, and the decoded
image is cropped back: the output always has the input's size.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hvq.bitstream.container import MAX_PIXELS, MAX_SIDE
from hvq.bitstream.errors import HvqImageError

if TYPE_CHECKING:
    import torch

# torch is imported by the three tensor functions, not here: reading an image
# needs none, and the classical codecs' bench workers read images only.

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise HvqImageError("image is empty")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise HvqImageError(
            f"image of {width}x{height} exceeds the limits ({MAX_SIDE} px a side, {max_pixels} pixels)"
        )


def load_image(source: Image.Image | str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Return the input as an 8-bit RGB image, converted as documented above."""
    if isinstance(source, Image.Image):
        _check_size(*source.size, max_pixels)
        return to_rgb(source)
    with pillow_errors():
        with Image.open(source) as im:  # reads the header only
            _check_size(*im.size, max_pixels)  # before any pixel is decoded
            im.load()
            return to_rgb(im)


@contextmanager
def pillow_errors():
    """Pillow's many ways of refusing a file, each turned into one ``HvqImageError`` line."""
    try:
        yield
    except HvqImageError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at open
        raise HvqImageError(f"image exceeds the limits: {exc}") from None
    except UnidentifiedImageError:
        raise HvqImageError("not an image Pillow can read") from None
    except FileNotFoundError:
        raise HvqImageError("no such file") from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow reports damaged data as these
        raise HvqImageError(f"cannot read image: {exc}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    im = ImageOps.exif_transpose(im)
    if im.mode == "RGB":
        return im.copy()
    if im.mode in _SIXTEEN_BIT:
        wide = np.asarray(im, dtype=np.int64)
        narrow = np.clip((wide + 128) // 257, 0, 255).astype(np.uint8)
        return Image.fromarray(narrow, "L").convert("RGB")
    if im.mode == "F":
        raise HvqImageError("floating-point images (mode F) are not supported")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in _ALPHA_MODES:
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            raise HvqImageError("image has transparency; hvq codes opaque RGB only (flatten it first)")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise HvqImageError(f"cannot convert mode {im.mode} to RGB: {exc}") from None


def to_tensor(pixels: Image.Image | np.ndarray) -> torch.Tensor:
    """8-bit RGB -> float32 in [0, 1]: an image or (H, W, 3) array to (1, 3, H, W), a (B, H, W, 3) batch to (B, 3, H, W).

    The one conversion of pixels to the network's input, for the codec,
    its tiles and training batches alike.
    """
    import torch

    array = np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8))  # a tile's window is a strided view
    if not array.flags.writeable:  # torch.from_numpy wants a writable buffer (Pillow's arrays are not)
        array = array.copy()
    x = torch.from_numpy(array)
    return (x[None] if x.ndim == 3 else x).permute(0, 3, 1, 2).float().div_(255.0)


def pad_to_multiple(x, multiple: int):
    """Pad bottom and right by edge replication to sides that are multiples of ``multiple``.

    Takes a (..., H, W) tensor or an (H, W, C) array, as training and the codec hold images.
    """
    if isinstance(x, np.ndarray):
        h, w = x.shape[:2]
        return np.pad(x, ((0, -h % multiple), (0, -w % multiple), (0, 0)), mode="edge")
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not pad_h and not pad_w:
        return x
    import torch.nn.functional as F

    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def to_pixels(x_hat: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8: round(x * 255), clamped."""
    import torch

    return x_hat.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
