"""hvq in the benchmark: every level alone and every subset of levels a file can hold.

An image is compressed once with all levels; each subset's file is then cut
from it with ``strip`` (chunks copied, and a level whose parent is dropped
re-coded from its indices: exactly the file ``hvq strip`` and ``hvq compress
--levels`` give), and decoded from those bytes.  A subset's
rate is its whole file (header and every level it holds); its picture is
its finest level, which is what a viewer shows once the file has arrived.
"""

from __future__ import annotations

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


def setting_label(levels: tuple[int, ...]) -> str:
    return "levels=" + ",".join(str(f) for f in levels)


def single_level_settings(factors) -> list[str]:
    """The settings of the levels stored alone, coarsest (lowest rate) first: hvq's RD curve for BD."""
    return [setting_label((f,)) for f in sorted(factors, reverse=True)]


def measure_hvq(codec: Codec, image: str, original: np.ndarray) -> list[Measurement]:
    """Compress ``original`` (H, W, 3 uint8) once, then score every subset's file, decoded from its bytes."""
    from PIL import Image

    all_levels = codec.compress(Image.fromarray(original, "RGB"))
    rows = []
    for levels in level_subsets(codec.model.config.factors):
        data = strip(all_levels, levels, codec.model.prior)
        decoded = np.asarray(codec.decompress(data))  # the finest level held
        rows.append(measure(image, CODEC_NAME, setting_label(levels), original, data, decoded))
    return rows
