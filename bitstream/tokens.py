"""An image as its codebook indices: the tokens a ``.hvq`` file codes, and the API's middle.

::

    image --tokenize--> Tokens --encode_tokens--> .hvq bytes
    image <--detokenize-- Tokens <--decode_tokens-- .hvq bytes

``Tokens`` holds one grid of indices per level (uint16, ``grids[16]`` the
coarsest), the image's size and what the grids mean: the model that made
them (its fingerprint), its codebook size and the multiple the image was
padded to.  Every level draws on the one shared codebook, so the vocabulary
is ``range(codebook_size)`` at every level.  It lives in the torch-free
layer: coding tokens to bytes and back needs the prior's integer tables only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from hvq.bitstream.errors import HvqFormatError


@dataclass(frozen=True, eq=False)
class Tokens:
    """One read-only index grid per level, coarse first, and what they need to become an image.

    ::

        grids[16]  (H'/16, W'/16) uint16   coarsest: a 16x16 pixel block per token
        grids[8]   (H'/8,  W'/8)  uint16
        grids[4]   (H'/4,  W'/4)  uint16   finest

    H' x W' is the image's size padded up to a multiple of ``grid_multiple``;
    decoding crops back to ``width`` x ``height``.  Any non-empty subset of
    the model's levels may be present.
    """

    grids: Mapping[int, np.ndarray]  # factor -> (H'/f, W'/f) uint16, coarse first
    width: int
    height: int
    model_fingerprint: bytes  # 16 bytes: the model whose codebook the indices point into
    grid_multiple: int  # the model's coarsest factor: sides are padded up to a multiple of it
    codebook_size: int  # the vocabulary of every level: indices lie in [0, codebook_size)
    levels: tuple[int, ...] = field(init=False)  # factors, coarse first

    def __post_init__(self):
        if not self.grids:
            raise HvqFormatError("tokens must hold at least one level")
        if len(self.model_fingerprint) != 16:
            raise HvqFormatError("a model fingerprint is 16 bytes")
        height, width, m = int(self.height), int(self.width), int(self.grid_multiple)
        if width < 1 or height < 1 or m < 1:
            raise HvqFormatError(f"tokens of a {width}x{height} image with grid multiple {m}")
        padded = (-(-height // m) * m, -(-width // m) * m)
        grids = {}
        for factor in sorted((int(f) for f in self.grids), reverse=True):
            grid = np.asarray(self.grids[factor])
            if factor < 1 or m % factor:
                raise HvqFormatError(f"level {factor} does not divide the grid multiple {m}")
            shape = (padded[0] // factor, padded[1] // factor)
            if grid.shape != shape:
                raise HvqFormatError(f"level {factor} grid is {grid.shape}, expected {shape} for a {width}x{height} image")
            if grid.size and (not np.issubdtype(grid.dtype, np.integer) or grid.min() < 0 or grid.max() >= self.codebook_size):
                raise HvqFormatError(f"level {factor} holds indices outside [0, {self.codebook_size})")
            grid = np.array(grid, dtype=np.uint16)  # a copy: the caller's array stays theirs
            grid.setflags(write=False)
            grids[factor] = grid
        object.__setattr__(self, "grids", MappingProxyType(grids))
        object.__setattr__(self, "levels", tuple(grids))
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "grid_multiple", m)
        object.__setattr__(self, "model_fingerprint", bytes(self.model_fingerprint))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image, as PIL gives it."""
        return self.width, self.height

    def grid(self, factor: int) -> np.ndarray:
        """One level's grid; a level these tokens lack is an error naming the ones they hold."""
        if factor not in self.grids:
            held = ",".join(map(str, self.levels))
            raise HvqFormatError(f"level {factor} is not in these tokens (levels: {held})")
        return self.grids[factor]

    def select(self, levels) -> "Tokens":
        """The same tokens with only ``levels`` (factors)."""
        return Tokens(
            {f: self.grid(f) for f in levels}, self.width, self.height,
            self.model_fingerprint, self.grid_multiple, self.codebook_size,
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, Tokens):
            return NotImplemented
        return (
            (self.width, self.height, self.model_fingerprint, self.grid_multiple, self.codebook_size, self.levels)
            == (other.width, other.height, other.model_fingerprint, other.grid_multiple, other.codebook_size, other.levels)
            and all(np.array_equal(self.grids[f], other.grids[f]) for f in self.levels)
        )

    __hash__ = None

    def __repr__(self) -> str:
        shapes = ", ".join(f"{f}: {g.shape[0]}x{g.shape[1]}" for f, g in self.grids.items())
        return f"Tokens({self.width}x{self.height}, levels {{{shapes}}}, model {self.model_fingerprint.hex()[:8]})"
