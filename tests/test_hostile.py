"""A hostile user's inputs (issue 17): odd output nodes, odd image modes, malformed models, pipes, the Pillow plugin.

Each test names the behaviour it pins down; together with tests/test_cli.py
and tests/test_batch.py they are the closing list of issue 17.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import warnings
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFile

import hvq
from conftest import make_tiny_model
from hvq.cli.main import main


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def one_error_line(result, exit_code=1) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def photo_file(photo, tmp_path):
    path = tmp_path / "photo.png"
    photo.save(path)
    return path


@pytest.fixture
def hvq_file(photo_file, tiny_model_path, tmp_path):
    path = tmp_path / "photo.hvq"
    assert run("compress", photo_file, "-o", path, "--model", tiny_model_path).exit_code == 0
    return path


def _png(width, height, colour_type, depth, rows: bytes, extra: bytes = b"") -> bytes:
    """A PNG written by hand (Pillow writes no 16-bit RGB): IHDR, optional chunks, IDAT of unfiltered rows."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(rows)) if rows else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + idat + chunk(b"IEND", b"")


# -- outputs are regular files -------------------------------------------------------------------------------


def _special_nodes(tmp_path):
    target = tmp_path / "kept.hvq"
    target.write_bytes(b"keep me")
    nodes = {"fifo": tmp_path / "fifo.hvq", "link": tmp_path / "link.hvq", "dangling": tmp_path / "dangling.hvq"}
    os.mkfifo(nodes["fifo"])
    nodes["link"].symlink_to(target)
    nodes["dangling"].symlink_to(tmp_path / "nowhere.hvq")
    if os.geteuid() == 0:  # a character device of our own (the numbers of /dev/null), never /dev/null itself
        nodes["device"] = tmp_path / "null.hvq"
        os.mknod(nodes["device"], stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return nodes, target


@pytest.mark.parametrize("force", [False, True])
def test_force_never_replaces_a_device_fifo_or_symlink(photo_file, hvq_file, tiny_model_path, tmp_path, force):
    nodes, target = _special_nodes(tmp_path)
    kinds = {"fifo": "a FIFO", "link": "a symbolic link", "dangling": "a symbolic link", "device": "a character device"}
    for kind, node in nodes.items():
        before = os.lstat(node)
        extra = ("--force",) if force else ()
        for args in (
            ("compress", photo_file, "-o", node, "--model", tiny_model_path, *extra),
            ("strip", hvq_file, "--keep", 16, "-o", node, *extra),
        ):
            line = one_error_line(run(*args))
            assert line == f"Error: {node}: is {kinds[kind]}, not a regular file; hvq writes regular files only", line
            after = os.lstat(node)
            assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
        # decompress needs a suffix Pillow writes: the same nodes under .png names
        png_node = node.with_suffix(".png")
        os.rename(node, png_node)
        line = one_error_line(run("decompress", hvq_file, "-o", png_node, "--model", tiny_model_path, *extra))
        assert f"is {kinds[kind]}, not a regular file" in line
        os.rename(png_node, node)
    assert target.read_bytes() == b"keep me"
    assert not (tmp_path / "nowhere.hvq").exists()


def test_a_run_folder_that_is_a_fifo_or_link_is_one_line(photo, tmp_path):
    """Second pass: ``hvq train -o FIFO`` (or a dangling link, or /dev/null) was a FileExistsError traceback."""
    images = tmp_path / "images"
    images.mkdir()
    photo.resize((64, 64)).save(images / "a.png")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    tiny = ("--steps", 1, "--crop", 32, "--batch-size", 1, "--codebook-size", 16, "--code-dim", 8)
    for folder, message in ((tmp_path / "fifo", "is a FIFO, not a folder"),
                            (tmp_path / "dangling", "is a dangling symbolic link, not a folder"),
                            ("/dev/null", "is a character device, not a folder")):
        line = one_error_line(run("train", "--data", images, "-o", folder, *tiny))
        assert line == f"Error: {folder}: {message}"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and not (tmp_path / "nowhere").exists()


def test_write_atomic_checks_the_target_again_before_the_rename(tmp_path):
    """A FIFO made at the target while the work ran: refused at the rename, no temporary file left."""
    import click

    from hvq.cli.output import write_atomic

    os.mkfifo(tmp_path / "late.hvq")
    with pytest.raises(click.ClickException, match="is a FIFO, not a regular file"):
        write_atomic(tmp_path / "late.hvq", b"data")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "late.hvq").st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["late.hvq"]


