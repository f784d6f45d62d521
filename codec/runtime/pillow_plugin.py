"""Open .hvq files with Pillow: ``Image.open("photo.hvq")`` after ``register_hvq_opener()``.

Registration is explicit (as in pillow-heif), because decoding needs torch
and a model.  ``Image.open`` reads only the signature and HEAD, so size and
mode are known at once; the transforms run on ``load()`` (as Pillow's WebP
plugin defers decoding).  The decoded level is the finest stored unless the
registration names one.
"""

from __future__ import annotations

from io import BytesIO

from PIL import Image, ImageFile

from hvq.bitstream.container import HEAD_PREFIX_BYTES, MAX_FILE_BYTES, SIGNATURE, parse
from hvq.bitstream.errors import HvqFormatError

_options: dict = {"model": None, "level": None}


def _accept(prefix: bytes) -> bool:
    return prefix[: len(SIGNATURE)] == SIGNATURE


class HvqImageFile(ImageFile.ImageFile):
    format = "HVQ"
    format_description = "hvq neural image codec"

    def _open(self) -> None:
        header = parse(self.fp.read(HEAD_PREFIX_BYTES)).header  # a prefix: parse reports it as truncated
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.info["hvq_levels"] = header.factors
        self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, "RGB")]
        self._decoded = False

    def load(self):
        if not self._decoded:
            from hvq.codec.runtime.pipeline import decompress

            self.fp.seek(0)
            data = self.fp.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise HvqFormatError(f"file exceeds the {MAX_FILE_BYTES}-byte limit")
            image = decompress(data, _options["level"], _options["model"])  # the model the file names, unless registered
            if self.fp and self._exclusive_fp:
                self.fp.close()
            self.fp = BytesIO(image.tobytes())
            self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, "RGB")]
            self._decoded = True
        return super().load()


def register_hvq_opener(model=None, level: int | None = None) -> None:
    """Let ``PIL.Image.open`` read .hvq files, decoded with ``model`` (default: the installed model each file names) at ``level``."""
    _options.update(model=model, level=level)
    Image.register_open(HvqImageFile.format, HvqImageFile, _accept)
    Image.register_extension(HvqImageFile.format, ".hvq")
