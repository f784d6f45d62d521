"""Images in and out of the codec: reading, colour conversion, padding and cropping.

What hvq codes is 8-bit RGB.  Other inputs are converted as follows (README,
"Inputs"):

- EXIF orientation is applied first, so the output looks as viewers show the input.
- An embedded ICC profile other than sRGB is converted to sRGB (littlecms,
  perceptual intent), since the file stores no profile; a profile that cannot
  be applied is dropped with a warning (``HvqImageWarning``).
- Only the first frame of an animation or multi-page file is coded, with a warning.
- Grayscale (L, 1), palette (P), CMYK, YCbCr and LAB become RGB through Pillow.
- 16-bit samples keep their high byte (value >> 8), gray as Pillow does for
  16-bit colour, so a gray picture gives the same pixels in either layout.
  Mode I (32-bit integers, no declared depth) is read by its range: values
  within 0..255 are 8-bit, within 0..65535 16-bit; others are refused.
- An alpha channel that is fully opaque is dropped, and so is a colour-key
  transparency (PNG tRNS) that no pixel matches; real transparency, by an
  alpha channel or a colour key, is refused, because flattening it onto a
  background would silently change the picture.  Flatten it yourself first.
- Float images (mode F) are refused.

Sides are padded on the bottom and right, by repeating the last row and
column, up to a multiple of the model's coarsest factor, and the decoded
image is cropped back: the output always has the input's size.
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hvq.bitstream.container import MAX_PIXELS, MAX_SIDE
from hvq.bitstream.errors import HvqImageError, HvqImageWarning  # noqa: F401 (HvqImageWarning re-exported)

if TYPE_CHECKING:
    import torch

# torch is imported by the three tensor functions, not here: reading an image
# needs none, and the classical codecs' bench workers read images only.

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}  # RGBa, La: premultiplied, alpha band "a"
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise HvqImageError("image is empty")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise HvqImageError(
            f"image of {width}x{height} exceeds the limits ({MAX_SIDE} px a side, {max_pixels} pixels)"
        )


def load_image(source, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Return the input (a PIL image, a path or a binary file object) as 8-bit RGB, converted as documented above.

    ``name`` names the input in warnings (default: the path, or "image").
    """
    if name is None:
        name = str(source) if isinstance(source, (str, Path)) else "image"
    if isinstance(source, Image.Image):
        _check_size(*source.size, max_pixels)
        return to_rgb(source, name)
    with pillow_errors():
        with warnings.catch_warnings():
            # hvq's own limit is checked the next moment, in one line; Pillow's
            # three-line warning for 89 M pixels and more would come first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)  # reads the header only
        with im:
            _check_size(*im.size, max_pixels)  # before any pixel is decoded
            im.load()
            return to_rgb(im, name)


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


def _warn(message: str) -> None:
    warnings.warn(message, HvqImageWarning, stacklevel=4)


def to_rgb(im: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB of ``im`` (converted as the module docstring says); ``name`` is for warnings."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        _warn(f"{name}: has {frames} frames or pages; only the first is coded")
    im = ImageOps.exif_transpose(im)
    _refuse_transparency(im)
    im = _to_srgb(im, name)
    if im.mode == "RGB":
        return im.copy()
    if im.mode in _SIXTEEN_BIT or im.mode == "I":
        wide = np.asarray(im, dtype=np.int64)
        if im.mode == "I" and wide.size and (wide.min() < 0 or wide.max() > 65535):
            raise HvqImageError(
                f"mode I values span {wide.min()}..{wide.max()}; hvq reads 8-bit (0..255) or 16-bit (0..65535) samples"
            )
        if im.mode in _SIXTEEN_BIT or (wide.size and wide.max() > 255):
            wide >>= 8  # the high byte, as Pillow narrows 16-bit colour
        return Image.fromarray(wide.astype(np.uint8), "L").convert("RGB")
    if im.mode == "F":
        raise HvqImageError("floating-point images (mode F) are not supported")
    if im.mode in ("RGBa", "La"):  # premultiplied: opaque, so the colours are the stored ones
        im = im.convert("LA" if im.mode == "La" else "RGBA")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise HvqImageError(f"cannot convert mode {im.mode} to RGB: {exc}") from None


_TRANSPARENCY = "image has transparency; hvq codes opaque RGB only (flatten it first)"


def _refuse_transparency(im: Image.Image) -> None:
    """Refuse an image any pixel of which is not opaque: by its alpha band or by a colour key (tRNS)."""
    if im.mode in _ALPHA_MODES:
        band = "a" if im.mode in ("RGBa", "La") else "A"
        if np.asarray(im.getchannel(band)).min() < 255:
            raise HvqImageError(_TRANSPARENCY)
        return
    key = im.info.get("transparency")
    if key is None:
        return
    if im.mode == "P":  # a palette's alpha table: let Pillow apply it
        if np.asarray(im.convert("RGBA").getchannel("A")).min() < 255:
            raise HvqImageError(_TRANSPARENCY)
        return
    pixels = np.asarray(im)
    if isinstance(key, tuple):  # RGB: one colour is transparent
        hit = pixels.ndim == 3 and pixels.shape[-1] == len(key) and bool((pixels == np.asarray(key)).all(-1).any())
    elif isinstance(key, (int, np.integer)):  # gray: one level is transparent
        hit = pixels.ndim == 2 and bool((pixels.astype(np.int64) == int(key)).any())
    else:  # a key in a form Pillow does not document (bytes of another mode): ignored as Pillow does
        hit = False
    if hit:
        raise HvqImageError(_TRANSPARENCY + " (its colour key matches pixels)")




def _to_srgb(im: Image.Image, name: str) -> Image.Image:
    """The image in sRGB, through its embedded ICC profile when it has one that is not sRGB."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (ImageCms.getProfileDescription(profile) or "").strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        _warn(f"{name}: its ICC profile cannot be read and is dropped; colours are coded as if sRGB")
        return im
    if description.lower().startswith("srgb") and "linear" not in description.lower():
        return im  # sRGB already ("sRGB IEC61966-2.1", "sRGB built-in"): what hvq decodes to
    if im.mode not in ("RGB", "L", "CMYK"):
        _warn(f"{name}: its ICC profile ({description}) is dropped for mode {im.mode}; colours are coded as if sRGB")
        return im
    try:
        return ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        _warn(f"{name}: its ICC profile ({description}) cannot be applied ({exc}); colours are coded as if sRGB")
        return im


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