def test_a_legal_255_byte_output_name_is_written(photo_file, hvq_file, tiny_model_path, tmp_path):
    """The temporary name is cut to fit, so every name the file system takes works (was ENAMETOOLONG after the encode)."""
    for name, args in (
        ("c" * 251 + ".hvq", ("compress", photo_file, "--model", tiny_model_path)),
        ("d" * 251 + ".png", ("decompress", hvq_file, "--model", tiny_model_path)),
        ("é" * 125 + "s.hvq", ("strip", hvq_file, "--keep", 16)),  # 255 bytes in UTF-8
    ):
        assert len(os.fsencode(name)) == 255
        result = run(*args, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).stat().st_size > 0
    long_model = tmp_path / ("m" * 243 + ".safetensors")
    make_tiny_model(long_model)  # save_model's temporary name too
    assert hvq.compress(photo_file, model=long_model)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_an_output_ending_in_a_slash_is_a_folder(photo_file, hvq_file, tiny_model_path, tmp_path):
    result = run("compress", photo_file, "-o", f"{tmp_path / 'new'}/", "--model", tiny_model_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "photo.hvq").is_file()
    assert run("decompress", hvq_file, "-o", f"{tmp_path / 'pngs'}/", "--model", tiny_model_path).exit_code == 0
    assert Image.open(tmp_path / "pngs" / "photo.png").size == (45, 37)
    assert run("strip", hvq_file, "--keep", 16, "-o", f"{tmp_path / 'small'}/").exit_code == 0
    assert parse_levels(tmp_path / "small" / "photo.hvq") == (16,)
    line = one_error_line(run("compress", photo_file, "-o", tmp_path / "new", "--force", "--model", tiny_model_path))
    assert line == f"Error: {tmp_path / 'new'}: is a folder"


def parse_levels(path):
    from hvq.bitstream.container import parse

    return parse(path.read_bytes()).header.factors


def test_a_name_over_the_limit_is_one_line(photo_file, hvq_file, tiny_model_path, tmp_path):
    """Second pass: a 256-byte name was a traceback (ENAMETOOLONG from Path.exists)."""
    name = tmp_path / ("x" * 252 + ".hvq")
    for args in (
        ("compress", photo_file, "-o", name, "--model", tiny_model_path),
        ("strip", hvq_file, "--keep", 16, "-o", name),
        ("decompress", hvq_file, "-o", name.with_suffix(".png"), "--model", tiny_model_path),
        ("fit-prior", "--model", tiny_model_path, "--data", tmp_path, "-o", name.with_suffix(".safetensors")),
    ):
        line = one_error_line(run(*args))
        assert line.endswith(": cannot write there (File name too long)"), line


