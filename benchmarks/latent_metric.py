"""Can a fixed pixel metric in latent space stand in for the pixel passes? (issue 13)

Rate control's effort 1 weighs each candidate codeword by its squared
latent distance to the encoder's output; effort 2 measures the error in
pixels through the decoder and saves 11-16% of the bits, at 20-75 times the
encode time (``benchmarks/results/rate_control/``).  The cheapest thing
between them would be a metric: if level f's decoder were locally linear,
``x_hat(c) - x_hat(z) ~ J (c - z)``, the pixel error of a codeword c would
be ``(c - z)^T J^T J (c - z)``, and an average ``M_f = E[J^T J]`` over
photos could replace the identity in the nearest-codeword search at no
cost at encode time.  This measures it::

    training crops -> nearest codewords -> decoder -> random pixel probes v
        -> g = J^T v per cell (one backward pass) -> M_f = mean of g g^T (E[v v^T] = I)
    Kodak image -> latents -> per level: argmin over codewords of (z - c)^T M (z - c)
        (all K, or among the nearest 6 by latent distance as rate control's candidates)
        -> the file of levels 16, 16+8, 16+8+4 -> bpp and PSNR of its finest level

    python -m hvq.benchmarks.latent_metric ../shared/datasets/train ../shared/datasets/kodak \\
        -o benchmarks/results/rate_control/latent_metric

Levels are coded with their parents chosen the same way, and each top-down
decoder reads its chosen parents, as a file decodes.  The metric ignores
what the choice of a coarser level does to the finer levels' decoders.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

from hvq.benchmarks.reports import machine
from hvq.bitstream.levels import Tokens, write_tokens
from hvq.codec.runtime.imageio import to_tensor
from hvq.codec.runtime.pipeline import Codec, load_pixels
from hvq.codec.runtime.tiling import decode_tiled, pad_to_multiple
from hvq.evaluation.metrics import psnr

CROP = 256  # training crops: a level-16 grid of 16 x 16 cells
VARIANTS = (("latent distance (nearest)", False, None), ("pixel metric, all codewords", True, None),
            ("pixel metric, nearest 6", True, 6))


def latents(net, pixels: np.ndarray) -> dict[int, torch.Tensor]:
    """Each level's latent (1, D, h, w) as its codebook compares it, on the padded image (untiled)."""
    x = to_tensor(pad_to_multiple(pixels, net.config.max_factor))
    with torch.no_grad():
        return dict(zip(net.config.factors, net._latents(x)))


