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

TABLE_TOTAL = 1 << 16  # tables are scaled to about this total; exact in float32


def table_from_counts(counts: np.ndarray, total: int = TABLE_TOTAL) -> np.ndarray:
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
    def uniform(cls, factors, codebook_size: int) -> "FrequencyPrior":
        return cls({f: np.ones(codebook_size, dtype=np.int32) for f in factors})

    @classmethod
    def from_counts(cls, counts: dict[int, np.ndarray]) -> "FrequencyPrior":
        return cls({f: table_from_counts(c) for f, c in counts.items()})

    def table(self, factor: int) -> np.ndarray:
        return self.tables[factor]
