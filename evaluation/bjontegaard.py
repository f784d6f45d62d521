"""BD-rate and BD-quality of hvq against another codec, on the range where both curves exist.

The deltas come from the maintained ``bjontegaard`` package (FAU-LMS, on
PyPI), which reproduces the JCT-VC/JVET common-test-conditions spreadsheet;
this module only chooses its inputs and refuses to extrapolate.

Why ``pchip``, and why care: without a quality sweep hvq's RD "curve" is
three points, its levels 16, 8 and 4 each stored alone (the subsets of
levels are not on it: their rate pays for coarser levels the picture does
not use); with one, it is the envelope of the levels' curves.  Bjøntegaard's
original cubic polynomial has four coefficients, so through three points it
is under-determined and through four it interpolates exactly, overshooting
between points wherever the curve bends.  Piecewise cubic Hermite (pchip)
interpolation passes through every point, never overshoots (monotone data
stay monotone) and is what the HEVC and VVC test conditions use; Akima
needs more points than three to differ from a straight line.

Both deltas integrate only where the curves overlap: BD-rate over the
quality range both reach, BD-quality over the log-rate range both reach.
Where that overlap is empty, the comparison says "no overlap" with both
ranges instead of extrapolating; where it is a sliver (less than
``MIN_OVERLAP`` of the narrower curve's span) the value would describe one
end of a curve, not the curves, and it says "no usable overlap".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

MIN_OVERLAP = 0.2  # of the narrower curve's span (in log10 rate, or in the quality's units)
METHOD = "pchip"
UNITS = {"psnr": "dB", "ms_ssim_db": "dB", "ssimulacra2": "points"}  # the quality metrics and their units


@dataclass(frozen=True)
class Curve:
    """A codec's mean RD points for one quality metric (PSNR, MS-SSIM in dB or SSIMULACRA 2)."""

    name: str
    bpp: tuple[float, ...]
    quality: tuple[float, ...]

    def usable(self) -> "Curve":
        """The points sorted by rate, keeping only those better than every cheaper one.

        Interpolation needs quality to rise with rate; a point that costs
        more and gives less (JPEG at its lowest qualities can) is dominated
        and left out, as is any point with a NaN.
        """
        points = sorted((b, q) for b, q in zip(self.bpp, self.quality) if not (math.isnan(b) or math.isnan(q)))
        kept: list[tuple[float, float]] = []
        for b, q in points:
            if b > 0 and math.isfinite(q) and (not kept or (b > kept[-1][0] and q > kept[-1][1])):
                kept.append((b, q))
        return Curve(self.name, tuple(b for b, _ in kept), tuple(q for _, q in kept))


@dataclass(frozen=True)
class BDResult:
    """hvq (test) against one codec (anchor) for one metric.

    ``bd_rate``: mean rate difference in percent at equal quality (negative:
    hvq needs fewer bits).  ``bd_quality``: mean quality difference in the
    metric's units at equal rate (positive: hvq is better).  Each is None
    where its overlap is missing, with ``rate_note`` / ``quality_note`` saying why.
    """

    test: str
    anchor: str
    metric: str  # "psnr", "ms_ssim_db" or "ssimulacra2"
    bd_rate: float | None
    bd_quality: float | None
    quality_range: tuple[float, float] | None  # what bd_rate averages over
    bpp_range: tuple[float, float] | None  # what bd_quality averages over
    rate_note: str = ""
    quality_note: str = ""


def _overlap(test: tuple[float, ...], anchor: tuple[float, ...], log: bool) -> tuple[float, float] | str:
    """The shared interval, or why there is none to average over: "no overlap" or "no usable overlap"."""
    scale = math.log10 if log else float
    low, high = max(min(test), min(anchor)), min(max(test), max(anchor))
    if high <= low:
        return "no overlap"
    narrower = min(scale(max(test)) - scale(min(test)), scale(max(anchor)) - scale(min(anchor)))
    if scale(high) - scale(low) < MIN_OVERLAP * narrower:
        return "no usable overlap"  # they touch, but BD would describe a curve's end, not the curves
    return low, high


def _span(values: tuple[float, ...], unit: str, digits: int) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f} {unit}"


def compare(test: Curve, anchor: Curve, metric: str) -> BDResult:
    """BD-rate and BD-quality of ``test`` against ``anchor`` over their overlap; no extrapolation."""
    test, anchor = test.usable(), anchor.usable()
    unit = UNITS.get(metric, "")
    if len(test.bpp) < 2 or len(anchor.bpp) < 2:
        note = f"too few points ({test.name}: {len(test.bpp)}, {anchor.name}: {len(anchor.bpp)}; BD needs 2 each)"
        return BDResult(test.name, anchor.name, metric, None, None, None, None, note, note)
    import bjontegaard  # imports matplotlib.pyplot: keep it off the import path of everything else

    quality_range = _overlap(test.quality, anchor.quality, log=False)
    bpp_range = _overlap(test.bpp, anchor.bpp, log=True)
    bd_rate = bd_quality = None
    rate_note = quality_note = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its overlap warning: our own check above decides
        if isinstance(quality_range, str):
            rate_note = (f"{quality_range} ({test.name} {_span(test.quality, unit, 2)}, "
                         f"{anchor.name} {_span(anchor.quality, unit, 2)})")
            quality_range = None
        else:
            bd_rate = float(bjontegaard.bd_rate(anchor.bpp, anchor.quality, test.bpp, test.quality, method=METHOD,
                                                require_matching_points=False, min_overlap=0))
        if isinstance(bpp_range, str):
            quality_note = (f"{bpp_range} ({test.name} {_span(test.bpp, 'bpp', 3)}, "
                            f"{anchor.name} {_span(anchor.bpp, 'bpp', 3)})")
            bpp_range = None
        else:
            bd_quality = float(bjontegaard.bd_psnr(anchor.bpp, anchor.quality, test.bpp, test.quality,
                                                   method=METHOD, require_matching_points=False, min_overlap=0))
    return BDResult(test.name, anchor.name, metric, bd_rate, bd_quality, quality_range, bpp_range,
                    rate_note, quality_note)


def curve_of(means, codec: str, metric: str, settings: list[str] | None = None) -> Curve:
    """A codec's curve from its ``SettingMean`` rows (only ``settings``, when given)."""
    rows = [m for m in means if m.codec == codec and (settings is None or m.setting in settings)]
    return Curve(codec, tuple(m.bpp for m in rows), tuple(getattr(m, metric) for m in rows))


def hvq_against_each(means, hvq_settings: list[str], published=()) -> list[BDResult]:
    """hvq's curve against every other measured codec (PSNR, MS-SSIM dB, and SSIMULACRA 2 when scored),
    then against each published curve (PSNR only: their MS-SSIM dB is computed mean-first).

    hvq's curve is the envelope of ``hvq_settings``, its levels stored alone
    at every quality measured: ``Curve.usable`` keeps the points that no
    cheaper one beats, which is the envelope over the levels' curves.
    """
    results = []
    others = [c for c in dict.fromkeys(m.codec for m in means) if c != "hvq"]
    metrics = ["psnr", "ms_ssim_db"]
    if any(math.isfinite(getattr(m, "ssimulacra2", float("nan"))) for m in means):
        metrics.append("ssimulacra2")
    for metric in metrics:
        test = curve_of(means, "hvq", metric, hvq_settings)
        for codec in others:
            results.append(compare(test, curve_of(means, codec, metric), metric))
    test = curve_of(means, "hvq", "psnr", hvq_settings)
    for curve in published:
        results.append(compare(test, Curve(curve.name + ", published", curve.bpp, curve.psnr), "psnr"))
    return results
