"""Per-level rate and distortion of a model on a folder of images (Kodak for the model card).

For every image: compress once with all levels, then for each level measure
the real size of a file holding that level alone (``strip``, as a user would
ship it), decode it, and score PSNR (RGB, 8-bit) and MS-SSIM.  Prints a
markdown table and writes JSON.

    python -m hvq.benchmarks.kodak ../shared/datasets/kodak \
        --anchors ../shared/anchors/kodak_classic_measured.json -o benchmarks/results/kodak_levels.json
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import click
import numpy as np
import torch

from hvq.bitstream.container import parse
from hvq.bitstream.levels import decode_grid
from hvq.codec.runtime.tokens import strip_file
from hvq.codec.train.data import list_images
from hvq.evaluation.metrics import msssim, psnr
from hvq.codec.runtime.imageio import load_image
from hvq.codec.runtime.pipeline import Codec
from hvq.codec.train.validation import codebook_usage


def evaluate(codec: Codec, files: list[Path]) -> dict:
    factors = tuple(sorted(codec.model.config.factors, reverse=True))
    per_image = []
    size = codec.model.config.codebook_size
    counts = {f: np.zeros(size, dtype=np.int64) for f in factors}  # codewords chosen in the set, per level
    for path in files:
        original = np.asarray(load_image(path))
        pixels = original.shape[0] * original.shape[1]
        started = time.perf_counter()
        data = codec.compress(path)
        encode_s = time.perf_counter() - started
        record = {"image": path.name, "all_levels_bpp": 8 * len(data) / pixels, "encode_s": encode_s, "levels": {}}
        for factor in factors:
            alone = strip_file(data, (factor,), codec.model)  # what `hvq compress --levels f` writes (top-down: with its parents)
            started = time.perf_counter()
            decoded = np.asarray(codec.decompress(alone))
            decode_s = time.perf_counter() - started  # decoding only: no scoring inside the window
            parsed = parse(alone)
            chunk = parsed.level(factor)
            grid = decode_grid(parsed, factor, codec.model.prior)
            counts[factor] += np.bincount(grid.reshape(-1), minlength=size)
            record["levels"][factor] = {
                "bpp": 8 * len(alone) / pixels,
                "bits_per_index": chunk.bits_per_index,
                "psnr": psnr(original, decoded),
                "ms_ssim": msssim(original, decoded),
                "decode_s": decode_s,
            }
        per_image.append(record)
    mean = {}
    for factor in factors:
        rows = [r["levels"][factor] for r in per_image]
        m = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        m["ms_ssim_db"] = -10 * math.log10(1 - m["ms_ssim"])
        mean[factor] = m
    usage = codebook_usage(counts)
    return {
        "model_fingerprint": codec.model.fingerprint_hex,
        "codebook_size": codec.model.config.codebook_size,
        "images": len(per_image),
        "all_levels_bpp": float(np.mean([r["all_levels_bpp"] for r in per_image])),
        "codebook_usage": {
            **{str(f): usage.levels[f] for f in factors},
            "all_levels": usage.all_levels,
            "every_level": usage.every_level,
        },
        "mean": mean,
        "per_image": per_image,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }


def anchor_psnr(points: list[dict], bpp: float) -> float | None:
    """PSNR of an anchor codec at ``bpp``, interpolated linearly in log(bpp); None outside its range."""
    points = sorted(points, key=lambda p: p["bpp"])
    if not points or bpp < points[0]["bpp"] or bpp > points[-1]["bpp"]:
        return None
    xs = [math.log(p["bpp"]) for p in points]
    return float(np.interp(math.log(bpp), xs, [p["psnr"] for p in points]))


def markdown(result: dict, anchors: dict | None = None) -> str:
    log2k = math.log2(result["codebook_size"])
    names = ["jpeg", "webp"] if anchors else []
    header = "| level | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) | bits/index | log2 K |"
    header += "".join(f" {n.upper()} PSNR at this bpp |" for n in names)
    lines = [header, "|---" * (7 + len(names)) + "|"]
    for factor, m in result["mean"].items():
        row = (
            f"| {factor} | {m['bpp']:.4f} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['ms_ssim_db']:.2f} "
            f"| {m['bits_per_index']:.3f} | {log2k:.0f} |"
        )
        for name in names:
            value = anchor_psnr(anchors["codecs"][name], m["bpp"])
            row += f" {value:.2f} |" if value is not None else " below its lowest rate |"
        lines.append(row)
    lines.append(f"\nAll levels in one file: {result['all_levels_bpp']:.4f} bpp (mean of {result['images']} images).")
    usage = ", ".join(f"{k}: {v:.1%}" for k, v in result["codebook_usage"].items())
    lines.append(f"Codebook usage on this set (share of the {result['codebook_size']} codewords chosen): {usage}.")
    return "\n".join(lines)


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "model_path", default=None, help="Model file (default: the shipped one).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the JSON here.")
@click.option("--anchors", type=click.Path(exists=True, dir_okay=False), default=None,
              help="kodak_classic_measured.json: add JPEG and WebP PSNR at the same bpp.")
def main(folder, model_path, output, anchors):
    codec = Codec.for_model(model_path)
    result = evaluate(codec, list_images([folder]))
    text = markdown(result, json.loads(Path(anchors).read_text()) if anchors else None)
    click.echo(text)
    if output:
        Path(output).write_text(json.dumps({**result, "markdown": text}, indent=1, default=str))


if __name__ == "__main__":
    main()
