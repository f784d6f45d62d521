"""The prior's report: bits per index and coding time of each prior, and the cost of progressive files.

For every image (Kodak, and the training images held out of the prior's fit
by ``hvq fit-prior --holdout``)
the shipped model's encoder gives each level's index grid once; then each
prior codes it, timed, and its payload is decoded and checked:

- uniform: every index log2 K bits (a table of ones, coder 1);
- static: the foundation's per-level tables (coder 1, format 1's only coder);
- parent: each index given its parent in the next coarser level, no spatial
  context (the context prior's first-pass tables for every cell);
- parent + spatial: the shipped coder 3 (checkerboard, §8.4 of FORMAT.md);
  the coarsest level has no parent, so it gets spatial context only;
- spatial only: coder 2, what a level stored without its parent gets.

Then whole files: the all-levels file against the finest-level-only file,
both from ``Codec.compress``.  Times are the entropy-coding stage only
(prior tables + range coder), on the 768 x 512 Kodak images, median over
images and repeats; the transforms are the same for every prior.

    python -m hvq.benchmarks.prior ../shared/datasets/kodak --heldout ../shared/datasets/train \
        -o benchmarks/results/prior
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import click
import constriction
import numpy as np
import torch

from hvq.bitstream.coder import (
    decode_indices,
    decode_indices_in_context,
    encode_indices,
    encode_indices_in_context,
    payload_of,
    words_of,
)
from hvq.bitstream.container import parse
from hvq.bitstream.context import frequencies_of, parent_contexts, score_terms
from hvq.codec.train.data import list_images
from hvq.codec.fit.export import holdout_split
from hvq.codec.runtime.imageio import load_image, pad_to_multiple
from hvq.codec.runtime.pipeline import Codec
from hvq.codec.runtime.tiling import encode_tiled
from hvq.evaluation.speed import describe_machine

PRIORS = ("uniform", "static", "parent", "parent + spatial", "spatial only")


def _parent_only(grid, model, parent, decode_payload=None):
    """Code every cell with its parent context only (the context prior's first-pass tables), raster order."""
    family = constriction.stream.model.Categorical(perfect=False)
    contexts = [c.reshape(-1) for c in parent_contexts(parent, grid.shape, outside=model.codebook_size)]
    rows = frequencies_of(score_terms(model, parent_terms=True, spatial_terms=False), contexts)
    if decode_payload is None:
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(grid.reshape(-1).astype(np.int32), family, rows)
        return payload_of(encoder)
    decoded = constriction.stream.queue.RangeDecoder(words_of(decode_payload)).decode(family, rows)
    return np.asarray(decoded).reshape(grid.shape)


def _coders(prior, factor: int, coarsest: int):
    """(encode(grid, grids) -> bytes, decode(payload, grid, grids) -> grid) for each prior at one level."""
    k = len(prior.static[factor])
    ones = np.ones(k, dtype=np.int32)
    model = prior.context.get(factor)
    coders = {
        "uniform": (lambda g, gs: encode_indices(g, ones), lambda b, g, gs: decode_indices(b, ones, g.shape)),
        "static": (
            lambda g, gs: encode_indices(g, prior.static[factor]),
            lambda b, g, gs: decode_indices(b, prior.static[factor], g.shape),
        ),
    }
    if model is None:
        return coders
    coders["spatial only"] = (
        lambda g, gs: encode_indices_in_context(g, model, None),
        lambda b, g, gs: decode_indices_in_context(b, model, None, g.shape),
    )
    if factor == coarsest:
        coders["parent + spatial"] = coders["spatial only"]  # nothing coarser to condition on
    else:
        coders["parent"] = (
            lambda g, gs: _parent_only(g, model, gs[2 * factor]),
            lambda b, g, gs: _parent_only(g, model, gs[2 * factor], b),
        )
        coders["parent + spatial"] = (
            lambda g, gs: encode_indices_in_context(g, model, gs[2 * factor]),
            lambda b, g, gs: decode_indices_in_context(b, model, gs[2 * factor], g.shape),
        )
    return coders


@dataclass
class Tally:
    bits: float = 0.0
    indices: int = 0
    encode_s: list = None
    decode_s: list = None

    def __post_init__(self):
        self.encode_s, self.decode_s = [], []


def _time(fn, repeats: int):
    best, out = math.inf, None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return out, best


def measure(codec: Codec, files: list[Path], repeats: int = 1, progress: str = "") -> dict:
    """Bits per index and coding times per prior and level, and the progressive-file sizes."""
    factors = tuple(sorted(codec.model.config.factors, reverse=True))
    coarsest = factors[0]
    tallies = {(p, f): Tally() for p in PRIORS for f in factors}
    sizes = []
    from tqdm import tqdm

    for path in tqdm(files, desc=progress or "prior report", unit="image"):
        rgb = load_image(path)
        padded = pad_to_multiple(np.asarray(rgb), codec.model.config.max_factor)
        grids = {f: g.astype(np.int64) for f, g in encode_tiled(codec.model.net, padded, codec.tile).items()}
        per_image = {}
        for factor in factors:
            for name, (encode, decode) in _coders(codec.model.prior, factor, coarsest).items():
                payload, enc_s = _time(lambda: encode(grids[factor], grids), repeats)
                decoded, dec_s = _time(lambda: decode(payload, grids[factor], grids), repeats)
                if not np.array_equal(decoded, grids[factor]):
                    raise AssertionError(f"{path.name}: {name} level {factor} does not round-trip")
                tally = tallies[(name, factor)]
                tally.bits += 8 * len(payload)
                tally.indices += grids[factor].size
                tally.encode_s.append(enc_s)
                tally.decode_s.append(dec_s)
                per_image[(name, factor)] = (enc_s, dec_s)
        pixels = rgb.width * rgb.height
        whole = codec.compress(rgb)
        # a top-down model's finest level needs every coarser one (its decoder reads them): no smaller file shows it
        finest = whole if codec.model.config.topdown else codec.compress(rgb, levels=(factors[-1],))
        assert parse(whole).header.factors == factors
        sizes.append({"image": path.name, "pixels": pixels, "all_levels_bytes": len(whole), "finest_bytes": len(finest),
                      "coding_s": {f"{n}|{f}": t for (n, f), t in per_image.items()}})
    table = {}
    for (name, factor), t in tallies.items():
        if t.indices:
            table.setdefault(name, {})[factor] = {
                "bits_per_index": t.bits / t.indices,
                "encode_ms_median": 1000 * statistics.median(t.encode_s),
                "decode_ms_median": 1000 * statistics.median(t.decode_s),
            }
    ratio = [s["all_levels_bytes"] / s["finest_bytes"] for s in sizes]
    return {
        "images": len(sizes),
        "topdown": bool(codec.model.config.topdown),
        "log2_k": math.log2(codec.model.config.codebook_size),
        "priors": table,
        "all_levels_bpp": float(np.mean([8 * s["all_levels_bytes"] / s["pixels"] for s in sizes])),
        "finest_only_bpp": float(np.mean([8 * s["finest_bytes"] / s["pixels"] for s in sizes])),
        "all_over_finest_bytes": float(sum(s["all_levels_bytes"] for s in sizes) / sum(s["finest_bytes"] for s in sizes)),
        "all_over_finest_per_image": {"mean": float(np.mean(ratio)), "max": float(np.max(ratio))},
        "per_image": sizes,
    }


def added_seconds(result: dict, factors: tuple[int, ...]) -> dict:
    """Median time the shipped context coding adds over the static tables for a whole file, per image."""
    out = {}
    for direction, idx in (("compress", 0), ("decompress", 1)):
        extra = []
        for image in result["per_image"]:
            t = image["coding_s"]
            context = sum(t[f"{'parent + spatial'}|{f}"][idx] for f in factors)
            static = sum(t[f"static|{f}"][idx] for f in factors)
            extra.append(context - static)
        out[direction] = float(statistics.median(extra))
    return out


def markdown(name: str, result: dict, factors: tuple[int, ...]) -> str:
    log2k = result["log2_k"]
    lines = [
        f"**{name}** ({result['images']} images): bits per index (encode / decode ms, median per image)",
        "",
        "| prior | " + " | ".join(f"level {f}" for f in factors) + " |",
        "|---" * (len(factors) + 1) + "|",
    ]
    for prior in PRIORS:
        cells = []
        for f in factors:
            m = result["priors"].get(prior, {}).get(f)
            cells.append("—" if m is None else f"{m['bits_per_index']:.3f} ({m['encode_ms_median']:.1f} / {m['decode_ms_median']:.1f} ms)")
        lines.append(f"| {prior} | " + " | ".join(cells) + " |")
    ctx = result["priors"]["parent + spatial"]
    static = result["priors"]["static"]
    lines.append(
        "| saving of parent + spatial vs static | "
        + " | ".join(f"{static[f]['bits_per_index'] - ctx[f]['bits_per_index']:.3f} bits ({1 - ctx[f]['bits_per_index'] / static[f]['bits_per_index']:.0%})" for f in factors)
        + " |"
    )
    lines.append(
        f"| target 0.7 log2 K = {0.7 * log2k:.2f} | "
        + " | ".join("met" if ctx[f]["bits_per_index"] <= 0.7 * log2k else "**not met**" for f in factors)
        + " |"
    )
    if result.get("topdown"):
        lines += [
            "",
            f"All levels in one file: {result['all_levels_bpp']:.4f} bpp. The model decodes top-down (a finer level's "
            "decoder reads the coarser levels), so every file that shows the finest level holds all of them: there is "
            "no smaller finest-only file to compare with, and a finer level is never stored without its parent "
            "(the spatial-only row is what the parent saves, not a file one can write).",
        ]
        return "\n".join(lines)
    lines += [
        "",
        f"All levels in one file: {result['all_levels_bpp']:.4f} bpp; finest level alone: {result['finest_only_bpp']:.4f} bpp; "
        f"ratio of bytes {result['all_over_finest_bytes']:.3f} (per image: mean {result['all_over_finest_per_image']['mean']:.3f}, "
        f"max {result['all_over_finest_per_image']['max']:.3f}; target <= 1.10).",
    ]
    return "\n".join(lines)


@click.command()
@click.argument("kodak", type=click.Path(exists=True, file_okay=False))
@click.option("--heldout", type=click.Path(exists=True, file_okay=False), default=None,
              help="The training folder: its images held out of the prior's fit are reported too.")
@click.option("--holdout", type=click.IntRange(1, 90), default=10, show_default=True,
              help="The --holdout percent `hvq fit-prior` was run with.")
@click.option("--model", "model_path", default=None, help="Model file (default: the shipped one).")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Timing repeats (best of).")
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None, help="Write prior.json and prior.md here.")
def main(kodak, heldout, holdout, model_path, repeats, output):
    torch.set_num_threads(2)
    codec = Codec.for_model(model_path)
    factors = tuple(sorted(codec.model.config.factors, reverse=True))
    results = {"kodak": measure(codec, list_images([kodak]), repeats, "Kodak")}
    if heldout:
        held = holdout_split(list_images([heldout]), holdout)[1]
        results["heldout"] = measure(codec, held, 1, "held-out training images")
    added = added_seconds(results["kodak"], factors)
    text = [
        markdown("Kodak", results["kodak"], factors),
        "",
        f"Time the context prior adds over the static tables, whole 768x512 file, median: "
        f"compress {1000 * added['compress']:.0f} ms, decompress {1000 * added['decompress']:.0f} ms "
        "(entropy coding of every level; decompressing one level decodes only it and its parents).",
    ]
    if heldout:
        text += ["", markdown("Held-out training images (not in the prior's fit)", results["heldout"], factors)]
    text += ["", f"Machine: {describe_machine().cpu}, Python {platform.python_version()}, "
                 f"numpy {np.__version__}, constriction range coder; timings are single-threaded numpy."]
    report = "\n".join(text)
    click.echo(report)
    if output:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        for r in results.values():
            for image in r["per_image"]:
                image.pop("coding_s")
        (out / "prior.json").write_text(json.dumps({**results, "added_seconds": added, "model": codec.model.fingerprint_hex,
                                                    "prior": codec.model.prior.context_fingerprint.hex()}, indent=1))
        (out / "prior.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
