"""The codec: image -> tokens -> .hvq bytes and back, one call per arrow.

::

    compress:    image -> tokenize (load_image, encode_tiled: pad, net.encode per tile) -> Tokens
                       -> write_tokens (each level given its stored parent; HEAD) -> bytes
    decompress:  bytes -> read_file -> read_tokens (prior checked once; parents first; index CRCs) -> Tokens
                       -> detokenize (decode_tiled: net.decode per tile, crop, round) -> image

With a quality or a target (rate control), ``tokenize``'s nearest codewords
give way to a choice for rate as well as distortion, between the encoder and
the coder: ``candidates_tiled -> rate_control.choose (rdoq, then at effort 2
the pixel passes of pixel_rdoq, per trial) -> write_tokens`` (with a ``rate``
chunk naming the setting).

``write_tokens`` and ``read_tokens`` are what ``hvq.encode_tokens`` and
``hvq.decode_tokens`` run once they have found the prior.

Tokens (``hvq.bitstream.levels``) are the middle: what the transforms
produce and the entropy coder codes.  Which model decodes a file is the one
it names by fingerprint (``registry``), unless one is given.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from hvq.bitstream.container import Header, ParsedFile, read_file
from hvq.bitstream.errors import HvqImageError, HvqModelError, HvqUsageError
from hvq.bitstream.levels import Tokens, as_level, as_levels, as_selection, read_tokens, write_tokens
from hvq.codec.runtime.checks import (  # noqa: F401 (MAX_TRANSFORM_PIXELS, choose_level, as_depth re-exported)
    MAX_TRANSFORM_PIXELS, as_depth, check_header, choose_level, parents_needed, with_parents,
)
from hvq.codec.runtime.imageio import load_image
from hvq.codec.runtime.registry import default_model, find_model
from hvq.codec.runtime.tiling import DEFAULT_TILE, candidates_tiled, check_tile, decode_tiled, encode_tiled
from hvq.bitstream.settings import CHUNK_TYPE as RATE_CHUNK, RateSetting, encode_setting
from hvq.codec.runtime import pixel_rdoq, rate_control
from hvq.codec.runtime.distortion import psnr_from_mse
from hvq.codec.runtime.rdoq import DEFAULT_CANDIDATES, cell_code_lengths as code_lengths
from hvq.codec.runtime.weights import LoadedModel, load_model


class Codec:
    """A loaded model with the two directions of the codec side by side, tokens in the middle."""

    def __init__(self, model: LoadedModel, tile: int = DEFAULT_TILE):
        self.model = model
        self.tile = check_tile(tile, model.config.max_factor)

    @classmethod
    def for_model(cls, model: LoadedModel | str | Path | None = None, tile: int = DEFAULT_TILE) -> "Codec":
        """A codec for a loaded model, a model file path, or (None) the default model for new files.

        ``tile`` is the side, in pixels, of the tiles the transforms run on
        (a multiple of the coarsest factor); it bounds memory and does not
        change the file.
        """
        if isinstance(model, LoadedModel):
            return cls(model, tile)
        return cls(load_model(model if model is not None else default_model()), tile)

    @classmethod
    def for_fingerprint(cls, model_fingerprint: bytes, prior_fingerprint: bytes = bytes(16), model=None) -> "Codec":
        """``model`` if given, else the installed model with this fingerprint (``registry.find_model``)."""
        if model is not None:
            return cls.for_model(model)
        return cls.for_model(find_model(model_fingerprint, prior_fingerprint))

    def check_levels(self, levels) -> tuple[int, ...]:
        """Normalise a level selection (factors: 16, "16,8", (16, 8)) against the model; None means all."""
        factors = self.model.config.factors
        levels = as_levels(levels)
        if levels is None:
            return tuple(sorted(factors, reverse=True))
        chosen = tuple(sorted(set(levels), reverse=True))
        unknown = [f for f in chosen if f not in factors]
        if unknown or not chosen:
            raise HvqModelError(
                f"model has no level {','.join(map(str, unknown)) or '(none chosen)'} "
                f"(levels: {','.join(map(str, sorted(factors, reverse=True)))})"
            )
        return chosen

    def check_selection(self, levels) -> dict[int, int]:
        """{factor: depth} for a selection with depths ("16,8,4:2"; F alone: every depth the model has).

        None means every level at every depth.  A depth beyond the model's is an error naming both.
        A top-down model's coarser levels join each chosen level at depth 1
        (``checks.with_parents``): it decodes only beside them.
        """
        selection = as_selection(levels)
        factors = self.check_levels(None if selection is None else [f for f, _ in selection])
        asked = dict(selection or ())
        chosen = {}
        for factor in factors:
            deepest = self.model.net.depth_of(factor)
            depth = asked.get(factor) or deepest
            if depth > deepest:
                raise HvqModelError(f"model has no level {factor}:{depth} (level {factor} has depths 1..{deepest})")
            chosen[factor] = depth
        return with_parents(self.model.config, chosen)

    # -- the two directions ---------------------------------------------------------

    def compress(self, image, levels=None, quality=None, target_bpp=None, target_psnr=None, effort=None) -> bytes:
        """Compress an image (PIL, path, file bytes, file object, HxWx3 uint8 array) to .hvq bytes.

        At most one of ``quality`` (0..100), ``target_bpp`` (whole file) and
        ``target_psnr`` (dB, finest stored level) turns on rate control
        (``hvq.codec.runtime.rate_control``); without them every index is the
        nearest codeword.  ``effort`` 1 (default) weighs latent distance
        alone; 2 adds the pixel-error passes (20-75x slower, smaller files).
        A target search also picks the levels unless ``levels`` names them;
        a target out of reach raises ``HvqTargetError``.
        """
        setting = rate_control.setting_for(quality, target_bpp, target_psnr, effort)
        if setting is None:
            return write_tokens(self.tokenize(image, levels), self.model.prior)  # hvq.encode_tokens with this model
        return self._compress_rate_controlled(image, levels, setting)

    def _compress_rate_controlled(self, image, levels, setting: RateSetting) -> bytes:
        """Rate control's choice of indices between the encoder and the entropy coder."""
        depths = self.check_selection(levels)  # {factor: depth}
        chosen = tuple(depths)
        deep = {f: d for f, d in depths.items() if d > 1}
        pixels = load_pixels(image)  # (H, W, 3) uint8, as tokenize loads it
        height, width = pixels.shape[:2]
        net, prior = self.model.net, self.model.prior
        candidates = candidates_tiled(net, pixels, DEFAULT_CANDIDATES, self.tile)  # padded as encode_tiled pads
        # a free target search tries the coarsest level alone, then down to each finer one, and each
        # finer one at every depth it has; given levels are one rung (with the depths asked for)
        level_sets = [rate_control.Rung(chosen, deep)]
        if levels is None:
            level_sets = []
            for i, finest in enumerate(chosen):
                coarser = {g: d for g, d in deep.items() if g in chosen[:i]}
                level_sets += [rate_control.Rung(chosen[: i + 1], coarser | ({finest: d} if d > 1 else {}))
                               for d in range(1, depths[finest] + 1)]
        refined: dict[tuple, np.ndarray] = {}  # a level's grid depends on its quality, coder and parent only

        def refine_at(quality, factors):
            if setting.effort < rate_control.PIXEL_EFFORT or not pixel_rdoq.refines(net, factors):
                return None
            mu = rate_control.mu_for(quality)

            def refine(factor, grid, parent, coarser):
                parents = {g: coarser[g] for g in net.parents_needed(factor)}  # a top-down decoder's, chosen already
                key = (factor, quality, prior.coder_for(factor, factors), None if parent is None else parent.tobytes(),
                       tuple((g, p.tobytes()) for g, p in parents.items()))
                if key not in refined:
                    indices = candidates[factor][0]
                    bits = lambda g: code_lengths(g, indices, factor, factors, prior, parent)  # noqa: E731
                    refined[key] = pixel_rdoq.refine(net, grid, indices, factor, pixels, bits, mu,
                                                     tile=self.tile, parents=parents)
                return refined[key]

            return refine

        depth_stacks: dict[tuple, dict[int, np.ndarray]] = {}  # every depth, per choice of depth 1

        def refinements_of(grids, rung) -> dict[int, np.ndarray]:
            """Depths 2.. of the rung's deep levels, quantising what the chosen depth 1 leaves of the latent.

            Rungs that differ only in depth share their depth-1 grids, so one
            encoder pass per choice of depth 1 serves them all (and the final write).
            """
            if not rung.depths:
                return {}
            first = {f: grids[f] for f in sorted(rung.depths)}
            key = tuple((f, g.tobytes()) for f, g in first.items())
            if key not in depth_stacks:
                depth_stacks[key] = encode_tiled(net, pixels, self.tile, depths=True, first=first)
            return {f: depth_stacks[key][f][1:d] for f, d in rung.depths.items()}

        def write(grids, factors, s=None) -> bytes:
            refinements = refinements_of(grids, factors)
            tokens = Tokens({f: grids[f] for f in factors}, width, height, self.model.fingerprint,
                            self.model.config.max_factor, self.model.config.codebook_size, refinements)
            ancillary = () if s is None else ((RATE_CHUNK, encode_setting(s)),)
            return write_tokens(tokens, prior, ancillary)

        def file_bpp(grids, factors, s):
            return 8 * len(write(grids, factors, s)) / (width * height)

        def squared_error(grids, factors, f) -> float:
            """Level f's squared error as the file decodes it (8-bit pixels, summed)."""
            parents = {g: grids[g] for g in net.parents_needed(f) if g in grids}  # a top-down model's coarser codes
            decoded = decode_tiled(net, grids[f], f, width, height, self.tile, parents or None,
                                   refinements_of(grids, factors).get(f))
            return float(np.sum((decoded.astype(np.float64) - pixels) ** 2))

        def finest_psnr(grids, factors):
            mse = squared_error(grids, factors, factors[-1]) / pixels.size
            return psnr_from_mse(mse, 255.0) if mse > 0 else 100.0  # finite for the search's bisection

        def level_errors(grids, factors):
            """Each level's squared error: what the rungs are checked on."""
            return {f: squared_error(grids, factors, f) for f in factors}

        # the check against the rungs: at effort 2, where every level decodes with what the file holds
        checked = setting.effort >= rate_control.PIXEL_EFFORT and pixel_rdoq.refines(net, chosen)
        choice = rate_control.choose(setting, candidates, level_sets, prior, file_bpp, finest_psnr, refine_at,
                                     level_errors if checked else None, net.parents_needed)
        return write(choice.grids, choice.factors, choice.setting)

    def decompress(self, data, level: int | None = None, partial: bool = False, depth: int | None = None) -> Image.Image:
        """Decode one level (default: the finest stored) to an RGB image of the original size.

        A truncated file decodes any level it holds completely when that level
        is asked for; with ``level=None`` it raises, unless ``partial`` asks for
        the finest complete level (a preview from the first bytes).  ``depth``
        (default: the deepest of the level's depths whole in the file) picks
        how many of its refinement depths are decoded.
        """
        parsed = read_file(data)
        self.check_header(parsed.header)
        factor = choose_level(parsed, as_level(level), partial)
        needed = self._parents_needed(factor, [chunk.factor for chunk in parsed.levels])
        depth = as_depth(depth) or parsed.depth_of(factor) or 1  # 0: not even its grid is whole (read_tokens names it)
        depths = {factor: depth, **{g: 1 for g in needed}}  # parents at depth 1, as the decoder reads them
        tokens = read_tokens(parsed, (factor, *needed), self.model.prior, depths)  # hvq.decode_tokens
        return self.detokenize(tokens, factor, depth)

    # -- the transforms: image <-> tokens ----------------------------------------------

    def tokenize(self, image, levels=None) -> Tokens:
        """The image's index grids at the chosen levels (default all, each at every depth): what compress codes.

        ``levels``: factors, or with depths ("16,8,4:2": depths 1..2 of level 4; F alone: all its depths).
        """
        chosen = self.check_selection(levels)  # {factor: depth}
        pixels = load_pixels(image)  # (H, W, 3) uint8
        height, width = pixels.shape[:2]
        with_depths = any(d > 1 for d in chosen.values())
        stacks = encode_tiled(self.model.net, pixels, self.tile, depths=with_depths)  # nearest codewords, every depth
        del pixels
        # Rate control (choosing indices for rate as well as distortion) goes here, one call.
        grids = {f: stacks[f][0] if with_depths else stacks[f] for f in chosen}
        refinements = {f: stacks[f][1:d] for f, d in chosen.items() if d > 1}  # (d - 1, H'/f, W'/f)
        config = self.model.config
        return Tokens(grids, width, height, self.model.fingerprint, config.max_factor, config.codebook_size, refinements)

    def detokenize(self, tokens: Tokens, level: int | None = None, depth: int | None = None) -> Image.Image:
        """One level of the tokens (default: their finest, at its deepest depth) as an RGB image of the original size."""
        if not isinstance(tokens, Tokens):
            raise HvqModelError(f"detokenize takes hvq.Tokens, not {type(tokens).__name__}")
        self.check_header(tokens)
        factor = as_level(level) if level is not None else tokens.levels[-1]
        grid = tokens.grid(factor)
        depth = as_depth(depth) or tokens.depth(factor)
        if depth > 1:
            tokens.refinement(factor, depth)  # names a depth these tokens do not hold
        refinements = tokens.refinements[factor][: depth - 1] if depth > 1 else None  # (depth - 1, H'/f, W'/f)
        parents = {g: tokens.grid(g) for g in self._parents_needed(factor, tokens.levels)}
        pixels = decode_tiled(self.model.net, grid, factor, tokens.width, tokens.height, self.tile, parents,
                              refinements)  # crops
        return Image.fromarray(pixels, "RGB")

    def _parents_needed(self, factor: int, held) -> tuple[int, ...]:
        """The coarser levels a top-down model's decoder of ``factor`` reads (none for the product's model)."""
        return parents_needed(self.model.config, factor, held)

    def check_header(self, header: Header | Tokens) -> None:
        """Refuse a file (its HEAD) or tokens made with another model before decoding anything (``checks``)."""
        check_header(header, self.model.config, self.model.fingerprint)

    def check_file(self, parsed: ParsedFile) -> None:
        """``check_header`` of a parsed file (the prior is checked where levels are read)."""
        self.check_header(parsed.header)


