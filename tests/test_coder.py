"""Tests of ``hvq.bitstream.coder``: index grids -> range-coded payload -> index grids.

Torch-free on purpose: the coder is part of the format layer that works
without weights, so nothing here imports torch or ``hvq.codec``.
"""

from __future__ import annotations

import zlib

import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hvq.bitstream.coder import (
    MAX_TABLE_TOTAL,
    check_freqs,
    decode_indices,
    encode_indices,
    index_checksum,
)
from hvq.bitstream.container import max_payload_bytes
from hvq.bitstream.errors import HvqFormatError, HvqModelError

K = 16
SHAPES = [(1, 1), (1, 7), (3, 5), (8, 8), (17, 4)]


def random_table(seed: int, k: int = K, high: int = 1000) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, high, k)


def skewed_table(k: int = K) -> np.ndarray:
    """One symbol holds nearly all the mass, the others the minimum: rare symbols cost ~16 bits."""
    table = np.ones(k, dtype=np.int64)
    table[3] = MAX_TABLE_TOTAL - (k - 1)
    return table


TABLES = {
    "uniform": np.full(K, 7),
    "random": random_table(1),
    "skewed": skewed_table(),
    "two-symbols": np.array([1, 5]),
}


def random_indices(seed: int, shape: tuple[int, int], k: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, shape)


# -- round trip ----------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("table_name", sorted(TABLES))
def test_round_trip_is_exact(shape, table_name):
    table = TABLES[table_name]
    indices = random_indices(sum(shape), shape, len(table))
    payload = encode_indices(indices, table)
    decoded = decode_indices(payload, table, shape)
    assert decoded.shape == shape
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, indices)
    assert index_checksum(decoded) == index_checksum(indices)


@pytest.mark.parametrize("shape", [(1, 1), (4, 9)])
def test_round_trip_of_the_rarest_and_commonest_symbols(shape):
    table = skewed_table()
    for value in (0, 3, K - 1):  # 3 is the common symbol, the others cost ~16 bits each
        indices = np.full(shape, value)
        np.testing.assert_array_equal(decode_indices(encode_indices(indices, table), table, shape), indices)


def test_skewed_table_codes_the_common_symbol_cheaply():
    table = skewed_table()
    common = encode_indices(np.full((16, 16), 3), table)
    rare = encode_indices(np.full((16, 16), 0), table)
    assert len(common) < len(rare)
    assert len(rare) >= 256 * 15 // 8  # about 16 bits per rare symbol