def test_a_loop_of_symbolic_links_is_one_line(photo_file, hvq_file, tiny_model_path, tmp_path):
    """Second pass: Path.resolve raised RuntimeError on a link to itself, as an input, an output or a model."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert "Too many levels of symbolic links" in one_error_line(run("compress", loop, "-o", tmp_path / "x.hvq",
                                                                     "--model", tiny_model_path))
    for args in (("decompress", loop, "-o", tmp_path / "x.png", "--model", tiny_model_path),
                 ("strip", loop, "--keep", 16, "-o", tmp_path / "y.hvq")):
        assert one_error_line(run(*args)) == f"Error: {loop}: cannot read: Too many levels of symbolic links"
    line = one_error_line(run("compress", photo_file, "-o", loop, "--force", "--model", tiny_model_path))
    assert line == f"Error: {loop}: is a symbolic link, not a regular file; hvq writes regular files only"
    with pytest.raises(hvq.HvqModelError, match=f"^{loop}: cannot read model: Too many levels of symbolic links"):
        hvq.decompress(hvq_file, model=loop)


# -- standard input and output ------------------------------------------------------------------------------


def test_dash_is_standard_input_and_output(photo_file, tiny_model_path, tmp_path):
    png = photo_file.read_bytes()
    result = run("compress", "-", "-o", "-", "--model", tiny_model_path, input=png)
    assert result.exit_code == 0
    data = result.stdout_bytes
    assert data == hvq.compress(photo_file, model=tiny_model_path)
    assert run("compress", "-", "-o", tmp_path / "in.hvq", "--model", tiny_model_path, input=png).exit_code == 0
    assert (tmp_path / "in.hvq").read_bytes() == data
    decoded = run("decompress", "-", "-o", "-", "--model", tiny_model_path, input=data)
    assert decoded.exit_code == 0
    assert decoded.stdout_bytes.startswith(b"\x89PNG") and Image.open(io.BytesIO(decoded.stdout_bytes)).size == (45, 37)
    info = run("info", "-", "--json", input=data)
    assert info.exit_code == 0 and json.loads(info.stdout)["file"] == "-"
    stripped = run("strip", "-", "--keep", 16, "-o", "-", input=data)
    assert stripped.exit_code == 0 and [lv.factor for lv in hvq.inspect(stripped.stdout_bytes).levels] == [16]
    assert not (tmp_path / "-").exists() and not os.path.exists("-")


def test_dash_misuse_is_refused(photo_file, tiny_model_path, tmp_path, monkeypatch):
    for args in (("compress", "-", "--model", tiny_model_path), ("decompress", "-", "--model", tiny_model_path)):
        assert "reading standard input needs -o" in run(*args).output
    result = run("compress", "-", photo_file, "-o", tmp_path / "x.hvq", "--model", tiny_model_path)
    assert result.exit_code == 2 and "must be the only input" in result.output
    result = run("strip", "-", "--keep", 16, "-o", f"{tmp_path}/", input=b"")
    assert result.exit_code == 2 and "standard input has no name" in result.output
    result = run("fit-prior", "--model", tiny_model_path, "--data", tmp_path, "-o", "-")
    assert result.exit_code == 2 and "cannot write to standard output" in result.output
    assert not os.path.exists("-")
    line = one_error_line(run("compress", "-", "-o", tmp_path / "x.hvq", "--model", tiny_model_path, input=b"junk"))
    assert line == "Error: -: not an image Pillow can read"


class _Terminal(io.BytesIO):
    def isatty(self):
        return True


def test_binary_is_never_written_to_or_read_from_a_terminal(photo_file, hvq_file, tiny_model_path, monkeypatch):
    import click

    real = click.get_binary_stream
    monkeypatch.setattr(click, "get_binary_stream", lambda name: _Terminal() if name == "stdout" else real(name))
    for args in (("compress", photo_file, "-o", "-"), ("decompress", hvq_file, "-o", "-"),
                 ("strip", hvq_file, "--keep", 16, "-o", "-")):
        result = run(*args, "--model", tiny_model_path)
        assert result.exit_code == 2 and "refusing to write binary data to a terminal" in result.output
    monkeypatch.setattr(click, "get_binary_stream", lambda name: _Terminal() if name == "stdin" else real(name))
    result = run("info", "-")
    assert result.exit_code == 2 and "standard input, which is a terminal" in result.output


# -- decompress: only formats Pillow writes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix", [".psd", ".xpm", ".xbm", ".msp", ".palm", ".cur", ".dcx", ".fli", ".gbr", ".pcd", ".ras", ".ico",
               ".icns", ".h5", ".unknownext", ""]
)
def test_decompress_refuses_a_format_it_cannot_write_before_any_work(hvq_file, tmp_path, suffix):
    """Exit 2 before the model loads (the model named here does not exist, which would be exit 1)."""
    out = tmp_path / f"out{suffix}"
    result = run("decompress", hvq_file, "-o", out, "--model", tmp_path / "absent.safetensors")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "-o" in result.output
    assert not out.exists()


def test_decompress_refuses_hvq_as_an_image_format_even_with_the_plugin(plugin, hvq_file, tmp_path):
    result = run("decompress", hvq_file, "-o", tmp_path / "again.hvq")
    assert result.exit_code == 2 and "hvq strip makes a smaller .hvq" in result.output


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp", ".ppm", ".tga", ".gif"])
def test_decompress_writes_every_format_it_accepts(hvq_file, tiny_model_path, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    assert run("decompress", hvq_file, "-o", out, "--model", tiny_model_path).exit_code == 0
    assert Image.open(out).size == (45, 37)


# -- malformed model files -----------------------------------------------------------------------------------


def _safetensors(header) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text


def _consistent_model(tiny_model_path, tmp_path, **config_changes):
    """The tiny model with its config edited and its fingerprint recomputed to match: it passes every hash."""
    from safetensors import safe_open
    from safetensors.numpy import save

    from hvq.codec.runtime.weights import fingerprint

    with safe_open(str(tiny_model_path), framework="numpy") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.dumps({**json.loads(meta["config"]), **config_changes}, sort_keys=True)
    path = tmp_path / "edited.safetensors"
    path.write_bytes(save(tensors, metadata={**meta, "config": config, "fingerprint": fingerprint(tensors, config).hex()}))
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (_safetensors([]), "not a safetensors model file"),
        (_safetensors({"__metadata__": "x"}), "not a safetensors model file"),
        (_safetensors({"__metadata__": {"format": 1}}), "not a safetensors model file"),
        (_safetensors({}), "not an hvq model file"),
        (_safetensors(b"\xff\xfe"), "not a safetensors model file"),
        (b"abc", "not a safetensors model file"),
        (_safetensors({"__metadata__": {"format": "hvq-model", "model_file_version": "1"}}), "config"),
    ],
)
def test_a_malformed_model_file_is_a_model_error(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(hvq.HvqModelError, match=f"^{path}: .*{message}"):
        hvq.decompress(b"", model=path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"code_dim": -1}, "config code_dim is -1, not a positive integer"),
        ({"code_dim": 0}, "config code_dim is 0"),
        ({"encoder_channels": [-3, 8]}, r"config encoder_channels\[0\] is -3"),
        ({"code_dim": 8.5}, "config code_dim is 8.5"),
        ({"codebook_size": 1}, "codebook_size must be in"),
    ],
)
def test_a_consistent_model_with_impossible_sizes_is_a_model_error(tiny_model_path, tmp_path, changes, message):
    path = _consistent_model(tiny_model_path, tmp_path, **changes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor torch's warning about zero-element tensors
        with pytest.raises(hvq.HvqModelError, match=message):
            hvq.decompress(b"", model=path)


def test_a_model_that_is_not_a_regular_file_is_refused_without_reading(tmp_path):
    os.mkfifo(tmp_path / "fifo.safetensors")  # reading it would block
    with pytest.raises(hvq.HvqModelError, match="fifo.safetensors: cannot read model: not a regular file"):
        hvq.decompress(b"", model=tmp_path / "fifo.safetensors")
    with pytest.raises(hvq.HvqModelError, match="not a regular file"):
        hvq.decompress(b"", model="/dev/zero")


def test_a_bad_model_names_its_path_once(photo_file, tmp_path):
    absent = tmp_path / "absent.safetensors"
    for args in (("compress", photo_file, "-o", tmp_path / "x.hvq"), ("decompress", tmp_path / "x.hvq")):
        line = one_error_line(run(*args, "--model", absent))
        assert line == f"Error: {absent}: cannot read model: No such file or directory"
        assert line.count("absent.safetensors") == 1


# -- image modes and transparency ----------------------------------------------------------------------------


def _rgb16_png(values) -> bytes:
    """A 16-bit RGB PNG of one row of (r, g, b) values."""
    row = b"\x00" + b"".join(struct.pack(">3H", *v) for v in values)
    return _png(len(values), 1, 2, 16, row)


def test_sixteen_bit_gray_and_colour_narrow_the_same_way():
    """The high byte, as Pillow narrows 16-bit colour: a gray picture gives the same pixels in either layout."""
    from hvq.codec.runtime.imageio import load_image

    values = [0, 255, 256, 4736, 32767, 32896, 65279, 65535]
    colour = load_image(io.BytesIO(_rgb16_png([(v, v, v) for v in values])))
    gray = load_image(Image.fromarray(np.array([values], dtype=np.uint16)))
    expected = [v >> 8 for v in values]
    assert np.asarray(colour)[0, :, 0].tolist() == expected
    assert np.asarray(gray).tolist() == np.asarray(colour).tolist()


def test_mode_i_is_read_by_its_range(tiny_codec):
    from hvq.codec.runtime.imageio import load_image

    eight = np.array([[0, 7, 128, 255]], dtype=np.int32)
    assert np.asarray(load_image(Image.fromarray(eight, "I")))[0, :, 0].tolist() == [0, 7, 128, 255]
    sixteen = np.array([[0, 7, 32896, 65535]], dtype=np.int32)
    assert np.asarray(load_image(Image.fromarray(sixteen, "I")))[0, :, 0].tolist() == [0, 0, 128, 255]
    for bad in ([[-1, 5]], [[0, 70000]]):
        with pytest.raises(hvq.HvqImageError, match="mode I values span"):
            tiny_codec.compress(Image.fromarray(np.array(bad, dtype=np.int32), "I"))


def _keyed_png(tmp_path, mode, key, hit: bool):
    image = Image.new(mode, (16, 16), 200 if mode in ("L", "I;16") else (200, 100, 50))
    if hit:
        image.putpixel((3, 3), key)
    path = tmp_path / f"{mode.replace(';', '')}-{hit}.png"
    image.save(path, transparency=key)
    return path


@pytest.mark.parametrize("mode, key", [("RGB", (1, 2, 3)), ("L", 7), ("I;16", 300)])
def test_a_colour_key_is_refused_like_an_alpha_channel(tiny_codec, tmp_path, mode, key):
    """tRNS in RGB and gray PNGs: refused when a pixel matches it, dropped when none does (as an opaque alpha)."""
    keyed = _keyed_png(tmp_path, mode, key, hit=True)
    assert Image.open(keyed).info["transparency"] == key
    with pytest.raises(hvq.HvqImageError, match="transparency.*colour key"):
        tiny_codec.compress(keyed)
    assert tiny_codec.compress(_keyed_png(tmp_path, mode, key, hit=False))


def test_a_palette_key_is_refused_only_where_used(tiny_codec, photo, tmp_path):
    palette = photo.convert("P")
    used = palette.getpixel((0, 0))
    palette.save(tmp_path / "used.png", transparency=used)
    with pytest.raises(hvq.HvqImageError, match="transparency"):
        tiny_codec.compress(tmp_path / "used.png")
    unused = next(i for i in range(256) if i not in set(np.asarray(palette).ravel().tolist()))
    palette.save(tmp_path / "unused.png", transparency=unused)
    assert tiny_codec.compress(tmp_path / "unused.png")


@pytest.mark.parametrize("mode", ["RGBa", "La"])
def test_premultiplied_modes_are_coded_when_opaque(tiny_codec, photo, mode):
    opaque = photo.convert("RGBA" if mode == "RGBa" else "LA").convert(mode)
    assert opaque.mode == mode
    assert tiny_codec.decompress(tiny_codec.compress(opaque)).size == photo.size
    seen = photo.convert("RGBA")
    seen.putpixel((0, 0), (10, 20, 30, 0))
    with pytest.raises(hvq.HvqImageError, match="transparency"):
        tiny_codec.compress(seen.convert("LA" if mode == "La" else "RGBA").convert(mode))


# -- frames, colour profiles, symlinked folders --------------------------------------------------------------


def _linear_rgb_profile() -> bytes:
    """A minimal ICC v2 display profile: sRGB's primaries (D50) with linear curves, so 128 shows as sRGB 188."""
    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    text = b"linear RGB (test)\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0100) + b"\0\0"  # gamma 1.0
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + body


