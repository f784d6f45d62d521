"""The hvq command line, through click's CliRunner, with a tiny random model."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import make_tiny_model
from hvq.cli.main import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def photo_file(photo, tmp_path):
    path = tmp_path / "photo.png"
    photo.save(path)
    return path


def _no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_compress_info_decompress(run, photo_file, tiny_model_path, tmp_path):
    out = tmp_path / "photo.hvq"
    result = run("compress", photo_file, "-o", out, "--model", tiny_model_path)
    assert result.exit_code == 0, result.output
    info = run("info", out)
    assert info.exit_code == 0
    assert "45x37" in info.output and "level  grid" in info.output
    as_json = json.loads(run("info", out, "--json").output)
    assert [lv["factor"] for lv in as_json["levels"]] == [16, 8, 4]
    assert as_json["width"] == 45 and as_json["complete"] is True
    png = tmp_path / "back.png"
    result = run("decompress", out, "-o", png, "--level", 8, "--model", tiny_model_path)
    assert result.exit_code == 0, result.output
    assert Image.open(png).size == (45, 37)


def test_levels_and_strip(run, photo_file, tiny_model_path, tmp_path):
    out = tmp_path / "photo.hvq"
    assert run("compress", photo_file, "-o", out, "--levels", "16,4", "--model", tiny_model_path).exit_code == 0
    assert [lv["factor"] for lv in json.loads(run("info", out, "--json").output)["levels"]] == [16, 4]
    small = tmp_path / "small.hvq"
    assert run("strip", out, "--keep", "16", "-o", small).exit_code == 0
    assert [lv["factor"] for lv in json.loads(run("info", small, "--json").output)["levels"]] == [16]
    assert small.read_bytes() in out.read_bytes() or len(small.read_bytes()) < len(out.read_bytes())
    bad = run("strip", out, "--keep", "8", "-o", tmp_path / "none.hvq")
    assert bad.exit_code == 1 and "level 8 is not stored" in bad.output
    assert not (tmp_path / "none.hvq").exists()


def test_existing_output_is_kept_unless_forced(run, photo_file, tiny_model_path, tmp_path):
    out = tmp_path / "photo.hvq"
    out.write_bytes(b"keep me")
    result = run("compress", photo_file, "-o", out, "--model", tiny_model_path)
    assert result.exit_code == 1 and "exists (use --force" in result.output
    assert out.read_bytes() == b"keep me"
    assert run("compress", photo_file, "-o", out, "--model", tiny_model_path, "--force").exit_code == 0
    assert out.read_bytes().startswith(b"\x89HVQ")


def test_an_input_is_never_overwritten(run, photo_file, tiny_model_path):
    before = photo_file.read_bytes()
    result = run("compress", photo_file, "-o", photo_file, "--model", tiny_model_path, "--force")
    assert result.exit_code == 1 and "refusing to overwrite an input" in result.output
    assert photo_file.read_bytes() == before


def test_many_files_continue_past_failures(run, photo, tiny_model_path, tmp_path):
    inputs = []
    for name in ("a.png", "b.png"):
        photo.save(tmp_path / name)
        inputs.append(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    inputs.insert(1, tmp_path / "broken.png")
    outdir = tmp_path / "out"
    result = run("compress", *inputs, "-d", outdir, "--model", tiny_model_path)
    assert result.exit_code == 1
    assert "broken.png" in result.output and "1 of 3 files failed" in result.output
    assert sorted(p.name for p in outdir.iterdir()) == ["a.hvq", "b.hvq"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d[:20], "truncated|ends"),
        (lambda d: b"GIF89a" + d[6:], "bad signature"),
        (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], "fails its CRC"),
    ],
)
def test_bad_files_give_one_line_and_no_output(run, photo_file, tiny_model_path, tmp_path, damage, message):
    good = tmp_path / "photo.hvq"
    run("compress", photo_file, "-o", good, "--model", tiny_model_path)
    bad = tmp_path / "bad.hvq"
    bad.write_bytes(damage(good.read_bytes()))
    out = tmp_path / "bad.png"
    for args in (("decompress", bad, "-o", out, "--model", tiny_model_path), ("info", bad)):
        result = run(*args)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {bad}: ")
        assert any(m in lines[0] for m in message.split("|"))
        assert "Traceback" not in result.output
    assert not out.exists() and _no_temp_files(tmp_path)


def test_newer_version_and_model_mismatch(run, photo_file, tiny_model_path, tmp_path):
    import struct
    import zlib

    good = tmp_path / "photo.hvq"
    run("compress", photo_file, "-o", good, "--model", tiny_model_path)
    data = bytearray(good.read_bytes())
    data[16:18] = struct.pack(">H", 4)  # HEAD's version field, right after its type
    body = bytes(data[12:72])  # HEAD type + its 56 data bytes
    data[72:76] = struct.pack(">I", zlib.crc32(body))
    newer = tmp_path / "newer.hvq"
    newer.write_bytes(bytes(data))
    result = run("decompress", newer, "-o", tmp_path / "n.png", "--model", tiny_model_path)
    assert result.exit_code == 1 and "format version 4 is newer" in result.output
    other = make_tiny_model(tmp_path / "other.safetensors", seed=3)
    result = run("decompress", good, "-o", tmp_path / "m.png", "--model", other)
    assert result.exit_code == 1 and "was made with model" in result.output
    assert not (tmp_path / "m.png").exists()


def test_unreadable_image_and_bad_model(run, tmp_path, tiny_model_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"nope")
    result = run("compress", junk, "--model", tiny_model_path)
    assert result.exit_code == 1 and result.output.startswith(f"Error: {junk}: not an image")
    result = run("compress", junk, "--model", tmp_path / "absent.safetensors")
    assert result.exit_code == 1 and "cannot read model" in result.output


def test_misuse_exits_2(run, photo_file, tmp_path, tiny_model_path):
    assert run("compress", photo_file, "--levels", "x").exit_code == 2
    assert run("compress", photo_file, photo_file, "-o", tmp_path / "x.hvq").exit_code == 2
    assert run("decompress", photo_file, "-o", tmp_path / "x.unknownext").exit_code == 2
    for levels in ("0", "3", "32"):  # a level no model has and one this model lacks: both misuse
        result = run("compress", photo_file, "--levels", levels, "--model", tiny_model_path)
        assert result.exit_code == 2, (levels, result.output)
    assert "model has no level 32" in result.output
    for level in ("0", "3", "-4", "x"):  # no level of any model: misuse, before the file is read
        result = run("decompress", tmp_path / "absent.hvq", "--level", level, "-o", tmp_path / "x.png")
        assert result.exit_code == 2 and "--level" in result.output, (level, result.output)
        assert not (tmp_path / "x.png").exists()


def test_help_lists_exit_codes(run):
    assert "Exit codes" in run("--help").output
    assert "Exit codes" in run("compress", "--help").output


def test_train_resume_and_export(run, photo, tmp_path):
    from conftest import TINY
    from hvq.codec.model.config import ModelConfig

    images = tmp_path / "images"
    images.mkdir()
    photo.resize((64, 64)).save(images / "a.png")
    tiny = tmp_path / "tiny.json"  # the tiny widths: the default ones took most of the test's time
    tiny.write_text(ModelConfig(**{**TINY, "codebook_size": 32}).to_json())
    run_dir = tmp_path / "run"
    args = ("train", "--data", images, "-o", run_dir, "--steps", 2, "--crop", 32, "--batch-size", 2,
            "--model-config", tiny, "--codebook-size", 16, "--code-dim", 8)
    assert run(*args).exit_code == 0
    assert run(*args).exit_code == 1  # the folder holds a run already
    assert run("train", "-o", run_dir, "--resume", "--steps", 3, "--threads", 1).exit_code == 0
    result = run("train", "-o", run_dir, "--resume", "--lr", 0.1)
    assert result.exit_code == 2 and "cannot change lr" in result.output
    model = tmp_path / "m.safetensors"
    result = run("export", run_dir / "checkpoint.pt", "-o", model, "--prior-steps", 20)  # on the run's own data
    assert result.exit_code == 0 and "model " in result.output
    if importlib.util.find_spec("onnx"):  # the onnx decoder's graphs, written beside the model
        assert "decoder graphs of m.safetensors" in result.output and (tmp_path / "m.graphs.json").exists()
    assert run("compress", images / "a.png", "-o", tmp_path / "a.hvq", "--model", model).exit_code == 0


def test_an_unreadable_image_in_a_data_folder_is_named(run, photo, tiny_model_path, tmp_path):
    """train, its validation, export and fit-prior: one line naming the file, exit 1, nothing written."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    photo.resize((64, 64)).save(good / "a.png")
    photo.resize((64, 64)).save(bad / "a.png")
    (bad / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then nothing valid
    tiny = ("--steps", 1, "--crop", 32, "--batch-size", 2, "--codebook-size", 16, "--code-dim", 8)
    assert run("train", "--data", good, "-o", tmp_path / "ok", *tiny).exit_code == 0
    checkpoint = tmp_path / "ok" / "checkpoint.pt"
    for args, wrote in (
        (("train", "--data", bad, "-o", tmp_path / "r1", *tiny), tmp_path / "r1" / "checkpoint.pt"),
        (("train", "--data", good, "--val-data", bad, "-o", tmp_path / "r2", *tiny), tmp_path / "r2" / "checkpoint.pt"),
        (("export", checkpoint, "--data", bad, "-o", tmp_path / "m.safetensors"), tmp_path / "m.safetensors"),
        (("fit-prior", tiny_model_path, "--data", bad, "-o", tmp_path / "p.safetensors"), tmp_path / "p.safetensors"),
    ):
        result = run(*args)
        last = result.output.strip().splitlines()[-1]
        assert result.exit_code == 1, result.output
        assert last.startswith("Error: ") and str(bad / "b.png") in last, last
        assert "Traceback" not in result.output and not wrote.exists()


def test_a_target_that_cannot_be_written_is_refused_before_any_work(run, photo_file, tiny_model_path, tmp_path):
    """A path under a file, or a folder as the target: one line, exit 1, for every command that writes."""
    hvq_file = tmp_path / "a.hvq"
    assert run("compress", photo_file, "-o", hvq_file, "--model", tiny_model_path).exit_code == 0
    under_a_file = hvq_file / "x"
    for args in (
        ("compress", photo_file, "-o", under_a_file.with_suffix(".hvq"), "--model", tiny_model_path),
        ("decompress", hvq_file, "-o", under_a_file.with_suffix(".png"), "--model", tiny_model_path),
        ("strip", hvq_file, "--keep", 4, "-o", under_a_file.with_suffix(".hvq")),
        ("fit-prior", tiny_model_path, "--data", tmp_path, "-o", under_a_file.with_suffix(".safetensors")),
    ):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines()[-1].endswith(f"cannot write there ({hvq_file} is a file)"), result.output
    out = tmp_path / "out"
    (out / "photo.hvq").mkdir(parents=True)  # where -d would put photo.png's output
    result = run("compress", photo_file, "-d", out, "--force", "--model", tiny_model_path)
    assert result.exit_code == 1 and result.output.strip() == f"Error: {out / 'photo.hvq'}: is a folder"


def test_a_write_that_fails_midway_is_one_line_and_leaves_nothing(monkeypatch, tmp_path):
    """A full disk at the rename: the error names the file and no temporary file is left."""
    import errno
    import os

    import click

    from hvq.cli.output import write_atomic

    def full_disk(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(click.ClickException, match="x.hvq: cannot write \\(No space left on device\\)"):
        write_atomic(tmp_path / "x.hvq", b"data")
    assert list(tmp_path.iterdir()) == []


def test_train_options_override_a_config_file(run, photo, tmp_path):
    from hvq.codec.train.config import TrainConfig

    images = tmp_path / "images"
    images.mkdir()
    photo.resize((64, 64)).save(images / "a.png")
    first = tmp_path / "first"
    args = ("--crop", 32, "--batch-size", 2, "--codebook-size", 16, "--code-dim", 8, "--workers", 0, "--l1", 0.5)
    assert run("train", "--data", images, "-o", first, "--steps", 1, *args).exit_code == 0
    second = tmp_path / "second"
    assert run("train", "--config", first / "train_config.json", "-o", second, "--steps", 2).exit_code == 0
    a = TrainConfig.from_json((first / "train_config.json").read_text())
    b = TrainConfig.from_json((second / "train_config.json").read_text())
    assert b.steps == 2 and b.l1_weight == 0.5 and b.model == a.model and b.data == a.data
    third = tmp_path / "third"
    assert run("train", "--config", first / "train_config.json", "-o", third, "--steps", 1, "--code-dim", 4).exit_code == 0
    c = TrainConfig.from_json((third / "train_config.json").read_text())
    assert c.model == replace(a.model, code_dim=4)  # the file's other sizes (codebook 16) are kept


def test_train_refuses_bad_folders_and_checkpoints(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("train", "--data", empty, "-o", tmp_path / "run", "--steps", 1)
    assert result.exit_code == 1 and "no images under" in result.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    result = run("export", junk, "-o", tmp_path / "m.safetensors", "--data", empty)
    assert result.exit_code == 1 and "not a training checkpoint" in result.output
    for option, kind in (("--config", "training config"), ("--model-config", "model config")):
        for text in ("not json", "[1, 2]", '{"codebook_size": "many"}'):
            (tmp_path / "c.json").write_text(text)
            result = run("train", "--data", empty, option, tmp_path / "c.json", "-o", tmp_path / "run")
            assert result.exit_code == 1, result.output
            assert result.output.startswith(f"Error: {tmp_path / 'c.json'}: not a valid {kind} (")
            assert len(result.output.strip().splitlines()) == 1


def test_outputs_get_the_usual_permissions(run, photo_file, tiny_model_path, tmp_path):
    import os

    out = tmp_path / "photo.hvq"
    assert run("compress", photo_file, "-o", out, "--model", tiny_model_path).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
