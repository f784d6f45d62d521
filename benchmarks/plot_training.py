"""Plot a run's training curves (per-level PSNR on training crops, learning rate) from metrics.jsonl.

    python -m hvq.benchmarks.plot_training RUN/metrics.jsonl -o benchmarks/results/training.png
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np


def smooth(values: list[float], window: int) -> np.ndarray:
    if len(values) < window:
        return np.asarray(values)
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


@click.command()
@click.argument("metrics", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
@click.option("--window", type=int, default=8, show_default=True, help="Moving average over logged points.")
def main(metrics, output, window):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows]
    factors = sorted(int(k.split("_")[1]) for k in rows[0] if k.startswith("psnr_"))
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for f in factors:
        ys = smooth([r[f"psnr_{f}"] for r in rows], window)
        ax.plot(steps[len(steps) - len(ys):], ys, label=f"level {f}")
    ax.set_ylabel("PSNR on training crops (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax_lr.plot(steps, [r["lr"] for r in rows], color="gray")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=110)


if __name__ == "__main__":
    main()
