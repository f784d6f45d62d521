"""Published learned-codec curves to draw beside ours: CompressAI's Kodak results.

``../shared/anchors/compressai_kodak.json`` copies CompressAI's result files
verbatim (its ``schema`` says how).  We draw a few MSE-trained models from
``results/image/8bit-decoded/kodak`` (reconstructions rounded to 8 bits, as
ours are): bmshj2018-factorized and -hyperprior, mbt2018-mean and
cheng2020-anchor.  They were measured on the 24 Kodak images, so they are
comparable to a run on Kodak only; their MS-SSIM in dB is computed from
the mean MS-SSIM (mean first, then dB), ours from each image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODELS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")
_SOURCE_FOLDER = "results/image/8bit-decoded/kodak/"


@dataclass(frozen=True)
class PublishedCurve:
    name: str  # e.g. "bmshj2018-hyperprior (mse)"
    source: str  # repository path of the result file
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim_db: tuple[float, ...] | None


def load_published(path: Path, models: tuple[str, ...] = DEFAULT_MODELS) -> list[PublishedCurve]:
    """The chosen models' MSE-trained curves, sorted by rate; ValueError if the file is not that schema."""
    try:
        entries = json.loads(Path(path).read_text())["entries"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a compressai_kodak.json anchors file ({exc})") from None
    curves = []
    for model in models:
        for entry in entries:
            source = entry.get("source", {}).get("path", "")
            if entry.get("codec") == model and entry.get("optimized_for") == "mse" and source.startswith(_SOURCE_FOLDER):
                order = sorted(range(len(entry["bpp"])), key=lambda i: entry["bpp"][i])
                db = entry.get("ms_ssim_db_rgb_derived")
                curves.append(PublishedCurve(
                    name=f"{model} (mse)",
                    source=source,
                    bpp=tuple(entry["bpp"][i] for i in order),
                    psnr=tuple(entry["psnr_rgb_db"][i] for i in order),
                    ms_ssim_db=tuple(db[i] for i in order) if db else None,
                ))
                break
    return curves
