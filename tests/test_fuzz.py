"""Hostile files against the whole decoder: the fuzz targets under hypothesis, the seed corpus,
and every truncation and every bit flip of a small file decoded through a model.

The targets (``tests/fuzz/targets.py``) are the ones the coverage-guided
harness runs for millions of inputs (``tests/fuzz/README.md``); here they get
a bounded budget so that CI exercises them on every change.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hvq
from conftest import mutate, mutations
from hvq.bitstream.container import parse
from hvq.bitstream.errors import HvqFormatError, HvqTruncatedError

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
import targets  # noqa: E402

SEEDS = sorted(targets.CORPUS.glob("*.hvq"))
HEAD_END = 8 + 12 + 56  # signature, HEAD frame and data (FORMAT.md section 4)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_seed_corpus_is_there_and_matches_the_fuzz_model():
    assert len(SEEDS) >= 30
    codec = targets.fuzz_codec()
    whole = [s for s in SEEDS if "cut" not in s.name]
    for seed in whole:
        data = seed.read_bytes()[1:]  # after the mode byte
        assert parse(data).header.model_fingerprint == codec.model.fingerprint, seed.name
        codec.decompress(data)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.stem)
def test_every_seed_passes_both_targets(seed):
    data = seed.read_bytes()
    targets.container_target(data)
    targets.codec_target(data)
    targets.codec_target(b"\x01" + data[1:])  # the CRC-repairing mode leaves a valid file as it is


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes_decode_or_raise_an_hvq_error(data):
    targets.container_target(data)
    targets.codec_target(data)


@FUZZ
@given(st.sampled_from(SEEDS), mutations(6), st.booleans())
def test_mutated_seeds_decode_or_raise_an_hvq_error(seed, edits, repair):
    """With the CRCs repaired, mutations reach the field checks, the range decoder and the transforms."""
    data = seed.read_bytes()[1:]
    mode = b"\x01" if repair else b"\x00"
    mutated = mode + mutate(data, edits)
    targets.container_target(mutated)
    targets.codec_target(mutated)


@FUZZ
@given(st.sampled_from(SEEDS), mutations(6))
def test_memory_is_bounded_by_the_bytes_and_the_declared_grids(seed, edits):
    """The reader allocates a few copies of the input and, per decoded level, a few bytes per declared cell."""
    data = targets.prepare(b"\x01" + mutate(seed.read_bytes()[1:], edits))
    try:
        cells = sum(c.grid_height * c.grid_width for c in parse(data).levels)
    except hvq.HvqError:
        cells = 0
    tracemalloc.start()
    try:
        targets.container_target(b"\x00" + data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 4 * len(data) + 16 * cells + (1 << 20)


# -- every truncation and every bit flip, through the decoder -------------------------------------


@pytest.fixture(scope="module")
def small_file(tiny_codec):
    rng = np.random.default_rng(3)
    from PIL import Image

    image = Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8), "RGB")
    data = tiny_codec.compress(image)
    whole = {f: np.asarray(tiny_codec.decompress(data, f)) for f in (16, 8, 4)}
    return data, whole


def test_every_truncation_decodes_each_whole_level_exactly_or_names_what_is_missing(tiny_codec, small_file):
    data, whole = small_file
    ends = {c.factor: c.offset + c.chunk_bytes for c in parse(data).levels}
    decoded = refused = 0
    for n in range(len(data)):
        cut = data[:n]
        with pytest.raises(hvq.HvqFormatError, match="truncated|ends|signature") as info:
            tiny_codec.decompress(cut)  # the default (finest) request never passes off a cut file as whole
        assert n == 0 or isinstance(info.value, HvqTruncatedError), n
        for factor, end in ends.items():
            if n >= end:
                assert np.array_equal(np.asarray(tiny_codec.decompress(cut, factor)), whole[factor]), (n, factor)
                decoded += 1
            else:
                with pytest.raises(hvq.HvqFormatError) as info:
                    tiny_codec.decompress(cut, factor)
                message = str(info.value)
                assert n == 0 or isinstance(info.value, HvqTruncatedError), (n, factor, message)
                if n >= HEAD_END:
                    assert message.startswith(f"level {factor} is missing: file ends at byte {n}"), message
                elif n:
                    assert "signature" in message or "HEAD" in message, message
                refused += 1
    assert decoded + refused == 3 * len(data) and decoded > 0 and refused > 0
    print(f"{len(data)} cuts: {decoded} level decodes equal the whole file's, {refused} refusals")


def test_every_bit_flip_is_refused_by_the_decoder(tiny_codec, small_file):
    data, _ = small_file
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            for level in (None, 16, 8, 4):
                with pytest.raises(HvqFormatError) as info:
                    tiny_codec.decompress(bytes(damaged), level, partial=True)
                assert not isinstance(info.value, HvqTruncatedError), (i, bit, level, str(info.value))