def test_an_icc_profile_is_converted_to_srgb(tmp_path):
    from hvq.codec.runtime.imageio import load_image

    gray = Image.new("RGB", (8, 8), (128, 128, 128))
    gray.save(tmp_path / "linear.png", icc_profile=_linear_rgb_profile())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.asarray(load_image(tmp_path / "linear.png"))[0, 0].tolist() == [188, 188, 188]
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gray.save(tmp_path / "srgb.png", icc_profile=srgb)
    assert np.asarray(load_image(tmp_path / "srgb.png"))[0, 0].tolist() == [128, 128, 128]  # untouched


def test_frames_and_unusable_profiles_are_one_warning_line_each(photo, photo_file, tiny_model_path, tmp_path):
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), photo.rotate(180)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    photo.save(tmp_path / "junk-icc.png", icc_profile=b"not a profile" * 10)
    for name, warning in (
        ("anim.gif", "has 3 frames or pages; only the first is coded"),
        ("pages.tif", "has 3 frames or pages; only the first is coded"),
        ("junk-icc.png", "its ICC profile cannot be read and is dropped; colours are coded as if sRGB"),
    ):
        for _ in range(2):  # every run warns, not only the first in a process
            result = run("compress", tmp_path / name, "-o", tmp_path / "out.hvq", "--force", "--model", tiny_model_path)
            assert result.exit_code == 0
            assert result.output.strip() == f"Warning: {tmp_path / name}: {warning}", result.output
    with pytest.warns(hvq.codec.runtime.imageio.HvqImageWarning, match="image: has 3 frames"):
        hvq.compress(Image.open(tmp_path / "anim.gif"), model=tiny_model_path)
    assert run("compress", photo_file, "-o", tmp_path / "plain.hvq", "--model", tiny_model_path).output == ""