def test_round_trip_with_table_total_exactly_at_the_limit():
    table = np.full(K, MAX_TABLE_TOTAL // K)
    assert table.sum() == MAX_TABLE_TOTAL
    indices = random_indices(5, (5, 6), K)
    np.testing.assert_array_equal(decode_indices(encode_indices(indices, table), table, (5, 6)), indices)


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(2, 64),
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_property(k, rows, cols, seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(1, max(2, MAX_TABLE_TOTAL // k), k)
    indices = rng.integers(0, k, (rows, cols))
    payload = encode_indices(indices, table)
    assert len(payload) % 4 == 0
    assert len(payload) <= max_payload_bytes(rows * cols)
    np.testing.assert_array_equal(decode_indices(payload, table, (rows, cols)), indices)


# -- determinism and byte layout -------------------------------------------------


def test_encoding_is_deterministic():
    table = random_table(2)
    indices = random_indices(3, (6, 7), K)
    first = encode_indices(indices, table)
    assert encode_indices(indices.copy(), table.copy()) == first
    # the bytes depend on the values only, not on the dtypes they arrive in
    assert encode_indices(indices.astype(np.uint16), table.astype(np.int32)) == first
    assert encode_indices(np.asfortranarray(indices), table.astype(np.uint64)) == first


def test_payload_is_big_endian_32_bit_words():
    table = random_table(4)
    indices = random_indices(5, (9, 3), K)
    payload = encode_indices(indices, table)
    assert len(payload) % 4 == 0

    # An encoder built here, straight from constriction, gives the same words.
    encoder = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Categorical(table.astype(np.float32), perfect=False)
    encoder.encode(indices.reshape(-1).astype(np.int32), model)
    words = encoder.get_compressed()
    assert payload == words.astype(">u4").tobytes()
    np.testing.assert_array_equal(np.frombuffer(payload, dtype=">u4"), words)
    np.testing.assert_array_equal(decode_indices(words.astype(">u4").tobytes(), table, (9, 3)), indices)

    # Native-order (little-endian) bytes are a different payload unless every word is a palindrome.
    little = words.astype("<u4").tobytes()
    if little != payload:
        decoded = _decode_or_none(little, table, (9, 3))
        assert decoded is None or not np.array_equal(decoded, indices)


@pytest.mark.parametrize("table_name", sorted(TABLES))
def test_payload_fits_the_container_bound(table_name):
    table = TABLES[table_name]
    for n in (1, 2, 3, 7, 64, 500):
        for indices in (np.zeros((1, n), int), random_indices(n, (1, n), len(table))):
            assert len(encode_indices(indices, table)) <= max_payload_bytes(n)


# -- refused tables and indices ---------------------------------------------------

BAD_TABLES = [
    pytest.param(np.array([3, 0, 5]), "below 1", id="zero-entry"),
    pytest.param(np.array([3, -2, 5]), "below 1", id="negative-entry"),
    pytest.param(np.array([3.0, 2.0, 5.0]), "integers", id="float-dtype"),
    pytest.param(np.array([[3, 2], [5, 1]]), "1-D", id="two-d"),
    pytest.param(np.array([7]), "at least 2", id="one-entry"),
    pytest.param(np.array([MAX_TABLE_TOTAL, 1]), "exceeds", id="total-above-limit"),
    pytest.param(np.array([True, True, True]), "integers", id="bool-dtype"),
]


@pytest.mark.parametrize("table, match", BAD_TABLES)
def test_invalid_table_is_refused(table, match):
    with pytest.raises(HvqModelError, match=match):
        check_freqs(table)
    indices = np.zeros((2, 2), dtype=int)
    with pytest.raises(HvqModelError, match=match):
        encode_indices(indices, table)


@pytest.mark.parametrize("table, match", BAD_TABLES)
def test_invalid_table_is_refused_by_the_decoder_as_a_model_error(table, match):
    with pytest.raises(HvqModelError, match=match):
        decode_indices(b"\x00" * 8, table, (2, 2))


def test_check_freqs_returns_float32_counts():
    table = np.array([1, 2, MAX_TABLE_TOTAL - 3], dtype=np.int64)
    out = check_freqs(table)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1.0, 2.0, float(MAX_TABLE_TOTAL - 3)])


@pytest.mark.parametrize("bad", [-1, K, K + 100])
def test_out_of_range_index_is_refused(bad):
    indices = random_indices(6, (3, 3), K)
    indices[1, 2] = bad
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\)"):
        encode_indices(indices, random_table(7))


# -- index checksum -------------------------------------------------------------------


def test_index_checksum_is_crc32_of_big_endian_uint16_in_raster_order():
    indices = np.array([[1, 2, 3], [256, 65535, 0]])
    expected = zlib.crc32(b"\x00\x01\x00\x02\x00\x03\x01\x00\xff\xff\x00\x00")
    assert index_checksum(indices) == expected
    assert index_checksum(indices.astype(np.uint16)) == expected
    assert index_checksum(np.asfortranarray(indices)) == expected
    assert index_checksum(indices.T) != expected  # raster order matters


def test_index_checksum_changes_when_any_one_index_changes():
    indices = random_indices(8, (5, 6), K)
    reference = index_checksum(indices)
    for pos in np.ndindex(indices.shape):
        for delta in (1, K - 1):
            changed = indices.copy()
            changed[pos] = (changed[pos] + delta) % K
            assert index_checksum(changed) != reference, pos


# -- corrupt or mismatched payloads -------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 3, 5, 6, 7, 13])
def test_payload_length_not_a_multiple_of_4_is_refused(length):
    with pytest.raises(HvqFormatError, match="multiple of 4"):
        decode_indices(b"\x5a" * length, random_table(9), (2, 2))


def _decode_or_none(payload, table, shape):
    try:
        return decode_indices(payload, table, shape)
    except HvqFormatError:
        return None


@pytest.mark.parametrize("seed", range(6))
def test_decoding_with_another_table_is_caught_by_the_checksum(seed):
    table = random_table(100 + seed)
    other = random_table(200 + seed)
    indices = random_indices(300 + seed, (8, 8), K)
    payload = encode_indices(indices, table)
    decoded = _decode_or_none(payload, other, (8, 8))
    # Either the coder notices, or the indices come out different and the checksum says so.
    if decoded is not None:
        assert decoded.shape == (8, 8)
        assert index_checksum(decoded) != index_checksum(indices)


def test_decoding_with_a_table_of_another_size_is_caught_by_the_checksum():
    table = random_table(10)
    indices = random_indices(11, (6, 6), K)
    payload = encode_indices(indices, table)
    decoded = _decode_or_none(payload, random_table(12, k=2 * K), (6, 6))
    if decoded is not None:
        assert index_checksum(decoded) != index_checksum(indices)


@settings(max_examples=200, deadline=None)
@given(words=st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]), rows=st.integers(1, 6), cols=st.integers(1, 6))
def test_arbitrary_payload_decodes_or_raises_format_error(words, rows, cols):
    table = TABLES["random"]
    decoded = _decode_or_none(words, table, (rows, cols))
    if decoded is not None:
        assert decoded.shape == (rows, cols)
        assert int(decoded.max()) < len(table)


