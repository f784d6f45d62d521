"""hvq in the benchmark: every level alone (at each quality asked for) and every subset of levels a file can hold.

An image is compressed once with all levels; each subset's file is then cut
from it with ``strip`` (chunks copied, and a level whose parent is dropped
re-coded from its indices: exactly the file ``hvq strip`` and ``hvq compress
--levels`` give), and decoded from those bytes.  A subset's
rate is its whole file (header and every level it holds); its picture is
its finest level, which is what a viewer shows once the file has arrived.

A quality sweep (``qualities``, the values of the codec's ``quality=``
setting, 0-100) makes each level a curve, as the classical codecs' sweeps
do; ``None`` is the codec's default, the only point a codec without that
setting has.  hvq's RD curve is then the envelope of its levels' curves
(``bjontegaard.Curve.usable`` keeps the points no cheaper point beats), and
the subsets of levels are measured at the default quality only.
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


def setting_label(levels: tuple[int, ...], quality: float | None = None) -> str:
    """``levels=16,8``; with a quality, ``levels=16 quality=50``."""
    label = "levels=" + ",".join(str(f) for f in levels)
    return label if quality is None else f"{label} quality={quality:g}"


def parse_setting(setting: str) -> tuple[tuple[int, ...], float | None]:
    """The levels and the quality (None: the default) of a label written by ``setting_label``."""
    fields = dict(part.split("=", 1) for part in setting.split())
    quality = fields.get("quality")
    return tuple(int(f) for f in fields["levels"].split(",")), None if quality is None else float(quality)


def single_level_settings(factors, qualities=(None,)) -> list[str]:
    """The settings of the levels stored alone, coarsest (lowest rate) first, each at every quality:
    the points whose envelope is hvq's RD curve for BD."""
    return [setting_label((f,), q) for f in sorted(factors, reverse=True) for q in qualities]


def takes_quality(codec: Codec) -> bool:
    """Whether this codec's ``compress`` has a ``quality=`` setting to sweep."""
    return "quality" in inspect.signature(codec.compress).parameters


def measure_hvq(codec: Codec, image: str, original: np.ndarray, qualities=(None,),
                perceptual: bool = True) -> list[Measurement]:
    """Compress ``original`` (H, W, 3 uint8) once per quality, then score the files cut from it, decoded
    from their bytes: every level alone at every quality; every subset at the default quality (None)."""
    from PIL import Image

    picture = Image.fromarray(original, "RGB")
    rows = []
    for quality in qualities:
        all_levels = codec.compress(picture) if quality is None else codec.compress(picture, quality=quality)
        for levels in level_subsets(codec.model.config.factors):
            if len(levels) > 1 and quality is not None:
                continue
            data = strip(all_levels, levels, codec.model.prior)
            decoded = np.asarray(codec.decompress(data))  # the finest level held
            rows.append(measure(image, CODEC_NAME, setting_label(levels, quality), original, data, decoded,
                                perceptual))
    return rows
