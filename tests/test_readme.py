"""Every README code block runs as a test (as constriction's ``test_docexamples.py`` does), or says why not.

Python blocks run in order, one namespace per README section, in a folder
holding the files they name (small images, so the shipped model is quick).
Shell blocks run with ``hvq`` on the PATH; where a command as written would
take hours (a Kodak benchmark, 20000 training steps) the block is listed in
``NOT_RUN`` with the reason and the test that covers the command instead.
The data-path diagram's names are looked up one by one.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DATA = Path(__file__).resolve().parent / "data"

# First line of a block -> why it does not run here, and what covers it.
NOT_RUN = {
    "python -m pip install .": "installs the package (CI's first step)",
    "python -m pip install torch --index-url": "installs torch's CPU wheel from its own index, which CI cannot reach",
    "python -m pytest": "runs this suite",
    "torchrun --nproc-per-node 8": "needs 8 processes or two machines; test_training.py runs torchrun with 2 gloo processes",
    "python -m hvq.benchmarks.kodak": "an hour on Kodak; test_benchmarks.py runs it on small images",
    "nice -n 10 hvq bench ../shared/datasets/kodak": "hours on Kodak; test_bench.py runs hvq bench and --speed on a tiny dataset",
    "hvq compress photo.png --model v2.safetensors": "needs a model with refinement depths, and none ships yet; "
                                                      "test_format3.py runs compress, strip --keep 16,8,4:2, "
                                                      "decompress --depth and info with depths through the CLI",
    "hvq compress photo.png -q 60": "a target is reachable only near each level's rate, image by image (README says so); "
                                    "test_rate_control.py runs -q, --target-bpp, --target-psnr and info through the CLI",
}


def blocks() -> list[tuple[str, str, str]]:
    """(section, language, text) of every fenced block, in order; indented blocks included."""
    found, section = [], ""
    pattern = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)
    headings = [(m.start(), m.group(1)) for m in re.finditer(r"^##+ (.*)$", README.read_text(), re.M)]
    text = README.read_text()
    for match in pattern.finditer(text):
        section = [h for pos, h in headings if pos < match.start()][-1]
        indent = len(match.group(1))
        body = "\n".join(line[indent:] for line in match.group(3).splitlines())
        found.append((section, match.group(2), body))
    return found


def excused(body: str) -> str | None:
    first = body.strip().splitlines()[0]
    return next((why for start, why in NOT_RUN.items() if first.startswith(start)), None)


def test_every_block_is_run_or_excused():
    for section, language, body in blocks():
        assert language in {"python", "sh", "text"}, f"{section}: a block needs a language: {body[:60]!r}"
        if language == "sh" and not excused(body):
            assert section in SHELL_SETUP, f"{section}: shell block has no runner here: {body[:60]!r}"
    assert set(NOT_RUN) <= {body.strip().splitlines()[0][: len(k)] for _, _, body in blocks() for k in NOT_RUN}


# -- Python blocks ------------------------------------------------------------------------


def _work_folder(tmp_path: Path) -> Path:
    """photo.png (96x80), photo.hvq and scene.png (the 128x96 test scene), as the examples name them."""
    import hvq

    y, x = np.mgrid[0:80, 0:96]
    photo = np.stack([x * 2, y * 3, (x + y)], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    (tmp_path / "photo.hvq").write_bytes(hvq.compress(tmp_path / "photo.png"))
    shutil.copy(DATA / "scene-128x96.png", tmp_path / "scene.png")
    return tmp_path


def _python_sections() -> list[str]:
    return list(dict.fromkeys(section for section, language, _ in blocks() if language == "python"))


@pytest.mark.slow
@pytest.mark.parametrize("section", _python_sections())
def test_python_blocks_run_and_print_what_they_say(section, tmp_path, monkeypatch):
    """Each section's blocks run in one namespace; ``print(...)  # text`` must print ``text``."""
    monkeypatch.chdir(_work_folder(tmp_path))
    namespace: dict = {}
    for _, _, body in (b for b in blocks() if b[0] == section and b[1] == "python"):
        expected = [m.group(1).strip() for m in re.finditer(r"^print\(.*\)[ \t]+# (.*)$", body, re.M)]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, README.name, "exec"), namespace)
        assert out.getvalue().splitlines() == expected
    assert namespace, section


# -- shell blocks ---------------------------------------------------------------------------


