"""What a run measures: one record per (image, codec, setting), and their means.

Kept as frozen dataclasses so the writers in ``report.py`` and the BD
comparison read named fields, and a worker process can send them back
pickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hvq.evaluation.metrics import msssim, msssim_db, psnr, ssimulacra2


@dataclass(frozen=True)
class Measurement:
    """One image coded by one codec at one setting, scored on the decoded pixels."""

    image: str  # path relative to the dataset folder
    codec: str  # "hvq", "jpeg", ...
    setting: str  # "quality=50", "rate=24", "distance=2.5", "levels=16,8"
    width: int
    height: int
    file_bytes: int  # the real encoded size: what a user would store
    psnr: float  # dB, RGB, 8-bit
    ms_ssim: float  # NaN below MS-SSIM's minimum size
    ms_ssim_db: float
    ssimulacra2: float = float("nan")  # NaN when not scored (``--no-ssimulacra2``) or below 8 px a side

    @property
    def bpp(self) -> float:
        return 8 * self.file_bytes / (self.width * self.height)


def measure(image: str, codec: str, setting: str, original: np.ndarray, encoded: bytes,
            decoded: np.ndarray, perceptual: bool = True) -> Measurement:
    """Score decoded pixels (decoded from ``encoded``, never taken from the encoder) against the original;
    ``perceptual``: SSIMULACRA 2 as well."""
    if decoded.shape != original.shape:
        raise ValueError(f"{codec} {setting} decoded {image} to {decoded.shape}, expected {original.shape}")
    value = msssim(original, decoded)
    height, width = original.shape[:2]
    return Measurement(image, codec, setting, width, height, len(encoded), psnr(original, decoded),
                       value, msssim_db(value), ssimulacra2(original, decoded) if perceptual else float("nan"))


@dataclass(frozen=True)
class SettingMean:
    """The mean over images of one codec at one setting.

    Every field is the mean of the per-image values, MS-SSIM in dB included
    (dB first, then the mean), as ``kodak_classic_measured.json`` does.
    MS-SSIM means skip the images too small for it; ``ms_ssim_images``
    says how many were scored (the same images for every codec).
    """

    codec: str
    setting: str
    images: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_db: float
    ms_ssim_images: int
    ssimulacra2: float = float("nan")  # the mean of the images scored; NaN when none was


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def mean_by_setting(measurements: list[Measurement]) -> list[SettingMean]:
    """Means per (codec, setting), in the order the settings first appear."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.codec, m.setting), []).append(m)
    means = []
    for (codec, setting), rows in groups.items():
        means.append(SettingMean(
            codec=codec,
            setting=setting,
            images=len(rows),
            bpp=float(np.mean([r.bpp for r in rows])),
            psnr=float(np.mean([r.psnr for r in rows])),
            ms_ssim=_mean([r.ms_ssim for r in rows]),
            ms_ssim_db=_mean([r.ms_ssim_db for r in rows]),
            ms_ssim_images=sum(not math.isnan(r.ms_ssim) for r in rows),
            ssimulacra2=_mean([r.ssimulacra2 for r in rows]),
        ))
    return means