def test_symlinked_subfolders_are_followed_once(photo, tmp_path):
    from hvq.cli.inputs import images_in

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    photo.save(elsewhere / "e.png")
    album = tmp_path / "album"
    (album / "sub").mkdir(parents=True)
    photo.save(album / "sub" / "s.png")
    (album / "linked").symlink_to(elsewhere, target_is_directory=True)
    (album / "sub" / "loop").symlink_to(album, target_is_directory=True)  # a cycle
    (album / "again").symlink_to(album / "sub", target_is_directory=True)  # the same folder twice
    found = [p.relative_to(album).as_posix() for p in images_in(album)]
    assert found == ["linked/e.png", "sub/s.png"] or found == ["again/s.png", "linked/e.png"]


# -- messages ------------------------------------------------------------------------------------------------


def test_a_large_image_is_one_line_without_pillows_bomb_warning(tiny_model_path, tmp_path):
    """100 M pixels: Pillow warns (89.5 M) and hvq refuses (2^26); only hvq's line is shown."""
    big = tmp_path / "big.png"
    big.write_bytes(_png(10000, 10000, 2, 8, b""))  # a header: enough to be refused, nothing to decode
    line = one_error_line(run("compress", big, "-o", tmp_path / "big.hvq", "--model", tiny_model_path))
    assert line == f"Error: {big}: image of 10000x10000 exceeds the limits (32768 px a side, 67108864 pixels)"


