"""The curves of a training run, drawn from its logs into ``curves.png``.

Four panels: per-level PSNR (training crops, smoothed, and validation
images), validation MS-SSIM, codebook perplexity per level on the training
batches with validation usage, and validation bits per index.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hvq.codec.train.config import CURVES, METRICS, VALIDATION
from hvq.codec.train.records import StepRecord, ValidationRecord, read_log


def _smooth(values: list[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _series(records: list, factor: int, score: str) -> tuple[list[int], list[float]]:
    """Steps and values of one level's ``score`` over the records that hold it (older logs lack some scores)."""
    points = [(r.step, getattr(r.level(factor), score)) for r in records if factor in r.factors]
    kept = [(step, value) for step, value in points if not math.isnan(value)]
    return [step for step, _ in kept], [value for _, value in kept]


def _factors(records: list, score: str) -> list[int]:
    """The levels, coarse to fine, with some value of ``score`` in the records."""
    return sorted({level.factor for r in records for level in r.levels if not math.isnan(getattr(level, score))},
                  reverse=True)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_run(run_dir: str | Path, output: str | Path | None = None, window: int = 8, title: str | None = None) -> Path:
    """Draw ``run_dir``'s metrics and validation logs into ``output`` (default: the run's curves.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    output = Path(output) if output else run_dir / CURVES
    train = read_log(run_dir / METRICS, StepRecord)
    val = read_log(run_dir / VALIDATION, ValidationRecord)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    colours = {}
    ax = axes[0, 0]
    for f in _factors(train, "psnr"):
        steps, values = _series(train, f, "psnr")
        smoothed = _smooth(values, window)
        (line,) = ax.plot(steps[len(steps) - len(smoothed):], smoothed, lw=1, alpha=0.6, label=f"1/{f} train crops")
        colours[f] = line.get_color()
    for f in _factors(val, "psnr"):
        ax.plot(*_series(val, f, "psnr"), "o-", color=colours.get(f), label=f"1/{f} validation")
    ax.set(title="PSNR per level", xlabel="step", ylabel="dB")
    _legend(ax)
    ax = axes[0, 1]
    for f in _factors(val, "ms_ssim"):
        ax.plot(*_series(val, f, "ms_ssim"), "o-", color=colours.get(f), label=f"1/{f}")
    ax.set(title="validation MS-SSIM", xlabel="step")
    _legend(ax)
    ax = axes[1, 0]
    for f in _factors(train, "perplexity"):
        ax.plot(*_series(train, f, "perplexity"), lw=1, color=colours.get(f),
                label=f"1/{f} perplexity (training batches)")
    ax.set(title="codebook perplexity", xlabel="step")
    _legend(ax)
    if _factors(val, "train_usage"):
        twin = ax.twinx()
        for f in _factors(val, "train_usage"):
            steps, values = _series(val, f, "train_usage")
            twin.plot(steps, [100 * v for v in values], "s--", color=colours.get(f), ms=3)
        twin.set(ylabel="% of codewords used on training crops (squares)", ylim=(0, 105))
    ax = axes[1, 1]
    for f in _factors(val, "bits_per_index"):
        ax.plot(*_series(val, f, "bits_per_index"), "o-", color=colours.get(f), label=f"1/{f}")
    ax.set(title="validation bits per index (static prior of the training counts)", xlabel="step")
    _legend(ax)
    fig.suptitle(title or str(run_dir))
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
