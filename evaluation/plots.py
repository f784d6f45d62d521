"""The rate-distortion figures: PSNR against bpp and MS-SSIM (dB) against bpp, as PNG bytes.

Drawn with matplotlib's object API on an Agg canvas: no pyplot, no global
backend, no window, so it runs on a server and inside tests.  Rate is on a
log axis: hvq's coarsest level and a codec's best quality are two decades
apart.
"""

from __future__ import annotations

import io
import math

from hvq.evaluation.anchors import PublishedCurve
from hvq.evaluation.records import SettingMean

METRICS = {"psnr": "PSNR (dB, RGB)", "ms_ssim_db": "MS-SSIM (dB), -10 log10(1 - MS-SSIM)",
           "ssimulacra2": "SSIMULACRA 2 (100: identical, 90: visually lossless, 50: medium)"}


def _draw_hvq(axes, mine: list[SettingMean], metric: str, hvq_curve: list[str]) -> None:
    """hvq's envelope (its RD curve) in black, each level's own quality sweep in grey, the subsets as points."""
    from hvq.evaluation.envelope import envelope
    from hvq.evaluation.hvq_runs import curve_of_setting

    singles = [m for m in mine if m.setting in hvq_curve]
    by_level: dict[tuple[int, int], list[SettingMean]] = {}
    for m in singles:
        by_level.setdefault(curve_of_setting(m.setting), []).append(m)
    deep = any(depth > 1 for _, depth in by_level)
    for (level, depth), rows in by_level.items():
        rows.sort(key=lambda m: m.bpp)
        if len(rows) > 1:  # a level swept over qualities is a curve of its own
            axes.plot([m.bpp for m in rows], [getattr(m, metric) for m in rows], ".-", color="gray", linewidth=0.8,
                      alpha=0.7)
        last = rows[-1]
        axes.annotate(f"level {level}" + (f" depth {depth}" if deep else ""), (last.bpp, getattr(last, metric)), textcoords="offset points",
                      xytext=(4, -10), fontsize=7)
    curve = envelope(singles, metric)
    axes.plot([m.bpp for m in curve], [getattr(m, metric) for m in curve], "o-", color="black", linewidth=2,
              label="hvq (envelope of its levels" + (" and depths" if deep else "") + ", each with the least it needs)")
    others = [m for m in mine if m.setting not in hvq_curve]
    axes.plot([m.bpp for m in others], [getattr(m, metric) for m in others], "D", color="dimgray",
              markersize=4, label="hvq, several levels (rate: whole file)")
    for index, m in enumerate(others):  # staggered: subsets ending on one level share its quality
        axes.annotate(m.setting.split("=")[1].replace(",", "+"), (m.bpp, getattr(m, metric)),
                      textcoords="offset points", xytext=(3, 3 + 7 * (index % 3)), fontsize=6, color="dimgray")


def rd_figure(means: list[SettingMean], metric: str, hvq_curve: list[str], title: str,
              published: list[PublishedCurve] = ()) -> bytes:
    """One RD plot as PNG bytes.

    Each codec is a line through its mean points in rate order, the
    downscale + codec baselines dotted in their base codec's colour; hvq's
    line is the envelope of its levels stored alone (``hvq_curve``, the
    settings BD uses), and its other subsets of levels are labelled points.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hvq.evaluation.classical import DOWNSCALED

    figure = Figure(figsize=(9, 6), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    codecs = list(dict.fromkeys(m.codec for m in means))
    colours = {name: f"C{index % 10}" for index, name in enumerate(c for c in codecs if c not in DOWNSCALED)}
    styles = {2: "--", 4: ":", 8: "-."}
    for codec in codecs:
        mine = [m for m in means if m.codec == codec and math.isfinite(getattr(m, metric))]
        if not mine:
            continue
        if codec == "hvq":
            _draw_hvq(axes, mine, metric, hvq_curve)
            continue
        mine.sort(key=lambda m: m.bpp)
        x, y = [m.bpp for m in mine], [getattr(m, metric) for m in mine]
        if codec in DOWNSCALED:
            base = DOWNSCALED[codec]
            axes.plot(x, y, "x" + styles.get(base.factor, ":"), color=colours.get(base.base, "gray"), linewidth=1,
                      markersize=4, label=f"{base.base} at 1/{base.factor} size, upscaled")
        else:
            axes.plot(x, y, ".-", color=colours[codec], label=codec)
    for index, curve in enumerate(published):
        values = {"psnr": curve.psnr, "ms_ssim_db": curve.ms_ssim_db}.get(metric)
        if values:
            axes.plot(curve.bpp, values, "--", linewidth=1, alpha=0.6, color=f"C{(6 + index) % 10}",
                      label=f"{curve.name}, CompressAI (published)")
    axes.set_xscale("log")
    axes.set_xlabel("bits per pixel (real file size)")
    axes.set_ylabel(METRICS[metric])
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:  # none where no image could be scored (MS-SSIM of tiny images)
        axes.legend(fontsize=6, loc="upper left", ncol=2)  # low rate, high quality: where no codec reaches
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
