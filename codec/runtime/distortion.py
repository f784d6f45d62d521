"""PSNR, defined once for every number hvq reports: training logs, validation, ``hvq bench``.

Here, below training and evaluation, so that both layers import the same
definition (``tests/test_layering.py``): a PSNR in a training curve and one
in a benchmark table then differ only in what they were measured on.
"""

from __future__ import annotations

import math


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error, for signals whose peak is ``peak``; inf when ``mse`` is 0.

    ``peak`` is 1 for [0, 1] tensors (training, validation) and 255 for
    8-bit arrays (``hvq.evaluation.metrics``).
    """
    return float("inf") if mse <= 0 else 10 * math.log10(peak * peak / mse)
