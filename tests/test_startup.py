"""Start-up: what the runtime commands import, hvq's own layers against CompressAI's, batches over threads.

Each command runs in a fresh interpreter, and the test asserts which heavy
packages are absent from ``sys.modules`` afterwards; it measures no time
(``benchmarks/startup.py`` does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hvq.cli.main import main
from hvq.codec.model import layers

DATA = Path(__file__).parent / "data"
SCENE = DATA / "scene-128x96.png"
# What bench, train and plotting import, and the runtime must not (onnx, onnxruntime: the torch-free decoder's,
# HVQ_BACKEND=onnx, and the study's).
HEAVY = ("compressai", "torchvision", "matplotlib", "scipy", "pandas", "torch_geometric", "sympy", "onnx", "onnxruntime")
# What the torch-free decoder must not import: torch and the rest of HEAVY but onnxruntime, which it runs on.
NOT_LIGHT = tuple(m for m in HEAVY if m != "onnxruntime") + ("torch",)
# A probe prefix that makes torch unimportable, as on a machine with only hvq[light]'s packages.
NO_TORCH = "import sys; sys.modules['torch'] = None\n"

PROBE = """
import json, sys
from hvq.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(m.split(".")[0] for m, v in sys.modules.items() if v is not None)))  # None: blocked
"""

PLUGIN_PROBE = """
import json, sys
from PIL import Image
from hvq.codec.runtime.pillow_plugin import register_hvq_opener
register_hvq_opener(model=sys.argv[2])
with Image.open(sys.argv[1]) as im:
    im.load()
    assert im.size == (128, 96)
print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""


