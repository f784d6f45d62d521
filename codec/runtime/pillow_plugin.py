"""Open .hvq files with Pillow: ``Image.open("photo.hvq")`` after ``register_hvq_opener()``.

Registration is explicit (as in pillow-heif), because decoding needs a
model and torch (or onnxruntime: ``HVQ_BACKEND``, ``backend.py``).  ``Image.open`` reads only the signature and HEAD, so size and
mode are known at once; the transforms run on ``load()`` (as Pillow's WebP
plugin defers decoding).  The decoded level is the finest stored unless the
registration names one.  ``image.save("x.hvq")`` (or ``format="HVQ"``)
compresses with the same model, all levels or ``levels=(16, 8)``.

It behaves as Pillow's own plugins do where their callers rely on it:

- every error is an ``OSError`` (what code around ``Image.open`` catches) and
  also the ``HvqError`` subclass the codec raised (``HvqTruncatedError`` ...);
- a cut file (a download in progress) raises, unless
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set: then ``load()`` decodes the
  finest level the bytes hold completely (at the full size), as Pillow
  shows what a truncated PNG or JPEG holds.
"""

from __future__ import annotations

import numbers
import os
from contextlib import contextmanager
from functools import lru_cache
from io import BytesIO

from PIL import Image, ImageFile

from hvq.bitstream.container import HEAD_PREFIX_BYTES, MAX_FILE_BYTES, SIGNATURE, parse
from hvq.bitstream.errors import HvqError, HvqFormatError

_options: dict = {"model": None, "level": None}


@lru_cache(maxsize=None)
def _os_error_class(cls: type) -> type:
    """``cls`` (an HvqError subclass) that is an ``OSError`` too, as Pillow's callers expect."""
    return type(cls.__name__, (cls, OSError), {"__module__": __name__, "__doc__": cls.__doc__})


@contextmanager
def _as_os_errors():
    try:
        yield
    except HvqError as exc:
        if isinstance(exc, OSError):
            raise
        raise _os_error_class(type(exc))(str(exc)) from None


def _accept(prefix: bytes) -> bool:
    return prefix[: len(SIGNATURE)] == SIGNATURE


class HvqImageFile(ImageFile.ImageFile):
    format = "HVQ"
    format_description = "hvq neural image codec"

    def _open(self) -> None:
        with _as_os_errors():
            header = parse(self.fp.read(HEAD_PREFIX_BYTES)).header  # a prefix: parse reports it as truncated
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.info["hvq_levels"] = header.factors
        self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, "RGB")]
        self._decoded = False

    def load(self):
        if not self._decoded:
            with _as_os_errors():
                self._decode()
        return super().load()

    def _decode(self) -> None:
        from hvq.codec.runtime.backend import decompress

        self.fp.seek(0)
        data = self.fp.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise HvqFormatError(f"file exceeds the {MAX_FILE_BYTES}-byte limit")
        partial = bool(ImageFile.LOAD_TRUNCATED_IMAGES)  # read at load time, as Pillow's plugins do
        # the model the file names, unless one was registered
        image = decompress(data, _options["level"], _options["model"], partial=partial)
        if self.fp and self._exclusive_fp:
            self.fp.close()
        self.fp = BytesIO(image.tobytes())
        self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, "RGB")]
        self._decoded = True


def _save(im: Image.Image, fp, filename) -> None:
    """Pillow's save handler: the image compressed with the registered model (``levels=`` as for compress)."""
    from hvq.codec.runtime.pipeline import Codec

    with _as_os_errors():
        data = Codec.for_model(_options["model"]).compress(im, im.encoderinfo.get("levels"))
    fp.write(data)


def _check_options(model, level) -> None:
    if level is not None and (isinstance(level, bool) or not isinstance(level, numbers.Integral) or level < 1):
        raise ValueError(f"level must be a level factor such as 16, 8 or 4, or None; got {level!r}")
    if model is None or isinstance(model, (str, os.PathLike)):
        return
    from hvq.codec.runtime.weights import LoadedModel  # a caller holding one has torch loaded already

    if not isinstance(model, LoadedModel):
        raise TypeError(f"model must be a path, a loaded model or None; got {type(model).__name__}")


def register_hvq_opener(model=None, level: int | None = None) -> None:
    """Let ``PIL.Image.open`` read .hvq files, decoded with ``model`` (default: the installed model each file names) at ``level``.

    ``level`` is a factor (16, 8, 4) or None for the finest stored; a bad
    value is refused here, not at the first ``load()``.
    """
    _check_options(model, level)
    _options.update(model=model, level=None if level is None else int(level))
    Image.register_open(HvqImageFile.format, HvqImageFile, _accept)
    Image.register_save(HvqImageFile.format, _save)
    Image.register_extension(HvqImageFile.format, ".hvq")
