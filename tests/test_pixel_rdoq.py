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


def test_top_down_models_keep_the_latent_choice(tiny_context_codec):
    net = tiny_context_codec.model.net
    assert pixel_rdoq.refines(net, (16, 8, 4))

    class TopDown:
        def parents_needed(self, factor):
            return (16,) if factor < 16 else ()

    assert not pixel_rdoq.refines(TopDown(), (16, 8))


def test_changed_cells_never_touch_even_on_equal_gains():
    rng = np.random.default_rng(2)
    gain = rng.normal(size=(20, 24))
    gain[5:9, 5:9] = 3.0  # a plateau of equal gains
    chosen = pixel_rdoq._local_maxima(gain, 1)
    rows, cols = np.nonzero(chosen)
    assert chosen[5, 5] and (gain[chosen] > 0).all()
    for r, c in zip(rows, cols):
        assert chosen[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].sum() == 1
