"""What a file must agree on with a model before any level decodes, and which level and depth it decodes: torch-free.

Both backends of the decoder (``pipeline.Codec``, torch; ``onnx_backend``,
onnxruntime) run these checks on a file's HEAD (or on tokens) against the
model's config and fingerprint, so a file made with other weights, or one
too large to transform, is refused the same way whichever backend decodes
it, and without importing torch.
"""

from __future__ import annotations

import numpy as np

from hvq.bitstream.container import Header, ParsedFile
from hvq.bitstream.errors import HvqFormatError, HvqModelError, HvqUsageError
from hvq.bitstream.levels import Tokens, stored_levels
from hvq.codec.model.config import ModelConfig

# The transforms run tile by tile (codec/runtime/tiling.py), so their memory is set
# by the tile, not the image: the whole image is held only as 8-bit pixels.
# 2**26 pixels (8192x8192) keeps that under 1 GB and stays below Pillow's
# decompression-bomb warning (about 89 M pixels), so any image hvq accepts
# opens without it.  Larger images and files are refused before anything
# is allocated.
MAX_TRANSFORM_PIXELS = 1 << 26


def check_header(header: Header | Tokens, config: ModelConfig, fingerprint: bytes) -> None:
    """Refuse a file (its HEAD) or tokens made with another model before decoding anything."""
    if header.model_fingerprint != fingerprint:
        raise HvqModelError(
            f"file was made with model {header.model_fingerprint.hex()}, "
            f"but the loaded model is {fingerprint.hex()}"
        )
    if header.grid_multiple != config.max_factor:
        raise HvqModelError("file's grid multiple does not match the model")
    if header.width * header.height > MAX_TRANSFORM_PIXELS:
        raise HvqFormatError(
            f"image of {header.width}x{header.height} exceeds the {MAX_TRANSFORM_PIXELS}-pixel limit of the transforms"
        )
    if header.codebook_size != config.codebook_size:
        raise HvqModelError(
            f"file's codebook size {header.codebook_size} does not match the model's {config.codebook_size}"
        )
    stored = header.factors if isinstance(header, Header) else header.levels
    foreign = [f for f in stored if f not in config.factors]
    if foreign:
        raise HvqModelError(f"file holds level {foreign[0]}, which the model does not have")
    depths = header.depths.items() if isinstance(header, Tokens) else header.depths
    for factor, depth in depths:
        if depth > config.depth_of(factor):  # the fingerprint matched: the file is wrong, not the model
            raise HvqFormatError(f"file holds level {factor}:{depth}, but the model's level {factor} "
                                 f"has depths 1..{config.depth_of(factor)}")


def with_parents(config: ModelConfig, depths: dict[int, int]) -> dict[int, int]:
    """``depths`` ({factor: depth}) plus, for a top-down model, the coarser levels each one decodes with, at depth 1.

    A top-down level decodes only beside its coarser levels, so the smallest
    file that shows level f holds them too: ``--levels 4`` writes 16, 8 and 4.
    Coarse first, as files store them.
    """
    chosen = dict(depths)
    for factor in list(chosen):
        for parent in config.decoder_parents(factor):
            chosen.setdefault(parent, 1)
    return {f: chosen[f] for f in sorted(chosen, reverse=True)}


def parents_needed(config: ModelConfig, factor: int, held) -> tuple[int, ...]:
    """The coarser levels a top-down model's decoder of ``factor`` reads (``net.parents_needed``), all in ``held``."""
    needed = config.decoder_parents(factor)
    for parent in needed:
        if parent not in held:
            raise HvqModelError(f"level {factor} of this model decodes only with level {parent}, "
                                "which the file does not hold")
    return needed


def choose_level(parsed: ParsedFile, level: int | None, partial: bool) -> int:
    """The level to decode: ``level``, else the finest stored (the finest complete one with ``partial``)."""
    if level is not None:
        return level
    return stored_levels(parsed, None, partial)[-1]  # coarse first, so the last is the finest


def as_depth(depth) -> int | None:
    """A depth (1: the level's grid alone), as an int or a string of digits; None passes through."""
    if depth is None:
        return None
    if isinstance(depth, (int, np.integer)) and not isinstance(depth, bool) and depth >= 1:
        return int(depth)
    if isinstance(depth, str) and depth.strip().isdigit() and int(depth) >= 1:
        return int(depth)
    raise HvqUsageError(f"a depth is a whole number from 1 (a level's grid alone), not {depth!r}")
