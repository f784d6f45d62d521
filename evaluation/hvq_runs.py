"""hvq in the benchmark: the files of its RD curve (at each quality asked for) and every subset of levels.

An image is compressed once with all levels (and all depths); each file
scored is then cut from it with ``strip`` (chunks copied, and a level whose
parent is dropped re-coded from its indices: exactly the file ``hvq strip``
and ``hvq compress --levels`` give), and decoded from those bytes.  A
file's rate is its whole size (header and every level it holds); its
picture is its finest level at the deepest depth it holds, which is what a
viewer shows once the file has arrived.

The curve's files (``curve_selections``) are each level with the least it
needs: alone, or with the coarser levels a top-down model's decoder reads;
a level with refinement depths gives one file per depth.  A quality sweep
(``qualities``, the values of the codec's ``quality=`` setting, 0-100) makes
each of them a curve, as the classical codecs' sweeps do; ``None`` is the
codec's default, the only point a codec without that setting has.  hvq's RD
curve is then the envelope of those curves (``bjontegaard.Curve.usable``
keeps the points no cheaper point beats), and the other subsets of levels
are measured at the default quality only.
"""

from __future__ import annotations

import inspect
from itertools import combinations

import numpy as np

from hvq.bitstream.levels import strip
from hvq.evaluation.records import Measurement, measure
from hvq.codec.runtime.pipeline import Codec

CODEC_NAME = "hvq"


def level_subsets(factors) -> list[tuple[int, ...]]:
    """Every non-empty subset of the levels, coarse first within each: singles, then pairs, ..., then all."""
    ordered = sorted(factors, reverse=True)
    return [subset for size in range(1, len(ordered) + 1) for subset in combinations(ordered, size)]


def decodable_subsets(net) -> list[tuple[int, ...]]:
    """The subsets whose finest level decodes from the file alone: with a top-down model it needs its
    coarser levels too (``net.parents_needed``), so only those subsets that hold them are files worth scoring."""
    return [s for s in level_subsets(net.config.factors) if set(net.parents_needed(s[-1])) <= set(s)]


def curve_selections(net) -> list[tuple[tuple[int, ...], dict[int, int]]]:
    """The files whose envelope is hvq's RD curve: each level with the least it needs, at each of its depths.

    Coarse first: (levels, {factor: depth}) with the level, the coarser levels
    its decoder reads (top-down models; at depth 1, as the decoder reads them),
    and the level at depth 1..D.  A model without depths or top-down decoding
    gives each level stored alone, as before.
    """
    out = []
    for factor in sorted(net.config.factors, reverse=True):
        levels = tuple(sorted((*net.parents_needed(factor), factor), reverse=True))
        for depth in range(1, net.depth_of(factor) + 1):
            out.append((levels, {f: depth if f == factor else 1 for f in levels if net.depth_of(f) > 1}))
    return out


def setting_label(levels: tuple[int, ...], quality: float | None = None, depths: dict[int, int] | None = None,
                  effort: int | None = None) -> str:
    """``levels=16,8``; with a quality, ``levels=16 quality=50`` (and ``effort=2`` when one was asked
    for); with depths, ``levels=16,8,4:2`` (the ``--levels`` / ``--keep`` spelling: level 4 at depths 1-2)."""
    depths = depths or {}
    label = "levels=" + ",".join(f"{f}:{depths[f]}" if f in depths else str(f) for f in levels)
    if quality is None:
        return label
    return f"{label} quality={quality:g}" + ("" if effort is None else f" effort={effort}")


def parse_setting(setting: str) -> tuple[tuple[int, ...], float | None]:
    """The levels and the quality (None: the default) of a label written by ``setting_label``."""
    fields = dict(part.split("=", 1) for part in setting.split())
    quality = fields.get("quality")
    levels = tuple(int(f.partition(":")[0]) for f in fields["levels"].split(","))
    return levels, None if quality is None else float(quality)


def curve_of_setting(setting: str) -> tuple[int, int]:
    """The (finest level, its depth) whose own quality sweep a label belongs to (depth 1 without depths)."""
    finest = setting.split()[0].split("=", 1)[1].split(",")[-1]
    factor, _, depth = finest.partition(":")
    return int(factor), int(depth or 1)


def _depth_labels(net, levels: tuple[int, ...]) -> dict[int, int]:
    """Depths to name in a subset's label: every depth of each level that has several (the file keeps them)."""
    return {f: net.depth_of(f) for f in levels if net.depth_of(f) > 1}


def curve_settings(net, qualities=(None,), effort: int | None = None) -> list[str]:
    """The settings of ``curve_selections`` at every quality, coarsest (lowest rate) first:
    the points whose envelope is hvq's RD curve for BD."""
    return [setting_label(levels, q, depths, effort) for levels, depths in curve_selections(net) for q in qualities]


def takes_quality(codec: Codec) -> bool:
    """Whether this codec's ``compress`` has a ``quality=`` setting to sweep."""
    return "quality" in inspect.signature(codec.compress).parameters


def takes_effort(codec: Codec) -> bool:
    """Whether this codec's ``compress`` has an ``effort=`` setting (rate control's, beside ``quality=``)."""
    return "effort" in inspect.signature(codec.compress).parameters


def measure_hvq(codec: Codec, image: str, original: np.ndarray, qualities=(None,),
                perceptual: bool = True, effort: int | None = None) -> list[Measurement]:
    """Compress ``original`` (H, W, 3 uint8) once per quality, then score the files cut from it, decoded
    from their bytes: every file of the curve (``curve_selections``) at every quality; every decodable
    subset of levels, with all their depths, at the default quality (None).  ``effort`` (rate
    control's, 1 or 2) goes with every quality but None; None leaves the codec's default."""
    from PIL import Image

    net = codec.model.net
    picture = Image.fromarray(original, "RGB")
    rows = []
    for quality in qualities:
        rate = {} if quality is None else {"quality": quality} | ({} if effort is None else {"effort": effort})
        all_levels = codec.compress(picture, **rate)
        files = [(levels, _depth_labels(net, levels)) for levels in decodable_subsets(net)] if quality is None else []
        files += curve_selections(net)
        done = set()
        for levels, depths in files:
            label = setting_label(levels, quality, depths, effort)
            if label in done:  # a subset that is also a point of the curve
                continue
            done.add(label)
            data = strip(all_levels, [(f, depths.get(f)) for f in levels], codec.model.prior)
            decoded = np.asarray(codec.decompress(data))  # the finest level held, at the deepest depth held
            rows.append(measure(image, CODEC_NAME, label, original, data, decoded, perceptual))
    return rows
