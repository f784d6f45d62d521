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

METRICS = {"psnr": "PSNR (dB, RGB)", "ms_ssim_db": "MS-SSIM (dB), -10 log10(1 - MS-SSIM)"}


def rd_figure(means: list[SettingMean], metric: str, hvq_curve: list[str], title: str,
              published: list[PublishedCurve] = ()) -> bytes:
    """One RD plot as PNG bytes.

    Each codec is a line through its mean points in rate order; hvq's line
    joins its levels stored alone (``hvq_curve``, the settings BD uses) and
    its other subsets of levels are separate labelled points.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    codecs = list(dict.fromkeys(m.codec for m in means))
    for codec in codecs:
        mine = [m for m in means if m.codec == codec and math.isfinite(getattr(m, metric))]
        if codec == "hvq":
            curve = sorted((m for m in mine if m.setting in hvq_curve), key=lambda m: m.bpp)
            axes.plot([m.bpp for m in curve], [getattr(m, metric) for m in curve], "o-", color="black",
                      linewidth=2, label="hvq, each level alone")
            for m in curve:
                axes.annotate(m.setting.split("=")[1], (m.bpp, getattr(m, metric)), textcoords="offset points",
                              xytext=(4, -10), fontsize=7)
            others = [m for m in mine if m.setting not in hvq_curve]
            axes.plot([m.bpp for m in others], [getattr(m, metric) for m in others], "D", color="dimgray",
                      markersize=4, label="hvq, several levels (rate: whole file)")
            for index, m in enumerate(others):  # staggered: subsets ending on one level share its quality
                axes.annotate(m.setting.split("=")[1].replace(",", "+"), (m.bpp, getattr(m, metric)),
                              textcoords="offset points", xytext=(3, 3 + 7 * (index % 3)), fontsize=6,
                              color="dimgray")
        else:
            mine.sort(key=lambda m: m.bpp)
            axes.plot([m.bpp for m in mine], [getattr(m, metric) for m in mine], ".-", label=codec)
    for curve in published:
        values = curve.psnr if metric == "psnr" else curve.ms_ssim_db
        if values:
            axes.plot(curve.bpp, values, "--", linewidth=1, alpha=0.8, label=f"{curve.name}, CompressAI (published)")
    axes.set_xscale("log")
    axes.set_xlabel("bits per pixel (real file size)")
    axes.set_ylabel(METRICS[metric])
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")  # low rate, high quality: where no codec reaches
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
