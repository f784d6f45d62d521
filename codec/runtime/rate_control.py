"""The quality knob: a quality from 0 to 100, or a target size or PSNR, turned into index choices.

::

    quality Q  -> lambda per level (lambdas_for) -> rdoq.choose_indices
    target-bpp -> for each set of levels: bisect Q until the file's size is within 5% of the target
    target-psnr-> the smallest set of levels that reaches it; bisect Q until PSNR is within 0.1 dB

Q = 100 is lambda 0, the nearest codewords (today's files, byte for byte);
lower Q spends fewer bits on each level's indices at some distortion.
lambda grows geometrically as Q falls, so equal steps of Q are roughly equal
steps of log lambda, which is what a bisection wants; one scale serves every
level because the latent distances of all levels live in the one codebook's
space.  The scale was set on a training image (not Kodak): at Q = 0 the
finest level saves about a sixth of its bytes at a loss near 1 dB; beyond
that the loss grows fast for little gain (on Kodak, lambda 0.5 cost up to
3 dB for 9% of the bytes; benchmarks/results/rate_control).

A target names the file, not a level: bits per pixel of the whole file
(HEAD and chunks included), PSNR of the finest level it stores.  Without
``levels``, a target search also chooses the levels: the coarsest level
through some finest one, coarse first as always, so the file stays
progressive.  A target no setting reaches is refused with the nearest value
that can be reached (``HvqTargetError``); nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hvq.bitstream.errors import HvqError
from hvq.bitstream.settings import RateSetting
from hvq.codec.runtime import rdoq

LAMBDA_AT_ZERO = 0.15  # squared latent distance per bit at Q = 0
_OCTAVES = 4  # lambda doubles every 100 / _OCTAVES steps of Q below 100
BPP_TOLERANCE = 0.05  # relative
PSNR_TOLERANCE = 0.1  # dB
_SEARCH_STEPS = 14  # bisection steps on Q: 100 / 2**14 < 0.01, the stored resolution


class HvqRateError(HvqError):
    """A rate-control setting that cannot be used: out of range, or two at once."""


class HvqTargetError(HvqError):
    """A target no setting reaches; ``nearest`` is the closest value that can be reached."""

    def __init__(self, message: str, nearest: float):
        super().__init__(message)
        self.nearest = nearest


def lambdas_for(quality: float, factors) -> dict[int, float]:
    """Lambda of each level at a quality: 0 at 100, LAMBDA_AT_ZERO at 0, geometric in between."""
    q = min(100.0, max(0.0, float(quality)))
    lam = LAMBDA_AT_ZERO * (2.0 ** (_OCTAVES * (100.0 - q) / 100.0) - 1.0) / (2.0**_OCTAVES - 1.0)
    return {int(f): lam for f in factors}


def setting_for(quality=None, target_bpp=None, target_psnr=None) -> RateSetting | None:
    """Check the keywords and name the request; None asks for the nearest codewords (no rate control)."""
    given = [name for name, v in (("quality", quality), ("target_bpp", target_bpp), ("target_psnr", target_psnr))
             if v is not None]
    if len(given) > 1:
        raise HvqRateError(f"give one of quality, target_bpp and target_psnr, not {' and '.join(given)}")
    if quality is not None:
        q = _number(quality, "quality")
        if not 0 <= q <= 100:
            raise HvqRateError(f"quality {quality} is outside 0..100")
        return RateSetting("quality", q, round(q, 2))
    for mode, value in (("target-bpp", target_bpp), ("target-psnr", target_psnr)):
        if value is not None:
            v = _number(value, mode.replace("-", "_"))
            if not v > 0:
                raise HvqRateError(f"{mode.replace('-', ' ')} {value} is not positive")
            return RateSetting(mode, v, 100.0)
    return None


def _number(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HvqRateError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(v):
        raise HvqRateError(f"{name} {value} is not a finite number")
    return v


@dataclass(frozen=True)
class Choice:
    """What rate control settled on: the levels to store, their grids, and the setting to record."""

    factors: tuple[int, ...]
    grids: dict[int, np.ndarray]
    setting: RateSetting


@dataclass(frozen=True)
class Trial:
    quality: float
    grids: dict[int, np.ndarray]
    value: float  # the file's bpp, or the finest level's PSNR


def choose(
    setting: RateSetting,
    candidates,
    level_sets: list[tuple[int, ...]],
    prior,
    file_bpp: Callable[[dict, tuple, RateSetting], float],
    finest_psnr: Callable[[dict, tuple], float],
) -> Choice:
    """Settle a setting on grids: a quality directly, a target by searching Q over ``level_sets``.

    ``file_bpp(grids, factors, setting)`` and ``finest_psnr(grids,
    factors)`` measure a trial (the codec writes the file, or decodes the
    finest level); ``level_sets`` are ordered coarse (smallest) first.
    """
    if setting.mode == "quality":
        factors = level_sets[-1]
        grids = rdoq.choose_indices(candidates, factors, prior, lambdas_for(setting.quality, factors))
        return Choice(factors, grids, setting)

    def trial(factors, q):
        q = round(q, 2)  # the stored resolution: the recorded quality remakes these grids
        grids = rdoq.choose_indices(candidates, factors, prior, lambdas_for(q, factors))
        s = RateSetting(setting.mode, setting.requested, q)
        value = file_bpp(grids, factors, s) if setting.mode == "target-bpp" else finest_psnr(grids, factors)
        return Trial(q, grids, value)

    if setting.mode == "target-bpp":
        return _search_bpp(setting, level_sets, trial)
    return _search_psnr(setting, level_sets, trial)


def _bisect(factors, trial, low: Trial, high: Trial, good: Callable[[float], bool], above: Callable[[float], bool]):
    """Bisect Q between two trials until ``good`` holds; ``above`` says a value lies above the target."""
    for _ in range(_SEARCH_STEPS):
        if high.quality - low.quality < 0.02:
            break
        mid = trial(factors, (low.quality + high.quality) / 2)
        if good(mid.value):
            return mid
        if above(mid.value):
            high = mid
        else:
            low = mid
    return min((low, high), key=lambda t: 0 if good(t.value) else 1)


def _search_bpp(setting: RateSetting, level_sets, trial) -> Choice:
    """The finest set of levels whose size range holds the target, then Q bisected to it."""
    target = setting.requested
    good = lambda v: abs(v - target) <= BPP_TOLERANCE * target  # noqa: E731
    reach = []
    for factors in reversed(level_sets):  # finest first: at equal size the finer level looks better
        low, high = trial(factors, 0.0), trial(factors, 100.0)
        reach.append((low.value, high.value))
        for t in (high, low):
            if good(t.value):
                return Choice(factors, t.grids, _setting(setting, t))
        if low.value < target < high.value:
            found = _bisect(factors, trial, low, high, good, above=lambda v: v > target)
            if good(found.value):
                return Choice(factors, found.grids, _setting(setting, found))
    nearest = min((v for pair in reach for v in pair), key=lambda v: abs(v - target))
    ranges = ", ".join(f"{lo:.4f}-{hi:.4f}" for lo, hi in reversed(reach))
    raise HvqTargetError(
        f"target {target:g} bpp is out of reach: this image's files span {ranges} bpp; nearest {nearest:.4f} bpp",
        nearest,
    )


def _search_psnr(setting: RateSetting, level_sets, trial) -> Choice:
    """The smallest set of levels that reaches the target PSNR, then Q bisected to it."""
    target = setting.requested
    good = lambda v: abs(v - target) <= PSNR_TOLERANCE  # noqa: E731
    reach = []
    for factors in level_sets:  # coarse first: the smallest file that reaches the target wins
        low, high = trial(factors, 0.0), trial(factors, 100.0)
        reach.append((low.value, high.value))
        for t in (low, high):  # low first: the smaller file
            if good(t.value):
                return Choice(factors, t.grids, _setting(setting, t))
        if low.value < target < high.value:
            found = _bisect(factors, trial, low, high, good, above=lambda v: v > target)
            if good(found.value):
                return Choice(factors, found.grids, _setting(setting, found))
    nearest = min((v for pair in reach for v in pair), key=lambda v: abs(v - target))
    ranges = ", ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in reach)
    raise HvqTargetError(
        f"target {target:g} dB is out of reach: this image's levels span {ranges} dB; nearest {nearest:.2f} dB",
        nearest,
    )


def _setting(setting: RateSetting, t: Trial) -> RateSetting:
    return RateSetting(setting.mode, setting.requested, t.quality)
