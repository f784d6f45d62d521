"""Regenerate the coder test vectors (``vectors.json``): ``python tests/spec/make_vectors.py``.

The words come from constriction itself (the version the format names);
the reference encoder only picks cases that reach each branch of FORMAT.md
section 8.2: a carry into pending words, a seal with pending words, a seal
with and without its trailing zero, a rare symbol, one symbol per table.
``test_reference_reader.py`` checks constriction, the reference coder and
hvq's decoder against the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import constriction
import numpy as np

from reference_reader import STATE_MASK, WORD_MASK, RangeEncoder, frequencies, quantised_cdf, quantised_cdfs

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "vectors.json"


class _Probe(RangeEncoder):
    """The reference encoder, noting which branches a sequence reaches."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def encode(self, symbol, left):
        scale = self.range >> 24
        new_lower = (self.lower + scale * left[symbol]) & STATE_MASK
        new_range = scale * (left[symbol + 1] - left[symbol])
        if self.inverted and new_lower + new_range <= STATE_MASK:
            self.seen.add("carry" if new_lower < self.lower else "no-carry")
        pending = self.inverted
        super().encode(symbol, left)
        if self.inverted and not pending:
            self.seen.add("inverted")

    def sealed(self):
        words = super().sealed()
        self.seen.add("pending-at-seal" if self.inverted else "normal-seal")
        self.seen.add("trailing-zero" if words and words[-1] == 0 else "no-trailing-zero")
        return words


def constriction_words(symbols, freqs=None, rows=None) -> list[int]:
    encoder = constriction.stream.queue.RangeEncoder()
    if rows is None:
        model = constriction.stream.model.Categorical(np.asarray(freqs, np.float32), perfect=False)
        encoder.encode(np.asarray(symbols, np.int32), model)
    else:
        family = constriction.stream.model.Categorical(perfect=False)
        encoder.encode(np.asarray(symbols, np.int32), family, np.asarray(rows, np.float32))
    return encoder.get_compressed().tolist()


def find(feature: str, rng, k_range=(2, 12), n_range=(1, 24), tries=20000):
    """A short (table, symbols) case whose encoding reaches ``feature``."""
    for _ in range(tries):
        k = int(rng.integers(*k_range))
        freqs = rng.integers(1, 400, k)
        symbols = rng.integers(0, k, int(rng.integers(*n_range)))
        probe = _Probe()
        left = quantised_cdf(freqs)
        for s in symbols:
            probe.encode(int(s), left)
        probe.sealed()
        if feature in probe.seen:
            return freqs.tolist(), symbols.tolist()
    raise RuntimeError(f"no case reaches {feature}")


def main() -> None:
    rng = np.random.default_rng(17)
    cases = [
        {"name": "one-symbol", "freqs": [1, 2, 3], "symbols": [2]},
        {"name": "uniform-16", "freqs": [1] * 16, "symbols": [8, 8]},
        {"name": "rare-symbols", "freqs": [1, 65534], "symbols": [0, 0, 0, 1, 0]},
        {"name": "fibonacci", "freqs": [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597],
         "symbols": [(7 * i) % 16 for i in range(48)]},
    ]
    for feature in ("carry", "no-carry", "pending-at-seal", "trailing-zero", "no-trailing-zero"):
        freqs, symbols = find(feature, rng)
        cases.append({"name": feature, "freqs": freqs, "symbols": symbols})
    rows = rng.integers(1, 5000, (6, 5))
    cases.append({"name": "a-table-per-symbol", "rows": rows.tolist(), "symbols": rng.integers(0, 5, 6).tolist()})
    for case in cases:
        case["words"] = [f"{w:08x}" for w in constriction_words(case["symbols"], case.get("freqs"), case.get("rows"))]
        tables = case["rows"] if "rows" in case else [case["freqs"]]
        case["left"] = [left for left in quantised_cdfs(np.asarray(tables))]
    scores = [
        [0, -1, -3, -7, -8, -9, -20, -60, -127, -128, -1000, 5],
        [16892, -16896, 0, 16000],  # the widest deficit the bounds allow: 33788
        [3, 3, 3, 3],
    ]
    vectors = {
        "about": "FORMAT.md section 8 test vectors; words are big-endian u32 in hex, as a payload stores them",
        "constriction": constriction.__version__ if hasattr(constriction, "__version__") else "0.5.0",
        "coder": cases,
        "frequencies": [{"scores": s, "freqs": frequencies(np.array([s]), len(s))[0].tolist()} for s in scores],
    }
    assert all(w <= WORD_MASK for c in cases for w in map(lambda h: int(h, 16), c["words"]))
    VECTORS.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"{len(cases)} coder vectors in {VECTORS}")


if __name__ == "__main__":
    main()
