"""Image -> .hvq -> image through the public API, with tiny random models."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import hvq
from conftest import make_tiny_model
from hvq.bitstream.container import parse
from hvq.codec.runtime.pipeline import Codec


def test_round_trip_keeps_size_and_stores_levels_coarse_first(tiny_codec, photo):
    data = tiny_codec.compress(photo)
    info = hvq.inspect(data)
    assert (info.width, info.height) == photo.size
    assert [lv.factor for lv in info.levels] == [16, 8, 4]
    assert [(lv.grid_height, lv.grid_width) for lv in info.levels] == [(3, 3), (6, 6), (12, 12)]
    for level in (None, 16, 8, 4):
        out = tiny_codec.decompress(data, level)
        assert out.size == photo.size and out.mode == "RGB"


@pytest.mark.parametrize("levels", [(16,), (8,), (4,), (16, 4), (4, 8)])
def test_any_subset_of_levels(tiny_codec, photo, levels):
    data = tiny_codec.compress(photo, levels)
    assert [lv.factor for lv in hvq.inspect(data).levels] == sorted(levels, reverse=True)
    finest = np.asarray(tiny_codec.decompress(data))
    alone = np.asarray(tiny_codec.decompress(tiny_codec.compress(photo, (min(levels),))))
    assert np.array_equal(finest, alone)  # a level decodes the same whatever else is stored


def test_unknown_level_is_refused(tiny_codec, photo):
    with pytest.raises(hvq.HvqModelError, match="model has no level 32"):
        tiny_codec.compress(photo, (32,))
    with pytest.raises(hvq.HvqFormatError, match=r"level 4 is not stored \(stored: 16\)"):
        tiny_codec.decompress(tiny_codec.compress(photo, (16,)), 4)


def test_same_image_gives_identical_bytes(tiny_codec, photo):
    assert tiny_codec.compress(photo) == tiny_codec.compress(photo.copy())


def test_decoding_is_identical_with_one_and_two_threads(tiny_codec, photo):
    data = tiny_codec.compress(photo)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [np.asarray(tiny_codec.decompress(data, f)) for f in (16, 8, 4)]
        torch.set_num_threads(2)
        two = [np.asarray(tiny_codec.decompress(data, f)) for f in (16, 8, 4)]
    finally:
        torch.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


def test_file_from_another_model_is_refused_naming_both(tiny_codec, photo, tmp_path):
    other = Codec.for_model(make_tiny_model(tmp_path / "other.safetensors", seed=1))
    data = other.compress(photo)
    with pytest.raises(hvq.HvqModelError, match=f"{other.model.fingerprint_hex}.*{tiny_codec.model.fingerprint_hex}"):
        tiny_codec.decompress(data)


def _rewrite_levl_crc(data: bytes, factor: int, new_crc: int) -> bytes:
    """Change a LEVL chunk's index checksum and fix the chunk CRC, as a desync would look."""
    chunk = parse(data).level(factor)
    start, end = chunk.offset, chunk.offset + chunk.chunk_bytes
    body = bytearray(data[start + 8 : end - 4])
    body[8:12] = struct.pack(">I", new_crc)  # LEVL's index CRC field
    rebuilt = struct.pack(">I", len(body)) + b"LEVL" + bytes(body) + struct.pack(">I", zlib.crc32(b"LEVL" + bytes(body)))
    return data[:start] + rebuilt + data[end:]


def test_index_checksum_turns_a_desync_into_an_error(tiny_codec, photo):
    data = tiny_codec.compress(photo)
    bad = _rewrite_levl_crc(data, 8, parse(data).level(8).index_crc ^ 1)
    with pytest.raises(hvq.HvqFormatError, match="level 8 indices fail their checksum"):
        tiny_codec.decompress(bad, 8)
    tiny_codec.decompress(bad, 4)  # the other levels are untouched


def test_truncated_file_decodes_its_complete_levels_exactly(tiny_codec, photo):
    data = tiny_codec.compress(photo)
    parsed = parse(data)
    coarse = parsed.level(16)
    cut = data[: coarse.offset + coarse.chunk_bytes]
    assert np.array_equal(np.asarray(tiny_codec.decompress(cut, 16)), np.asarray(tiny_codec.decompress(data, 16)))
    with pytest.raises(hvq.HvqTruncatedError, match="complete levels: 16"):
        tiny_codec.decompress(cut)
    with pytest.raises(hvq.HvqTruncatedError, match="level 8 is missing"):
        tiny_codec.decompress(cut, 8)
    preview = tiny_codec.decompress(cut, partial=True)
    assert np.array_equal(np.asarray(preview), np.asarray(tiny_codec.decompress(data, 16)))


