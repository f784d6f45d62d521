"""onnxruntime as a torch-free runtime for the transforms (issue 15, must-have 3): agreement, speed, memory.

The decoder side is the product's (``hvq.codec.runtime.onnx_graphs`` writes
each level's decoder graph beside a copy of the model file,
``onnx_backend`` runs it tile by tile); the study adds the encoder, which
the product does not ship (its indices cannot be torch's bit for bit):

- the encoder: image -> every level's indices (the nearest codeword, argmin
  inside the graph), exported here the same way (``torch.onnx.export(...,
  dynamo=False)``, height and width dynamic, weights external) and compared
  index by index with ``encode_tiled``;
- each level's decoder: indices (and a top-down model's coarser indices)
  -> image, decoded with ``onnx_backend.decode_tiled`` and compared, as
  8-bit pixels, with ``decode_tiled``; once more with small tiles, so that
  the tiled paths of both backends are compared too.

The graphs hold no weights: every initializer that is a tensor of the model
file is left external and fed from the file (widened to float32, as
``weights.py`` widens it) with ``SessionOptions.add_external_initializers``.

Cold processes (one per command, round-robin, median wall time and the
child's ``ru_maxrss``): ``import torch`` and ``import onnxruntime`` as the
floors, and the product's ``hvq decompress`` of a Kodak file with
``HVQ_BACKEND=torch`` and ``HVQ_BACKEND=onnx``::

    python -m hvq.benchmarks.onnx_runtime /work/shared/datasets/kodak -o benchmarks/results/onnx/onnx.json

This module imports torch only inside the functions that export or run the
torch side.
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
from hvq.codec.runtime import onnx_backend
from hvq.codec.runtime.onnx_graphs import OPSET
from hvq.codec.runtime.windows import DEFAULT_TILE, check_tile, encoder_halo, windows

MISSING = "the onnxruntime study needs onnxruntime and onnx: pip install onnxruntime onnx"
ENCODER = "encoder.onnx"
MANIFEST = "encoder.json"  # the encoder graph's tensors (the decoders' are in the product's manifest)
MODEL = "model.safetensors"  # the copy of the model file the graphs sit beside


# -- export (torch, onnx) ---------------------------------------------------------------


def export_graphs(net, model_path: Path, folder: Path, fingerprint: bytes) -> dict[str, dict]:
    """The encoder's graph (the study's) and every level's decoder graph (the product's) in ``folder``; their sizes.

    The model file is copied into the folder (``MODEL``), so the product's
    decoder graphs sit beside it.  Returns {file name: {"bytes":
    structure-only size, "bytes_with_weights": the same graph with its
    float32 weights inside, "external": how many initializers come from the
    model file, "weights": their names}}; the encoder's entry is also
    written to ``MANIFEST``.
    """
    import io
    import shutil
    import warnings

    import onnx
    import torch
    from onnx.external_data_helper import set_external_data

    from hvq.codec.runtime.onnx_graphs import export_graphs as export_decoders

    class Encode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):  # (1, 3, H, W) in [0, 1] -> per level (1, H/f, W/f) int64
            indices = self.net.encode(x)
            return tuple(indices[f] for f in self.net.config.factors)

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, folder / MODEL)
    manifest = json.loads(export_decoders(net, folder / MODEL, fingerprint).read_text())
    weights = weights_of(folder / MODEL)
    sizes = {}
    for entry in manifest["decoders"].values():
        graph = onnx.load(str(folder / entry["file"]), load_external_data=False)
        for init in graph.graph.initializer:
            if init.name in entry["weights"]:  # put the weights back in, to say what leaving them out saves
                init.ClearField("external_data")
                init.data_location = onnx.TensorProto.DEFAULT
                init.raw_data = weights[init.name].tobytes()
        sizes[entry["file"]] = {"bytes": entry["bytes"], "bytes_with_weights": len(graph.SerializeToString()),
                                "external": len(entry["weights"]), "weights": entry["weights"]}

    state = {f"net.{k}" for k in net.state_dict()}
    factors = net.config.factors
    m = net.config.max_factor
    axes = {"image": {2: "height", 3: "width"}, **{f"indices_{f}": {1: f"rows_{f}", 2: f"cols_{f}"} for f in factors}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on traced integer shapes
        torch.onnx.export(Encode().eval(), (torch.rand(1, 3, 4 * m, 4 * m),), buffer, dynamo=False,
                          opset_version=OPSET, do_constant_folding=False, input_names=["image"],
                          output_names=[f"indices_{f}" for f in factors], dynamic_axes=axes)
    model = onnx.load_from_string(buffer.getvalue())
    renamed = {}
    for init in model.graph.initializer:
        if init.name in state:
            renamed[init.name] = init.name[len("net."):]  # the model file's tensor name
            init.name = renamed[init.name]
            set_external_data(init, location=MODEL)
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
    for node in model.graph.node:
        for i, value in enumerate(node.input):
            node.input[i] = renamed.get(value, value)
    data = model.SerializeToString()
    (folder / ENCODER).write_bytes(data)
    sizes[ENCODER] = {"bytes": len(data), "bytes_with_weights": len(buffer.getvalue()),
                      "external": len(renamed), "weights": sorted(renamed.values())}
    (folder / MANIFEST).write_text(json.dumps({"model_fingerprint": fingerprint.hex(), "graphs": sizes}, indent=1))
    return sizes


def decoder_sessions(folder: Path, config, fingerprint: bytes, threads: int = 1) -> dict:
    """The product's decoder sessions of every level ({factor: onnx_backend.DecoderSession}), as it builds them."""
    graphs = onnx_backend.read_graphs(folder / MODEL, fingerprint)
    return {f: onnx_backend.session(folder / MODEL, graphs.decoders[f, 1], threads) for f in config.factors}