def decoder_metrics(net, paths: list[Path], probes: int, seed: int) -> dict[int, torch.Tensor]:
    """M_f = E[J^T J] of each level's decoder at the nearest codewords, from random pixel probes."""
    generator = torch.Generator().manual_seed(seed)
    sums = {f: torch.zeros(net.config.code_dim, net.config.code_dim, dtype=torch.float64) for f in net.config.factors}
    cells = dict.fromkeys(net.config.factors, 0)
    for path in paths:
        pixels = load_pixels(path)
        h, w = pixels.shape[:2]
        s = min(CROP, h, w) // net.config.max_factor * net.config.max_factor
        pixels = pixels[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        grids = net.encode(to_tensor(pixels))  # the crop is a multiple of the coarsest factor: no padding
        for f in net.config.factors:
            for _ in range(probes):
                codewords = {g: net.codebook_of(g).lookup(grids[g]) for g in net.config.factors}
                codewords[f].requires_grad_(True)
                out = net._synthesise(codewords, f)
                (out * torch.randn(out.shape, generator=generator)).sum().backward()
                g = codewords[f].grad[0].permute(1, 2, 0).reshape(-1, net.config.code_dim).double()
                sums[f] += g.T @ g
                cells[f] += g.shape[0]
    return {f: (sums[f] / cells[f]).float() for f in sums}


def metric_grid(codebook, z: torch.Tensor, metric: torch.Tensor | None, k: int | None) -> np.ndarray:
    """Per cell, the codeword nearest under ``metric`` (None: latent distance), among the ``k`` nearest if given."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    if metric is None:
        cost = codebook.distances(flat)
    else:
        e = codebook.embed
        mz = flat @ metric
        cost = (mz * flat).sum(1, keepdim=True) - 2 * mz @ e.T + ((e @ metric) * e).sum(1)[None]
    if k:
        top = codebook.distances(flat).topk(k, 1, largest=False).indices
        cost = torch.full_like(cost, float("inf")).scatter(1, top, cost.gather(1, top))
    return cost.argmin(1).view(*z.shape[2:]).numpy().astype(np.uint16)


def measure_image(codec: Codec, metrics: dict, path: Path) -> list[dict]:
    net, model = codec.model.net, codec.model
    pixels = load_pixels(path)
    height, width = pixels.shape[:2]
    z = latents(net, pixels)
    coarse_first = sorted(net.config.factors, reverse=True)
    rows = []
    for name, use_metric, k in VARIANTS:
        grids = {f: metric_grid(net.codebook_of(f), z[f], metrics[f] if use_metric else None, k) for f in coarse_first}
        for i, f in enumerate(coarse_first):
            stored = coarse_first[: i + 1]
            tokens = Tokens({g: grids[g] for g in stored}, width, height, model.fingerprint,
                            net.config.max_factor, net.config.codebook_size, {})
            size = len(write_tokens(tokens, model.prior))
            parents = {g: grids[g] for g in net.parents_needed(f)} or None
            decoded = decode_tiled(net, grids[f], f, width, height, codec.tile, parents)
            rows.append({"image": path.name, "variant": name, "level": f, "bpp": 8 * size / (width * height),
                         "psnr": float(psnr(decoded, pixels))})
    return rows


def markdown(report: dict) -> str:
    lines = [f"# A fixed pixel metric in latent space against the nearest codewords ({len(report['images'])} Kodak images)",
             "", f"Model {report['model']}; metric from {report['train_images']} training crops of {CROP} px, "
             f"{report['probes']} probes each; {report['machine']}, {report['seconds']:.0f} s. "
             "Each level is stored with the coarser levels (a top-down decoder reads them), chosen the same way.", "",
             "| variant | level 16 bpp / dB | 16+8 bpp / dB | 16+8+4 bpp / dB |", "|---|---|---|---|"]
    for name, means in report["means"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m['bpp']:.4f} / {m['psnr']:.2f}" for m in means) + " |")
    lines += ["", "Eigenvalues of M_f (max over min; share of the trace in the top 5 of 64 directions): "
              + "; ".join(f"level {f}: {e['condition']:.0f}, {100 * e['top5']:.0f}%" for f, e in report["spectrum"].items())]
    return "\n".join(lines)


@click.command()
@click.argument("train", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("kodak", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for latent_metric.json and latent_metric.md.")
@click.option("--model", default=None, help="Model file (default: the shipped model).")
@click.option("--train-images", type=click.IntRange(1), default=12, show_default=True)
@click.option("--probes", type=click.IntRange(1), default=2, show_default=True, help="Random pixel probes per crop and level.")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Every Nth Kodak image only.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
def main(train, kodak, output, model, train_images, probes, every, threads):
    """Nearest codewords under a learned pixel metric against latent distance, on Kodak."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    codec = Codec.for_model(model)
    pool = sorted(train.glob("*.png"))
    paths = pool[:: max(1, len(pool) // train_images)][:train_images]
    metrics = decoder_metrics(codec.model.net, paths, probes, seed=0)
    rows = []
    images = sorted(kodak.glob("*.png"))[::every]
    for path in images:
        rows += measure_image(codec, metrics, path)
        click.echo(f"{path.name} done", err=True)
    means = {}
    for name, _, _ in VARIANTS:
        means[name] = [{k: float(np.mean([r[k] for r in rows if r["variant"] == name and r["level"] == f]))
                        for k in ("bpp", "psnr")} for f in sorted(codec.model.config.factors, reverse=True)]
    spectrum = {}
    for f, m in metrics.items():
        ev = torch.linalg.eigvalsh(m.double())
        spectrum[f] = {"condition": float(ev[-1] / ev[0]), "top5": float(ev[-5:].sum() / ev.sum())}
    report = {"model": codec.model.fingerprint.hex()[:8], "train_images": len(paths), "probes": probes,
              "images": [p.name for p in images], "machine": machine(), "seconds": time.perf_counter() - start,
              "means": means, "spectrum": spectrum, "rows": rows}
    output.mkdir(parents=True, exist_ok=True)
    (output / "latent_metric.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / "latent_metric.md").write_text(markdown(report) + "\n")
    click.echo(markdown(report))


if __name__ == "__main__":
    main()