@pytest.mark.parametrize(
    "mode", ["L", "1", "P", "CMYK", "YCbCr", "LA", "RGBA", "I;16", "I"]
)
def test_other_modes_are_converted(tiny_codec, photo, mode):
    if mode == "I;16":
        image = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
        assert image.mode == "I;16"
    elif mode == "I":
        image = photo.convert("L").convert("I")
    else:
        image = photo.convert(mode)
    out = tiny_codec.decompress(tiny_codec.compress(image))
    assert out.size == photo.size and out.mode == "RGB"


def test_sixteen_bit_is_scaled_not_clipped():
    from hvq.codec.runtime.imageio import to_rgb

    wide = Image.fromarray(np.array([[0, 257 * 128, 65535]], dtype=np.uint16))
    assert np.asarray(to_rgb(wide))[0, :, 0].tolist() == [0, 128, 255]


def test_transparency_is_refused(tiny_codec, photo):
    rgba = photo.convert("RGBA")
    rgba.putpixel((0, 0), (1, 2, 3, 0))
    with pytest.raises(hvq.HvqImageError, match="transparency"):
        tiny_codec.compress(rgba)


def test_exif_orientation_is_applied(tiny_codec, photo, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    photo.save(path, exif=exif.tobytes())
    assert hvq.inspect(tiny_codec.compress(path)).width == photo.height


def test_unreadable_and_missing_images(tiny_codec, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(hvq.HvqImageError, match="not an image Pillow can read"):
        tiny_codec.compress(junk)
    with pytest.raises(hvq.HvqImageError, match="no such file"):
        tiny_codec.compress(tmp_path / "absent.png")
    damaged = tmp_path / "damaged.png"
    Image.new("RGB", (64, 64)).save(damaged)
    damaged.write_bytes(damaged.read_bytes()[:60])
    with pytest.raises(hvq.HvqImageError, match="cannot read image"):
        tiny_codec.compress(damaged)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_absurd_dimensions_are_refused_before_decoding(tiny_codec, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(40000, 40000))
    with pytest.raises(hvq.HvqImageError, match="exceeds the limits"):
        tiny_codec.compress(path)


def test_model_file_problems(tmp_path, tiny_model_path):
    from hvq.codec.runtime.weights import load_model

    with pytest.raises(hvq.HvqModelError, match="cannot read model"):
        load_model(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(hvq.HvqModelError, match="not a safetensors model file|not an hvq model file"):
        load_model(junk)
    raw = bytearray(tiny_model_path.read_bytes())
    raw[-1] ^= 0xFF  # last byte of the tensor data
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(hvq.HvqModelError, match="does not match its metadata"):
        load_model(damaged)


class _Payload:
    """A pickle that would create a file if anything unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_never_loaded_as_a_model(tmp_path):
    import torch

    from hvq.codec.runtime.weights import load_model

    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "model.pt"
    torch.save({"weights": _Payload(marker)}, checkpoint)
    with pytest.raises(hvq.HvqModelError, match="model.pt: not a safetensors model file"):
        load_model(checkpoint)
    assert not marker.exists()


def test_newer_model_file_version_is_refused(tmp_path, tiny_model_path):
    from safetensors.numpy import load_file, safe_open, save_file

    from hvq.codec.runtime.weights import load_model

    with safe_open(str(tiny_model_path), "np") as f:
        meta = dict(f.metadata())
    meta["model_file_version"] = "99"
    newer = tmp_path / "newer.safetensors"
    save_file(load_file(str(tiny_model_path)), str(newer), metadata=meta)
    with pytest.raises(hvq.HvqModelError, match="model file version 99 is newer"):
        load_model(newer)


def test_sizes_beyond_the_transform_limit_are_refused_before_allocation(tiny_codec, tmp_path):
    from hvq.bitstream.coder import encode_indices, index_checksum
    from hvq.bitstream.container import CODER_RANGE_STATIC, Header, LevelChunk, write_file
    from hvq.codec.runtime.pipeline import MAX_TRANSFORM_PIXELS

    assert MAX_TRANSFORM_PIXELS == 8192 * 8192
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(8192, 8193))  # one row over the limit
    with pytest.raises(hvq.HvqImageError, match=f"{MAX_TRANSFORM_PIXELS} pixels"):
        tiny_codec.compress(path)
    grid = np.zeros((1024, 512), dtype=np.uint16)
    table = tiny_codec.model.prior.table(16)
    chunk = LevelChunk(16, 1024, 512, CODER_RANGE_STATIC, index_checksum(grid), encode_indices(grid, table))
    header = Header(8192, 16384, 16, tiny_codec.model.config.codebook_size, tiny_codec.model.fingerprint, (16,))
    with pytest.raises(hvq.HvqFormatError, match="exceeds the 67108864-pixel limit"):
        tiny_codec.decompress(write_file(header, [chunk]))


def test_pillow_opens_hvq_files_after_registration(tiny_codec, tiny_model_path, photo, tmp_path):
    from hvq.codec.runtime.pillow_plugin import register_hvq_opener

    path = tmp_path / "photo.hvq"
    path.write_bytes(tiny_codec.compress(photo, (16, 8)))
    register_hvq_opener(model=tiny_model_path)
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode) == ("HVQ", photo.size, "RGB")
        assert im.info["hvq_levels"] == (16, 8)
        pixels = np.asarray(im)
    assert np.array_equal(pixels, np.asarray(tiny_codec.decompress(path.read_bytes(), 8)))


# -- the Python API's inputs (issue 17) -------------------------------------------------------


def test_an_hxwx3_uint8_array_is_an_image(tiny_codec, photo):
    array = np.asarray(photo)
    assert tiny_codec.compress(array) == tiny_codec.compress(photo)
    assert tiny_codec.compress(np.asarray(photo.convert("L"))) == tiny_codec.compress(photo.convert("L"))


@pytest.mark.parametrize(
    "image, error, match",
    [
        (None, hvq.HvqUsageError, "an image is a PIL image, a path, .* not NoneType"),
        (torch.zeros(3, 8, 8), hvq.HvqUsageError, "not Tensor"),
        (123, hvq.HvqUsageError, "not int"),
        (np.zeros((8, 8, 4), np.uint8), hvq.HvqImageError, r"HxWx3 \(RGB\) or HxW \(gray\) uint8, not shape \(8, 8, 4\)"),
        (np.zeros((8, 8, 3), np.float32), hvq.HvqImageError, "not shape .* float32"),
        (np.zeros((0, 8, 3), np.uint8), hvq.HvqImageError, "image is empty"),
    ],
)
def test_what_is_not_an_image_is_refused_clearly(tiny_codec, image, error, match):
    with pytest.raises(error, match=match):
        tiny_codec.compress(image)


def test_image_file_bytes_are_an_image_not_a_path(tiny_codec, photo):
    import io

    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    assert tiny_codec.compress(buffer.getvalue()) == tiny_codec.compress(photo)
    assert tiny_codec.compress(io.BytesIO(buffer.getvalue())) == tiny_codec.compress(photo)
    with pytest.raises(hvq.HvqImageError, match="not an image Pillow can read"):
        tiny_codec.compress(b"photo.png")


@pytest.mark.parametrize("levels, stored", [(16, [16]), ("16", [16]), ("16,8", [16, 8]), ([4, 16], [16, 4]), (np.int64(8), [8])])
def test_levels_as_int_string_or_list(tiny_codec, photo, levels, stored):
    assert [lv.factor for lv in hvq.inspect(tiny_codec.compress(photo, levels)).levels] == stored


@pytest.mark.parametrize("levels, match", [("x", "a level is a factor .* not 'x'"), (8.5, "not 8.5"), ("", "names no level"),
                                           (True, "not True"), ([16, 8.5], "not 8.5")])
def test_levels_that_cannot_be_meant_are_refused(tiny_codec, photo, levels, match):
    with pytest.raises(hvq.HvqUsageError, match=match):
        tiny_codec.compress(photo, levels)


def test_decompress_reads_file_objects_and_refuses_other_things(tiny_codec, photo):
    import io

    data = tiny_codec.compress(photo)
    expected = np.asarray(tiny_codec.decompress(data))
    assert np.array_equal(np.asarray(tiny_codec.decompress(io.BytesIO(data))), expected)
    assert np.array_equal(np.asarray(tiny_codec.decompress(bytearray(data))), expected)
    with pytest.raises(hvq.HvqUsageError, match="expected .hvq bytes, a path or a binary file object, not int"):
        tiny_codec.decompress(123)
    with pytest.raises(hvq.HvqUsageError, match="not NoneType"):
        hvq.decompress(None)
    with pytest.raises(hvq.HvqUsageError, match="opened in binary mode"):
        tiny_codec.decompress(io.StringIO("text"))


@pytest.mark.parametrize("level", [8.5, 8.0, "eight", True])
def test_a_level_that_is_not_a_factor_is_refused(tiny_codec, photo, level):
    data = tiny_codec.compress(photo)
    with pytest.raises(hvq.HvqUsageError, match="a level is a factor such as 16, 8 or 4"):
        tiny_codec.decompress(data, level)
    assert tiny_codec.decompress(data, "8").size == photo.size  # a string of digits is a factor


def test_usage_errors_are_value_errors_and_hvq_errors():
    assert issubclass(hvq.HvqUsageError, ValueError) and issubclass(hvq.HvqUsageError, hvq.HvqError)
