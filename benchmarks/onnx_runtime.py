"""onnxruntime as a torch-free runtime for the transforms (issue 15, must-have 3): agreement, speed, memory.

The study exports the shipped model's transforms with torch's TorchScript
exporter (``torch.onnx.export(..., dynamo=False)``, height and width
dynamic) and runs them with onnxruntime's CPU provider:

- the encoder: image -> every level's indices (the nearest codeword, argmin
  inside the graph), compared index by index with ``encode_tiled``;
- one decoder per level: indices (and a top-down model's coarser indices)
  -> image in [0, 1], decoded window by window with the halos of
  ``hvq.codec.runtime.windows`` and compared, as 8-bit pixels, with
  ``decode_tiled``; once more with small tiles, so that the tiled paths of
  both backends are compared too.

The graphs hold no weights.  Every initializer that is a tensor of the
model file is left as an external reference, and the session is handed the
file's tensors (widened to float32, as ``weights.py`` widens them) with
``SessionOptions.add_external_initializers`` before it optimises the graph:
the .onnx files are the architecture alone (a few KB), and the weights stay
in the one fingerprinted .safetensors file.

Cold processes (one per command, round-robin, median wall time and the
child's ``ru_maxrss``): ``import torch`` and ``import onnxruntime`` as the
floors, the product's ``hvq decompress`` of a Kodak file, and a torch-free
decompress (``decode_file``: the bitstream, the prior tables and
onnxruntime; it checks that torch never entered ``sys.modules``)::

    python -m hvq.benchmarks.onnx_runtime /work/shared/datasets/kodak -o benchmarks/results/onnx/onnx.json

This module imports torch only inside the functions that export or run the
torch side, so a child process can use ``decode_file`` without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from hvq.benchmarks.reports import machine, write_report
from hvq.benchmarks.startup import child_env, run_once
from hvq.codec.runtime.windows import DEFAULT_TILE, check_tile, cut, decoder_halo, encoder_halo, windows

MISSING = "the onnxruntime study needs onnxruntime and onnx: pip install onnxruntime onnx"
ENCODER = "encoder.onnx"
MANIFEST = "graphs.json"
OPSET = 17


def decoder_name(factor: int) -> str:
    return f"decoder-{factor}.onnx"


# -- export (torch, onnx) ---------------------------------------------------------------


def export_graphs(net, folder: Path, fingerprint: bytes) -> dict[str, dict]:
    """The encoder's and every level's decoder graph in ``folder``, weights left external; their sizes.

    Returns {file name: {"bytes": structure-only size, "bytes_with_weights":
    the same graph with its float32 weights inside, "external": how many
    initializers come from the model file, "weights": their names}}, also
    written to the folder's manifest with the model's fingerprint.
    """
    import io
    import warnings

    import onnx
    import torch
    from onnx.external_data_helper import set_external_data

    class Encode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):  # (1, 3, H, W) in [0, 1] -> per level (1, H/f, W/f) int64
            indices = self.net.encode(x)
            return tuple(indices[f] for f in self.net.config.factors)

    class Decode(torch.nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.net, self.factor = net, factor

        def forward(self, indices, *parents):  # (1, h, w) int64 [, coarser levels'] -> (1, 3, H, W)
            needed = self.net.parents_needed(self.factor)
            return self.net.decode(indices, self.factor, dict(zip(needed, parents)) or None)

    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    factors = net.config.factors
    m = net.config.max_factor
    jobs = [(ENCODER, Encode(), (torch.rand(1, 3, 4 * m, 4 * m),), ["image"],
             [f"indices_{f}" for f in factors],
             {"image": {2: "height", 3: "width"},
              **{f"indices_{f}": {1: f"rows_{f}", 2: f"cols_{f}"} for f in factors}})]
    for f in factors:
        needed = net.parents_needed(f)
        args = tuple(torch.zeros(1, 4 * m // g, 4 * m // g, dtype=torch.int64) for g in (f, *needed))
        names = ["indices"] + [f"parent_{g}" for g in needed]
        axes = {name: {1: f"rows_{g}", 2: f"cols_{g}"} for name, g in zip(names, (f, *needed))}
        jobs.append((decoder_name(f), Decode(f), args, names, ["image"], {**axes, "image": {2: "height", 3: "width"}}))
    sizes = {}
    for name, module, args, inputs, outputs, axes in jobs:
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on traced integer shapes
            torch.onnx.export(module.eval(), args, buffer, dynamo=False, opset_version=OPSET, do_constant_folding=False,
                              input_names=inputs, output_names=outputs, dynamic_axes=axes)
        model = onnx.load_from_string(buffer.getvalue())
        renamed = {}
        for init in model.graph.initializer:
            if init.name in state:
                renamed[init.name] = init.name[len("net."):]  # the model file's tensor name
                init.name = renamed[init.name]
                set_external_data(init, location="model.safetensors")
                init.ClearField("raw_data")
                init.data_location = onnx.TensorProto.EXTERNAL
        for node in model.graph.node:
            for i, value in enumerate(node.input):
                node.input[i] = renamed.get(value, value)
        onnx.helper.set_model_props(model, {"hvq_model_fingerprint": fingerprint.hex()})
        data = model.SerializeToString()
        (folder / name).write_bytes(data)
        sizes[name] = {"bytes": len(data), "bytes_with_weights": len(buffer.getvalue()),
                       "external": len(renamed), "weights": sorted(renamed.values())}
    (folder / MANIFEST).write_text(json.dumps({"model_fingerprint": fingerprint.hex(), "graphs": sizes}, indent=1))
    return sizes


# -- the torch-free side (numpy, safetensors, onnxruntime) -----------------------------------


def weights_of(model_path: Path, names=None) -> dict[str, np.ndarray]:
    """The model file's network tensors (or those in ``names``) as float32, as ``weights.py`` widens them."""
    from safetensors import safe_open

    from hvq.bitstream.prior_tables import CONTEXT_PREFIX, STATIC_PREFIX

    with safe_open(str(model_path), "numpy") as f:
        keys = [k for k in f.keys() if not k.startswith((STATIC_PREFIX, CONTEXT_PREFIX))] if names is None else names
        return {k: f.get_tensor(k).astype(np.float32) for k in keys}