def imported_by(code: str, *args, env: dict | None = None) -> set[str]:
    # the developer's own HVQ_BACKEND must not choose the probes' backend: each probe that wants one says so
    environ = {**{k: v for k, v in os.environ.items() if k != "HVQ_BACKEND"}, **(env or {})}
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=environ)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def hvq_file(tiny_model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("startup") / "scene.hvq"
    result = CliRunner().invoke(main, ["compress", str(SCENE), "-o", str(out), "--model", str(tiny_model_path)])
    assert result.exit_code == 0, result.output
    return out


def test_compress_imports_no_heavy_package(tiny_model_path, tmp_path):
    loaded = imported_by(PROBE, "compress", SCENE, "-o", tmp_path / "a.hvq", "--model", tiny_model_path)
    assert "torch" in loaded  # the probe did run the transforms
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_decompress_imports_no_heavy_package(tiny_model_path, hvq_file, tmp_path):
    loaded = imported_by(PROBE, "decompress", hvq_file, "-o", tmp_path / "a.png", "--model", tiny_model_path)
    assert (tmp_path / "a.png").exists()
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


@pytest.fixture(scope="module")
def model_with_graphs(tiny_model_path, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="the torch-free decoder needs onnxruntime (pip install 'hvq[light]')")
    pytest.importorskip("onnx", reason="writing decoder graphs needs the onnx package (pip install onnx)")
    from hvq.codec.runtime.onnx_graphs import write_graphs

    path = tmp_path_factory.mktemp("graphs") / "tiny.safetensors"
    shutil.copy(tiny_model_path, path)
    write_graphs(path)
    return path


def test_decompress_with_hvq_backend_onnx_imports_no_torch(model_with_graphs, hvq_file, tmp_path):
    loaded = imported_by(PROBE, "decompress", hvq_file, "-o", tmp_path / "a.png", "--model", model_with_graphs,
                         env={"HVQ_BACKEND": "onnx"})
    assert (tmp_path / "a.png").exists()
    assert "onnxruntime" in loaded  # the probe did run the decoder
    assert loaded.isdisjoint(NOT_LIGHT), loaded & set(NOT_LIGHT)


def test_decompress_without_torch_installed_decodes_with_onnx(model_with_graphs, hvq_file, tmp_path):
    loaded = imported_by(NO_TORCH + PROBE, "decompress", hvq_file, "-o", tmp_path / "a.png", "--model",
                         model_with_graphs, env={"HVQ_BACKEND": ""})  # auto
    assert (tmp_path / "a.png").exists() and "onnxruntime" in loaded
    assert loaded.isdisjoint(NOT_LIGHT), loaded & set(NOT_LIGHT)


@pytest.mark.parametrize("command", [["compress", str(SCENE)], ["tokens", str(SCENE)], ["train", "--data", "."]])
def test_a_command_that_needs_torch_says_so_in_one_line_without_it(command, tmp_path):
    """On a decoder-only install (no torch), compress, tokens and train name what to install, exit 1, no traceback."""
    done = subprocess.run([sys.executable, "-c", NO_TORCH + "from hvq.cli.main import main; main()", *command,
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: hvq {command[0]} needs torch, which is not installed: pip"), lines
    assert not (tmp_path / "out").exists()


def test_pillow_plugin_with_hvq_backend_onnx_imports_no_torch(model_with_graphs, hvq_file):
    loaded = imported_by(PLUGIN_PROBE, hvq_file, model_with_graphs, env={"HVQ_BACKEND": "onnx"})
    assert "onnxruntime" in loaded and loaded.isdisjoint(NOT_LIGHT), loaded & set(NOT_LIGHT)


def test_hvq_decompress_with_hvq_backend_onnx_imports_no_torch(model_with_graphs, hvq_file):
    code = ("import json, sys, hvq\nimage = hvq.decompress(sys.argv[1], model=sys.argv[2])\nassert image.size == (128, 96)\n"
            "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))")
    loaded = imported_by(code, hvq_file, model_with_graphs, env={"HVQ_BACKEND": "onnx"})
    assert "onnxruntime" in loaded and loaded.isdisjoint(NOT_LIGHT), loaded & set(NOT_LIGHT)


def test_info_imports_no_torch(hvq_file):
    loaded = imported_by(PROBE, "info", hvq_file)
    assert loaded.isdisjoint(HEAVY + ("torch",)), loaded & set(HEAVY + ("torch",))


def test_strip_imports_no_heavy_package(hvq_file, tmp_path):
    loaded = imported_by(PROBE, "strip", hvq_file, "--keep", "16", "-o", tmp_path / "s.hvq")
    assert (tmp_path / "s.hvq").exists()
    assert loaded.isdisjoint(HEAVY + ("torch",)), loaded & set(HEAVY + ("torch",))


def test_tokens_of_an_image_imports_no_heavy_package(tiny_model_path, tmp_path):
    loaded = imported_by(PROBE, "tokens", SCENE, "-o", tmp_path / "t", "--model", tiny_model_path)
    assert (tmp_path / "t" / "manifest.json").exists()
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_tokens_of_a_file_imports_no_torch(tiny_model_path, hvq_file, tmp_path):
    # a file's tokens are entropy decoding alone: the prior's integer tables, no transform
    loaded = imported_by(PROBE, "tokens", hvq_file, "-o", tmp_path / "t", "--model", tiny_model_path)
    assert (tmp_path / "t" / "manifest.json").exists()
    assert loaded.isdisjoint(HEAVY + ("torch",)), loaded & set(HEAVY + ("torch",))


def test_pillow_plugin_imports_no_heavy_package(tiny_model_path, hvq_file):
    loaded = imported_by(PLUGIN_PROBE, hvq_file, tiny_model_path)
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_help_imports_no_torch():
    loaded = imported_by(PROBE, "--help")
    assert loaded.isdisjoint(HEAVY + ("torch", "numpy")), loaded & set(HEAVY + ("torch", "numpy"))


def _pairs():
    return [
        (lambda: layers.ResidualBlock(8, 8), "ResidualBlock", (8, 8)),
        (lambda: layers.ResidualBlock(8, 12), "ResidualBlock", (8, 12)),
        (lambda: layers.subpel_conv3x3(8, 6, 2), "subpel_conv3x3", (8, 6, 2)),
        (lambda: layers.conv3x3(8, 6, 2), "conv3x3", (8, 6, 2)),
        (lambda: layers.conv1x1(8, 6), "conv1x1", (8, 6)),
    ]


@pytest.mark.parametrize("ours, name, args", _pairs(), ids=[p[1] + str(p[2]) for p in _pairs()])
def test_own_layers_have_compressais_parameters_and_outputs(ours, name, args):
    """Checkpoints from when hvq imported compressai.layers load into hvq's own blocks and compute the same."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compressai_layers = pytest.importorskip("compressai.layers")
    torch.manual_seed(0)
    theirs = getattr(compressai_layers, name)(*args)
    mine = ours()
    ref = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in mine.state_dict().items()} == ref
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 8, 12, 10)
    with torch.no_grad():
        assert torch.equal(mine(x), theirs(x))


def test_batch_over_threads_writes_the_same_files(tiny_model_path, tmp_path, photo):
    """Files coded side by side on worker threads are byte-identical to one-at-a-time coding."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        photo.rotate(90 * i, expand=True).save(src / f"p{i}.png")
    runner = CliRunner()
    outs = {}
    for threads in (1, 3):
        out = tmp_path / f"t{threads}"
        result = runner.invoke(main, ["compress", str(src), "-d", str(out), "--threads", str(threads),
                                      "--model", str(tiny_model_path)])
        assert result.exit_code == 0, result.output
        outs[threads] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        decoded = tmp_path / f"d{threads}"
        result = runner.invoke(main, ["decompress", *map(str, sorted(out.iterdir())), "-d", str(decoded),
                                      "--threads", str(threads), "--model", str(tiny_model_path)])
        assert result.exit_code == 0, result.output
        outs[threads].update({p.name: p.read_bytes() for p in sorted(decoded.iterdir())})
    assert len(outs[1]) == 10 and outs[1] == outs[3]


def test_batch_decompress_reports_a_bad_file_and_goes_on(tiny_model_path, hvq_file, tmp_path):
    bad = tmp_path / "bad.hvq"
    bad.write_bytes(b"not an hvq file")
    result = CliRunner().invoke(main, ["decompress", str(bad), str(hvq_file), "-d", str(tmp_path / "out"),
                                       "--threads", "2", "--model", str(tiny_model_path)])
    assert result.exit_code == 1
    assert f"Error: {bad}:" in result.output and "1 of 2 files failed" in result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["scene.png"]


def test_decompress_refuses_output_for_several_inputs(hvq_file, tmp_path):
    result = CliRunner().invoke(main, ["decompress", str(hvq_file), str(hvq_file), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "-o/--output takes one input" in result.output


def test_the_startup_benchmark_measures_the_onnx_decoder_for_this_checkout_only(tmp_path):
    from hvq.benchmarks import startup

    assert startup.ONNX_COMMANDS[1] in startup.commands(SCENE, tmp_path, onnx=True)
    assert not set(startup.ONNX_COMMANDS) & set(startup.commands(SCENE, tmp_path))
    row = {"seconds_median": 1.0, "seconds_min": 1.0, "peak_rss_mb_median": 100.0, "runs": 1}
    # the interpreter and torch floors are measured with the first variant only, as measure() does
    before = {name: row for name in startup.commands(SCENE, tmp_path)}
    mine = {name: row for name in startup.commands(SCENE, tmp_path, onnx=True) if name not in before or "hvq" in name}
    report = {"results": {"old": before, "this checkout": mine}, "image": "x.png", "machine": "m", "torch": "t",
              "python": "p", "load_before": (1.0,), "load_after": (1.0,)}
    table = startup.markdown(report)
    line = next(line for line in table.splitlines() if "HVQ_BACKEND=onnx" in line)
    assert line.startswith("| `hvq decompress (HVQ_BACKEND=onnx)` | | |")  # the old hvq has no onnx decoder
