"""The codec: image -> .hvq bytes and back, one call per arrow.

::

    compress:    image -> load_image -> to_tensor -> pad -> net.encode -> indices[f]
                       -> prior.table(f) -> encode_indices -> write_file -> bytes
    decompress:  bytes -> parse -> level(f) -> decode_indices (prior.table(f))
                       -> index checksum -> net.decode -> crop -> image
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hvq.bitstream.coder import decode_indices, encode_indices, index_checksum
from hvq.bitstream.container import (
    CODER_RANGE_STATIC,
    Header,
    LevelChunk,
    ParsedFile,
    parse,
    read_bytes,
    write_file,
)
from hvq.bitstream.errors import HvqFormatError, HvqModelError, HvqTruncatedError
from hvq.codec.imageio import load_image, pad_to_multiple, to_image, to_tensor
from hvq.codec.weights import LoadedModel, load_model

# The transforms run on the whole image at once (no tiling yet): about 350
# bytes of activations per pixel, so 2**25 pixels (e.g. 8192x4096) need about
# 11 GB.  Larger images and files are refused before anything is allocated.
MAX_TRANSFORM_PIXELS = 1 << 25


class Codec:
    """A loaded model with the two directions of the codec side by side."""

    def __init__(self, model: LoadedModel):
        self.model = model

    @classmethod
    def for_model(cls, model: LoadedModel | str | Path | None = None) -> "Codec":
        """A codec for a loaded model, a model file path, or (None) the shipped default."""
        return cls(model if isinstance(model, LoadedModel) else load_model(model))

    def check_levels(self, levels) -> tuple[int, ...]:
        """Normalise a level selection (factors) against the model; None means all."""
        factors = self.model.config.factors
        if levels is None:
            return tuple(sorted(factors, reverse=True))
        chosen = tuple(sorted({int(f) for f in levels}, reverse=True))
        unknown = [f for f in chosen if f not in factors]
        if unknown or not chosen:
            raise HvqModelError(
                f"model has no level {','.join(map(str, unknown)) or '(none chosen)'} "
                f"(levels: {','.join(map(str, sorted(factors, reverse=True)))})"
            )
        return chosen

    def compress(self, image: Image.Image | str | Path, levels=None) -> bytes:
        """Compress an image (PIL or path) to .hvq bytes holding the chosen levels (factors)."""
        chosen = self.check_levels(levels)
        rgb = load_image(image, MAX_TRANSFORM_PIXELS)
        x = pad_to_multiple(to_tensor(rgb), self.model.config.max_factor)  # (1, 3, H', W')
        indices = self.model.net.encode(x)  # {factor: (1, H'/f, W'/f)}
        chunks = []
        for factor in chosen:
            grid = indices[factor][0].numpy().astype(np.uint16)
            payload = encode_indices(grid, self.model.prior.table(factor))
            chunks.append(
                LevelChunk(factor, grid.shape[0], grid.shape[1], CODER_RANGE_STATIC, index_checksum(grid), payload)
            )
        header = Header(
            width=rgb.width,
            height=rgb.height,
            grid_multiple=self.model.config.max_factor,
            codebook_size=self.model.config.codebook_size,
            model_fingerprint=self.model.fingerprint,
            factors=chosen,
        )
        return write_file(header, chunks)

    def decompress(self, data: bytes | str | Path, level: int | None = None, partial: bool = False) -> Image.Image:
        """Decode one level (default: the finest stored) to an RGB image of the original size.

        A truncated file decodes any level it holds completely when that level
        is asked for; with ``level=None`` it raises, unless ``partial`` asks for
        the finest complete level (a preview from the first bytes).
        """
        parsed = parse(read_bytes(data))
        self.check_file(parsed)
        factor = self._choose_level(parsed, level, partial)
        chunk = parsed.level(factor)
        grid = decode_indices(chunk.payload, self.model.prior.table(factor), (chunk.grid_height, chunk.grid_width))
        if index_checksum(grid) != chunk.index_crc:
            raise HvqFormatError(f"level {factor} indices fail their checksum: the stream and prior disagree")
        x_hat = self.model.net.decode(torch.from_numpy(grid.astype(np.int64))[None], factor)
        return to_image(x_hat, parsed.header.width, parsed.header.height)

    def check_file(self, parsed: ParsedFile) -> None:
        """Refuse a file made with another model before decoding anything."""
        header = parsed.header
        if header.model_fingerprint != self.model.fingerprint:
            raise HvqModelError(
                f"file was made with model {header.model_fingerprint.hex()}, "
                f"but the loaded model is {self.model.fingerprint_hex}"
            )
        if header.grid_multiple != self.model.config.max_factor:
            raise HvqModelError("file's grid multiple does not match the model")
        if header.width * header.height > MAX_TRANSFORM_PIXELS:
            raise HvqFormatError(
                f"image of {header.width}x{header.height} exceeds the {MAX_TRANSFORM_PIXELS}-pixel limit of the transforms"
            )
        if header.codebook_size != self.model.config.codebook_size:
            raise HvqModelError(
                f"file's codebook size {header.codebook_size} does not match the model's {self.model.config.codebook_size}"
            )
        foreign = [f for f in header.factors if f not in self.model.config.factors]
        if foreign:
            raise HvqModelError(f"file holds level {foreign[0]}, which the model does not have")

    @staticmethod
    def _choose_level(parsed: ParsedFile, level: int | None, partial: bool) -> int:
        if level is not None:
            return int(level)
        if not parsed.complete and not partial:
            held = ",".join(str(c.factor) for c in parsed.levels) or "none"
            raise HvqTruncatedError(
                f"file is truncated ({parsed.truncated_reason}); complete levels: {held}"
            )
        if not parsed.levels:
            raise HvqTruncatedError(f"no complete level: {parsed.truncated_reason}")
        return parsed.levels[-1].factor  # coarse first, so the last is the finest
