"""The quality knob: a quality from 0 to 100, or a target size or PSNR, turned into index choices.

::

    quality Q  -> lambda per level (lambdas_for) -> rdoq.choose_indices (latent distance)
      effort 2 -> mu (mu_for) -> pixel_rdoq.refine per level (pixel error through the decoder)
               -> monotone: no level better, no file bigger than at the rung above (RUNGS)
    target-bpp -> for each set of levels (``Rung``): bisect Q until the file's size is within 5% of the target
    target-psnr-> the smallest set of levels that reaches it; bisect Q until PSNR is within 0.1 dB

A model with refinement depths gives a set of levels per depth of its finest
level (16+8+4 at depth 1, 2, ...): Q chooses depth 1, and the depths after
it quantise what that choice leaves of the latent (``encode_tiled(first=)``).

The effort says how far the choice goes, like avifenc's speed or cjxl's
effort.  Effort 1 (the default) is the latent-distance choice alone, a numpy
pass over each level's few nearest codewords: 1.0-1.3 times the nearest
codewords' encode time.  Effort 2 adds the pixel passes and the check
against the rungs below; each level it stores costs about six decodes of the
level (two with gradient), 20-75 times the nearest codewords' time, for a
larger saving (benchmarks/results/rate_control/).  At effort 1 monotonicity
is measured, not constructed (the check would cost a decode of every level
per rung).

No setting is the nearest codewords (today's files, byte for byte, and the
fast path).  Q = 100 is lambda 0 and mu 0: at effort 1 the nearest codewords
themselves (with a ``rate`` chunk), at effort 2 the nearest codewords refined for
pixel error alone (higher PSNR, a few bytes more or less); lower Q spends
fewer bits on each level's indices at some distortion.  Both weights grow
geometrically as Q falls, so equal steps of Q are roughly equal steps of log
lambda, which is what a bisection wants.  The latent lambda needs one scale
for every level because all levels' latents live in the one codebook's
space; mu is scale-free (a percent of squared error per percent of bits).
The two work together: the latent choice moves many cells to cheaper codes
at once, and the pixel passes then take back the changes that cost pixels
(on kodim05, level 4: latent lambda 0.15 alone -6.8% bits at +0.02 dB after
the passes at mu 0, against +0.31 dB at +0.7% bits from the nearest).  The
scales were set on one Kodak image (kodim05) by hand, a handful of points.

A target names the file, not a level: bits per pixel of the whole file
(HEAD and chunks included), PSNR of the finest level it stores.  Without
``levels``, a target search also chooses the levels: the coarsest level
through some finest one, coarse first as always, so the file stays
progressive.  A target no setting reaches is refused with the nearest value
that can be reached (``HvqTargetError``); nothing is written.

Monotone by construction (``monotone``): the pixel passes are greedy and
local, so a run at a higher rate weight can land on a better local optimum
than a run at a lower one (level 16 of kodim21: Q 50 at 21.12 dB, Q 100 at
21.05).  So the grids of a quality Q below 100 are checked against those of
the next rung above it, ``U(Q)``, the smallest of ``RUNGS`` above Q, made by
this same construction (Q 100 is the top and is not checked)::

    G(Q) = choice at Q (latent lambda, pixel passes at mu), then
           every level decoded; a level f whose squared error is below G(U)'s
           takes G(U)'s grid at f (with every level its decoder reads or
           that reads it: a top-down model's levels move together);
           if the file is then bigger than G(U)'s, the whole G(U)

What that guarantees, for each image and stored level, at the decoded
8-bit pixels (the squared errors are sums of integers, exact in float64):
a level's error at Q is never below its error at U(Q), and the file is
never bigger than U(Q)'s; a level taken from U(Q) decodes exactly as U(Q)'s
does, since every level it reads moved with it.  U(Q) is itself checked
against the rung above it, so by induction Q is never better, nor bigger,
than any rung at or above U(Q): with ``RUNGS`` (100, 50), Q 0, 50 and 100
are ordered, and every Q below 50 is no better and no bigger than Q 50 and
Q 100.  Not guaranteed: two qualities between the same two rungs (Q 30
against Q 40, or Q 60 against Q 90) are made independently and are only
measured (benchmarks/results/rate_control/).  For a level with refinement
depths the check compares the level as the file decodes it (every stored
depth).  Where the check moves a level to U(Q)'s grid, that level costs
U(Q)'s bits at Q: a rare point, weakly dominated.  The price is the rungs'
own choices, made once per image and shared by every trial of a search: a
single quality below 100 costs one choice more per rung above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hvq.bitstream.errors import HvqError
from hvq.bitstream.settings import EFFORTS, RateSetting  # 1: latent distance alone; 2: and the pixel passes
from hvq.codec.runtime import rdoq

LAMBDA_AT_ZERO = 0.15  # squared latent distance per bit at Q = 0
MU_AT_ZERO = 4.0  # the pixel passes' rate weight at Q = 0 (pixel_rdoq.refine)
_OCTAVES = 4  # lambda doubles every 100 / _OCTAVES steps of Q below 100
BPP_TOLERANCE = 0.05  # relative
PSNR_TOLERANCE = 0.1  # dB
_SEARCH_STEPS = 14  # bisection steps on Q: 100 / 2**14 < 0.01, the stored resolution
RUNGS = (100.0, 50.0)  # qualities whose grids every lower quality's are checked against (module docstring)
DEFAULT_EFFORT = 1
PIXEL_EFFORT = 2  # the effort from which the pixel passes and the check against the rungs run


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


def mu_for(quality: float) -> float:
    """Rate weight of the pixel-distortion passes at a quality: 0 at 100, MU_AT_ZERO at 0, geometric between.

    Scale-free (``pixel_rdoq.refine``): mu percent of squared error is traded
    for one percent of a level's bits, so one scale serves every level and image.
    """
    q = min(100.0, max(0.0, float(quality)))
    return MU_AT_ZERO * (2.0 ** (_OCTAVES * (100.0 - q) / 100.0) - 1.0) / (2.0**_OCTAVES - 1.0)


def setting_for(quality=None, target_bpp=None, target_psnr=None, effort=None) -> RateSetting | None:
    """Check the keywords and name the request; None asks for the nearest codewords (no rate control).

    ``effort`` (1 or 2, default ``DEFAULT_EFFORT``) needs a quality or a target.
    """
    given = [name for name, v in (("quality", quality), ("target_bpp", target_bpp), ("target_psnr", target_psnr))
             if v is not None]
    if len(given) > 1:
        raise HvqRateError(f"give one of quality, target_bpp and target_psnr, not {' and '.join(given)}")
    if effort is not None:
        if not given:
            raise HvqRateError("an effort needs a quality or a target: without them the indices are the nearest codewords")
        e = _number(effort, "effort")
        if e not in EFFORTS:
            raise HvqRateError(f"effort {effort} is not one of {', '.join(map(str, EFFORTS))}")
        effort = int(e)
    else:
        effort = DEFAULT_EFFORT
    if quality is not None:
        q = _number(quality, "quality")
        if not 0 <= q <= 100:
            raise HvqRateError(f"quality {quality} is outside 0..100")
        return RateSetting("quality", q, round(q, 2), effort)
    for mode, value in (("target-bpp", target_bpp), ("target-psnr", target_psnr)):
        if value is not None:
            v = _number(value, mode.replace("-", "_"))
            if not v > 0:
                raise HvqRateError(f"{mode.replace('-', ' ')} {value} is not positive")
            return RateSetting(mode, v, 100.0, effort)
    return None


def _number(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HvqRateError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(v):
        raise HvqRateError(f"{name} {value} is not a finite number")
    return v


class Rung(tuple):
    """One set of levels a search tries, coarse first, with how deep each level with refinements is stored.

    It is the tuple of factors that ``rdoq.choose_indices`` and the search
    treat as a set of levels; ``depths`` ({factor: depth >= 2}) is what the
    trial's file stores beyond depth 1, so a model with refinement depths
    gives the search one rung per depth of its finest level.
    """

    depths: dict

    def __new__(cls, factors, depths=None):
        rung = super().__new__(cls, factors)
        rung.depths = dict(depths or {})
        return rung

    @property
    def name(self) -> str:
        """"16,8,4:2": the levels, each with its depth where it has refinements (``--levels`` syntax)."""
        return ",".join(f"{f}:{self.depths[f]}" if f in self.depths else str(f) for f in self)


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


def _levels_key(factors) -> str | tuple:
    """What tells two sets of levels apart, depths included (a ``Rung``'s name)."""
    return factors.name if isinstance(factors, Rung) else tuple(factors)


def choose(
    setting: RateSetting,
    candidates,
    level_sets: list[tuple[int, ...]],
    prior,
    file_bpp: Callable[[dict, tuple, RateSetting], float],
    finest_psnr: Callable[[dict, tuple], float],
    refine_at: Callable[[float, tuple], Callable | None] | None = None,
    level_errors: Callable[[dict, tuple], dict[int, float]] | None = None,
    parents_needed: Callable[[int], tuple[int, ...]] = lambda factor: (),
) -> Choice:
    """Settle a setting on grids: a quality directly, a target by searching Q over ``level_sets``.

    ``file_bpp(grids, factors, setting)`` and ``finest_psnr(grids,
    factors)`` measure a trial (the codec writes the file, or decodes the
    finest level); ``level_sets`` are ordered coarse (smallest) first.
    ``refine_at(quality, factors)`` gives the per-level refinement hook of
    ``rdoq.choose_indices`` at a quality (the pixel-distortion passes), or None.
    ``level_errors(grids, factors)`` ({factor: squared error of the decoded
    level}) turns on the check against the rungs (``monotone``), with
    ``parents_needed`` (a top-down model's ``net.parents_needed``).
    """
    made: dict[tuple, dict[int, np.ndarray]] = {}  # (levels, depths, quality) -> grids: the rungs, made once

    def grids_at(factors, q):
        key = (_levels_key(factors), q)
        if key not in made:
            refine = None if refine_at is None else refine_at(q, factors)
            grids = rdoq.choose_indices(candidates, factors, prior, lambdas_for(q, factors), refine)
            above = rung_above(q)
            if level_errors is not None and above is not None:
                upper = grids_at(factors, above)
                bigger = lambda g: file_bpp(g, factors, RateSetting("quality", q, q, setting.effort)) > file_bpp(  # noqa: E731
                    upper, factors, RateSetting("quality", q, q, setting.effort))
                grids = monotone(grids, upper, errors(grids, factors), errors(upper, factors), parents_needed, bigger)
            made[key] = grids
        return made[key]

    measured: dict[tuple, dict[int, float]] = {}

    def errors(grids, factors):
        key = (_levels_key(factors), tuple(grids[f].tobytes() for f in factors))
        if key not in measured:
            measured[key] = level_errors(grids, factors)
        return measured[key]

    if setting.mode == "quality":
        factors = level_sets[-1]
        return Choice(factors, grids_at(factors, setting.quality), setting)

    def trial(factors, q):
        q = round(q, 2)  # the stored resolution: the recorded quality remakes these grids
        grids = grids_at(factors, q)
        s = RateSetting(setting.mode, setting.requested, q, setting.effort)
        value = file_bpp(grids, factors, s) if setting.mode == "target-bpp" else finest_psnr(grids, factors)
        return Trial(q, grids, value)

    if setting.mode == "target-bpp":
        # finest first: at equal size the finer level looks better; the bigger file is tried first
        return _search(setting, list(reversed(level_sets)), trial, BPP_TOLERANCE * setting.requested,
                       bigger_first=True, unit="bpp", digits=4, span="files span")
    # coarse first: the smallest file that reaches the target wins
    return _search(setting, level_sets, trial, PSNR_TOLERANCE, bigger_first=False, unit="dB", digits=2,
                   span="levels span")


def rung_above(quality: float) -> float | None:
    """The smallest of ``RUNGS`` above a quality: what its grids are checked against (None for the top)."""
    above = [r for r in RUNGS if r > quality]
    return min(above) if above else None


def monotone(grids, upper, errors, upper_errors, parents_needed, bigger) -> dict[int, np.ndarray]:
    """Grids no better at any level and no bigger than the next rung's: ``upper``'s where they were.

    ``errors`` and ``upper_errors`` ({factor: squared error of the decoded
    level}) are the two choices' levels; a level below ``upper``'s takes
    ``upper``'s grid together with every level its decoder reads and every
    level that reads it (``parents_needed``), so each level either decodes
    as before or exactly as ``upper``'s does.  ``bigger(grids)`` says
    whether a file of these grids would outgrow ``upper``'s, which then wins.
    """
    moved = {f for f in grids if errors[f] < upper_errors[f]}
    while True:
        linked = {g for f in moved for g in parents_needed(f) if g in grids}
        linked |= {f for f in grids if any(g in moved for g in parents_needed(f))}
        if linked <= moved:
            break
        moved |= linked
    out = {f: upper[f] if f in moved else grids[f] for f in grids}
    if len(moved) < len(grids) and bigger(out):
        return dict(upper)
    return out


def _search(setting: RateSetting, level_sets, trial, tolerance: float, bigger_first: bool, unit: str,
            digits: int, span: str) -> Choice:
    """One search for both targets: the file's bpp and the finest level's PSNR both rise with Q.

    For each set of levels in the given order: its two ends (Q 0 and 100),
    then, if the target lies between them, Q bisected until the value is
    within ``tolerance`` of the target.  ``bigger_first`` says which end is
    tried first when both are within tolerance.
    """
    target = setting.requested
    good = lambda v: abs(v - target) <= tolerance  # noqa: E731
    reach = []
    for factors in level_sets:
        low, high = trial(factors, 0.0), trial(factors, 100.0)
        reach.append((factors, low.value, high.value))
        for t in ((high, low) if bigger_first else (low, high)):
            if good(t.value):
                return Choice(factors, t.grids, _setting(setting, t))
        if low.value < target < high.value:
            found = _bisect(factors, trial, low, high, good, above=lambda v: v > target)
            if good(found.value):
                return Choice(factors, found.grids, _setting(setting, found))
    nearest = min((v for _, lo, hi in reach for v in (lo, hi)), key=lambda v: abs(v - target))
    coarse_first = sorted(reach, key=lambda r: (len(r[0]), sorted(getattr(r[0], "depths", {}).items())))
    ranges = ", ".join(f"{lo:.{digits}f}-{hi:.{digits}f}" for _, lo, hi in coarse_first)
    mode = "bpp" if unit == "bpp" else "dB"
    raise HvqTargetError(
        f"target {target:g} {mode} is out of reach: this image's {span} {ranges} {unit}; "
        f"nearest {nearest:.{digits}f} {unit}",
        nearest,
    )


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


def _setting(setting: RateSetting, t: Trial) -> RateSetting:
    return RateSetting(setting.mode, setting.requested, t.quality, setting.effort)