def load_pixels(image) -> np.ndarray:
    """The image as (H, W, 3) uint8 pixels, held once: large images are tiled to bound memory."""
    rgb = load_image(image_source(image), MAX_TRANSFORM_PIXELS)
    return np.asarray(rgb)  # a copy; the PIL image goes when this returns


def decompress(data, level=None, model=None, partial: bool = False, depth=None) -> Image.Image:
    """Decode a file with ``model``, or the installed model the file names: the file is parsed once."""
    given = Codec.for_model(model) if model is not None else None  # a given model is checked before the file
    parsed = read_file(data)
    header = parsed.header
    codec = given or Codec.for_fingerprint(header.model_fingerprint, header.prior_fingerprint)
    return codec.decompress(parsed, level, partial, depth)


def detokenize(tokens: Tokens, level=None, model=None, depth=None) -> Image.Image:
    """Tokens to an image with ``model``, or the installed model the tokens name."""
    if not isinstance(tokens, Tokens):
        raise HvqModelError(f"detokenize takes hvq.Tokens, not {type(tokens).__name__}")
    return Codec.for_fingerprint(tokens.model_fingerprint, model=model).detokenize(tokens, level, depth)


IMAGE_KINDS = "a PIL image, a path, image file bytes, a binary file object or an HxWx3 uint8 array"


def image_source(image):
    """What ``load_image`` opens: a PIL image, a path or a binary file; bytes and arrays are wrapped."""
    if isinstance(image, (Image.Image, str, Path)) or hasattr(image, "read"):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(image))  # the bytes of an image file, not a path
    if isinstance(image, np.ndarray):
        return _array_image(image)
    raise HvqUsageError(f"an image is {IMAGE_KINDS}, not {type(image).__name__}")


def _array_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise HvqImageError(
            f"an array image must be HxWx3 (RGB) or HxW (gray) uint8, not shape {array.shape} {array.dtype}"
        )
    if not array.size:
        raise HvqImageError("image is empty")
    return Image.fromarray(np.ascontiguousarray(array), "RGB" if array.ndim == 3 else "L")
