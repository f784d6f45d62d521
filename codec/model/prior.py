"""Learned prior v1: one static categorical distribution over the codebook per level.

The prior is fitted by counting each level's indices over a training set and
frozen into integer frequency tables (every entry >= 1, so every index stays
codable).  Only these integers reach the entropy coder, so encoder and decoder
see bit-identical probabilities on any machine: no float network runs at
coding time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hvq.bitstream.context import FREQUENCY_TOTAL


def table_from_counts(counts: np.ndarray, total: int = FREQUENCY_TOTAL) -> np.ndarray:
    """Integer table proportional to ``counts`` with every entry >= 1 (integer arithmetic only)."""
    counts = np.asarray(counts, dtype=np.int64)
    size = counts.size
    if total <= size:
        raise ValueError("table total must exceed the alphabet size")
    n = int(counts.sum())
    if n == 0:
        return np.ones(size, dtype=np.int32)
    return (1 + counts * (total - size) // n).astype(np.int32)


@dataclass(frozen=True)
class FrequencyPrior:
    """Per-level integer frequency tables, keyed by downsampling factor."""

    tables: dict[int, np.ndarray]  # factor -> (K,) int32

    @classmethod
    def from_counts(cls, counts: dict[int, np.ndarray]) -> "FrequencyPrior":
        return cls({f: table_from_counts(c) for f, c in counts.items()})

    def table(self, factor: int) -> np.ndarray:
        return self.tables[factor]
