"""hvq: a neural image codec with progressive, level-by-level files.

Public API, tokens in the middle::

    data = hvq.compress("photo.png")             # bytes of a .hvq file, all levels
    image = hvq.decompress(data, level=8)        # PIL.Image at the 1/8 level
    info = hvq.inspect(data)                     # header and chunks, no weights needed

    tokens = hvq.tokenize("photo.png")           # Tokens: a uint16 index grid per level
    image = hvq.detokenize(tokens, level=16)     # PIL.Image from one level's grid
    data = hvq.encode_tokens(tokens)             # == hvq.compress("photo.png"); torch-free
    tokens = hvq.decode_tokens(data)             # the grids back, exactly; torch-free

``compress`` is ``encode_tokens(tokenize(...))`` and ``decompress`` is
``detokenize(decode_tokens(...))``.  A file names its model by fingerprint,
and reading picks the installed model that matches (``model=`` overrides).
Torch and the network load on first use of the transforms (``compress``,
``decompress``, ``tokenize``, ``detokenize``), so ``inspect``, the token
coding and ``strip`` stay light.
"""

from __future__ import annotations

from hvq.bitstream.errors import (
    HvqConfigError,
    HvqDataError,
    HvqError,
    HvqFormatError,
    HvqImageError,
    HvqModelError,
    HvqTruncatedError,
    HvqUsageError,
)

__version__ = "0.2.0"

__all__ = [
    "compress",
    "decompress",
    "tokenize",
    "detokenize",
    "encode_tokens",
    "decode_tokens",
    "strip",
    "inspect",
    "Tokens",
    "HvqError",
    "HvqConfigError",
    "HvqDataError",
    "HvqFormatError",
    "HvqImageError",
    "HvqModelError",
    "HvqTruncatedError",
    "HvqUsageError",
]


def __getattr__(name):
    if name == "Tokens":  # imported on first use, so that ``import hvq`` stays light
        from hvq.bitstream.levels import Tokens

        return Tokens
    raise AttributeError(f"module 'hvq' has no attribute {name!r}")


def compress(image, levels=None, model=None, quality=None, target_bpp=None, target_psnr=None, effort=None) -> bytes:
    """Compress an image to .hvq bytes: ``encode_tokens(tokenize(image, levels, model))``.

    ``image``: a PIL image, a path, an image file's bytes, a binary file
    object or an HxWx3 uint8 array.  ``levels``: factors, e.g. ``(16, 8)``,
    ``16`` or ``"16,8"`` (default: all), each with every refinement depth the
    model has; ``"16,8,4:2"`` (or ``(4, 2)`` entries) keeps depths 1..2 of level 4.  ``model``: a model file or None
    for the default model.  ``quality`` (0..100), ``target_bpp`` or
    ``target_psnr`` (one at most) trade distortion for size (rate control);
    without them each index is the nearest codeword.  ``effort`` (with one
    of them): 1 (default) weighs latent distance, 1.0-1.3x the encode time;
    2 also measures pixel error through the decoders, 20-75x.
    """
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(model).compress(image, levels, quality, target_bpp, target_psnr, effort)


def decompress(data, level=None, model=None, depth=None):
    """Decode .hvq bytes, a path or a binary file object to a PIL RGB image at ``level`` (default: the finest stored).

    ``detokenize(decode_tokens(data, (level,)), level)`` with the model the
    file names (or ``model``).  ``depth``: how many of the level's refinement
    depths to decode (default: every one the file holds whole).  The decoder
    runs on torch, or without it on onnxruntime: ``HVQ_BACKEND=auto|torch|onnx``
    (``hvq.codec.runtime.backend``).
    """
    from hvq.codec.runtime.backend import decompress as decompress_file

    return decompress_file(data, level, model, depth=depth)


def tokenize(image, levels=None, model=None) -> "Tokens":
    """The image's codebook indices: a ``Tokens`` with a uint16 grid per chosen level (default: all)."""
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(model).tokenize(image, levels)


def detokenize(tokens: "Tokens", level=None, model=None, depth=None):
    """One level of ``tokens`` (default: their finest, at its deepest depth) as a PIL RGB image, with the model they name."""
    from hvq.codec.runtime.pipeline import detokenize as detokenize_tokens

    return detokenize_tokens(tokens, level, model, depth)


def encode_tokens(tokens: "Tokens", model=None, prior=None) -> bytes:
    """Entropy-code ``tokens`` into a .hvq file with their model's prior; torch-free and deterministic."""
    from hvq.codec.runtime.tokens import encode_tokens as encode

    return encode(tokens, model, prior)


def decode_tokens(data, levels=None, model=None, prior=None) -> "Tokens":
    """The ``Tokens`` a .hvq file stores (default: every level), without running the transforms; torch-free."""
    from hvq.codec.runtime.tokens import decode_tokens as decode

    return decode(data, levels, model, prior)


def strip(data, keep, model=None) -> bytes:
    """The file with only the levels in ``keep``; chunks are copied, a level whose parent is dropped re-coded."""
    from hvq.codec.runtime.tokens import strip_file

    return strip_file(data, keep, model)


def inspect(data):
    """Parse .hvq bytes (or a path) into a frozen ``FileInfo`` without decoding any level."""
    from hvq.bitstream.info import inspect_file

    return inspect_file(data)
