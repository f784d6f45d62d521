"""The onnxruntime study (benchmarks/onnx_runtime.py): the exported transforms agree with torch.

The decoder side is the product's (tests/test_onnx_backend.py tests it as
shipped); these tests pin what the study adds on tiny models, the product's
shape and a v2-shaped one (top-down, one code-space head, three coarse
blocks): identical indices from the study's encoder graph, the product's
decoder pixels within 1 level of ``decode_tiled`` on the same windows (tiled
and untiled), graphs without weights, and the study's report.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnxruntime study needs onnxruntime (pip install onnxruntime onnx)")
pytest.importorskip("onnx", reason="the onnxruntime study exports with the onnx package (pip install onnxruntime onnx)")

from hvq.benchmarks import onnx_runtime as study  # noqa: E402
from hvq.codec.runtime.tiling import decode_tiled, encode_tiled  # noqa: E402
from hvq.codec.runtime.weights import load_model  # noqa: E402

from conftest import make_tiny_model  # noqa: E402

SHAPES = {"product": {}, "v2": {"topdown": True, "level_heads": False, "decoder_blocks": 3}}


@pytest.fixture(scope="module", params=list(SHAPES))
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"onnx-{request.param}")
    loaded = load_model(make_tiny_model(folder / "tiny.safetensors", seed=3, **SHAPES[request.param]))
    study.export_graphs(loaded.net, loaded.path, folder / "graphs", loaded.fingerprint)
    return loaded, folder / "graphs"


def _image(height=72, width=104, seed=0):
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    smooth = np.stack([x * 2, y * 3, (x + y) * 1.5], axis=-1)
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("tile", [1024, 32])
def test_exported_transforms_agree_with_torch(exported, tile):
    loaded, graphs = exported
    net, config = loaded.net, loaded.config
    weights = study.weights_of(loaded.path)
    pixels = _image()
    grids = encode_tiled(net, pixels, tile)
    decoders = study.decoder_sessions(graphs, config, loaded.fingerprint)
    onnx_grids = study.onnx_encode_tiled(study.session(graphs / study.ENCODER, weights), config, pixels, tile)
    for f in config.factors:
        assert np.array_equal(onnx_grids[f], grids[f]), f  # identical indices: identical file bytes
        parents = {g: grids[g] for g in net.parents_needed(f)} or None
        ref = decode_tiled(net, grids[f], f, pixels.shape[1], pixels.shape[0], tile, parents)
        got = study.onnx_backend.decode_tiled(decoders[f], config, grids[f], f, pixels.shape[1], pixels.shape[0],
                                              tile, parents)
        assert np.abs(ref.astype(np.int16) - got.astype(np.int16)).max() <= 1, f


def test_near_ties_name_each_mismatched_cell_with_both_distances(exported):
    loaded, _ = exported
    pixels = _image()
    grids = encode_tiled(loaded.net, pixels)
    other = {f: g.copy() for f, g in grids.items()}
    f = loaded.config.factors[0]
    other[f][1, 2] = (grids[f][1, 2] + 1) % loaded.config.codebook_size
    (cell,) = study.near_ties(loaded.net, pixels, grids, other)
    assert (cell["level"], cell["row"], cell["col"], cell["onnx_index"]) == (f, 1, 2, int(other[f][1, 2]))
    assert cell["relative_gap"] >= 0  # torch's nearest codeword is the nearer one, up to rounding


def test_the_graphs_hold_no_weights(exported):
    loaded, graphs = exported
    manifest = study.json.loads((graphs / study.MANIFEST).read_text())
    assert manifest["model_fingerprint"] == loaded.fingerprint_hex
    for name, graph in manifest["graphs"].items():
        assert (graphs / name).stat().st_size == graph["bytes"] < graph["bytes_with_weights"]
        assert graph["weights"] and graph["external"] == len(graph["weights"])


def test_the_study_writes_its_report(tiny_model_path, tmp_path, photo):
    from click.testing import CliRunner

    kodak = tmp_path / "kodak"
    kodak.mkdir()
    photo.resize((96, 64)).save(kodak / "kodim01.png")
    out = tmp_path / "onnx.json"
    result = CliRunner().invoke(study.main, [str(kodak), "--runs", "1", "--fusion-reps", "1", "--tile", "32",
                                             "--model", str(tiny_model_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = study.json.loads(out.read_text())
    row = report["agreement"]["per_image"][0]
    assert set(row["index_mismatches"].values()) == {0} and max(row["max_pixel_diff"].values()) <= 1
    assert report["cold"]["max_pixel_diff_of_the_two_pngs"] <= 1
    assert all(v["max_pixel_diff_vs_eager"] == 0 for level in report["fusion"]["levels"].values() for v in level.values())
    table = out.with_suffix(".md").read_text()
    assert "hvq decompress (HVQ_BACKEND=onnx)" in table and "jit.optimize_for_inference" in table
