"""Pixel-distortion refinement: tiled errors and gradients, and passes that never raise the cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hvq.codec.runtime import pixel_rdoq, rdoq
from hvq.codec.runtime.imageio import to_tensor
from hvq.codec.runtime.tiling import candidates_tiled, encode_tiled


def _image(width=72, height=56, seed=5):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1)
    return ((smooth + rng.integers(0, 40, smooth.shape)) % 256).astype(np.uint8)


def _untiled(net, grid, factor, image):
    """Whole-grid SSE and gradient by autograd, cropped to the image: what the tiles must add up to."""
    z = net.codebook_of(factor).lookup(torch.from_numpy(grid.astype(np.int64))[None]).requires_grad_(True)
    x_hat = (net._synthesise({factor: z}, factor) + 0.5).clamp(0.0, 1.0)[0]
    h, w = image.shape[:2]
    error = ((x_hat[:, :h, :w] - to_tensor(image)[0]) * 255.0).square()
    error.sum().backward()
    return float(error.detach().sum()), z.grad[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("tile", [16, 32, 1024])
def test_tiled_pixel_errors_and_gradients_are_the_whole_images(tiny_context_codec, tile):
    net = tiny_context_codec.model.net
    image = _image()  # 72x56: the padding (to 80x64) must not count
    grids = encode_tiled(net, image)
    for f, grid in grids.items():
        sse, grad = pixel_rdoq.pixel_errors(net, grid, f, image, tile, gradient=True)
        total, expected = _untiled(net, grid, f, image)
        assert sse.shape == grid.shape and grad.shape == grid.shape + (net.config.code_dim,)
        assert sse.sum() == pytest.approx(total, rel=1e-5)
        assert np.allclose(grad, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        no_grad, none = pixel_rdoq.pixel_errors(net, grid, f, image, tile)
        assert none is None and np.allclose(no_grad, sse)


@pytest.mark.parametrize("mu", [0.0, 1.0, 4.0])
def test_refinement_never_raises_the_cost_it_weighs(tiny_context_codec, mu):
    codec = tiny_context_codec
    net, prior = codec.model.net, codec.model.prior
    image = _image(seed=int(mu))
    candidates = candidates_tiled(net, image, 6)
    factors = codec.check_levels(None)
    changed = 0
    for f in factors:
        indices = candidates[f][0]
        start = indices[..., 0]
        parent = candidates[2 * f][0][..., 0] if prior.coder_for(f, factors) == 3 else None
        bits = lambda g: rdoq.cell_code_lengths(g, indices, f, factors, prior, parent)  # noqa: E731
        refined = pixel_rdoq.refine(net, start, indices, f, image, bits, mu, passes=3)
        assert refined.dtype == np.uint16 and (refined[..., None] == indices).any(-1).all()
        sse0, sse1 = (pixel_rdoq.pixel_errors(net, g, f, image)[0].sum() for g in (start, refined))
        own0, own1 = bits(start)[1].sum(), bits(refined)[1].sum()
        lam = mu * sse0 / own0
        assert sse1 + lam * own1 <= sse0 + lam * own0 + 1e-6 * sse0
        changed += int((refined != start).sum())
    assert changed  # the passes do move cells


def test_top_down_levels_refine_when_their_coarser_levels_are_chosen_too(tiny_context_codec):
    net = tiny_context_codec.model.net
    assert pixel_rdoq.refines(net, (16, 8, 4)) and pixel_rdoq.refines(net, (8,))

    class TopDown:
        def parents_needed(self, factor):
            return (16,) if factor < 16 else ()

    assert pixel_rdoq.refines(TopDown(), (16, 8))
    assert not pixel_rdoq.refines(TopDown(), (8,))  # its decoder reads a level the file would not hold


@pytest.fixture(scope="module")
def top_down_codec(tmp_path_factory):
    """A tiny model shaped like v2: top-down, one head at 1/4 (no level heads), three decoder blocks."""
    from conftest import make_tiny_model

    from hvq.codec.runtime.pipeline import Codec

    path = make_tiny_model(tmp_path_factory.mktemp("td") / "td.safetensors", seed=3, context=True, topdown=True,
                           level_heads=False, decoder_blocks=3)
    return Codec.for_model(path)


def _untiled_top_down(net, grid, factor, image, parents):
    z = net.codebook_of(factor).lookup(torch.from_numpy(grid.astype(np.int64))[None]).requires_grad_(True)
    codewords = {factor: z, **{g: net.codebook_of(g).lookup(torch.from_numpy(p.astype(np.int64))[None])
                               for g, p in parents.items()}}
    x_hat = (net._synthesise(codewords, factor) + 0.5).clamp(0.0, 1.0)[0]
    h, w = image.shape[:2]
    error = ((x_hat[:, :h, :w] - to_tensor(image)[0]) * 255.0).square()
    error.sum().backward()
    return float(error.detach().sum()), z.grad[0].permute(1, 2, 0).numpy()


def test_top_down_tiles_read_the_parents_cut_to_their_windows(top_down_codec):
    net = top_down_codec.model.net
    image = _image(width=88, height=72, seed=7)  # pads to 96x80: several 16-pixel tiles, the padding cut off
    grids = encode_tiled(net, image)
    for f in (8, 4):
        parents = {g: grids[g] for g in net.parents_needed(f)}
        assert parents
        sse, grad = pixel_rdoq.pixel_errors(net, grids[f], f, image, 16, gradient=True, parents=parents)
        total, expected = _untiled_top_down(net, grids[f], f, image, parents)
        assert sse.sum() == pytest.approx(total, rel=1e-5)
        assert np.allclose(grad, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("mu", [0.0, 2.0])
def test_top_down_passes_run_and_lower_the_cost_against_the_nearest(top_down_codec, mu):
    """Coarse first, each level refined with the coarser levels' refined grids fixed, as the pipeline runs it."""
    codec = top_down_codec
    net, prior = codec.model.net, codec.model.prior
    image = _image(seed=11)
    candidates = candidates_tiled(net, image, 6)
    factors = codec.check_levels(None)
    assert pixel_rdoq.refines(net, factors)
    chosen, changed = {}, 0
    for f in factors:
        indices = candidates[f][0]
        nearest = np.ascontiguousarray(indices[..., 0])
        parents = {g: chosen[g] for g in net.parents_needed(f)}
        parent = chosen[2 * f] if prior.coder_for(f, factors) == 3 else None
        bits = lambda g: rdoq.cell_code_lengths(g, indices, f, factors, prior, parent)  # noqa: E731
        chosen[f] = pixel_rdoq.refine(net, nearest, indices, f, image, bits, mu, tile=32, parents=parents)
        sse0, sse1 = (pixel_rdoq.pixel_errors(net, g, f, image, parents=parents)[0].sum() for g in (nearest, chosen[f]))
        own0, own1 = bits(nearest)[1].sum(), bits(chosen[f])[1].sum()
        lam = mu * sse0 / own0
        assert sse1 + lam * own1 <= sse0 + lam * own0 + 1e-6 * sse0
        changed += int((chosen[f] != nearest).sum())
    assert changed  # the passes run on a top-down model (they were skipped before)


