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
from hvq.evaluation.sweep import BenchImage

HVQ = "hvq"


@dataclass(frozen=True)
class Reused:
    """Another run's non-hvq measurements, with the libraries that made them."""

    path: Path
    measurements: list[Measurement]
    libraries: dict[str, str]


def read_others(path: Path, images: list[BenchImage], perceptual: bool) -> Reused:
    """The rows of ``path`` (an rd.json) not made by hvq, checked against this run's images and their sizes."""
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
    wanted = {image.name for image in images}
    if scored != wanted:
        faults = [_some("missing", wanted - scored), _some("has", scored - wanted)]
        raise HvqDataError(f"{path}: measured other images than these ({', '.join(f for f in faults if f)})")
    if perceptual and any(math.isnan(m.ssimulacra2) for m in others):
        raise HvqDataError(f"{path}: was run with --no-ssimulacra2; pass --no-ssimulacra2 here too")
    sizes = {image.name: _size(image.path) for image in images}  # the same pictures, not only the same names
    for m in others:
        if sizes[m.image] != (m.width, m.height):
            raise HvqDataError(f"{path}: {m.image} was {m.width}x{m.height} there, {'x'.join(map(str, sizes[m.image]))} here")
    return Reused(Path(path), others, libraries)


def _some(what: str, names: set[str]) -> str:
    """"missing a.png and 2 more"; empty for no names."""
    if not names:
        return ""
    first, *rest = sorted(names)
    return f"{what} {first}" + (f" and {len(rest)} more" if rest else "")


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:  # the header only
        return im.size


def _number_or_nan(value):
    return float("nan") if value is None else value