def _tokens_setup(work: Path, kodak: Path | None) -> dict:
    images = work / "images"
    images.mkdir()
    scene = Image.open(DATA / "scene-128x96.png")
    scene.save(images / "scene.png")
    scene.transpose(Image.FLIP_LEFT_RIGHT).crop((0, 0, 64, 48)).save(images / "flipped.png")
    return {}


def _kodak_setup(work: Path, kodak: Path | None) -> dict:
    if kodak is None:
        pytest.skip("needs ../shared/datasets/kodak")
    (work.parent / "shared").symlink_to(kodak.parents[1], target_is_directory=True)
    return {}


def _training_setup(work: Path, kodak: Path | None) -> dict:
    """Small folders for --data and --val-data; 20000 steps become 2 (the command is otherwise as written)."""
    scene = Image.open(DATA / "scene-128x96.png")
    for folder in ("photos", "more", "val"):
        (work / folder).mkdir()
        for i in range(2):
            scene.rotate(90 * i, expand=True).save(work / folder / f"{i}.png")
    scene.save(work / "photo.png")
    return {"~/photos": "photos", "~/more": "more", "--steps 20000": "--steps 2", "--val-every 1000": "--val-every 1",
            "-o mine.safetensors": "-o mine.safetensors --prior-steps 20",
            "../shared/datasets/kodak": "val"}


def _quickstart_setup(work: Path, kodak: Path | None) -> dict:
    """The repository's samples/ folder, as a clone has it."""
    shutil.copytree(ROOT / "samples", work / "samples")
    return {}


SHELL_SETUP = {
    "Quickstart": _quickstart_setup,
    "Tokens": _tokens_setup,
    "Compress and decompress a Kodak image": _kodak_setup,
    "Training": _training_setup,
}


def _shell_blocks():
    return [pytest.param(s, b, id=f"{s}-{i}") for i, (s, lang, b) in enumerate(blocks()) if lang == "sh" and not excused(b)]


@pytest.mark.slow
@pytest.mark.parametrize("section, body", _shell_blocks())
def test_shell_blocks_run(section, body, tmp_path):
    from conftest import KODAK

    work = tmp_path / "checkout"
    work.mkdir()
    replacements = SHELL_SETUP[section](work, KODAK if KODAK.is_dir() else None)
    for old, new in replacements.items():
        body = body.replace(old, new)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "HOME": str(tmp_path)}
    hvq_bin = shutil.which("hvq", path=env["PATH"])
    if hvq_bin is None:  # an uninstalled checkout: the same commands through the module
        body = re.sub(r"(?m)^hvq ", f"{sys.executable} -m hvq.cli.main ", body)
    result = subprocess.run("set -e\n" + body, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]


# -- the data-path diagram --------------------------------------------------------------------

SHORT = {
    "hvq": "hvq",
    "pipeline": "hvq.codec.runtime.pipeline",
    "imageio": "hvq.codec.runtime.imageio",
    "tiling": "hvq.codec.runtime.tiling",
    "registry": "hvq.codec.runtime.registry",
    "vqvae": "hvq.codec.model.vqvae",
    "levels": "hvq.bitstream.levels",
    "coder": "hvq.bitstream.coder",
    "container": "hvq.bitstream.container",
}


def _diagram() -> str:
    return next(body for section, language, body in blocks() if language == "text" and body.startswith("compress:"))


def _names(text: str) -> list[str]:
    return re.findall(r"\b((?:%s)(?:\.\w+)+)" % "|".join(SHORT), text)


def test_the_data_path_diagram_names_functions_that_exist():
    names = _names(_diagram())
    assert len(names) >= 20
    for name in names:
        module, *attributes = name.split(".")
        target = importlib.import_module(SHORT[module])
        for attribute in attributes:
            assert hasattr(target, attribute), name
            target = getattr(target, attribute)
        assert callable(target), name


@pytest.mark.parametrize("direction", ["compress", "decompress"])
def test_each_direction_goes_through_the_modules_it_states(direction):
    """Below the public wrapper, the modules each direction opens; at most 7 (issue 16)."""
    text = _diagram()
    part = text.split("\n\n")[0 if direction == "compress" else 1]
    stated = int(re.search(rf"Codec\.{direction}: (\d) modules", part).group(1))
    below = part.split(f"pipeline.Codec.{direction}", 1)[1]
    modules = {name.split(".")[0] for name in _names(f"pipeline.Codec.{direction}" + below)}
    assert len(modules) == stated <= 7, sorted(modules)
