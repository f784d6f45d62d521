"""The tiles' geometry: windows with halos over an image or a grid, and how wide the halos are.

Torch-free, so that every backend of the transforms cuts the same windows:
``tiling`` (torch), ``pixel_rdoq`` and ``onnx_backend`` (onnxruntime)
decode a grid window by window with the same halos.  Why the halos are
this wide is in ``hvq.codec.runtime.tiling``'s docstring.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hvq.bitstream.errors import HvqConfigError

DEFAULT_TILE = 1024  # interior side in pixels; see benchmarks/large_image.py for memory and time
DECODER_HALO_CELLS = 8


def encoder_halo(max_factor: int) -> int:
    """Context in pixels around an encoder tile: the receptive field, on the coarsest grid."""
    return -(-(24 + 3 * max_factor) // max_factor) * max_factor


@dataclass(frozen=True)
class Window:
    """A tile (its interior, in pixels) and the window around it that the network sees."""

    top: int
    left: int
    bottom: int
    right: int
    win_top: int
    win_left: int
    win_bottom: int
    win_right: int


def windows(height: int, width: int, tile: int, halo: int) -> Iterator[Window]:
    """Tiles of side ``tile`` covering a (padded) image, each with ``halo`` pixels of context, clipped to the image."""
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            yield Window(
                top, left, bottom, right,
                max(0, top - halo), max(0, left - halo), min(height, bottom + halo), min(width, right + halo),
            )


@dataclass(frozen=True)
class DecoderTile:
    """One window of a level's grid, and where its decoded pixels go: every decoder's tile loop reads this."""

    window: Window  # in the level's cells
    pixels: tuple[slice, slice]  # the tile's rows and columns in the (height, width) image, padding cut off
    crop: tuple[slice, slice]  # the same pixels inside the decoded window


def decoder_tiles(rows: int, cols: int, factor: int, width: int, height: int, tile: int,
                  halo: int) -> Iterator[DecoderTile]:
    """The windows (``tile`` pixels a side, ``halo`` cells of context) that decode a (rows, cols) grid of level
    ``factor`` to a (height, width) image; a tile wholly in the padding is left out."""
    for w in windows(rows, cols, max(1, tile // factor), halo):
        top, left = w.top * factor, w.left * factor
        if top >= height or left >= width:
            continue
        bottom, right = min(w.bottom * factor, height), min(w.right * factor, width)
        y0, x0 = (w.top - w.win_top) * factor, (w.left - w.win_left) * factor
        yield DecoderTile(w, (slice(top, bottom), slice(left, right)),
                          (slice(y0, y0 + bottom - top), slice(x0, x0 + right - left)))


def cut(grid, w: Window, ratio: int = 1):
    """The window of ``w`` (in a level's cells) out of a grid ``ratio`` times coarser, as an int64 array.

    ``ratio`` 1 is the level's own grid (or its refinements); a top-down
    parent's grid is ``parent factor // level factor`` times coarser, and the
    halo of ``decoder_halo`` keeps the window whole on it.  Leading axes
    (depths) are kept.
    """
    return grid[..., w.win_top // ratio : w.win_bottom // ratio,
                w.win_left // ratio : w.win_right // ratio].astype(np.int64)


def check_tile(tile: int, multiple: int) -> int:
    """The tile side, if the coarsest grid tiles it (a caller's setting: ``HvqConfigError`` if not)."""
    if tile < multiple or tile % multiple:
        raise HvqConfigError(f"tile side {tile} must be a positive multiple of {multiple}")
    return tile


def decoder_halo(config, factor: int, parents) -> int:
    """Context in grid cells around a decoder tile.

    Each residual block at the level's own grid beyond the product's one
    (``ModelConfig.decoder_blocks``) widens the receptive field by 2 cells.
    With parents (a top-down model) the halo is a whole number of the
    coarsest parent's cells, so every window starts on the parents' grids too.
    """
    cells = DECODER_HALO_CELLS + 2 * (config.decoder_blocks - 1)
    if parents:
        ratio = max(parents) // factor
        cells = -(-cells // ratio) * ratio
    return cells