# -- the torch-free side (numpy, safetensors, onnxruntime) -----------------------------------


def weights_of(model_path: Path, names=None) -> dict[str, np.ndarray]:
    """The model file's network tensors (or those in ``names``) as float32, as ``weights.py`` widens them."""
    from safetensors import safe_open

    from hvq.bitstream.prior_tables import CONTEXT_PREFIX, STATIC_PREFIX

    with safe_open(str(model_path), "numpy") as f:
        keys = [k for k in f.keys() if not k.startswith((STATIC_PREFIX, CONTEXT_PREFIX))] if names is None else names
        return {k: f.get_tensor(k).astype(np.float32) for k in keys}


def session(graph: Path, weights: dict[str, np.ndarray], threads: int = 1):
    """An onnxruntime session of the study's structure-only encoder graph, its initializers taken from ``weights``.

    Which tensors it takes is in the folder's ``MANIFEST``, as the product's
    manifest names its decoders' (``onnx_backend.session``).
    """
    import onnxruntime as ort

    manifest = json.loads((graph.parent / MANIFEST).read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    names = manifest["graphs"][graph.name]["weights"]
    options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(weights[n]) for n in names])
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


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
    decoders = decoder_sessions(folder, config, loaded.fingerprint)
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
            got = onnx_backend.decode_tiled(decoders[f], config, grids[f], f, width, height, parents=parents)
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
        ort_tiled = onnx_backend.decode_tiled(decoders[f], config, grids[f], f, width, height, small_tile, parents)
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
        light = ["env", "HVQ_BACKEND=onnx"]  # exec'd in place: the child's pid, time and ru_maxrss are hvq's
        model = str(folder / MODEL)  # the copy with the decoder graphs beside it
        commands = {
            "python": [sys.executable, "-c", "pass"],
            "floor: import torch": [sys.executable, "-c", "import torch"],
            "floor: import onnxruntime": [sys.executable, "-c", "import onnxruntime"],
            "hvq decompress (torch)": ["env", "HVQ_BACKEND=torch", *hvq, "decompress", str(work / "ref.hvq"),
                                       "-o", str(work / "t.png"), "--force", "--model", model],
            "hvq decompress (HVQ_BACKEND=onnx)": [*light, *hvq, "decompress", str(work / "ref.hvq"),
                                                  "-o", str(work / "o.png"), "--force", "--model", model],
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
    export_graphs(loaded.net, Path(model_path), Path(folder), loaded.fingerprint)
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
