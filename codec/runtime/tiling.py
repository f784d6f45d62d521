"""Tiled transforms: any image size in bounded memory, with the untiled result.

The networks are convolutional, so a window of the image with enough
context around a tile gives, inside the tile, the same numbers as the whole
image would.  The tiles only change how the work is cut, never the file:
the encoder's tiles are stitched into one index grid per level before
entropy coding, and the decoder cuts that grid again.  Memory then grows
with the tile, not the image (the whole image is held only as 8-bit pixels
and the grids as indices).

How much context is enough is the receptive field of the architecture in
``encoder.py`` and ``decoder.py`` (3x3 convolutions, radius 1 cell at their
own scale):

- encoder, level f: trunk 23 px (stride-2 conv 1, residual block 4, stride-2
  conv 2, two residual blocks 16), each DownSample at scale s adds s, the
  level's head (a residual block) 2f; at most 23 + 3f px for the coarsest
  factor m.  ``encoder_halo`` rounds 24 + 3m up to a multiple of m (80 px for
  m = 16), so that every window starts on the coarsest grid and every
  stride-2 layer keeps its phase.
- decoder, level f: conv and residual block 3f, then per doubling from
  scale g the sub-pixel conv g and, at scales >= 4, a residual block g; the
  final conv 1 px.  That is 103 px for f = 16 and below 7f for any f, so
  ``DECODER_HALO_CELLS`` = 8 grid cells suffice.

With these halos the tiled result equals the untiled one up to float
rounding (``tests/test_tiling.py`` checks indices and pixels); where the
image's edge is inside a window, that window sees the same zero padding as
the whole image.
"""

from __future__ import annotations

import numpy as np
import torch

from hvq.codec.runtime.imageio import pad_to_multiple, to_pixels, to_tensor
from hvq.codec.runtime.windows import (  # noqa: F401 (the tiles' geometry, re-exported)
    DECODER_HALO_CELLS, DEFAULT_TILE, Window, check_tile, cut, decoder_halo, decoder_tiles, encoder_halo, windows,
)

