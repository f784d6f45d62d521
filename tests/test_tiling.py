"""Tiled transforms (``hvq.codec.runtime.tiling``): the tiles change the memory, never the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hvq.bitstream.container import parse
from hvq.codec.runtime.imageio import pad_to_multiple, to_pixels
from hvq.codec.runtime.pipeline import Codec
from hvq.codec.runtime.tiling import DECODER_HALO_CELLS, decode_tiled, encode_tiled, encoder_halo, windows


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A 200x152 image with edges and texture in every tile (odd sides: padding is exercised)."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:152, 0:200]
    base = np.stack([(x * 3) % 256, (y * 5) % 256, ((x // 9 + y // 7) % 2) * 200], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("height, width, tile, halo", [(64, 48, 16, 80), (200, 152, 64, 0), (33, 97, 32, 8), (16, 16, 1024, 80)])
def test_windows_cover_every_pixel_once_inside_the_image(height, width, tile, halo):
    seen = np.zeros((height, width), dtype=int)
    for w in windows(height, width, tile, halo):
        seen[w.top : w.bottom, w.left : w.right] += 1
        assert 0 <= w.win_top <= w.top < w.bottom <= w.win_bottom <= height
        assert 0 <= w.win_left <= w.left < w.right <= w.win_right <= width
        assert w.top - w.win_top == min(halo, w.top) and w.win_bottom - w.bottom == min(halo, height - w.bottom)
    assert (seen == 1).all()


def test_halos_cover_the_receptive_fields():
    assert encoder_halo(16) == 80 and encoder_halo(16) >= 23 + 3 * 16
    assert encoder_halo(4) % 4 == 0 and encoder_halo(32) == 128
    assert DECODER_HALO_CELLS * 16 >= 103


@pytest.mark.parametrize("tile", [16, 48, 64])
def test_tiled_encoding_gives_the_whole_image_indices(tiny_codec, picture, tile):
    net = tiny_codec.model.net
    padded = pad_to_multiple(picture, 16)
    whole = net.encode(torch.from_numpy(padded.copy()).permute(2, 0, 1)[None].float() / 255.0)
    tiled = encode_tiled(net, padded, tile)
    for f, grid in tiled.items():
        assert grid.dtype == np.uint16 and grid.shape == (padded.shape[0] // f, padded.shape[1] // f)
        assert np.array_equal(grid, whole[f][0].numpy()), f


@pytest.mark.parametrize("factor", [16, 8, 4])
@pytest.mark.parametrize("tile", [16, 64])
def test_tiled_decoding_gives_the_whole_image_pixels(tiny_codec, picture, factor, tile):
    net = tiny_codec.model.net
    padded = pad_to_multiple(picture, 16)
    grid = encode_tiled(net, padded, 1024)[factor]
    height, width = picture.shape[:2]
    whole = to_pixels(net.decode(torch.from_numpy(grid.astype(np.int64))[None], factor)[0])[:height, :width]
    tiled = decode_tiled(net, grid, factor, width, height, tile)
    assert tiled.shape == (height, width, 3)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # float rounding at most


def test_files_do_not_depend_on_the_tile(tiny_model_path, picture):
    image = Image.fromarray(picture, "RGB")
    small = Codec.for_model(tiny_model_path, tile=32)
    large = Codec.for_model(tiny_model_path)
    data = small.compress(image)
    assert data == large.compress(image)
    for level in (16, 8, 4):
        a = np.asarray(small.decompress(data, level)).astype(int)
        b = np.asarray(large.decompress(data, level)).astype(int)
        assert np.abs(a - b).max() <= 1
    assert parse(data).header.width == 200


@pytest.mark.parametrize("tile", [0, 8, 40])
def test_a_tile_off_the_coarsest_grid_is_refused(tiny_model_path, tile):
    with pytest.raises(ValueError, match="multiple of 16"):
        Codec.for_model(tiny_model_path, tile=tile)
