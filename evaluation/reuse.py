"""The other codecs' measurements of an earlier ``hvq bench`` run, to score a new hvq model against them.

The classical and downscale sweeps are most of a run's time (an hour and
more on two cores for Kodak), and they do not change when the model does.
``hvq bench --others-from OLD/rd.json`` reads them back and measures hvq
alone; the tables, BD rows and plots are then made from both, as one run's::

    OLD/rd.json --per_image rows, codec != hvq--> Measurements --+
                                                                 +--> means, against best, plots
    this run: hvq on the same images ----------------------------+

The earlier run must have scored exactly these images (by name and size),
and SSIMULACRA 2 too when this run scores it; its library versions are
reported, since those rows were measured with them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from hvq.bitstream.errors import HvqDataError
from hvq.evaluation.records import Measurement

HVQ = "hvq"


@dataclass(frozen=True)
class Reused:
    """Another run's non-hvq measurements, with the libraries that made them."""

    path: Path
    measurements: list[Measurement]
    libraries: dict[str, str]


def read_others(path: Path, image_names: list[str], perceptual: bool) -> Reused:
    """The rows of ``path`` (an rd.json) not made by hvq, checked against this run's images."""
    try:
        data = json.loads(Path(path).read_text())
        rows = data["per_image"]
        libraries = dict(data["context"]["libraries"])
    except OSError as exc:
        raise HvqDataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise HvqDataError(f"{path}: not an hvq bench rd.json ({exc})") from None
    names = [f.name for f in fields(Measurement)]
    try:
        others = [Measurement(**{n: _number_or_nan(r[n]) if n not in ("image", "codec", "setting") else r[n]
                                 for n in names}) for r in rows if r["codec"] != HVQ]
    except (KeyError, TypeError, ValueError) as exc:
        raise HvqDataError(f"{path}: a per-image row is damaged ({exc})") from None
    if not others:
        raise HvqDataError(f"{path}: holds no measurements of other codecs")
    scored = {m.image for m in others}
    wanted = set(image_names)
    if scored != wanted:
        missing, extra = sorted(wanted - scored), sorted(scored - wanted)
        raise HvqDataError(f"{path}: measured other images than these ("
                           + ", ".join(filter(None, [missing and f"missing {missing[0]}" + (
                               f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
                               extra and f"has {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")]))
                           + ")")
    if perceptual and any(math.isnan(m.ssimulacra2) for m in others):
        raise HvqDataError(f"{path}: was run with --no-ssimulacra2; pass --no-ssimulacra2 here too")
    return Reused(Path(path), others, libraries)


def check_sizes(reused: Reused, sizes: dict[str, tuple[int, int]]) -> None:
    """Each reused row's image has this run's size (width, height): the same pictures, not only the same names."""
    for m in reused.measurements:
        if sizes.get(m.image) != (m.width, m.height):
            raise HvqDataError(f"{reused.path}: {m.image} was {m.width}x{m.height} there, "
                               f"{'x'.join(map(str, sizes.get(m.image, ('?', '?'))))} here")


def _number_or_nan(value):
    return float("nan") if value is None else value
