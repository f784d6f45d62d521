"""RDOQ: candidates, exact code lengths, index choice, and files any format-2 reader decodes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hvq.bitstream.container import parse
from hvq.bitstream.context import (
    anchor_mask,
    candidate_code_lengths,
    frequencies_of,
    neighbours,
    parent_contexts,
    score_terms,
)
from hvq.bitstream.levels import decode_grid, encode_levels
from hvq.codec.runtime import rate_control, rdoq
from hvq.codec.runtime.imageio import load_image, pad_to_multiple
from hvq.codec.runtime.tiling import candidates_tiled, encode_tiled

DATA = Path(__file__).parent / "data"
# sha256 of the pixels hvq 0.2 (commit 1452bda) decodes from scene-128x96-q40.hvq, per level;
# level 4 is also kept as scene-128x96-q40-level4-v02.png
V02_PIXELS = {
    16: "8dd38c1cae2b89dd4861135e6b8fade012231a58eafa75f787264ef1ff69812c",
    8: "f9ff7c05d8fd4355936809c1c366c18b9770c7ae2515915a9b3fbbcb56cc231d",
    4: "a3f0812fde911fdeb9ea798c08083541504366ad84a2d34344d5b833a762c906",
}


def _padded(codec, image):
    rgb = np.asarray(load_image(image, 1 << 26))
    return pad_to_multiple(rgb, codec.model.config.max_factor)


def _noise(width=48, height=40, seed=3):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("tile", [16, 32, 1024])
def test_candidates_start_with_the_nearest_codeword_and_are_sorted(tiny_context_codec, photo, tile):
    codec = tiny_context_codec
    padded = _padded(codec, photo)
    grids = encode_tiled(codec.model.net, padded, tile)
    candidates = candidates_tiled(codec.model.net, padded, 5, tile)
    for f, (indices, distances) in candidates.items():
        assert indices.shape == grids[f].shape + (5,) and indices.dtype == np.uint16
        assert np.array_equal(indices[..., 0], grids[f])
        assert (np.diff(distances, axis=-1) >= 0).all()
        assert all(len(set(row)) == 5 for row in indices.reshape(-1, 5))  # five different codewords


def test_candidate_code_lengths_are_the_coders_rows():
    k = 16
    rng = np.random.default_rng(0)
    table = rng.integers(-60, 60, (k + 1, k)).astype(np.int8)
    contexts = [rng.integers(0, k + 1, 600), rng.integers(0, k + 1, 600)]
    candidates = rng.integers(0, k, (600, 3))
    bits = candidate_code_lengths([table, table], contexts, candidates)
    rows = frequencies_of([table, table], contexts).astype(np.float64)
    expected = -np.log2(np.take_along_axis(rows, candidates, 1) / rows.sum(1, keepdims=True))
    assert np.allclose(bits, expected)


def test_lambda_zero_is_the_nearest_codeword(tiny_context_codec, photo):
    codec = tiny_context_codec
    padded = _padded(codec, photo)
    candidates = candidates_tiled(codec.model.net, padded, 4)
    factors = codec.check_levels(None)
    grids = rdoq.choose_indices(candidates, factors, codec.model.prior, {f: 0.0 for f in factors})
    nearest = encode_tiled(codec.model.net, padded)
    assert all(np.array_equal(grids[f], nearest[f]) for f in factors)


def test_quality_none_and_100_keep_todays_levels(tiny_context_codec, photo):
    codec = tiny_context_codec
    plain = codec.compress(photo)
    assert codec.compress(photo, quality=None) == plain
    q100 = parse(codec.compress(photo, quality=100))
    assert [c.payload for c in q100.levels] == [c.payload for c in parse(plain).levels]
    assert [k for k, _ in q100.ancillary] == [b"rate"]


@pytest.mark.parametrize("fixture", ["tiny_context_codec", "tiny_codec"])
def test_rdoq_files_are_smaller_and_decode_to_the_chosen_grids(request, fixture):
    codec = request.getfixturevalue(fixture)  # context prior (coders 2, 3) and static tables (coder 1)
    image = _noise()
    padded = _padded(codec, image)
    candidates = candidates_tiled(codec.model.net, padded, 6)
    factors = codec.check_levels(None)
    grids = rdoq.choose_indices(candidates, factors, codec.model.prior, {f: 50.0 for f in factors})
    nearest = rdoq.choose_indices(candidates, factors, codec.model.prior, {})
    rdoq_chunks = encode_levels(grids, factors, codec.model.prior)
    nearest_chunks = encode_levels(nearest, factors, codec.model.prior)
    assert sum(len(c.payload) for c in rdoq_chunks) < sum(len(c.payload) for c in nearest_chunks)
    data = codec.compress(image, quality=0)
    parsed = parse(data)
    decoded = {}
    for f in factors:
        assert np.array_equal(decode_grid(parsed, f, codec.model.prior, decoded),
                              rdoq.choose_indices(candidates, factors, codec.model.prior,
                                                  rate_control.lambdas_for(0, factors))[f])
    assert codec.decompress(data).size == image.size


def test_rdoq_rate_matches_the_payload(tiny_context_codec):
    """The code lengths RDOQ weighs add up to what the range coder writes (constriction's rounding, final words)."""
    codec = tiny_context_codec
    model = codec.model.prior.context[4]
    padded = _padded(codec, _noise(96, 96))
    grids = encode_tiled(codec.model.net, padded)
    grid, parent = grids[4], grids[8]
    anchors = anchor_mask(grid.shape)
    pctx = parent_contexts(parent, grid.shape, outside=model.codebook_size)
    bits = candidate_code_lengths(score_terms(model, True, False), [c[anchors] for c in pctx],
                                  grid[anchors][:, None]).sum()
    contexts = [c[~anchors] for c in pctx] + [n[~anchors] for n in neighbours(grid, model.codebook_size)]
    bits += candidate_code_lengths(score_terms(model, True, True), contexts, grid[~anchors][:, None]).sum()
    payload_bits = 8 * len(encode_levels(grids, (8, 4), codec.model.prior)[1].payload)
    assert abs(payload_bits - bits) <= 0.002 * bits + 64


def test_anchor_pass_counts_the_neighbours_rates_exactly(tiny_context_codec):
    """_neighbour_bits equals re-scoring each non-anchor neighbour with the anchor's candidate in place."""
    codec = tiny_context_codec
    model = codec.model.prior.context[8]
    rng = np.random.default_rng(1)
    k = model.codebook_size
    grid = rng.integers(0, k, (6, 7)).astype(np.uint16)
    parent = rng.integers(0, k, (3, 4)).astype(np.uint16)
    shape = (6, 8)
    grid = rng.integers(0, k, shape).astype(np.uint16)
    anchors = anchor_mask(shape)
    pctx = parent_contexts(parent, shape, outside=k)
    cands = rng.integers(0, k, (int(anchors.sum()), 3)).astype(np.uint16)
    terms = score_terms(model, True, True)
    got = rdoq._neighbour_bits(grid, cands, anchors, model, pctx, terms, None)
    ar, ac = np.nonzero(anchors)
    for i in range(len(ar)):
        for j in range(3):
            trial = grid.copy()
            trial[ar[i], ac[i]] = cands[i, j]
            total = 0.0
            for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                r, c = ar[i] + dr, ac[i] + dc
                if 0 <= r < shape[0] and 0 <= c < shape[1]:
                    ctx = [p[r, c][None] for p in pctx] + [n[r, c][None] for n in neighbours(trial, k)]
                    total += candidate_code_lengths(terms, ctx, trial[r, c][None, None])[0, 0]
            assert got[i, j] == pytest.approx(total)


@pytest.mark.slow
def test_committed_rdoq_file_decodes_as_hvq_02_decoded_it():
    """An RDOQ-coded file (quality 40, with a rate chunk) decodes to the pixels hvq 0.2's reader gave."""
    from hvq.codec.runtime.pipeline import Codec

    codec = Codec.for_model(None)
    path = DATA / "scene-128x96-q40.hvq"
    for level, digest in V02_PIXELS.items():
        pixels = np.asarray(codec.decompress(path, level=level))
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == digest, level
    assert np.array_equal(np.asarray(codec.decompress(path)), np.asarray(Image.open(DATA / "scene-128x96-q40-level4-v02.png")))


@pytest.mark.slow
def test_committed_rdoq_file_is_what_quality_40_writes_today():
    from hvq.codec.runtime.pipeline import Codec

    data = Codec.for_model(None).compress(DATA / "scene-128x96.png", quality=40)
    assert data == (DATA / "scene-128x96-q40.hvq").read_bytes()


def test_anchor_pass_files_decode_and_save_bytes(tiny_context_codec, monkeypatch):
    codec = tiny_context_codec
    image = _noise(64, 64)
    greedy = codec.compress(image, quality=0)
    monkeypatch.setattr(rdoq, "ANCHOR_PASSES", 1)
    refined = codec.compress(image, quality=0)
    assert codec.decompress(refined).size == image.size  # index CRCs hold
    assert refined != greedy
