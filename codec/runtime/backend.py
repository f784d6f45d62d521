"""Which backend runs the decoder, torch (``pipeline``) or onnxruntime (``onnx_backend``), and the decompress that picks it.

``HVQ_BACKEND`` (environment) is ``auto`` (the default), ``torch`` or ``onnx``::

    auto:  torch when it is importable; else onnxruntime, if the model has graphs and onnxruntime is importable
    torch: always torch (pipeline.decompress)
    onnx:  onnxruntime; the file's model must have graphs (``hvq export-graphs``)

Torch is the default because it is what ``pip install hvq`` brings and what
every file decodes with; onnxruntime (``pip install 'hvq[light]'``) decodes
without importing torch, in a quarter of its memory
(``benchmarks/results/onnx/README.md``).  A depth the model's graphs lack
(graphs written before it had refinement depths) goes to torch when it is
importable, and is a one-line ``HvqConfigError`` naming what to do when it
is not.

This module, the file parsing, the model lookup and the checks are
torch-free: ``pipeline`` (and so torch) is imported only when torch decodes.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from hvq.bitstream.container import read_file
from hvq.bitstream.errors import HvqConfigError
from hvq.bitstream.levels import as_level, read_tokens
from hvq.codec.runtime.checks import as_depth, check_header, choose_level, parents_needed
from hvq.codec.runtime.registry import find_model, read_prior

VARIABLE = "HVQ_BACKEND"
CHOICES = ("auto", "torch", "onnx")


def setting() -> str:
    """``HVQ_BACKEND``, checked: one of ``CHOICES`` (unset or empty: auto)."""
    raw = os.environ.get(VARIABLE, "")
    value = raw.strip().lower() or "auto"
    if value not in CHOICES:
        raise HvqConfigError(f"{VARIABLE}={raw!r} is not one of {', '.join(CHOICES)}")
    return value


def importable(name: str) -> bool:
    """Whether a package imports, without importing it (a ``None`` in ``sys.modules`` blocks it, as import does)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    return importlib.util.find_spec(name) is not None


def uses_torch() -> bool:
    """Whether decoding starts on torch: ``HVQ_BACKEND=torch``, or auto with torch importable."""
    choice = setting()
    return choice == "torch" or (choice == "auto" and importable("torch"))


def decompress(data, level=None, model=None, partial: bool = False, depth=None, threads: int = 0):
    """Decode one level of a .hvq file to a PIL RGB image, on the backend ``HVQ_BACKEND`` picks.

    The arguments are ``pipeline.decompress``'s; ``model`` is a model file,
    a loaded model (torch) or None for the installed model the file names.
    ``threads``: onnxruntime's intra-op threads (0: its default); torch's
    are set by the caller (``cli.batch.ThreadPlan``).
    """
    choice = setting()
    loaded = not isinstance(model, (str, Path, type(None)))  # a loaded model: torch is in memory already
    if choice == "torch" or (choice == "auto" and (loaded or importable("torch"))):
        return _torch_decompress(data, level, model, partial, depth)
    model = getattr(model, "path", model)  # a loaded model, with HVQ_BACKEND=onnx: its file
    given = read_prior(model) if model is not None else None  # a given model is checked before the file
    parsed = read_file(data)
    header = parsed.header
    found = given or read_prior(find_model(header.model_fingerprint, header.prior_fingerprint))
    config = found.config
    check_header(header, config, found.fingerprint)
    factor = choose_level(parsed, as_level(level), partial)
    needed = parents_needed(config, factor, [chunk.factor for chunk in parsed.levels])
    depth = as_depth(depth) or parsed.depth_of(factor) or 1
    from hvq.codec.runtime import onnx_backend

    if depth > 1 and not onnx_backend.can_decode(found.path, found.fingerprint, factor, depth):
        if importable("torch"):  # graphs written before the model had depths: torch decodes what they lack
            return _torch_decompress(parsed, level, model, partial, depth)
        raise HvqConfigError(f"level {factor}:{depth} (a refinement depth) has no onnx decoder graph beside "
                             f"{found.path.name}: pip install torch, write them again (hvq export-graphs), "
                             "or decode depth 1 (--depth 1)")

    if choice == "auto":  # and no torch: say what would decode it (with HVQ_BACKEND=onnx, onnx_backend says it)
        if not importable("onnxruntime"):
            raise HvqConfigError("decoding needs torch or onnxruntime: pip install torch, or pip install 'hvq[light]'")
        if not onnx_backend.has_graphs(found.path):
            raise HvqConfigError(f"decoding needs torch (pip install torch), or onnx decoder graphs beside "
                                 f"{found.path.name} (hvq export-graphs, where torch is installed)")
    tokens = read_tokens(parsed, (factor, *needed), found.prior, {factor: depth, **{g: 1 for g in needed}})
    pixels = onnx_backend.decode_level(found.path, config, found.fingerprint, tokens, factor, threads, depth=depth)
    from PIL import Image

    return Image.fromarray(pixels, "RGB")


def _torch_decompress(data, level, model, partial, depth):
    from hvq.codec.runtime.pipeline import decompress

    return decompress(data, level, model, partial, depth)
