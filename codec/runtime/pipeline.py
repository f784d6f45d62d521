"""The codec: image -> .hvq bytes and back, one call per arrow.

::

    compress:    image -> load_image -> pad -> encode_tiled (net.encode per tile) -> indices[f]
                       -> encode_levels (prior: each level given its stored parent) -> write_file -> bytes
    decompress:  bytes -> parse -> decode_grid (the level's parents first; index checksums)
                       -> decode_tiled (net.decode per tile, crop, round) -> image
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hvq.bitstream.container import Header, ParsedFile, parse, read_bytes, write_file
from hvq.bitstream.levels import decode_grid, encode_levels, header_prior_fields
from hvq.bitstream.errors import HvqFormatError, HvqModelError, HvqTruncatedError
from hvq.codec.runtime.imageio import load_image, pad_to_multiple
from hvq.codec.runtime.tiling import DEFAULT_TILE, check_tile, decode_tiled, encode_tiled
from hvq.codec.runtime.weights import LoadedModel, load_model

# The transforms run tile by tile (codec/runtime/tiling.py), so their memory is set
# by the tile, not the image: the whole image is held only as 8-bit pixels.
# 2**26 pixels (8192x8192) keeps that under 1 GB and stays below Pillow's
# decompression-bomb warning (about 89 M pixels), so any image hvq accepts
# opens without it.  Larger images and files are refused before anything
# is allocated.
MAX_TRANSFORM_PIXELS = 1 << 26


class Codec:
    """A loaded model with the two directions of the codec side by side."""

    def __init__(self, model: LoadedModel, tile: int = DEFAULT_TILE):
        self.model = model
        self.tile = check_tile(tile, model.config.max_factor)

    @classmethod
    def for_model(cls, model: LoadedModel | str | Path | None = None, tile: int = DEFAULT_TILE) -> "Codec":
        """A codec for a loaded model, a model file path, or (None) the shipped default.

        ``tile`` is the side, in pixels, of the tiles the transforms run on
        (a multiple of the coarsest factor); it bounds memory and does not
        change the file.
        """
        return cls(model if isinstance(model, LoadedModel) else load_model(model), tile)

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
        width, height = rgb.size
        padded = pad_to_multiple(np.asarray(rgb), self.model.config.max_factor)  # (H', W', 3) uint8
        del rgb  # hold the pixels once: large images are tiled to bound memory
        grids = encode_tiled(self.model.net, padded, self.tile)  # {factor: (H'/f, W'/f) uint16}
        del padded
        chunks = encode_levels(grids, chosen, self.model.prior)
        header = Header(
            width=width,
            height=height,
            grid_multiple=self.model.config.max_factor,
            codebook_size=self.model.config.codebook_size,
            model_fingerprint=self.model.fingerprint,
            factors=chosen,
            **header_prior_fields(self.model.prior, chunks),
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
        decoded: dict = {}
        grid = decode_grid(parsed, factor, self.model.prior, decoded)
        parents = {g: self._parent_grid(parsed, factor, g, decoded) for g in self.model.net.parents_needed(factor)}
        header = parsed.header
        pixels = decode_tiled(self.model.net, grid, factor, header.width, header.height, self.tile, parents)
        return Image.fromarray(pixels, "RGB")

    def _parent_grid(self, parsed: ParsedFile, factor: int, parent: int, decoded: dict) -> np.ndarray:
        """A coarser level that a top-down model's decoder of ``factor`` reads (``net.parents_needed``)."""
        if all(chunk.factor != parent for chunk in parsed.levels):
            raise HvqModelError(f"level {factor} of this model decodes only with level {parent}, "
                                "which the file does not hold")
        return decode_grid(parsed, parent, self.model.prior, decoded)

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
        self.model.prior.check_file(header)

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
