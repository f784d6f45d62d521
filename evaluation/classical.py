"""The classical codecs hvq is measured against: pixels -> bytes -> pixels.

JPEG, WebP, AVIF and JPEG 2000 run through Pillow (AVIF is built into
Pillow 12+; JPEG 2000 is OpenJPEG), JPEG XL through imagecodecs (libjxl).
Each codec has one parameter swept over a list of values.  Beside them,
the "downscale + codec" baselines (``avif-down4``: the photo shrunk to a
quarter of each side, coded with AVIF, upscaled on display), which are
what a user would pick instead of a codec at very low rates.  The settings and
the default sweeps are those of ``../shared/anchors/kodak_classic_measured.json``
(see its README), so a run on Kodak reproduces those anchor points and can
be checked against them.

Every decoder reads the encoded bytes back, so what is scored is what a
user of the file would see.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ClassicalCodec:
    """A codec with one swept parameter; ``encode(rgb, value) -> bytes``, ``decode(bytes) -> rgb``."""

    name: str
    parameter: str  # what the swept value means to the library
    sweep: tuple[float, ...]  # default values, lowest rate first
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes], np.ndarray]  # the picture the file holds (smaller when ``factor`` > 1)
    factor: int = 1  # 2, 4, 8: the picture is coded at 1/factor of the size, and upscaled for viewing
    base: str = ""  # the full-size codec that codes it, for a downscaled one

    def setting(self, value: float) -> str:
        """A setting's label, e.g. ``quality=50``: integral values print without a decimal point."""
        return f"{self.parameter}={value:g}"

    def decode_to(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        """The picture a viewer shows at the original ``shape`` (H, W, 3): decoded, upscaled if coded small."""
        decoded = self.decode(data)
        if decoded.shape[:2] == tuple(shape[:2]):
            return decoded
        return upscale(decoded, (shape[1], shape[0]))


def _pillow_encode(rgb: np.ndarray, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg(rgb: np.ndarray, quality: float) -> bytes:
    return _pillow_encode(rgb, "JPEG", quality=int(quality), optimize=True)  # libjpeg's 4:2:0 default


def _webp(rgb: np.ndarray, quality: float) -> bytes:
    return _pillow_encode(rgb, "WEBP", quality=int(quality), method=6)


def _avif(rgb: np.ndarray, quality: float) -> bytes:
    return _pillow_encode(rgb, "AVIF", quality=int(quality), speed=4)


def _jpeg2000(rgb: np.ndarray, rate: float) -> bytes:
    # ``rates``: the layer's compression ratio (raw 24-bit size / coded size);
    # written as a .jp2 file (boxes and all), as Pillow does for a stream.
    return _pillow_encode(rgb, "JPEG2000", quality_mode="rates", quality_layers=[rate], irreversible=True)


_jpegxl_threads: int | None = None  # set by ``use_threads``; None: imagecodecs' default (one thread)


def _jpegxl(rgb: np.ndarray, distance: float) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(rgb, distance=distance, effort=7, numthreads=_jpegxl_threads))


def _jpegxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    return np.asarray(imagecodecs.jpegxl_decode(data, numthreads=_jpegxl_threads))


# Downscale + codec: what a user can do instead of a low-rate codec (shrink the photo, code the small
# one, upscale on display), the settings of ../shared/anchors/kodak_lowrate_measured.json: Lanczos
# down, bicubic up, both Pillow.  The rate is the small file over the full-size pixel count.
DOWNSCALE_FACTORS = (2, 4, 8)


def downscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    """``rgb`` (H, W, 3) shrunk by ``factor`` with Lanczos, each side rounded and at least 1 px."""
    height, width = rgb.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.LANCZOS))


