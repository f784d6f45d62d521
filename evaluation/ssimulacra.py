"""SSIMULACRA 2: a perceptual image metric computed from the pixels alone (no learned weights to download).

The metric (Jon Sneyers, Cloudinary, 2022-2023; the reference is libjxl's
``tools/ssimulacra2.cc``) scores a distorted image against its original on
a scale up to 100: 90 is visually lossless at normal viewing, 70 high
quality, 50 medium, 30 low, 10 very low; it goes negative for worse.
Data flow, per image pair::

    sRGB (H, W, 3) -> linear RGB -> [scale 0..5: box-downsample by 2] -> XYB, made positive
        -> Gaussian blurs (sigma 1.5) of x, y, x*x, y*y, x*y
        -> SSIM map and edge maps (ringing, blurring) -> 1- and 4-norms per channel
        -> weighted sum of 108 sub-scores -> a cubic, then a power law -> score

Written here rather than taken from PyPI: the ``ssimulacra2`` package
(0.3.0) disagrees with the C++ reference by 2 to 6 points on uniform
images and by hundreds on 64 x 64 ones (its blur mirrors the borders and
it stops the scales at a different size).  This one follows the reference
where the two differ, so the scores are libjxl's:

- the blur is libjxl's recursive Gaussian (Charalampidis 2016, three
  truncated cosines), which treats everything outside the image as zero;
  as an exact linear filter it is applied here as its impulse response,
  11 taps for sigma 1.5;
- a scale is computed while the image it is made from is at least 8 px a
  side, so the last one may be smaller; the weights are then taken in
  order, as the reference's running index does;
- the downsampling averages 2 x 2 blocks in linear RGB, repeating the last
  row and column of an odd-sized image.

``tests/test_bench.py`` checks it against scores of the C++ tool.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SCALES = 6
SIGMA = 1.5
_C2 = 0.0009

# libjxl's opsin absorbance (lib/jxl/opsin_params.h): linear RGB -> LMS-like mix, plus a bias
_OPSIN = np.array([[0.30, 0.622, 0.078],
                   [0.23, 0.692, 0.078],
                   [0.24342268924547819, 0.20476744424496821, 1 - 0.24342268924547819 - 0.20476744424496821]])
_BIAS = 0.0037930732552754493

# The reference's 108 weights: per channel (X, Y, B), per scale, per norm (1, 4): SSIM, ringing, blurring
_WEIGHTS = (
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379, 0.0,
    1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0,
    1.8422455520539298, 11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833, 0.0,
    0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063, 0.0, 0.0,
    0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0,
    0.0, 34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0008680556573291698,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0004179171803251336, 0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862,
    23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493,
    171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
)


@lru_cache(maxsize=None)
def blur_kernel(sigma: float = SIGMA) -> np.ndarray:
    """The impulse response of libjxl's recursive Gaussian: float64 taps, centred, 2 * radius + 1 long.

    The recursion (three second-order resonators fed by the input ``radius``
    samples ahead and behind) is linear and shift-invariant with zero
    outside the signal, so running it once on a unit impulse gives the
    filter exactly; its response beyond ``radius`` cancels to rounding.
    """
    radius = round(3.2795 * sigma + 0.2546)  # (57) of Charalampidis 2016
    omega = np.array([1.0, 3.0, 5.0]) * math.pi / (2 * radius)
    p = np.array([1.0, -1.0, 1.0]) / np.tan(0.5 * omega)  # (37)
    r = np.array([1.0, -1.0, 1.0]) * p * p / np.sin(omega)  # (44)
    rho = np.exp(-0.5 * sigma * sigma * omega * omega) / radius  # (50)
    d13 = p[0] * r[1] - r[0] * p[1]
    zeta15 = (p[1] * r[2] - r[1] * p[2]) / d13  # (52)
    zeta35 = (p[2] * r[0] - r[2] * p[0]) / d13
    a = np.array([p, r, [zeta15, zeta35, 1.0]])  # (56)
    gamma = np.array([1.0, radius * radius - sigma * sigma, zeta15 * rho[0] + zeta35 * rho[1] + rho[2]])  # (55)
    beta = np.linalg.solve(a, gamma)  # (53)
    n2 = -beta * np.cos(omega * (radius + 1))  # (33)
    d1 = -2 * np.cos(omega)
    length = 4 * radius + 3
    impulse = np.zeros(length)
    centre = length // 2
    impulse[centre] = 1.0
    out = np.zeros(length)
    prev = np.zeros(3)
    prev2 = np.zeros(3)
    for n in range(-radius + 1, length):
        left, right = n - radius - 1, n + radius - 1
        total = (impulse[left] if 0 <= left < length else 0.0) + (impulse[right] if right < length else 0.0)
        now = n2 * total - d1 * prev - prev2
        prev2, prev = prev, now
        if n >= 0:
            out[n] = now.sum()
    return out[centre - radius:centre + radius + 1]


def _blur(planes: np.ndarray) -> np.ndarray:
    """Separable blur of (C, H, W) planes, zero outside the image (as the reference's recursion)."""
    taps = blur_kernel().astype(np.float32)
    radius = len(taps) // 2
    _, h, w = planes.shape
    padded = np.pad(planes, ((0, 0), (0, 0), (radius, radius)))
    rows = sum(tap * padded[:, :, k:k + w] for k, tap in enumerate(taps))
    padded = np.pad(rows, ((0, 0), (radius, radius), (0, 0)))
    return sum(tap * padded[:, k:k + h, :] for k, tap in enumerate(taps))


def _linear(rgb8: np.ndarray) -> np.ndarray:
    """8-bit sRGB (H, W, 3) -> linear light (3, H, W) float32, by the sRGB transfer function."""
    v = rgb8.astype(np.float64).transpose(2, 0, 1) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _positive_xyb(linear: np.ndarray) -> np.ndarray:
    """Linear RGB (3, H, W) -> XYB shifted and scaled into about 0..1, as the reference's MakePositiveXYB."""
    mixed = np.tensordot(_OPSIN.astype(np.float32), linear, axes=1) + np.float32(_BIAS)
    mixed = np.cbrt(np.maximum(mixed, 0)) - np.float32(np.cbrt(_BIAS))
    x = 0.5 * (mixed[0] - mixed[1])
    y = 0.5 * (mixed[0] + mixed[1])
    b = mixed[2]
    return np.stack([x * 14 + 0.42, y + 0.01, (b - y) + 0.55])


def _downsample(linear: np.ndarray) -> np.ndarray:
    """2 x 2 box average of (3, H, W); an odd last row or column is repeated, as the reference clamps."""
    _, h, w = linear.shape
    padded = np.pad(linear, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    return 0.25 * (padded[:, 0::2, 0::2] + padded[:, 1::2, 0::2] + padded[:, 0::2, 1::2] + padded[:, 1::2, 1::2])


def _norms(error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of a (3, H, W) error map: its mean and its 4-norm (mean of 4th powers, 4th root)."""
    e = error.astype(np.float64).reshape(3, -1)
    return e.mean(axis=1), np.sqrt(np.sqrt((e**4).mean(axis=1)))


def _scale_scores(a: np.ndarray, b: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One scale's sub-scores from positive XYB (3, H, W): SSIM error, ringing, blurring, each (1-norm, 4-norm)."""
    mu1, mu2 = _blur(a), _blur(b)
    s11, s22, s12 = _blur(a * a), _blur(b * b), _blur(a * b)
    # the reference drops SSIM's luminance denominator (its values are already perceptual)
    num_m = 1.0 - (mu1 - mu2) ** 2
    num_s = 2 * (s12 - mu1 * mu2) + _C2
    denom_s = (s11 - mu1 * mu1) + (s22 - mu2 * mu2) + _C2
    ssim_error = np.maximum(1.0 - num_m * num_s / denom_s, 0)
    ratio = (1.0 + np.abs(b - mu2)) / (1.0 + np.abs(a - mu1)) - 1.0
    return {
        "ssim": _norms(ssim_error),
        "ringing": _norms(np.maximum(ratio, 0)),  # edges in the distorted image where the original is smooth
        "blurring": _norms(np.maximum(-ratio, 0)),  # edges of the original smoothed away
    }


def ssimulacra2(original: np.ndarray, distorted: np.ndarray) -> float:
    """The SSIMULACRA 2 score of 8-bit sRGB ``distorted`` (H, W, 3) against ``original``; 100 for identical."""
    if original.shape != distorted.shape or original.ndim != 3 or original.shape[2] != 3:
        raise ValueError(f"need two (H, W, 3) images of one size, got {original.shape} and {distorted.shape}")
    if min(original.shape[:2]) < 8:
        raise ValueError(f"SSIMULACRA 2 needs at least 8 x 8 pixels, got {original.shape[1]} x {original.shape[0]}")
    lin1, lin2 = _linear(original), _linear(distorted)
    scales = []
    for scale in range(SCALES):
        if min(lin1.shape[1:]) < 8:
            break
        if scale:
            lin1, lin2 = _downsample(lin1), _downsample(lin2)
        scales.append(_scale_scores(_positive_xyb(lin1), _positive_xyb(lin2)))
    total = 0.0
    weights = iter(_WEIGHTS)  # taken in order: fewer scales use the leading weights, as the reference does
    for channel in range(3):
        for s in scales:
            for norm in range(2):
                for part in ("ssim", "ringing", "blurring"):
                    total += next(weights) * abs(s[part][norm][channel])
    total *= 0.9562382616834844
    total = 2.326765642916932 * total - 0.020884521182843837 * total**2 + 6.248496625763138e-05 * total**3
    return 100.0 - 10.0 * total**0.6276336467831387 if total > 0 else 100.0