# Golden bytes: the file format rests on constriction's range coder and its
# perfect=False table construction staying the same.  If this fails after a
# dependency upgrade, old files no longer decode: pin the version instead.
GOLDEN_TABLE = np.array([1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597], dtype=np.int32)
GOLDEN_PAYLOAD = "00003f6d88595e20155afb27d1d1df66fc3425ff9421f9a8579754cefc8464aee46ebd25a377f44f"


def test_golden_payload():
    indices = (np.arange(48).reshape(6, 8) * 7) % 16
    assert encode_indices(indices, GOLDEN_TABLE).hex() == GOLDEN_PAYLOAD
    assert np.array_equal(decode_indices(bytes.fromhex(GOLDEN_PAYLOAD), GOLDEN_TABLE, (6, 8)), indices)


@pytest.mark.parametrize("with_parent", [False, True])
def test_context_coding_in_blocks_of_cells_is_the_same_stream(monkeypatch, with_parent):
    """The per-cell tables are built CODING_CELLS at a time (bounded memory); the split cannot change a byte."""
    from hvq.bitstream import coder
    from tests.conftest import random_context_prior

    k = 16
    model = random_context_prior((8, 4), k, seed=3)[4 if with_parent else 8]
    rng = np.random.default_rng(5)
    grid = rng.integers(0, k, (30, 42))
    parent = rng.integers(0, k, (15, 21)) if with_parent else None
    whole = coder.encode_indices_in_context(grid, model, parent)
    monkeypatch.setattr(coder, "CODING_CELLS", 7)  # 630 cells: many blocks, the last one short
    assert coder.encode_indices_in_context(grid, model, parent) == whole
    assert np.array_equal(coder.decode_indices_in_context(whole, model, parent, grid.shape), grid)


# -- the payload ends where its indices end (FORMAT.md 8.3) ------------------------------------


APPENDED = r"4 payload does not end where its indices end: \d+ words, the sealed code of its indices has \d+ \(words"


@pytest.mark.parametrize("table_name", sorted(TABLES))
@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda p: p + bytes(4), APPENDED),
        (lambda p: p + b"hide", APPENDED),
        (lambda p: p[:-4], "4 payload does not (end where its indices end|decode)"),
    ],
    ids=["zero-word", "junk-word", "last-word-cut"],
)
def test_a_payload_must_end_at_its_last_word(table_name, edit, match):
    """constriction's decoder ignores words after its seal; the reader does not, so one image has one payload."""
    table = TABLES[table_name]
    indices = random_indices(40, (5, 7), len(table))
    payload = encode_indices(indices, table)
    with pytest.raises(HvqFormatError, match=f"^level {match}"):
        decode_indices(edit(payload), table, (5, 7), level=4)


def test_no_other_payload_of_the_same_length_decodes_to_the_same_indices():
    """Flipping any bit either is refused or gives other indices: one grid, one payload."""
    table = TABLES["random"]
    indices = random_indices(41, (3, 3), K)
    payload = encode_indices(indices, table)
    refused = 0
    for bit in range(8 * len(payload)):
        altered = bytearray(payload)
        altered[bit // 8] ^= 1 << (bit % 8)
        decoded = _decode_or_none(bytes(altered), table, (3, 3))
        refused += decoded is None
        assert decoded is None or not np.array_equal(decoded, indices), bit
    assert refused > 0
    last = payload[:-4] + (int.from_bytes(payload[-4:], "big") ^ 1).to_bytes(4, "big")
    with pytest.raises(HvqFormatError, match=r"payload does not end where its indices end: word \d+ of \d+ differs"):
        decode_indices(last, table, (3, 3))


def test_only_the_coders_refusal_reads_as_a_bad_payload(monkeypatch):
    """A bug on hvq's side of the decode call propagates as itself, not as 'payload does not decode'."""
    table = random_table(42)
    payload = encode_indices(random_indices(43, (3, 3), K), table)

    class Broken:
        def decode(self, *args):
            raise ValueError("a bug in the model")

    monkeypatch.setattr(constriction.stream.queue, "RangeDecoder", lambda words: Broken())
    with pytest.raises(ValueError, match="a bug in the model"):
        decode_indices(payload, table, (3, 3))
