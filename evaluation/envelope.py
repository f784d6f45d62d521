"""Envelopes of RD points: hvq's curve over its levels, and the best other codec at a given rate.

The question a user asks is not "is hvq better than WebP" but "at this
file size, is there anything better than hvq": the best of every measured
codec, downscale + codec baselines included, at hvq's rate.  A codec's
quality at a rate between two of its points is interpolated linearly in
log(bpp), the axis the RD plots and BD use; outside its measured range a
codec offers nothing (no extrapolation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hvq.evaluation.bjontegaard import Curve, curve_of
from hvq.evaluation.records import SettingMean

HVQ = "hvq"


def envelope(rows: list[SettingMean], metric: str) -> list[SettingMean]:
    """The rows no cheaper row matches or beats in ``metric``, by rate: the upper envelope of several curves.

    hvq with a quality sweep has one curve per level; its RD curve is this
    envelope over all of them (what picking the best level and quality for
    each target rate gives).  Rows with a NaN or infinite value are left out.
    """
    kept: list[SettingMean] = []
    for row in sorted(rows, key=lambda r: (r.bpp, -getattr(r, metric))):
        value = getattr(row, metric)
        if row.bpp > 0 and math.isfinite(value) and (not kept or value > getattr(kept[-1], metric)):
            if kept and row.bpp == kept[-1].bpp:
                continue
            kept.append(row)
    return kept


def quality_at(curve: Curve, bpp: float) -> float | None:
    """The curve's quality at ``bpp`` by linear interpolation in log(bpp); None outside its measured range."""
    usable = curve.usable()
    points = list(zip(usable.bpp, usable.quality))
    for (b0, q0), (b1, q1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return q0 + t * (q1 - q0)
    if len(points) == 1 and points[0][0] == bpp:
        return points[0][1]
    return None


@dataclass(frozen=True)
class Alternative:
    """The best other codec at one rate for one metric."""

    codec: str
    quality: float  # interpolated at the rate asked for


def best_alternative(means: list[SettingMean], metric: str, bpp: float, exclude=(HVQ,)) -> Alternative | None:
    """The highest ``metric`` any measured codec but ``exclude`` reaches at ``bpp``; None if none covers it."""
    best = None
    for codec in dict.fromkeys(m.codec for m in means):
        if codec in exclude:
            continue
        value = quality_at(curve_of(means, codec, metric), bpp)
        if value is not None and (best is None or value > best.quality):
            best = Alternative(codec, value)
    return best


@dataclass(frozen=True)
class HeadToHead:
    """One hvq point beside the best alternative at its rate, for one metric."""

    setting: str
    bpp: float
    metric: str
    hvq: float
    best: Alternative | None

    @property
    def delta(self) -> float | None:
        """hvq minus the best alternative (positive: hvq is the better choice at this rate)."""
        return None if self.best is None else self.hvq - self.best.quality


def hvq_against_best(means: list[SettingMean], hvq_settings, metrics) -> list[HeadToHead]:
    """For each metric, every point of hvq's envelope (over ``hvq_settings``) against the best alternative."""
    rows = []
    for metric in metrics:
        mine = [m for m in means if m.codec == HVQ and m.setting in hvq_settings]
        for point in envelope(mine, metric):
            rows.append(HeadToHead(point.setting, point.bpp, metric, getattr(point, metric),
                                   best_alternative(means, metric, point.bpp)))
    return rows