def session(graph: Path, weights: dict[str, np.ndarray], threads: int = 1):
    """An onnxruntime session of a structure-only graph, its external initializers taken from ``weights``.

    Which tensors a graph takes is in the folder's manifest (onnxruntime
    refuses a name the graph does not hold, and reading the graph's own list
    would need the onnx package at run time).
    """
    import onnxruntime as ort

    manifest = json.loads((graph.parent / MANIFEST).read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    names = manifest["graphs"][graph.name]["weights"]
    options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(weights[n]) for n in names])
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def onnx_decode_tiled(sess, config, grid: np.ndarray, factor: int, width: int, height: int, tile: int = DEFAULT_TILE,
                      parents: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """``tiling.decode_tiled`` with an onnxruntime decoder: the same windows, crops and rounding."""
    check_tile(tile, config.max_factor)
    cells = max(1, tile // factor)
    rows, cols = grid.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    for w in windows(rows, cols, cells, decoder_halo(config, factor, parents)):
        top, left = w.top * factor, w.left * factor
        if top >= height or left >= width:
            continue
        feed = {"indices": cut(grid, w)[None]}
        for g, p in (parents or {}).items():
            feed[f"parent_{g}"] = cut(p, w, g // factor)[None]
        x_hat = sess.run(None, feed)[0][0]  # (3, h, w) in [0, 1]
        y0, x0 = (w.top - w.win_top) * factor, (w.left - w.win_left) * factor
        bottom, right = min(w.bottom * factor, height), min(w.right * factor, width)
        crop = x_hat[:, y0 : y0 + bottom - top, x0 : x0 + right - left]
        # to_pixels: round(x * 255) half to even (torch.round and np.rint alike), clamped
        rounded = np.clip(np.rint(crop * np.float32(255.0)), 0, 255).astype(np.uint8)
        out[top:bottom, left:right] = rounded.transpose(1, 2, 0)
    return out


def onnx_encode_tiled(sess, config, image: np.ndarray, tile: int = DEFAULT_TILE) -> dict[int, np.ndarray]:
    """``tiling.encode_tiled`` with an onnxruntime encoder (depth 1): the same padding, windows and crops."""
    m = config.max_factor
    check_tile(tile, m)
    h, w_ = image.shape[:2]
    padded = np.pad(image, ((0, -h % m), (0, -w_ % m), (0, 0)), mode="edge")  # imageio.pad_to_multiple
    height, width = padded.shape[:2]
    grids = {f: np.empty((height // f, width // f), dtype=np.uint16) for f in config.factors}
    for w in windows(height, width, tile, encoder_halo(m)):
        window = padded[w.win_top : w.win_bottom, w.win_left : w.win_right]
        x = (window.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0))  # imageio.to_tensor
        for f, indices in zip(config.factors, sess.run(None, {"image": np.ascontiguousarray(x)})):
            grids[f][w.top // f : w.bottom // f, w.left // f : w.right // f] = indices[
                0, (w.top - w.win_top) // f : (w.bottom - w.win_top) // f,
                (w.left - w.win_left) // f : (w.right - w.win_left) // f]
    return grids


def decode_file(path: str, graphs: str, model_path: str, output: str) -> None:
    """A torch-free decompress of a .hvq file's finest level to a PNG (what a light runtime would run).

    The bitstream and the prior tables are numpy and constriction; the
    transform is onnxruntime.  Exits with an error if torch was imported.
    """
    from PIL import Image

    from hvq.bitstream.container import read_file
    from hvq.bitstream.levels import read_tokens, stored_levels
    from hvq.codec.model.config import ModelConfig
    from hvq.codec.runtime.registry import read_prior
    from safetensors import safe_open

    model = read_prior(model_path)  # the fingerprints checked, the prior's integer tables
    with safe_open(model_path, "numpy") as f:
        config = ModelConfig.from_json(f.metadata()["config"])
    parsed = read_file(Path(path).read_bytes())
    if parsed.header.model_fingerprint != model.fingerprint:
        raise SystemExit("file was made with another model")
    factor = stored_levels(parsed, None, False)[-1]
    needed = config_parents(config, factor)
    tokens = read_tokens(parsed, (factor, *needed), model.prior)
    graph = Path(graphs) / decoder_name(factor)
    manifest = json.loads((graph.parent / MANIFEST).read_text())
    if manifest["model_fingerprint"] != model.fingerprint.hex():
        raise SystemExit("the graphs were exported from another model")
    # onnxruntime's own thread count (0: the cores), as the torch child runs with torch's
    sess = session(graph, weights_of(Path(model_path), manifest["graphs"][graph.name]["weights"]), threads=0)
    pixels = onnx_decode_tiled(sess, config, tokens.grid(factor), factor, tokens.width, tokens.height,
                               parents={g: tokens.grid(g) for g in needed} or None)
    Image.fromarray(pixels, "RGB").save(output)
    if "torch" in sys.modules:
        raise SystemExit("torch was imported")


def config_parents(config, factor: int) -> tuple[int, ...]:
    """``net.parents_needed`` from the config alone."""
    return tuple(f for f in config.factors if f > factor) if config.topdown else ()


# -- the study -------------------------------------------------------------------------


def near_ties(net, pixels: np.ndarray, grids: dict, other: dict) -> list[dict]:
    """Each cell where two backends chose different codewords: both codewords' distances to torch's latent.

    The distances are recomputed in float64, so they say which codeword is
    really nearer and by how little (a relative gap near float32's 1e-7
    is a tie that rounding decides).
    """
    import torch

    from hvq.codec.runtime.imageio import pad_to_multiple, to_tensor

    with torch.inference_mode():
        latents = net._latents(to_tensor(pad_to_multiple(pixels, net.config.max_factor)))
    cells = []
    for f, z in zip(net.config.factors, latents):
        embed = net.codebook_of(f).embed.double()
        for r, c in zip(*np.nonzero(grids[f] != other[f])):
            vector = z[0, :, r, c].double()
            ours, theirs = int(grids[f][r, c]), int(other[f][r, c])
            d_ours = float(((vector - embed[ours]) ** 2).sum())
            d_theirs = float(((vector - embed[theirs]) ** 2).sum())
            cells.append({"level": f, "row": int(r), "col": int(c), "torch_index": ours, "onnx_index": theirs,
                          "torch_distance": d_ours, "onnx_distance": d_theirs,
                          "relative_gap": (d_theirs - d_ours) / max(d_ours, d_theirs)})
    return cells


def agreement(loaded, folder: Path, images: list[Path], small_tile: int) -> dict:
    """Index mismatches (encoder) and 8-bit pixel differences (decoders) of onnxruntime against torch, with times."""
    from PIL import Image

    from hvq.codec.runtime.tiling import decode_tiled, encode_tiled

    net, config = loaded.net, loaded.config
    weights = weights_of(Path(loaded.path))
    encoder = session(folder / ENCODER, weights)
    decoders = {f: session(folder / decoder_name(f), weights) for f in config.factors}
    per_image = []
    times = {"torch_encode": 0.0, "onnx_encode": 0.0, **{f"torch_decode_{f}": 0.0 for f in config.factors},
             **{f"onnx_decode_{f}": 0.0 for f in config.factors}}
    for path in images:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        height, width = pixels.shape[:2]
        t = time.perf_counter()
        grids = encode_tiled(net, pixels)
        times["torch_encode"] += time.perf_counter() - t
        t = time.perf_counter()
        ort_grids = onnx_encode_tiled(encoder, config, pixels)
        times["onnx_encode"] += time.perf_counter() - t
        row = {"image": path.name, "indices": {f: int(grids[f].size) for f in config.factors},
               "index_mismatches": {f: int((grids[f] != ort_grids[f]).sum()) for f in config.factors},
               "max_pixel_diff": {}, "pixels_differing": {}}
        if any(row["index_mismatches"].values()):
            row["mismatched_cells"] = near_ties(net, pixels, grids, ort_grids)
        for f in config.factors:
            parents = {g: grids[g] for g in net.parents_needed(f)} or None
            t = time.perf_counter()
            ref = decode_tiled(net, grids[f], f, width, height, parents=parents)
            times[f"torch_decode_{f}"] += time.perf_counter() - t
            t = time.perf_counter()
            got = onnx_decode_tiled(decoders[f], config, grids[f], f, width, height, parents=parents)
            times[f"onnx_decode_{f}"] += time.perf_counter() - t
            diff = np.abs(ref.astype(np.int16) - got.astype(np.int16))
            row["max_pixel_diff"][f] = int(diff.max())
            row["pixels_differing"][f] = int((diff > 0).sum())
        per_image.append(row)
        click.echo(f"{path.name}: index mismatches {row['index_mismatches']}, max pixel diff {row['max_pixel_diff']}",
                   err=True)
    # the tiled paths: the first image with small tiles, each backend against its own untiled decode and each other
    pixels = np.asarray(Image.open(images[0]).convert("RGB"))
    height, width = pixels.shape[:2]
    grids = encode_tiled(net, pixels)
    tiled = {"image": images[0].name, "tile": small_tile,
             "index_mismatches_torch_tiled_vs_untiled": {}, "index_mismatches_onnx_tiled_vs_torch": {},
             "max_pixel_diff_onnx_tiled_vs_torch_tiled": {}, "max_pixel_diff_torch_tiled_vs_untiled": {},
             "max_pixel_diff_onnx_tiled_vs_untiled": {}}
    small = encode_tiled(net, pixels, small_tile)
    ort_small = onnx_encode_tiled(encoder, config, pixels, small_tile)
    for f in config.factors:
        tiled["index_mismatches_torch_tiled_vs_untiled"][f] = int((small[f] != grids[f]).sum())
        tiled["index_mismatches_onnx_tiled_vs_torch"][f] = int((ort_small[f] != grids[f]).sum())
        parents = {g: grids[g] for g in net.parents_needed(f)} or None
        whole = decode_tiled(net, grids[f], f, width, height, parents=parents).astype(np.int16)
        torch_tiled = decode_tiled(net, grids[f], f, width, height, small_tile, parents).astype(np.int16)
        ort_tiled = onnx_decode_tiled(decoders[f], config, grids[f], f, width, height, small_tile, parents)
        ort_tiled = ort_tiled.astype(np.int16)
        tiled["max_pixel_diff_onnx_tiled_vs_torch_tiled"][f] = int(np.abs(ort_tiled - torch_tiled).max())
        tiled["max_pixel_diff_torch_tiled_vs_untiled"][f] = int(np.abs(torch_tiled - whole).max())
        tiled["max_pixel_diff_onnx_tiled_vs_untiled"][f] = int(np.abs(ort_tiled - whole).max())
    return {"per_image": per_image, "seconds_total": times, "tiled": tiled}


def fusion(loaded, image: Path, reps: int) -> dict:
    """oneDNN fusion on the decoders: eager against ``torch.jit.freeze`` and ``torch.jit.optimize_for_inference``.

    Each level's decoder on the image's codewords, the variants interleaved
    ``reps`` times (so load drifts touch all alike), after two warm-up calls;
    the 8-bit pixels of each variant against eager's.
    """
    import warnings

    import torch
    from PIL import Image

    from hvq.codec.runtime.tiling import encode_tiled

    net = loaded.net
    grids = encode_tiled(net, np.asarray(Image.open(image).convert("RGB")))
    out = {"image": image.name, "mkldnn_available": torch.backends.mkldnn.is_available(), "levels": {}}
    for f in loaded.config.factors:
        if net.parents_needed(f):
            continue  # a top-down decoder reads its parents too: the product's model has none
        decoder = net.decoders[str(f)].eval()
        z = net.codebook_of(f).lookup(torch.from_numpy(grids[f].astype(np.int64))[None])
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            variants = {"eager": decoder,
                        "jit.freeze": torch.jit.freeze(torch.jit.trace(decoder, z[..., :8, :8]).eval()),
                        "jit.optimize_for_inference": torch.jit.optimize_for_inference(
                            torch.jit.freeze(torch.jit.trace(decoder, z[..., :8, :8]).eval()))}
            pixels = {}
            times: dict[str, list[float]] = {name: [] for name in variants}
            for name, module in variants.items():
                module(z)
                pixels[name] = (module(z) + 0.5).clamp(0, 1).mul(255).round()  # decode + to_pixels
            for _ in range(reps):
                for name, module in variants.items():
                    t = time.perf_counter()
                    module(z)
                    times[name].append(time.perf_counter() - t)
        out["levels"][f] = {name: {"seconds_median": statistics.median(times[name]), "seconds_min": min(times[name]),
                                   "max_pixel_diff_vs_eager": int((pixels[name] - pixels["eager"]).abs().max())}
                            for name in variants}
    return out


def cold_processes(model_path: str, folder: Path, image: Path, runs: int) -> dict:
    """Median wall time and peak RSS of one process per command, round-robin: the floors and both decoders."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = child_env(os.environ.get("PYTHONPATH"))
        hvq = [sys.executable, "-m", "hvq.cli.main"]
        run_once([*hvq, "compress", str(image), "-o", str(work / "ref.hvq"), "--model", model_path], env, work)
        code = ("import sys; from hvq.benchmarks.onnx_runtime import decode_file; decode_file(*sys.argv[1:])")
        commands = {
            "python": [sys.executable, "-c", "pass"],
            "floor: import torch": [sys.executable, "-c", "import torch"],
            "floor: import onnxruntime": [sys.executable, "-c", "import onnxruntime"],
            "hvq decompress (torch)": [*hvq, "decompress", str(work / "ref.hvq"), "-o", str(work / "t.png"), "--force",
                                       "--model", model_path],
            "decompress with onnxruntime, no torch": [sys.executable, "-c", code, str(work / "ref.hvq"), str(folder),
                                                      model_path, str(work / "o.png")],
        }
        samples: dict[str, list[tuple[float, float]]] = {}
        load_before = os.getloadavg()
        for _ in range(runs):
            for name, argv in commands.items():
                samples.setdefault(name, []).append(run_once(argv, env, work))
        load_after = os.getloadavg()
        from PIL import Image

        same = np.abs(np.asarray(Image.open(work / "t.png"), dtype=np.int16)
                      - np.asarray(Image.open(work / "o.png"), dtype=np.int16)).max()
    results = {name: {"seconds_median": statistics.median(v[0] for v in values),
                      "seconds_min": min(v[0] for v in values),
                      "peak_rss_mb_median": statistics.median(v[1] for v in values), "runs": len(values)}
               for name, values in samples.items()}
    return {"image": image.name, "load_before": load_before, "load_after": load_after, "results": results,
            "max_pixel_diff_of_the_two_pngs": int(same)}


def markdown(report: dict) -> str:
    levels = report["factors"]
    agree = report["agreement"]
    rows = agree["per_image"]
    n = len(rows)
    lines = [
        f"onnxruntime {report['onnxruntime']} (CPU provider, 1 intra-op thread) against torch {report['torch']} "
        f"(1 thread), model `{report['model']}`; export: {report['export']}. {n} Kodak images; "
        f"{report['machine']}, Python {report['python']}; load average {report['load_before'][0]:.1f} before, "
        f"{report['load_after'][0]:.1f} after (one core runs a training job).",
        "",
        "| level | index mismatches (of indices) | max 8-bit pixel diff (worst image) | "
        "pixels differing (mean per image) | torch decode s/image | onnxruntime decode s/image | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    t = agree["seconds_total"]
    for f in levels:
        mism = sum(r["index_mismatches"][f] for r in rows)
        total = sum(r["indices"][f] for r in rows)
        worst = max(r["max_pixel_diff"][f] for r in rows)
        differing = statistics.mean(r["pixels_differing"][f] for r in rows)
        td, od = t[f"torch_decode_{f}"] / n, t[f"onnx_decode_{f}"] / n
        lines.append(f"| {f} | {mism} (of {total}) | {worst} | {differing:.1f} | {td:.3f} | {od:.3f} | "
                     f"{od / td:.2f} |")
    ties = [c for r in rows for c in r.get("mismatched_cells", [])]
    if ties:
        lines += ["", f"The {len(ties)} mismatched indices are near ties: in float64, the two codewords' squared "
                  "distances to torch's latent differ by a relative "
                  + ", ".join(f"{c['relative_gap']:+.1e} (level {c['level']})" for c in ties)
                  + " (positive: torch's choice is the nearer)."]
    te, oe = t["torch_encode"] / n, t["onnx_encode"] / n
    lines += ["", f"Encode (all levels' indices): torch {te:.3f} s/image, onnxruntime {oe:.3f} s/image "
              f"(ratio {oe / te:.2f}).", ""]
    tiled = agree["tiled"]
    lines += [f"Tiled paths ({tiled['image']}, tile {tiled['tile']} px against the default {DEFAULT_TILE}): "
              f"index mismatches torch tiled vs untiled {tiled['index_mismatches_torch_tiled_vs_untiled']}, "
              f"onnxruntime tiled vs torch {tiled['index_mismatches_onnx_tiled_vs_torch']}; max pixel diff "
              f"onnxruntime tiled vs torch tiled {tiled['max_pixel_diff_onnx_tiled_vs_torch_tiled']}, "
              f"torch tiled vs untiled {tiled['max_pixel_diff_torch_tiled_vs_untiled']}, "
              f"onnxruntime tiled vs torch untiled {tiled['max_pixel_diff_onnx_tiled_vs_untiled']}.", ""]
    sizes = report["graphs"]
    lines += ["Graphs (structure only; the weights come from the model file): "
              + ", ".join(f"`{k}` {v['bytes'] / 1024:.1f} KB ({v['bytes_with_weights'] / 1e6:.1f} MB with float32 "
                          f"weights inside, {v['external']} external tensors)" for k, v in sizes.items())
              + f"; export took {report['export_seconds']:.1f} s.", ""]
    cold = report["cold"]
    lines += [f"Cold processes on {cold['image']} (median of {next(iter(cold['results'].values()))['runs']} runs, "
              f"round-robin, children without the thread limits (torch's and onnxruntime's own thread counts); "
              f"load average {cold['load_before'][0]:.1f} before, "
              f"{cold['load_after'][0]:.1f} after; the two decoded PNGs differ by at most "
              f"{cold['max_pixel_diff_of_the_two_pngs']} level):", "",
              "| command | wall s | peak RSS MB |", "|---|---|---|"]
    for name, r in cold["results"].items():
        lines.append(f"| `{name}` | {r['seconds_median']:.2f} | {r['peak_rss_mb_median']:.0f} |")
    fused = report["fusion"]
    lines += ["", f"oneDNN fusion on the decoders ({fused['image']}, torch threads 1, mkldnn available: "
              f"{fused['mkldnn_available']}; median of {report['fusion_reps']} interleaved calls after warm-up):", "",
              "| level | variant | median s | min s | ratio to eager | max pixel diff vs eager |",
              "|---|---|---|---|---|---|"]
    for f, variants in fused["levels"].items():
        eager = variants["eager"]["seconds_median"]
        for name, r in variants.items():
            lines.append(f"| {f} | {name} | {r['seconds_median']:.3f} | {r['seconds_min']:.3f} | "
                         f"{r['seconds_median'] / eager:.2f} | {r['max_pixel_diff_vs_eager']} |")
    return "\n".join(lines)


def export_model(model_path: str, folder: str) -> None:
    """``export_graphs`` of a model file into ``folder`` (run in a child, so the parent stays free of torch)."""
    from hvq.codec.runtime.weights import load_model

    loaded = load_model(model_path)
    t = time.perf_counter()
    export_graphs(loaded.net, Path(folder), loaded.fingerprint)
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    manifest["export_seconds"] = time.perf_counter() - t
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=1))


@click.command()
@click.argument("kodak", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=1), default=24, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True, help="Cold processes per command.")
@click.option("--tile", "small_tile", type=int, default=256, show_default=True,
              help="The small tile of the tiling check.")
@click.option("--fusion-reps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Interleaved timings of each oneDNN fusion variant.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(kodak, images, runs, small_tile, fusion_reps, model_path, output):
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        raise click.ClickException(MISSING)
    from hvq.codec.runtime.registry import default_model

    model_path = str(Path(model_path or default_model()).resolve())
    paths = sorted(kodak.glob("kodim*.png"))[:images]
    if not paths:
        raise click.ClickException(f"no kodim*.png in {kodak}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        code = "import sys; from hvq.benchmarks.onnx_runtime import export_model; export_model(*sys.argv[1:])"
        subprocess.run([sys.executable, "-c", code, model_path, str(folder)], check=True)
        manifest = json.loads((folder / MANIFEST).read_text())
        # the cold processes first: forked from a parent without torch, they inherit no large resident set
        cold = cold_processes(model_path, folder, paths[min(22, len(paths) - 1)], runs)
        import onnxruntime
        import torch

        from hvq.codec.runtime.weights import load_model

        loaded = load_model(model_path)
        agree = agreement(loaded, folder, paths, small_tile)
        fused = fusion(loaded, paths[min(22, len(paths) - 1)], fusion_reps)
    report = {
        "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": machine(), "model": Path(model_path).name, "factors": list(loaded.config.factors),
        "export": f"torch.onnx.export(dynamo=False), opset {OPSET}, dynamic height and width, "
                  "weights as external initializers from the model file",
        "export_seconds": manifest["export_seconds"], "graphs": manifest["graphs"],
        "agreement": agree, "cold": cold, "fusion": fused,
        "fusion_reps": fusion_reps, "load_before": load_before, "load_after": os.getloadavg(),
    }
    table = markdown(report)
    click.echo(table)
    write_report(output, report, table)


if __name__ == "__main__":
    main()
