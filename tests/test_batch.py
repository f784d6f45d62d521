"""``hvq compress`` over folders, and what an interruption leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from click.testing import CliRunner
from PIL import Image

from hvq.bitstream.container import parse
from hvq.cli.inputs import images_in
from hvq.cli.main import main
from hvq.cli.output import signals_held, terminate_as_interrupt, write_atomic


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def album(photo, tmp_path):
    """A folder of photos with subfolders, a damaged PNG, an empty JPEG, a non-image and hidden files."""
    root = tmp_path / "album"
    (root / "2025" / "june").mkdir(parents=True)
    (root / ".thumbs").mkdir()
    photo.save(root / "a.png")
    photo.convert("L").save(root / "2025" / "b.jpg")
    photo.save(root / "2025" / "june" / "a.png")  # same name as the top-level one
    photo.save(root / ".thumbs" / "t.png")
    photo.save(root / ".hidden.png")
    (root / "2025" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "2025" / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    (root / "old.hvq").write_bytes(b"not touched")
    return root


def _parts(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_a_folder_means_its_image_files_at_any_depth(album):
    assert [p.relative_to(album).as_posix() for p in images_in(album)] == [
        "2025/b.jpg", "2025/broken.png", "2025/empty.jpg", "2025/june/a.png", "a.png",
    ]


def test_a_folder_finishes_the_rest_reports_each_failure_and_exits_1(album, tiny_model_path, tmp_path):
    out = tmp_path / "out"
    result = run("compress", album, "-d", out, "--model", tiny_model_path)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 2
    assert any("broken.png" in e for e in errors) and any("empty.jpg" in e for e in errors)
    assert "2 of 5 files failed" in lines[-1]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["2025/b.hvq", "2025/june/a.hvq", "a.hvq"]
    for name in written:
        assert parse((out / name).read_bytes()).complete
    assert not _parts(out)
    assert (album / "old.hvq").read_bytes() == b"not touched"


def test_beside_the_inputs_without_an_output_folder(album, tiny_model_path):
    result = run("compress", album / "2025" / "june", album / "a.png", "--model", tiny_model_path)
    assert result.exit_code == 0, result.output
    assert (album / "2025" / "june" / "a.hvq").exists() and (album / "a.hvq").exists()


def test_two_inputs_for_one_output_keep_the_first(photo, tiny_model_path, tmp_path):
    photo.save(tmp_path / "x.png")
    photo.save(tmp_path / "x.bmp")
    result = run("compress", tmp_path / "x.png", tmp_path / "x.bmp", "-d", tmp_path / "out", "--model", tiny_model_path)
    assert result.exit_code == 1
    assert f"x.hvq: also the output of {tmp_path / 'x.png'}, an earlier input" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "one.hvq"], "is a folder; -o/--output takes one file"),
        ([], "no image files in this folder"),
    ],
)
def test_folder_misuse_exits_2(tmp_path, tiny_model_path, args, message):
    (tmp_path / "empty").mkdir()
    folder = tmp_path / "empty"
    result = run("compress", folder, *[tmp_path / a if a.endswith(".hvq") else a for a in args], "--model", tiny_model_path)
    assert result.exit_code == 2 and message in result.output


def _photos(folder, count):
    """Small noise images: the slowed compress below, not their size, makes the run last."""
    folder.mkdir()
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


# ``hvq`` with each file's compression slowed to 0.2 s: the tiny model does 100
# files a second, so a real run could end before the signal arrives.
_SLOW_COMPRESS = """
import sys, time
from hvq.codec.runtime.pipeline import Codec
from hvq.cli.main import main
compress = Codec.compress
def slow_compress(self, *args, **kwargs):
    time.sleep(0.2)
    return compress(self, *args, **kwargs)
Codec.compress = slow_compress
sys.exit(main(prog_name="hvq"))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_whole_files_only(tmp_path, tiny_model_path, signum):
    """Interrupt ``hvq compress`` on a folder mid-way: exit 130, every output whole, no temporary file."""
    src, out = tmp_path / "src", tmp_path / "out"
    _photos(src, 40)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", _SLOW_COMPRESS, "compress", str(src), "-d", str(out), "--model", str(tiny_model_path)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*.hvq"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=60)
    message = stderr.decode().strip().splitlines()[-1]
    assert child.returncode == 130, stderr.decode()
    assert message.startswith("Interrupted: ") and "no partial file left" in message
    assert "Traceback" not in stderr.decode()
    outputs = sorted(out.glob("*"))
    assert 0 < len(outputs) < 40, "the run should be stopped part-way"
    assert not _parts(out)
    assert message.startswith(f"Interrupted: {len(outputs)} of 40 files written"), message
    for path in outputs:
        assert parse(path.read_bytes()).complete, path
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("moment", ["created", "written"])
def test_a_signal_while_a_file_is_placed_waits_for_the_rename(tmp_path, monkeypatch, signum, moment):
    """The gap that once left a ``.part`` file: a signal just after ``mkstemp`` or mid-write.

    The file is finished and renamed first; the signal is then delivered as
    usual (SIGTERM as an interrupt, as ``hvq`` commands install it).
    """
    real_mkstemp, real_replace = tempfile.mkstemp, os.replace

    def mkstemp_then_signal(*args, **kwargs):
        made = real_mkstemp(*args, **kwargs)
        if moment == "created":
            signal.raise_signal(signum)
        return made

    def signal_then_replace(*args):
        if moment == "written":
            signal.raise_signal(signum)
        return real_replace(*args)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_signal)
    monkeypatch.setattr(os, "replace", signal_then_replace)
    target = tmp_path / "out" / "x.hvq"
    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert not _parts(tmp_path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_held_signals_nest_and_arrive_once(tmp_path):
    """An inner block's signal is held by the outer block, then delivered once."""
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            with signals_held():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
            (tmp_path / "after-inner").write_text("still running")
    assert (tmp_path / "after-inner").exists()
