"""Distortion of a decoded image against its original: PSNR, MS-SSIM, MS-SSIM in dB, SSIMULACRA 2.

Every codec is scored by these functions on 8-bit RGB arrays (H, W, 3), so
the numbers compare like with like, and with the anchors in
``../shared/anchors/kodak_classic_measured.json``, measured the same way.
"""

from __future__ import annotations

import math

import numpy as np

from hvq.codec.runtime.distortion import psnr_from_mse

# pytorch-msssim's five scales with its 11-px window need a side above
# (11 - 1) * 2**4 = 160 px; below that it cannot compute the coarsest scale.
MSSSIM_MIN_SIDE = 161


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB over all RGB samples, peak 255; inf for identical images."""
    mse = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return psnr_from_mse(float(mse), 255.0)


def msssim(original: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM on RGB (pytorch-msssim, data_range 255, 5 scales); NaN for images of 160 px or less a side."""
    if min(original.shape[:2]) < MSSSIM_MIN_SIDE:
        return float("nan")
    import torch  # only here: the classical codecs' workers need torch for this score alone
    from pytorch_msssim import ms_ssim

    # float32: twice as fast as float64 on CPU, and within 1e-6 of it (it is most of a sweep's time)
    a = torch.tensor(original).permute(2, 0, 1)[None].float()  # a copy: decoded arrays may be read-only
    b = torch.tensor(decoded).permute(2, 0, 1)[None].float()
    return float(ms_ssim(a, b, data_range=255.0))


def msssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM): spreads the values crowded near 1."""
    if math.isnan(value):
        return float("nan")
    return float("inf") if value >= 1 else -10 * math.log10(1 - value)


def ssimulacra2(original: np.ndarray, decoded: np.ndarray) -> float:
    """SSIMULACRA 2 (libjxl's perceptual metric: 100 identical, 90 visually lossless, 50 medium, 10 very low;
    no learned weights), by ``ssimulacra.py``; NaN for images under 8 px a side, which it cannot score."""
    if min(original.shape[:2]) < 8:
        return float("nan")
    from hvq.evaluation.ssimulacra import ssimulacra2 as score

    return score(original, decoded)