# -- the Pillow plugin ---------------------------------------------------------------------------------------


@pytest.fixture
def plugin(tiny_model_path):
    from hvq.codec.runtime import pillow_plugin

    saved = dict(pillow_plugin._options)
    pillow_plugin.register_hvq_opener(model=tiny_model_path)
    yield pillow_plugin
    pillow_plugin._options.update(saved)


def test_the_plugin_previews_a_cut_download(plugin, hvq_file, tiny_codec, monkeypatch):
    from hvq.bitstream.container import parse

    data = hvq_file.read_bytes()
    def whole_levels(n):
        try:
            return len(parse(data[:n]).levels)
        except hvq.HvqFormatError:  # cut inside HEAD
            return 0

    coarse_end = next(n for n in range(len(data)) if whole_levels(n))  # where LEVL 16 is whole
    cut = data[: coarse_end + 5]  # and LEVL 8 is cut
    with pytest.raises(OSError, match="truncated") as caught:
        Image.open(io.BytesIO(cut)).load()
    assert isinstance(caught.value, hvq.HvqTruncatedError)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    preview = Image.open(io.BytesIO(cut))
    preview.load()
    assert preview.size == (45, 37)
    assert preview.tobytes() == tiny_codec.decompress(data, 16).tobytes()


def test_plugin_errors_are_os_errors_and_hvq_errors(plugin, hvq_file, tmp_path):
    data = bytearray(hvq_file.read_bytes())
    data[40] ^= 1  # HEAD's CRC fails at open
    with pytest.raises(OSError, match="CRC") as caught:
        Image.open(io.BytesIO(bytes(data)))
    assert isinstance(caught.value, hvq.HvqFormatError)
    other = make_tiny_model(tmp_path / "other.safetensors", seed=5)
    plugin.register_hvq_opener(model=other)
    with pytest.raises(OSError, match="was made with model") as caught:
        Image.open(hvq_file).load()
    assert isinstance(caught.value, hvq.HvqModelError)


def test_the_plugin_saves_hvq_files(plugin, photo, tiny_codec, tmp_path):
    """Second pass: ``image.save("x.hvq")`` was Pillow's KeyError 'HVQ'; now it compresses with the registered model."""
    photo.save(tmp_path / "x.hvq")
    assert (tmp_path / "x.hvq").read_bytes() == tiny_codec.compress(photo)
    buffer = io.BytesIO()
    photo.save(buffer, format="HVQ", levels=(16,))
    assert buffer.getvalue() == tiny_codec.compress(photo, (16,))
    assert Image.open(io.BytesIO(buffer.getvalue())).size == photo.size
    seen = photo.convert("RGBA")
    seen.putpixel((0, 0), (0, 0, 0, 0))
    with pytest.raises(OSError, match="transparency") as caught:
        seen.save(io.BytesIO(), format="HVQ")
    assert isinstance(caught.value, hvq.HvqImageError)


@pytest.mark.parametrize("level", ["abc", "16", 0, -4, 8.5, True])
def test_register_refuses_a_bad_level(plugin, level):
    with pytest.raises(ValueError, match="level must be a level factor"):
        plugin.register_hvq_opener(level=level)


def test_register_refuses_a_bad_model(plugin):
    with pytest.raises(TypeError, match="model must be a path"):
        plugin.register_hvq_opener(model=123)