def test_top_down_quality_100_files_decode_and_beat_the_nearest_given_the_same_coarser_levels(top_down_codec):
    """Each level refined at Q 100 decodes (ordinary reader) at least as well as its nearest codewords would.

    Both with the coarser levels the file holds: refining a coarser level for
    its own error also moves what a finer decoder reads, so against a file of
    nearest codewords everywhere only the coarsest level is compared.
    """
    from hvq.bitstream.container import read_file
    from hvq.bitstream.levels import read_tokens
    from hvq.codec.runtime.tiling import decode_tiled

    codec = top_down_codec
    net = codec.model.net
    image = _image(seed=13)
    height, width = image.shape[:2]
    psnr = lambda x: 10 * np.log10(255**2 / np.mean((x.astype(np.float64) - image) ** 2))  # noqa: E731
    nearest_file, refined_file = codec.compress(image), codec.compress(image, quality=100, effort=2)
    assert refined_file != nearest_file
    tokens = read_tokens(read_file(refined_file), (16, 8, 4), codec.model.prior, {16: 1, 8: 1, 4: 1})
    nearest = encode_tiled(net, image)
    changed = 0
    for f in (16, 8, 4):
        decoded = np.asarray(codec.decompress(refined_file, level=f))
        parents = {g: tokens.grid(g) for g in net.parents_needed(f)}
        assert np.array_equal(decoded, decode_tiled(net, tokens.grid(f), f, width, height, parents=parents or None))
        alone = decode_tiled(net, nearest[f], f, width, height, parents=parents or None)
        assert psnr(decoded) >= psnr(alone) - 1e-9, f
        changed += int((tokens.grid(f) != nearest[f]).sum())
    assert changed
    assert psnr(np.asarray(codec.decompress(refined_file, level=16))) >= psnr(
        np.asarray(codec.decompress(nearest_file, level=16)))


def test_changed_cells_never_touch_even_on_equal_gains():
    rng = np.random.default_rng(2)
    gain = rng.normal(size=(20, 24))
    gain[5:9, 5:9] = 3.0  # a plateau of equal gains
    chosen = pixel_rdoq._local_maxima(gain, 1)
    rows, cols = np.nonzero(chosen)
    assert chosen[5, 5] and (gain[chosen] > 0).all()
    for r, c in zip(rows, cols):
        assert chosen[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].sum() == 1