def upscale(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` (width, height) with bicubic interpolation, as a viewer would."""
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.BICUBIC))


def _downscaled(base: ClassicalCodec, factor: int, sweep: tuple[float, ...]) -> ClassicalCodec:
    def encode(rgb: np.ndarray, value: float) -> bytes:
        return base.encode(downscale(rgb, factor), value)

    return ClassicalCodec(f"{base.name}-down{factor}", base.parameter, sweep, encode, base.decode, factor, base.name)


CLASSICAL: dict[str, ClassicalCodec] = {
    codec.name: codec
    for codec in (
        ClassicalCodec("jpeg", "quality", (2, 5, 10, 20, 30, 50, 70, 85, 95), _jpeg, _pillow_decode),
        ClassicalCodec("webp", "quality", (0, 2, 5, 10, 20, 40, 60, 80, 95), _webp, _pillow_decode),
        ClassicalCodec("avif", "quality", (0, 5, 10, 20, 30, 45, 60, 75, 90), _avif, _pillow_decode),
        ClassicalCodec("jpeg2000", "rate", (400, 200, 100, 60, 40, 24, 16, 8), _jpeg2000, _pillow_decode),
        ClassicalCodec("jpegxl", "distance", (25, 15, 10, 6, 4, 2.5, 1.5, 1, 0.5), _jpegxl, _jpegxl_decode),
    )
}

# The anchor file's qualities, so a Kodak run can be checked point by point; they span the rates where
# shrinking pays (above about 0.2 bpp the full-size codecs win).
_DOWNSCALE_SWEEPS = {
    ("avif", 2): (10, 30, 50), ("avif", 4): (10, 30, 50), ("avif", 8): (30, 60),
    ("webp", 2): (0, 20, 50), ("webp", 4): (0, 20, 50), ("webp", 8): (30, 70),
}
DOWNSCALED: dict[str, ClassicalCodec] = {
    codec.name: codec
    for codec in (_downscaled(CLASSICAL[name], factor, sweep) for (name, factor), sweep in _DOWNSCALE_SWEEPS.items())
}
CODECS: dict[str, ClassicalCodec] = {**CLASSICAL, **DOWNSCALED}  # every codec ``hvq bench`` runs besides hvq


def use_threads(name: str, threads: int | None) -> int:
    """Make a codec's library use ``threads`` threads in this process (None: its default); the count it will use.

    Speed is only comparable with the thread counts side by side, and the
    libraries differ: Pillow runs libjpeg-turbo, libwebp and OpenJPEG on one
    thread whatever is asked; libavif takes Pillow's ``DEFAULT_MAX_THREADS``
    for encoding and decoding (default: the usable CPUs); libjxl takes
    imagecodecs' ``numthreads`` (default: one).  The setting is process-wide,
    which is what ``hvq bench``'s speed children, one per codec, want.
    """
    global _jpegxl_threads
    if name == "avif":
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = threads or 0  # 0: Pillow's own default
        return AvifImagePlugin._get_default_max_threads()
    if name == "jpegxl":
        _jpegxl_threads = threads
        return threads or 1
    return 1


def unavailable(name: str) -> str | None:
    """Why a codec cannot run in this installation (a library or a Pillow plugin missing), or None."""
    from PIL import features

    name = DOWNSCALED[name].base if name in DOWNSCALED else name  # a downscaled codec needs its base

    pillow_feature = {"jpeg": "jpg", "webp": "webp", "avif": "avif", "jpeg2000": "jpg_2000"}.get(name)
    if pillow_feature is not None:
        return None if features.check(pillow_feature) else f"this Pillow was built without {name}"
    try:
        import imagecodecs
    except ImportError:
        return "imagecodecs is not installed (pip install imagecodecs)"
    return None if imagecodecs.JPEGXL.available else "this imagecodecs was built without JPEG XL"


def library_versions() -> dict[str, str]:
    """The versions of the libraries behind the codecs, for the report: results move with them."""
    import PIL
    from PIL import features

    versions = {"Pillow": PIL.__version__}
    for feature, label in (("libjpeg_turbo", "libjpeg-turbo"), ("webp", "libwebp"), ("avif", "libavif"), ("jpg_2000", "OpenJPEG")):
        versions[label] = features.version(feature) or "unavailable"
    try:
        import imagecodecs

        versions["imagecodecs"] = imagecodecs.__version__
        versions["libjxl"] = imagecodecs.jpegxl_version()
    except ImportError:
        versions["imagecodecs"] = "not installed"
    return versions
