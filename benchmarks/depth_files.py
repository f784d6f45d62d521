"""Files with refinement depths (issue 14): bits per index per depth, and a progressive file against one alone.

For each image, one file of every level and depth (16, 8, 4:1..4:D) gives
each depth's bits per index as the file codes it.  Then, per depth d, the
file that holds depths 1..d of the deep level with everything coarser
(16, 8, 4:d: what a viewer has once that much of the progressive file has
arrived) is set against the smallest file that shows the same picture: the
deep level at depths 1..d with only the coarser levels its decoder reads
(none, unless the model is top-down).  The issue's bar: the progressive
file costs at most 1.15x the one alone::

    python -m hvq.benchmarks.depth_files MODEL.safetensors ../shared/datasets/kodak -o benchmarks/results/depths/files
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

PROGRESSIVE_BAR = 1.15  # the "at most 1.15x the same quality stored alone"


def measure_image(codec, path: Path) -> dict:
    """One image's row: bits per index of each depth, and per depth its PSNR and both files' bpp."""
    from PIL import Image

    from hvq.bitstream.container import parse

    image = Image.open(path).convert("RGB")
    original = np.asarray(image, dtype=np.float64)
    pixels = image.width * image.height
    net = codec.model.net
    deep = max(codec.model.config.factors, key=net.depth_of)
    if net.depth_of(deep) == 1:
        raise click.ClickException("this model has no refinement depths")
    every = codec.compress(image)  # every level, every depth
    parsed = parse(every)
    row = {"image": path.name, "level": deep, "every_depth_bpp": 8 * len(every) / pixels, "depths": {}}
    level = parsed.level(deep)
    bits = {1: 8 * len(level.payload) / (level.grid_height * level.grid_width)}
    bits |= {c.depth: 8 * len(c.payload) / (c.grid_height * c.grid_width) for c in parsed.refinements
             if c.factor == deep}
    coarser = sorted((f for f in codec.model.config.factors if f > deep), reverse=True)
    needed = sorted(net.parents_needed(deep), reverse=True)
    for d in range(1, net.depth_of(deep) + 1):
        decoded = np.asarray(codec.decompress(every, level=deep, depth=d), dtype=np.float64)
        alone = codec.compress(image, levels=",".join([*map(str, needed), f"{deep}:{d}"]))
        progressive = codec.compress(image, levels=",".join([*map(str, coarser), f"{deep}:{d}"]))
        row["depths"][d] = {
            "bits_per_index": bits[d],
            "psnr": float(10 * np.log10(255**2 / np.mean((decoded - original) ** 2))),
            "alone_bpp": 8 * len(alone) / pixels,
            "progressive_bpp": 8 * len(progressive) / pixels,
        }
    return row


def summarise(rows: list[dict]) -> dict:
    """Means over images per depth, and the progressive/alone ratio of the means and its worst image."""
    depths = sorted({int(d) for r in rows for d in r["depths"]})
    out = {}
    for d in depths:
        cells = [r["depths"][d] if d in r["depths"] else r["depths"][str(d)] for r in rows]
        mean = {k: float(np.mean([c[k] for c in cells])) for k in cells[0]}
        mean["ratio"] = mean["progressive_bpp"] / mean["alone_bpp"]
        mean["worst_ratio"] = float(max(c["progressive_bpp"] / c["alone_bpp"] for c in cells))
        out[d] = mean
    return out


def markdown(model: str, rows: list[dict], summary: dict) -> str:
    lines = [f"# Files with depths ({len(rows)} images, model {model})", "",
             "Command: `python -m hvq.benchmarks.depth_files MODEL DATASET -o OUT`", "",
             f"Level {rows[0]['level']} at each depth. *Alone*: that depth with only the levels its decoder reads; "
             "*progressive*: with every coarser level too (a prefix of the file of every depth). "
             f"The issue's bar is progressive <= {PROGRESSIVE_BAR}x alone.", "",
             "| depth | PSNR dB | bits/index | alone bpp | progressive bpp | ratio (means) | worst image |",
             "|---|---|---|---|---|---|---|"]
    for d, m in summary.items():
        lines.append(f"| {d} | {m['psnr']:.2f} | {m['bits_per_index']:.2f} | {m['alone_bpp']:.4f} | "
                     f"{m['progressive_bpp']:.4f} | {m['ratio']:.3f} | {m['worst_ratio']:.3f} |")
    every = float(np.mean([r["every_depth_bpp"] for r in rows]))
    lines += ["", f"The file of every level and depth: {every:.4f} bpp (mean)."]
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for files.json and files.md.")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Every Nth image only.")
def main(model, dataset, out, every):
    """Bits per index per depth and the progressive file's cost, on every image of DATASET."""
    import torch

    from hvq.codec.runtime.pipeline import Codec

    torch.set_num_threads(1)
    codec = Codec.for_model(model)
    rows = []
    for path in sorted(dataset.glob("*.png"))[::every]:
        rows.append(measure_image(codec, path))
        click.echo(f"{path.name}: " + ", ".join(f"d{d} {v['psnr']:.2f} dB {v['progressive_bpp']:.3f} bpp"
                                               for d, v in rows[-1]["depths"].items()), err=True)
    summary = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "files.json").write_text(json.dumps({"model": model, "rows": rows, "summary": summary}, indent=1))
    (out / "files.md").write_text(markdown(codec.model.fingerprint_hex, rows, summary))
    click.echo(out / "files.md")


if __name__ == "__main__":
    main()