@torch.inference_mode()  # no autograd bookkeeping at all (the nets' no_grad still records versions)
def encode_tiled(net, image: np.ndarray, tile: int = DEFAULT_TILE, depths: bool = False,
                 first: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """Index grids of every level for a uint8 (H, W, 3) image, one window at a time.

    The image is padded here to the coarsest grid (``pad_to_multiple``), as
    ``decode_tiled`` crops it back: pad and crop sit side by side.  With
    ``depths``, every depth of every level (``net.encode_depths``): {factor:
    (D_f, H'/f, W'/f)}, depth 1 first; a residual quantiser works cell by
    cell, so its depths tile like the grids.  ``first`` ({factor: (H'/f,
    W'/f) grid}, with ``depths``) fixes depth 1 of those levels to grids
    chosen by rate control; their refinements quantise what it leaves.
    """
    m = net.config.max_factor
    check_tile(tile, m)
    padded = pad_to_multiple(image, m)  # (H', W', 3): edge rows and columns repeated
    height, width = padded.shape[:2]
    stacks = {f: np.empty((net.depth_of(f) if depths else 1, height // f, width // f), dtype=np.uint16)
              for f in net.config.factors}
    for w in windows(height, width, tile, encoder_halo(m)):
        pixels = padded[w.win_top : w.win_bottom, w.win_left : w.win_right]
        x = to_tensor(pixels)
        given = {f: torch.from_numpy(cut(g, w, f))[None] for f, g in (first or {}).items()}  # w is in pixels
        indices = net.encode_depths(x, given) if depths else {f: g[:, None] for f, g in net.encode(x).items()}
        for f, stack in stacks.items():
            inner = indices[f][0, :, (w.top - w.win_top) // f : (w.bottom - w.win_top) // f,
                               (w.left - w.win_left) // f : (w.right - w.win_left) // f]
            stack[:, w.top // f : w.bottom // f, w.left // f : w.right // f] = inner.numpy()
    return stacks if depths else {f: stack[0] for f, stack in stacks.items()}


@torch.inference_mode()
def candidates_tiled(net, image: np.ndarray, k: int, tile: int = DEFAULT_TILE) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The ``k`` nearest codewords of every cell of every level, with their squared latent distances.

    What rate control chooses from (``hvq.codec.runtime.rdoq``): {factor:
    (indices (H'/f, W'/f, k) uint16, distances (H'/f, W'/f, k) float32)},
    nearest first.  Padded and tiled like ``encode_tiled`` (a padded image
    pads to itself), and column 0 is exactly its index (the same distances
    and argmin, ties included), so choosing column 0 everywhere reproduces
    today's grids.
    """
    m = net.config.max_factor
    check_tile(tile, m)
    padded = pad_to_multiple(image, m)  # (H', W', 3), as encode_tiled pads
    height, width = padded.shape[:2]
    k = min(int(k), net.config.codebook_size)
    out = {
        f: (np.empty((height // f, width // f, k), dtype=np.uint16), np.empty((height // f, width // f, k), dtype=np.float32))
        for f in net.config.factors
    }
    for w in windows(height, width, tile, encoder_halo(m)):
        x = to_tensor(padded[w.win_top : w.win_bottom, w.win_left : w.win_right])
        for f, z in zip(net.config.factors, net.encoder(x - 0.5)):
            codebook = net.codebook_of(f)
            z = codebook.project(z)  # as the codebook compares it (net.encode does the same)
            b, d, h, wd = z.shape
            distances = codebook.distances(z.permute(0, 2, 3, 1).reshape(-1, d))  # (h*wd, K), as quantize
            nearest = distances.argmin(1)
            top_d, top_i = distances.topk(k, dim=1, largest=False, sorted=True)
            # topk may order ties differently from argmin: put argmin first, the displaced one in its place
            displaced = top_i[:, :1].expand_as(top_i)
            top_i = torch.where(top_i == nearest[:, None], displaced, top_i)
            top_i[:, 0] = nearest
            rows = slice((w.top - w.win_top) // f, (w.bottom - w.win_top) // f)
            cols = slice((w.left - w.win_left) // f, (w.right - w.win_left) // f)
            indices, dists = out[f]
            indices[w.top // f : w.bottom // f, w.left // f : w.right // f] = top_i.view(h, wd, k)[rows, cols].numpy()
            dists[w.top // f : w.bottom // f, w.left // f : w.right // f] = top_d.view(h, wd, k)[rows, cols].numpy()
    return out


def decoder_halo_cells(net, factor: int, parents) -> int:
    """Context in grid cells around a decoder tile of ``net`` (``hvq.codec.runtime.windows.decoder_halo``)."""
    return decoder_halo(net.config, factor, parents)


@torch.inference_mode()
def decode_tiled(net, grid: np.ndarray, factor: int, width: int, height: int, tile: int = DEFAULT_TILE,
                 parents: dict[int, np.ndarray] | None = None, refinements: np.ndarray | None = None) -> np.ndarray:
    """The (height, width, 3) uint8 image of one level's index grid, one window at a time.

    Windows are cut on the grid (tile and halo in cells); each decoded
    window is cropped to its tile and rounded to 8 bits (``to_pixels``).
    ``parents`` ({factor: grid}) are the coarser levels a top-down model's
    decoder also reads (``net.parents_needed``); they are cut to the same windows.
    ``refinements`` (R, rows, cols): the level's depths 2..R+1, cut likewise.
    """
    check_tile(tile, net.config.max_factor)
    rows, cols = grid.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    for t in decoder_tiles(rows, cols, factor, width, height, tile, decoder_halo_cells(net, factor, parents)):
        w = t.window
        window = torch.from_numpy(cut(grid, w))[None]
        parent_windows = None
        if parents:
            parent_windows = {g: torch.from_numpy(cut(p, w, g // factor))[None] for g, p in parents.items()}
        refined = None
        if refinements is not None and len(refinements):
            refined = torch.from_numpy(cut(refinements, w))[None]
        x_hat = net.decode(window, factor, parent_windows, refinements=refined)[0]
        out[t.pixels] = to_pixels(x_hat[(slice(None), *t.crop)])
    return out
