"""The torch-free decoder (codec/runtime/onnx_backend.py, backend.py, onnx_graphs.py): graphs, pixels, choice, errors.

Tiny random models of the product's shape and a top-down (v2-shaped) one:
onnxruntime's decoded 8-bit pixels are within 1 level of torch's at every
level, tiled and untiled; the shipped model's committed graphs decode its
golden file; ``HVQ_BACKEND`` picks the backend, and every refusal is one
``HvqError`` line (exit 1 in the CLI).  Which packages a torch-free
decompress imports is checked in ``tests/test_startup.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("onnxruntime", reason="the onnx decoder needs onnxruntime (pip install 'hvq[light]')")
pytest.importorskip("onnx", reason="writing decoder graphs needs the onnx package (pip install onnx)")

import hvq  # noqa: E402
from hvq.cli.main import main  # noqa: E402
from hvq.codec.runtime import backend, onnx_backend  # noqa: E402
from hvq.codec.runtime.onnx_graphs import write_graphs  # noqa: E402
from hvq.codec.runtime.pipeline import Codec  # noqa: E402
from hvq.codec.runtime.registry import default_model, read_prior  # noqa: E402

from conftest import make_tiny_model  # noqa: E402

DATA = Path(__file__).parent / "data"
SHAPES = {"product": {}, "topdown": {"topdown": True, "level_heads": False, "decoder_blocks": 3}}


def _image(height=72, width=104, seed=0):
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    smooth = np.stack([x * 2, y * 3, (x + y) * 1.5], axis=-1)
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def _max_diff(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


@pytest.fixture(scope="module", params=list(SHAPES))
def with_graphs(request, tmp_path_factory) -> Path:
    path = make_tiny_model(tmp_path_factory.mktemp(f"onnx-{request.param}") / "tiny.safetensors", seed=3,
                           **SHAPES[request.param])
    write_graphs(path)
    return path


@pytest.fixture
def onnx_env(monkeypatch):
    monkeypatch.setenv("HVQ_BACKEND", "onnx")


def test_export_writes_structure_only_graphs_and_a_manifest_naming_the_model(with_graphs):
    manifest = json.loads(onnx_backend.manifest_path(with_graphs).read_text())
    prior = read_prior(with_graphs)
    assert manifest["model_fingerprint"] == prior.fingerprint.hex()
    graphs = onnx_backend.read_graphs(with_graphs, prior.fingerprint)
    assert sorted(graphs.decoders) == sorted((f, 1) for f in prior.config.factors)
    for (factor, _), graph in graphs.decoders.items():
        assert graph.path == onnx_backend.decoder_file(with_graphs, factor) and graph.weights
        assert graph.path.stat().st_size == manifest["decoders"][str(factor)]["bytes"] < 64 * 1024
        expected = tuple(f for f in prior.config.factors if f > factor) if prior.config.topdown else ()
        assert graph.parents == expected


@pytest.mark.parametrize("tile", [1024, 32])
def test_onnx_decodes_every_level_within_one_level_of_torch(with_graphs, tile):
    codec = Codec.for_model(with_graphs, tile)
    data = codec.compress(_image())
    tokens = hvq.decode_tokens(data, model=with_graphs)
    prior = read_prior(with_graphs)
    for factor in prior.config.factors:
        ref = codec.decompress(data, factor)
        got = onnx_backend.decode_level(with_graphs, prior.config, prior.fingerprint, tokens, factor, 1, tile)
        assert got.shape == (72, 104, 3)
        assert _max_diff(got, ref) <= 1, factor


def test_hvq_decompress_with_hvq_backend_onnx_matches_torch(with_graphs, monkeypatch):
    data = Codec.for_model(with_graphs).compress(_image(), levels=(16, 8, 4))
    for factor in (16, 8, 4):
        monkeypatch.setenv("HVQ_BACKEND", "torch")
        ref = hvq.decompress(data, level=factor, model=with_graphs)
        monkeypatch.setenv("HVQ_BACKEND", "onnx")
        got = hvq.decompress(data, level=factor, model=with_graphs)
        assert got.mode == "RGB" and got.size == ref.size and _max_diff(got, ref) <= 1


def test_the_cli_and_the_pillow_plugin_decode_with_onnx(with_graphs, onnx_env, tmp_path):
    from hvq.codec.runtime.pillow_plugin import register_hvq_opener

    data = Codec.for_model(with_graphs).compress(_image())
    (tmp_path / "a.hvq").write_bytes(data)
    ref = np.asarray(Codec.for_model(with_graphs).decompress(data))
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "a.hvq"), "-o", str(tmp_path / "a.png"),
                                       "--model", str(with_graphs), "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert _max_diff(Image.open(tmp_path / "a.png"), ref) <= 1
    register_hvq_opener(model=str(with_graphs))
    try:
        with Image.open(tmp_path / "a.hvq") as im:
            assert _max_diff(im.convert("RGB"), ref) <= 1
    finally:
        register_hvq_opener()


def test_the_shipped_models_graphs_match_it_and_decode_its_golden_file(onnx_env):
    model = default_model()
    prior = read_prior(model)
    graphs = onnx_backend.read_graphs(model, prior.fingerprint)  # refuses graphs of another model
    assert sorted(graphs.decoders) == sorted((f, 1) for f in prior.config.factors)
    assert all(g.path.parent == model.parent and g.path.stat().st_size < 64 * 1024 for g in graphs.decoders.values())
    data = (DATA / "shipped-v1.hvq").read_bytes()
    for factor in (16, 8, 4):
        then = Image.open(DATA / f"shipped-v1-level{factor}.png")
        assert _max_diff(hvq.decompress(data, level=factor), then) <= 1  # the model the file names, found by fingerprint


def test_every_installed_models_graphs_match_it(onnx_env):
    """Each installed model's graphs name its own files (v2.0's were renamed from hvq-default.* when v2.1 shipped)."""
    from hvq.codec.runtime.registry import installed

    models = installed()
    assert {m.path.name for m in models} >= {"hvq-default.safetensors", "hvq-v2.0.safetensors", "hvq-0.2.safetensors"}
    for m in models:
        prior = read_prior(m.path)
        graphs = onnx_backend.read_graphs(m.path, prior.fingerprint)
        assert all(g.path.name.startswith(m.path.stem + ".decoder-") for g in graphs.decoders.values()), m.path.name
    data = (DATA / "model-v2.0-scene.hvq").read_bytes()
    for factor in (16, 8, 4):
        assert _max_diff(hvq.decompress(data, level=factor), Image.open(DATA / f"model-v2.0-scene-level{factor}.png")) <= 1


# -- the choice and its refusals ---------------------------------------------------------


def test_auto_is_torch_when_importable_and_onnx_without_it(monkeypatch, with_graphs):
    monkeypatch.delenv("HVQ_BACKEND", raising=False)
    assert backend.setting() == "auto" and backend.uses_torch()
    monkeypatch.setattr(backend, "importable", lambda name: name != "torch")
    assert not backend.uses_torch()
    data = Codec.for_model(with_graphs).compress(_image())
    assert _max_diff(hvq.decompress(data, model=with_graphs), Codec.for_model(with_graphs).decompress(data)) <= 1


def test_a_bad_hvq_backend_is_one_line(monkeypatch, tiny_model_path, tmp_path):
    monkeypatch.setenv("HVQ_BACKEND", "cuda")
    data = Codec.for_model(tiny_model_path).compress(_image(32, 32))
    with pytest.raises(hvq.HvqConfigError, match=r"^HVQ_BACKEND='cuda' is not one of auto, torch, onnx$"):
        hvq.decompress(data, model=tiny_model_path)
    (tmp_path / "a.hvq").write_bytes(data)
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "a.hvq"), "-o", str(tmp_path / "a.png"),
                                       "--model", str(tiny_model_path)])
    assert result.exit_code == 1 and result.output == "Error: HVQ_BACKEND='cuda' is not one of auto, torch, onnx\n"


def test_a_model_without_graphs_is_refused_under_onnx(onnx_env, tmp_path):
    path = make_tiny_model(tmp_path / "bare.safetensors", seed=1)
    data = Codec.for_model(path).compress(_image(32, 32))
    with pytest.raises(hvq.HvqModelError, match=r"^bare.safetensors has no onnx decoder graphs .*hvq export-graphs"):
        hvq.decompress(data, model=path)
    (tmp_path / "a.hvq").write_bytes(data)
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "a.hvq"), "-o", str(tmp_path / "a.png"),
                                       "--model", str(path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "has no onnx decoder graphs" in result.output
    assert not (tmp_path / "a.png").exists()


def test_graphs_of_another_model_are_refused(onnx_env, tmp_path):
    theirs = write_graphs(make_tiny_model(tmp_path / "a.safetensors", seed=1))
    ours = make_tiny_model(tmp_path / "b.safetensors", seed=2)
    for f in read_prior(ours).config.factors:
        shutil.copy(onnx_backend.decoder_file(theirs.with_name("a.safetensors"), f), onnx_backend.decoder_file(ours, f))
    manifest = json.loads(theirs.read_text())
    for entry in manifest["decoders"].values():
        entry["file"] = entry["file"].replace("a.", "b.", 1)
    onnx_backend.manifest_path(ours).write_text(json.dumps(manifest))
    data = Codec.for_model(ours).compress(_image(32, 32))
    with pytest.raises(hvq.HvqModelError, match=r"^b.graphs.json: graphs were exported from model [0-9a-f]{32}, "
                                                r"but b.safetensors is model [0-9a-f]{32}$"):
        hvq.decompress(data, model=ours)


def test_a_damaged_manifest_is_one_line(onnx_env, with_graphs, tmp_path):
    path = tmp_path / "m.safetensors"
    shutil.copy(with_graphs, path)
    onnx_backend.manifest_path(path).write_text("{not json")
    data = Codec.for_model(path).compress(_image(32, 32))
    with pytest.raises(hvq.HvqModelError, match=r"^m.graphs.json: damaged graph manifest"):
        hvq.decompress(data, model=path)


def test_auto_without_torch_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("HVQ_BACKEND", raising=False)
    path = make_tiny_model(tmp_path / "bare.safetensors", seed=1)
    data = Codec.for_model(path).compress(_image(32, 32))
    monkeypatch.setattr(backend, "importable", lambda name: name not in ("torch", "onnxruntime"))
    with pytest.raises(hvq.HvqConfigError, match=r"^decoding needs torch or onnxruntime: pip install torch, "
                                                 r"or pip install 'hvq\[light\]'$"):
        hvq.decompress(data, model=path)
    monkeypatch.setattr(backend, "importable", lambda name: name != "torch")
    with pytest.raises(hvq.HvqConfigError, match=r"^decoding needs torch \(pip install torch\), or onnx decoder "
                                                 r"graphs beside bare.safetensors"):
        hvq.decompress(data, model=path)


@pytest.fixture(scope="module", params=list(SHAPES))
def deep(request, tmp_path_factory) -> Path:
    """A tiny model whose level 4 has two refinement depths, with its graphs (one per depth)."""
    path = tmp_path_factory.mktemp(f"deep-{request.param}") / "deep.safetensors"
    make_tiny_model(path, seed=4, context=True, depths=((4, 3),), **SHAPES[request.param])
    write_graphs(path)
    return path


@pytest.mark.parametrize("tile", [1024, 32])
def test_onnx_decodes_every_refinement_depth_within_one_level_of_torch(deep, tile):
    codec = Codec.for_model(deep, tile)
    data = codec.compress(_image(), levels="16,8,4:3")
    tokens = hvq.decode_tokens(data, model=deep)
    prior = read_prior(deep)
    for depth in (1, 2, 3):
        ref = codec.decompress(data, 4, depth=depth)
        got = onnx_backend.decode_level(deep, prior.config, prior.fingerprint, tokens, 4, 1, tile, depth)
        assert _max_diff(got, ref) <= 1, depth
    assert onnx_backend.decoder_file(deep, 4, 3).name == "deep.decoder-4-3.onnx"


def test_depths_the_graphs_lack_go_to_torch_or_are_refused_without_it(onnx_env, monkeypatch, deep, tmp_path):
    path = tmp_path / "old.safetensors"  # graphs as written before the model had depths: depth 1 only
    shutil.copy(deep, path)
    manifest = json.loads(onnx_backend.manifest_path(deep).read_text())
    manifest["decoders"] = {k: v for k, v in manifest["decoders"].items() if ":" not in k}
    for entry in manifest["decoders"].values():
        shutil.copy(deep.with_name(entry["file"]), tmp_path / entry["file"].replace("deep.", "old.", 1))
        entry["file"] = entry["file"].replace("deep.", "old.", 1)
    onnx_backend.manifest_path(path).write_text(json.dumps(manifest))
    codec = Codec.for_model(path)
    data = codec.compress(_image(32, 32), levels="16,8,4:2")
    assert _max_diff(hvq.decompress(data, model=path), codec.decompress(data)) == 0  # torch decoded depth 2
    assert _max_diff(hvq.decompress(data, model=path, depth=1), codec.decompress(data, depth=1)) <= 1  # onnx
    monkeypatch.setattr(backend, "importable", lambda name: name != "torch")
    with pytest.raises(hvq.HvqConfigError, match=r"^level 4:2 \(a refinement depth\) has no onnx decoder graph beside "
                                                 r"old.safetensors: pip install torch, .*--depth 1\)$"):
        hvq.decompress(data, model=path)
    assert _max_diff(hvq.decompress(data, model=deep), codec.decompress(data)) <= 1  # the full graphs: onnx


def test_export_graphs_command_writes_them_and_names_the_manifest(tmp_path):
    path = make_tiny_model(tmp_path / "m.safetensors", seed=5)
    result = CliRunner().invoke(main, ["export-graphs", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{onnx_backend.manifest_path(path)}: decoder graphs of m.safetensors")
    assert onnx_backend.has_graphs(path)
    result = CliRunner().invoke(main, ["export-graphs", str(DATA / "scene-128x96.png")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and result.output.startswith("Error: ")


def test_a_damaged_graph_is_one_line(onnx_env, with_graphs, tmp_path):
    path = tmp_path / "m.safetensors"
    shutil.copy(with_graphs, path)
    manifest = json.loads(onnx_backend.manifest_path(with_graphs).read_text())
    for entry in manifest["decoders"].values():
        entry["file"] = entry["file"].replace("tiny.", "m.", 1)
        (tmp_path / entry["file"]).write_bytes(b"\x08\x07 not a graph")
    onnx_backend.manifest_path(path).write_text(json.dumps(manifest))
    data = Codec.for_model(path).compress(_image(32, 32))
    with pytest.raises(hvq.HvqModelError, match=r"^m.decoder-4.onnx: onnxruntime refuses the graph: [^\n]+$"):
        hvq.decompress(data, model=path)
