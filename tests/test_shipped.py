"""End to end with the shipped model on Kodak images (marked slow: a few seconds each)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import hvq
from hvq.codec.runtime.pipeline import Codec
from hvq.codec.runtime.weights import DEFAULT_MODEL, load_model

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
# Per-image floors, a margin below the Kodak-mean floors of the 0.1 issue
# (16: 20 dB, 8: 22 dB, 4: 24 dB); the means are in the model card.
PSNR_FLOOR = {16: 19.0, 8: 21.0, 4: 23.0}


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def codec():
    return Codec.for_model(None)


def test_shipped_model_loads_offline_from_the_package(codec):
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size < 16 * 2**20
    assert codec.model.config.factors == (4, 8, 16)
    assert load_model().fingerprint == codec.model.fingerprint


@pytest.mark.parametrize("name", ["kodim04.png", "kodim23.png"])
def test_kodak_round_trip_per_level(codec, kodak_dir, name):
    path = kodak_dir / name
    original = Image.open(path).convert("RGB")
    data = hvq.compress(path)
    assert data == hvq.compress(path)  # identical bytes twice
    info = hvq.inspect(data)
    for level in info.levels:
        assert level.bits_per_index < math.log2(info.codebook_size)
        out = hvq.decompress(data, level=level.factor)
        assert out.size == original.size
        assert psnr(original, out) >= PSNR_FLOOR[level.factor], level.factor


def test_decoding_is_identical_across_thread_counts(codec, kodak_dir):
    data = codec.compress(kodak_dir / "kodim15.png", (8,))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = np.asarray(codec.decompress(data))
        torch.set_num_threads(2)
        two = np.asarray(codec.decompress(data))
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two)


def test_readme_commands_run(tmp_path):
    """The README's quickstart, run as written from a checkout holding only its samples/ folder (no ../shared)."""
    text = README.read_text()
    command = re.search(r"```sh\n(hvq compress .*?)\n```", text, re.S).group(1)
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "samples").symlink_to(README.parent / "samples", target_is_directory=True)
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run("set -e\n" + command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outputs = {p.suffix for p in work.iterdir()}
    assert {".hvq", ".png"} <= outputs


def test_cli_compress_decompress_with_the_default_model(kodak_dir, tmp_path):
    from hvq.cli.main import main

    runner = CliRunner()
    out = tmp_path / "k.hvq"
    assert runner.invoke(main, ["compress", str(kodak_dir / "kodim07.png"), "-o", str(out), "--levels", "16"]).exit_code == 0
    png = tmp_path / "k.png"
    assert runner.invoke(main, ["decompress", str(out), "-o", str(png)]).exit_code == 0
    assert Image.open(png).size == (768, 512)


def test_readme_python_example_runs(tmp_path, monkeypatch, photo):
    block = re.search(r"```python\n(.*?)\n```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    photo.resize((96, 80)).save("photo.png")
    namespace: dict = {}
    exec(block, namespace)
    assert namespace["image"].size == (96, 80)
    assert [lv.factor for lv in namespace["info"].levels] == [16, 8, 4]


def test_shipped_prior_makes_progressive_files_almost_free(codec, kodak_dir):
    """The context prior's targets on two Kodak images (the means over all 24 are in benchmarks/results/prior)."""
    from hvq.bitstream.container import CODER_CONTEXT_PARENT, parse

    assert codec.model.prior.context, "the shipped model carries the context prior"
    for name in ("kodim04.png", "kodim23.png"):
        whole = codec.compress(kodak_dir / name)
        finest = codec.compress(kodak_dir / name, levels=(4,))
        assert len(whole) <= 1.10 * len(finest), name
        parsed = parse(whole)
        assert [c.coder for c in parsed.levels][1:] == [CODER_CONTEXT_PARENT] * 2
        for chunk in parsed.levels:  # v2's coarsest level uses 70% of the shared codebook and has no parent to predict from
            share = 0.9 if chunk.factor == 16 else 0.7
            assert chunk.bits_per_index <= share * math.log2(codec.model.config.codebook_size), (name, chunk.factor)
