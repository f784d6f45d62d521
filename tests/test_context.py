"""Tests of the context prior's integer model and coder (``hvq.bitstream.context``, ``coder``, ``levels``).

Torch-free, like the container tests: the tables are seeded random integers
(``conftest.random_context_prior``), the grids seeded random indices.
Determinism is tested where it could break: the block size of the frequency
computation, the batch a row is computed in, the thread count of a process,
and golden values that pin the arithmetic on every machine CI runs on.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conftest import random_context_prior
from hvq.bitstream import context as context_module
from hvq.bitstream.coder import (
    decode_indices_in_context,
    encode_indices,
    encode_indices_in_context,
    index_checksum,
)
from hvq.bitstream.container import (
    CODER_CONTEXT,
    CODER_CONTEXT_PARENT,
    CODER_RANGE_STATIC,
    PRIOR_CHECKERBOARD,
    Header,
    parse,
    write_file,
)
from hvq.bitstream.context import (
    FREQUENCY_TOTAL,
    LevelContextModel,
    anchor_mask,
    frequencies,
    frequencies_of,
    neighbours,
    parent_contexts,
    score_terms,
)
from hvq.bitstream.errors import HvqFormatError, HvqModelError, HvqRecodeNeeded
from hvq.bitstream.levels import PriorTables, decode_grid, encode_levels, header_prior_fields, strip

K = 16
FACTORS = (4, 8, 16)
MODELS = random_context_prior(FACTORS, K, seed=1)
PRIOR = PriorTables({f: m.static for f, m in MODELS.items()}, MODELS, bytes(range(16)))


def grids_for(height: int, width: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Random grids of a (height x width) image padded to 16: level f is (H/f, W/f)."""
    rng = np.random.default_rng(seed)
    h, w = -(-height // 16) * 16, -(-width // 16) * 16
    return {f: rng.integers(0, K, (h // f, w // f)) for f in FACTORS}


def file_for(grids, stored=FACTORS, prior=PRIOR) -> bytes:
    """A file of the grids' padded size holding the ``stored`` levels."""
    height, width = (4 * side for side in grids[4].shape)
    chunks = encode_levels(grids, tuple(stored), prior)
    header = Header(width, height, 16, K, bytes(16), (), **header_prior_fields(prior, chunks))
    return write_file(header, chunks)


# -- the integer model ------------------------------------------------------------------


def test_frequencies_are_valid_tables():
    rng = np.random.default_rng(0)
    scores = rng.integers(-3000, 3000, (300, 512)).astype(np.int16)
    rows = frequencies(scores)
    assert rows.dtype == np.uint32 and rows.min() >= 1
    assert rows.sum(axis=1).max() <= FREQUENCY_TOTAL
    best = scores.argmax(axis=1)
    assert (rows[np.arange(300), best] == rows.max(axis=1)).all()


def test_frequencies_follow_the_scores():
    """Eight units (one bit) lower halves the weight; the floor is 1."""
    scores = np.array([[0, -8, -16, -24, -800]], dtype=np.int16)
    rows = frequencies(scores)[0]
    weights = np.array([32768, 16384, 8192, 4096, 0])
    expected = 1 + weights * (((FREQUENCY_TOTAL - 5) << 15) // weights.sum()) // (1 << 15)
    assert rows.tolist() == expected.tolist()
    assert rows[-1] == 1


def test_frequencies_are_invariant_to_a_constant():
    rng = np.random.default_rng(1)
    scores = rng.integers(-200, 200, (50, 64)).astype(np.int16)
    assert np.array_equal(frequencies(scores), frequencies(scores + 77))


# Golden rows: pins the integer arithmetic (the piecewise-linear 2**(-d/8), the
# scale and the floor) on every machine CI runs; change only with a format version.
GOLDEN_SCORES = np.array([[0, -1, -3, -7, -8, -9, -20, -60, -127, -128, -1000, 5]], dtype=np.int16)
GOLDEN_ROW = [11363, 10330, 8264, 6198, 5682, 5165, 1937, 61, 1, 1, 1, 16528]


def test_golden_frequencies():
    assert frequencies(GOLDEN_SCORES)[0].tolist() == GOLDEN_ROW


def test_the_widest_deficit_is_exact():
    """Bias and four int8 terms span 33788 units, past int16: the deficit must still come out exact."""
    scores = np.array([[16892, -16896, 0, 16000, 16891, -8]], dtype=np.int16)
    deficit = np.minimum(16892 - scores.astype(np.int64), 127)
    weights = ((16 - (deficit & 7)) << 11) >> (deficit >> 3)
    expected = 1 + ((weights * (((FREQUENCY_TOTAL - 6) << 15) // weights.sum())) >> 15)
    assert frequencies(scores)[0].tolist() == expected[0].tolist() == [33822, 1, 1, 1, 31708, 1]
    with pytest.raises(TypeError, match="int16"):
        frequencies(scores.astype(np.int32))


def test_a_bug_in_the_frequency_computation_is_not_reported_as_a_bad_payload(monkeypatch):
    """Only constriction's refusal becomes 'payload does not decode'; hvq's own errors propagate."""
    from hvq.bitstream import coder as coder_module

    grid = np.arange(24).reshape(4, 6) % K
    parent = np.array([[1, 2, 3], [4, 5, 6]])
    payload = encode_indices_in_context(grid, MODELS[4], parent)

    def broken(*args, **kwargs):
        raise RuntimeError("frequency bug")

    monkeypatch.setattr(coder_module, "frequencies_of", broken)
    with pytest.raises(RuntimeError, match="frequency bug"):
        decode_indices_in_context(payload, MODELS[4], parent, (4, 6))
    monkeypatch.setattr(coder_module, "frequencies_of", lambda *a, **k: np.zeros((12, K), np.float32))
    with pytest.raises(ValueError, match="not normalizable"):  # constriction refusing hvq's bad rows: a bug too
        decode_indices_in_context(payload, MODELS[4], parent, (4, 6))


def test_blocking_cannot_change_a_row(monkeypatch):
    model = MODELS[4]
    rng = np.random.default_rng(2)
    n = 1000
    terms = score_terms(model, parent_terms=True, spatial_terms=True)
    contexts = [rng.integers(0, K, n)] + [rng.integers(0, K + 1, n) for _ in terms[1:]]
    whole = frequencies_of(terms, contexts)
    for rows in (1, 7, 256, 5000):
        monkeypatch.setattr(context_module, "_BLOCK_ROWS", rows)
        assert np.array_equal(frequencies_of(terms, contexts), whole)
    # a row depends on its own contexts only: any subset of tokens gives the same rows
    pick = rng.permutation(n)[:123]
    part = frequencies_of(terms, [c[pick] for c in contexts])
    assert np.array_equal(part, whole[pick])
    # and it is the integer frequency table of its summed scores
    scores = sum(t[c].astype(np.int16) for t, c in zip(terms, contexts))
    assert np.array_equal(whole, frequencies(scores).astype(np.float32))


def test_tables_are_checked():
    good = MODELS[4]
    with pytest.raises(HvqModelError, match=r"context table horizontal must be int8 \(17, 16\)"):
        replace(good, horizontal=good.horizontal.astype(np.int16))
    with pytest.raises(HvqModelError, match="context table parent must be int8"):
        replace(good, parent=good.parent[:8])
    with pytest.raises(HvqModelError, match="come together"):
        replace(good, parent_vertical=None)
    with pytest.raises(HvqModelError, match="bias exceeds"):
        replace(good, bias=np.full(K, 20000, dtype=np.int16))
    with pytest.raises(HvqModelError, match="codebook of 2..4096"):
        LevelContextModel(np.ones(5000, np.int32), np.zeros(5000, np.int16),
                          np.zeros((5001, 5000), np.int8), np.zeros((5001, 5000), np.int8))


def test_parent_context_looks_toward_the_cell():
    parent = np.array([[1, 2, 3], [4, 5, 6]])
    p, ph, pv = parent_contexts(parent, (4, 6), outside=K)
    assert p.tolist()[1] == [1, 1, 2, 2, 3, 3]
    # row 1 lies in the lower half of parent row 0: it looks down; columns alternate left, right
    assert ph.tolist()[1] == [K, 2, 1, 3, 2, K]
    assert pv.tolist()[1] == [4, 4, 5, 5, 6, 6]
    assert pv.tolist()[0] == [K] * 6 and pv.tolist()[3] == [K] * 6


def test_checkerboard_and_neighbours():
    mask = anchor_mask((3, 4))
    assert mask.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    grid = np.arange(12).reshape(3, 4)
    left, right, up, down = neighbours(grid, outside=K)
    assert (left[1, 1], right[1, 1], up[1, 1], down[1, 1]) == (4, 6, 1, 9)
    assert (left[0, 0], up[0, 0], right[2, 3], down[2, 3]) == (K, K, K, K)
    # every non-anchor's neighbours are anchors, so the second pass only reads the first
    others = ~mask
    for n in neighbours(np.where(mask, grid, -1), outside=K):
        assert (n[others] >= 0).all()


# -- the coder ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 5), (8, 12)])
@pytest.mark.parametrize("with_parent", [True, False])
def test_round_trip(shape, with_parent):
    rng = np.random.default_rng(3)
    grid = rng.integers(0, K, shape)
    parent = None
    if with_parent:
        parent = rng.integers(0, K, (-(-shape[0] // 2), -(-shape[1] // 2)))
        grid = rng.integers(0, K, (parent.shape[0] * 2, parent.shape[1] * 2))
    payload = encode_indices_in_context(grid, MODELS[4], parent)
    decoded = decode_indices_in_context(payload, MODELS[4], parent, grid.shape)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, grid)


def test_context_saves_bits_on_predictable_grids():
    """A grid that copies its parent costs far less given the parent than with a static table."""
    rng = np.random.default_rng(4)
    parent = rng.integers(0, K, (16, 16))
    grid = parent.repeat(2, 0).repeat(2, 1)
    diag = np.full((K, K), -128, dtype=np.int8)
    np.fill_diagonal(diag, 127)
    model = replace(MODELS[4], parent=diag)
    static_bytes = len(encode_indices(grid, model.static))
    context_bytes = len(encode_indices_in_context(grid, model, parent))
    assert context_bytes < static_bytes / 5


def test_a_wrong_parent_is_caught_by_the_checksum():
    g = grids_for(48, 64)
    data = file_for(g)
    parsed = parse(data)
    assert np.array_equal(decode_grid(parsed, 4, PRIOR), g[4])
    other = replace(MODELS[8], horizontal=np.roll(MODELS[8].horizontal, 1, axis=1))
    wrong = replace(PRIOR, context={**MODELS, 8: other})
    with pytest.raises(HvqFormatError, match="fail their checksum|does not decode|does not end where its indices end"):
        decode_grid(parse(data), 4, wrong)


def test_golden_payload():
    """Pins the two-pass order, the model and the serialisation: a test vector for ports."""
    grid = np.arange(24).reshape(4, 6) % K
    parent = np.array([[1, 2, 3], [4, 5, 6]])
    payload = encode_indices_in_context(grid, MODELS[4], parent)
    assert payload.hex() == GOLDEN_CONTEXT_PAYLOAD
    assert np.array_equal(decode_indices_in_context(payload, MODELS[4], parent, (4, 6)), grid)


GOLDEN_CONTEXT_PAYLOAD = "00000002043e787f3ee32f7a2f2c6cdc6e4b0c5134aa000bc91f57a28f1bcb3401fb510f6c8e58ce"


# -- files: which coder each level gets, and strip ---------------------------------------


def test_levels_are_coded_given_their_stored_parents():
    g = grids_for(40, 24)
    parsed = parse(file_for(g))
    assert [(c.factor, c.coder) for c in parsed.levels] == [
        (16, CODER_CONTEXT), (8, CODER_CONTEXT_PARENT), (4, CODER_CONTEXT_PARENT)
    ]
    assert parsed.header.prior_kind == PRIOR_CHECKERBOARD and parsed.header.prior_fingerprint == bytes(range(16))
    gapped = parse(file_for(g, stored=(16, 4)))
    assert [c.coder for c in gapped.levels] == [CODER_CONTEXT, CODER_CONTEXT]
    for f in (16, 4):
        assert np.array_equal(decode_grid(gapped, f, PRIOR), g[f])


def test_a_static_prior_writes_static_files():
    static_only = PriorTables(PRIOR.static)
    parsed = parse(file_for(grids_for(40, 24), prior=static_only))
    assert {c.coder for c in parsed.levels} == {CODER_RANGE_STATIC}
    assert parsed.header.prior_kind == 0 and parsed.header.prior_fingerprint == bytes(16)


@pytest.mark.parametrize("keep", [(16,), (8,), (4,), (16, 8), (16, 4), (8, 4), (16, 8, 4)])
def test_strip_recodes_only_orphans_and_keeps_indices(keep):
    g = grids_for(40, 56, seed=5)
    whole = file_for(g)
    stripped = strip(whole, keep, PRIOR)
    parsed = parse(stripped)
    assert parsed.header.factors == tuple(sorted(keep, reverse=True))
    for f in keep:
        assert np.array_equal(decode_grid(parsed, f, PRIOR), g[f])
        assert parsed.level(f).index_crc == index_checksum(g[f])
    # the stripped file is the file compress would write with those levels
    assert stripped == file_for(g, stored=tuple(sorted(keep, reverse=True)))


def test_strip_without_the_prior_copies_what_it_can():
    whole = file_for(grids_for(40, 24))
    assert parse(strip(whole, (16, 8))).header.factors == (16, 8)
    with pytest.raises(HvqRecodeNeeded, match="level 4 is coded given level 8"):
        strip(whole, (16, 4))


def test_another_prior_is_refused_by_name():
    data = file_for(grids_for(40, 24))
    other = replace(PRIOR, context_fingerprint=bytes(16 * [7]))
    with pytest.raises(HvqModelError, match="file was coded with the checkerboard-parent prior 000102"):
        decode_grid(parse(data), 16, other)
    with pytest.raises(HvqModelError, match="model's context prior is none"):
        decode_grid(parse(data), 16, PriorTables(PRIOR.static))


# -- determinism across processes and thread counts ------------------------------------

_SUBPROCESS = """
import os, sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import random_context_prior
from hvq.bitstream.levels import PriorTables, encode_levels
models = random_context_prior((4, 8, 16), 16, seed=1)
prior = PriorTables({{f: m.static for f, m in models.items()}}, models, bytes(range(16)))
rng = np.random.default_rng(9)
grids = {{f: rng.integers(0, 16, (96 // f, 160 // f)) for f in (4, 8, 16)}}
chunks = encode_levels(grids, (16, 8, 4), prior)
sys.stdout.write(b"".join(c.payload for c in chunks).hex())
"""


def test_payloads_do_not_depend_on_thread_count():
    import os
    from pathlib import Path

    code = _SUBPROCESS.format(tests=str(Path(__file__).parent))
    outputs = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_a_cut_file_without_the_parent_chunk_names_it():
    """A crafted cut file can hold a coder-3 level whose parent never came: a truncation naming both levels."""
    data = file_for(grids_for(40, 24))
    parsed = parse(data)
    head_end = parsed.level(16).offset
    level8 = parsed.level(8)
    cut = data[:head_end] + data[level8.offset : level8.offset + level8.chunk_bytes]  # HEAD, LEVL 8, no DONE
    from hvq.bitstream.errors import HvqTruncatedError

    with pytest.raises(HvqTruncatedError, match="level 8 needs level 16, which is missing"):
        decode_grid(parse(cut), 8, PRIOR)
