"""RDOQ: candidates, exact code lengths, index choice, and files any format-2 reader decodes."""

from __future__ import annotations

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
from hvq.codec.runtime import rdoq
from hvq.codec.runtime.imageio import load_image, pad_to_multiple
from hvq.codec.runtime.tiling import candidates_tiled, encode_tiled

DATA = Path(__file__).parent / "data"
# What hvq 0.2 (commit 1452bda) decodes from scene-128x96-q40.hvq, per level:
# scene-128x96-q40-level{16,8,4}-v02.png.  Re-made when the pixel-distortion passes came (quality 40
# chose other indices), and again with the check against the rungs (rate_control.monotone: Q 40's
# level 16 decoded better than Q 50's, so it is Q 50's now), each time decoded by 1452bda's reader
# (git archive, PYTHONPATH).  Levels 16 and 8 were sha256 digests of that reader's pixels until a
# machine with other float rounding gave level 8 one digest and 1452bda's reader the same one there;
# they are now PNGs from 1452bda's reader, compared as the 0.1 and 0.2 golden files are (within 1).
V02_LEVELS = (16, 8, 4)


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


def test_quality_none_is_todays_file_and_100_weighs_pixel_error_alone(tiny_context_codec, photo):
    codec = tiny_context_codec
    plain = codec.compress(photo)
    assert codec.compress(photo, quality=None) == plain
    q100 = codec.compress(photo, quality=100, effort=2)
    assert [k for k, _ in parse(q100).ancillary] == [b"rate"]
    original = np.asarray(photo.convert("RGB")).astype(np.float64)
    for level in codec.check_levels(None):  # the passes never raise a level's pixel error (rounding aside)
        mse = lambda data: np.mean((np.asarray(codec.decompress(data, level=level)) - original) ** 2)  # noqa: E731
        assert mse(q100) <= mse(plain) * 1.001 + 0.01


def test_candidates_pad_the_image_as_encode_tiled_does(tiny_context_codec, photo):
    net = tiny_context_codec.model.net
    rgb = np.asarray(photo.convert("RGB"))  # 45x37: not a multiple of the coarsest factor
    padded = pad_to_multiple(rgb, tiny_context_codec.model.config.max_factor)
    for (i, d), (pi, pd) in zip(candidates_tiled(net, rgb, 4).values(), candidates_tiled(net, padded, 4).values()):
        assert np.array_equal(i, pi) and np.array_equal(d, pd)


@pytest.mark.parametrize("parented", [False, True])
def test_cell_code_lengths_are_the_change_in_the_levels_bits(tiny_context_codec, parented):
    """Changing one cell alone moves the level's total code length by exactly its candidate's bits less its current's."""
    prior = tiny_context_codec.model.prior
    k = prior.context[4].codebook_size
    rng = np.random.default_rng(4)
    shape = (6, 8)
    grid = rng.integers(0, k, shape).astype(np.uint16)
    parent = rng.integers(0, k, (3, 4)).astype(np.uint16) if parented else None
    factors = (8, 4) if parented else (4,)
    indices = np.concatenate([grid[..., None], rng.integers(0, k, shape + (3,))], axis=-1).astype(np.uint16)
    bits, own = rdoq.cell_code_lengths(grid, indices, 4, factors, prior, parent)
    total = own.sum()
    for r in range(shape[0]):
        for c in range(shape[1]):
            for j in range(1, 4):
                trial = grid.copy()
                trial[r, c] = indices[r, c, j]
                changed = rdoq.cell_code_lengths(trial, indices, 4, factors, prior, parent)[1].sum()
                assert changed - total == pytest.approx(bits[r, c, j] - bits[r, c, 0], abs=1e-4)  # float32 logs


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
    for f in factors:  # the payloads decode (index CRCs hold) to grids of the candidates
        grid = decode_grid(parsed, f, codec.model.prior, decoded)
        decoded[f] = grid
        assert (grid[..., None] == candidates[f][0]).any(-1).all()
    assert sum(len(c.payload) for c in parsed.levels) < sum(len(c.payload) for c in nearest_chunks)
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

    path = DATA / "scene-128x96-q40.hvq"
    codec = Codec.for_fingerprint(parse(path.read_bytes()).header.model_fingerprint)  # the installed 0.2 model
    for level in V02_LEVELS:  # the same indices (CRC-checked); float convs may round differently
        pixels = np.asarray(codec.decompress(path, level=level)).astype(int)
        golden = np.asarray(Image.open(DATA / f"scene-128x96-q40-level{level}-v02.png")).astype(int)
        assert np.abs(pixels - golden).max() <= 1, level
    assert np.asarray(codec.decompress(path)).shape == golden.shape  # the finest level by default


@pytest.mark.slow
def test_committed_rdoq_file_is_what_quality_40_writes_today():
    from hvq.codec.runtime.pipeline import Codec

    from hvq.codec.runtime.registry import MODELS_DIR

    data = Codec.for_model(MODELS_DIR / "hvq-0.2.safetensors").compress(DATA / "scene-128x96.png", quality=40,
                                                                                  effort=2)
    assert data == (DATA / "scene-128x96-q40.hvq").read_bytes()


def test_anchor_pass_files_decode_and_save_bytes(tiny_context_codec, monkeypatch):
    codec = tiny_context_codec
    image = _noise(64, 64)
    greedy = codec.compress(image, quality=0)
    monkeypatch.setattr(rdoq, "ANCHOR_PASSES", 1)
    refined = codec.compress(image, quality=0)
    assert codec.decompress(refined).size == image.size  # index CRCs hold
    assert refined != greedy
