"""The decoder without torch: a level's index grid -> 8-bit pixels with onnxruntime, tile by tile.

::

    model.safetensors ---- weights (float16 convs widened to float32, as weights.py widens them)
                                 |  SessionOptions.add_external_initializers
    model.graphs.json --> model.decoder-F.onnx (structure only) --> InferenceSession (cached)
    grid (+ a top-down model's coarser grids) --windows.cut--> session.run --crop, round--> (H, W, 3) uint8

The graphs are written at export time by ``onnx_graphs`` (torch and onnx
needed only there) beside the model file: ``<stem>.graphs.json`` names the
model fingerprint they were exported from and, for each level's decoder
graph, its inputs and the model-file tensors it takes.  The weights stay
once, in the fingerprinted .safetensors; a graph whose manifest names
another model is refused.  Windows, halos, crops and rounding are those of
``tiling.decode_tiled`` (``windows.py``), so the pixels agree with torch's
within 1 level (float rounding in another BLAS; ``tests/test_onnx_backend.py``).

A level with refinement depths has one graph per depth (depth d also reads
the indices of depths 2..d); graphs written before a model had depths
lack them, and ``backend`` then hands those depths to torch.  This module imports onnxruntime,
numpy and safetensors, never torch (``tests/test_startup.py`` checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hvq.bitstream.errors import HvqConfigError, HvqModelError
from hvq.codec.model.config import ModelConfig
from hvq.codec.runtime.windows import DEFAULT_TILE, check_tile, cut, decoder_halo, decoder_tiles

GRAPHS_FORMAT = "hvq-onnx-graphs"
GRAPHS_VERSION = 1
MANIFEST_SUFFIX = ".graphs.json"
LIGHT_INSTALL = "pip install 'hvq[light]'"
MAX_MANIFEST_BYTES = 1 << 20


def manifest_path(model_path: str | Path) -> Path:
    """Where a model file's graph manifest lives: ``hvq-default.safetensors`` -> ``hvq-default.graphs.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + MANIFEST_SUFFIX)


def decoder_file(model_path: str | Path, factor: int, depth: int = 1) -> Path:
    """The decoder graph of level ``factor`` beside a model file: ``hvq-default.decoder-16.onnx`` (depth d: ``-d``)."""
    path = Path(model_path)
    return path.with_name(f"{path.stem}.decoder-{factor}{'' if depth == 1 else f'-{depth}'}.onnx")


def graph_key(factor: int, depth: int = 1) -> str:
    """A decoder graph's key in the manifest: ``"16"`` at depth 1, ``"4:2"`` for depth 2 (as ``--keep`` spells it)."""
    return str(factor) if depth == 1 else f"{factor}:{depth}"


@dataclass(frozen=True)
class DecoderGraph:
    """One level's decoder graph: its file, its inputs (indices, then coarser levels' grids) and its tensors."""

    path: Path
    parents: tuple[int, ...]  # the coarser levels it reads, fed as parent_<g>
    weights: tuple[str, ...]  # model-file tensor names, fed as external initializers


@dataclass(frozen=True)
class Graphs:
    """A model file's decoder graphs, checked against the model fingerprint they were exported from."""

    model_fingerprint: bytes
    decoders: dict[tuple[int, int], DecoderGraph]  # (factor, depth)


def has_graphs(model_path: str | Path) -> bool:
    """Whether a model file has a graph manifest beside it (not whether the graphs are sound)."""
    return manifest_path(model_path).is_file()


def read_graphs(model_path: str | Path, fingerprint: bytes) -> Graphs:
    """The graphs beside a model file, if they were exported from the model ``fingerprint`` names.

    ``HvqModelError`` (one line, naming the file) when there are none, the
    manifest is damaged, or it names another model.
    """
    path = manifest_path(model_path)
    name = Path(model_path).name
    try:
        text = path.read_bytes()[:MAX_MANIFEST_BYTES + 1]
    except FileNotFoundError:
        raise HvqModelError(f"{name} has no onnx decoder graphs ({path.name}); write them with "
                            f"`hvq export-graphs {name}` or decode with torch (HVQ_BACKEND=torch)") from None
    except OSError as exc:
        raise HvqModelError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    try:
        manifest = json.loads(text)
        if manifest.get("format") != GRAPHS_FORMAT or manifest.get("version") != GRAPHS_VERSION:
            raise ValueError(f"not a version {GRAPHS_VERSION} {GRAPHS_FORMAT} manifest")
        exported_from = bytes.fromhex(manifest["model_fingerprint"])
        decoders = {
            _level_depth(key): DecoderGraph(path.with_name(Path(entry["file"]).name),
                                            tuple(int(g) for g in entry["parents"]),
                                            tuple(str(w) for w in entry["weights"]))
            for key, entry in manifest["decoders"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HvqModelError(f"{path.name}: damaged graph manifest: {exc}") from None
    if exported_from != fingerprint:
        raise HvqModelError(f"{path.name}: graphs were exported from model {exported_from.hex()}, "
                            f"but {name} is model {fingerprint.hex()}")
    return Graphs(exported_from, decoders)


def _level_depth(key: str) -> tuple[int, int]:
    factor, _, depth = key.partition(":")
    return int(factor), int(depth or 1)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise HvqConfigError(f"the onnx decoder needs onnxruntime: {LIGHT_INSTALL}") from None
    return onnxruntime


def weights_of(model_path: str | Path, names) -> dict[str, np.ndarray]:
    """The named tensors of a model file as float32 (``weights.py`` widens its float16 convs the same way)."""
    from safetensors import safe_open

    with safe_open(str(model_path), "numpy") as f:
        return {name: f.get_tensor(name).astype(np.float32) for name in names}


def session(model_path: str | Path, graph: DecoderGraph, threads: int = 0):
    """An onnxruntime session of a structure-only graph, its initializers taken from the model file.

    ``threads``: onnxruntime's intra-op threads (0: its default, the
    physical cores).  Cached per model file (path and stamp), graph and
    thread count, so a batch of files loads each graph once.
    """
    stamps = []
    for p in (Path(model_path), graph.path):
        try:
            stat = p.stat()
        except OSError as exc:
            raise HvqModelError(f"{p.name}: cannot read: {exc.strerror or exc}") from None
        stamps.append((stat.st_mtime_ns, stat.st_size))
    return _session(str(model_path), graph, int(threads), tuple(stamps))


@lru_cache(maxsize=8)
def _session(model_path: str, graph: DecoderGraph, threads: int, stamps: tuple):
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        weights = weights_of(model_path, graph.weights)
    except Exception as exc:  # safetensors raises its own errors for a missing name
        raise HvqModelError(f"{graph.path.name}: weights do not fit {Path(model_path).name}: {exc}") from None
    values = [ort.OrtValue.ortvalue_from_numpy(w) for w in weights.values()]  # views of the arrays, no copy
    options.add_external_initializers(list(weights), values)
    try:
        sess = ort.InferenceSession(str(graph.path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidGraph, NoSuchFile ...)
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HvqModelError(f"{graph.path.name}: onnxruntime refuses the graph: {line}") from None
    return DecoderSession(sess, tuple(values))


@dataclass(frozen=True)
class DecoderSession:
    """A session and the weights it was given: onnxruntime may use external initializers in place, so they live as long."""

    session: object  # onnxruntime.InferenceSession
    weights: tuple

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]


def decode_tiled(sess, config: ModelConfig, grid: np.ndarray, factor: int, width: int, height: int,
                 tile: int = DEFAULT_TILE, parents: dict[int, np.ndarray] | None = None,
                 refinements: np.ndarray | None = None) -> np.ndarray:
    """``tiling.decode_tiled`` with an onnxruntime decoder: the same windows, crops and rounding -> (H, W, 3) uint8.

    ``refinements`` (R, rows, cols): depths 2..R+1, for a graph of depth R + 1.
    """
    check_tile(tile, config.max_factor)
    rows, cols = grid.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    for t in decoder_tiles(rows, cols, factor, width, height, tile, decoder_halo(config, factor, parents)):
        w = t.window
        feed = {"indices": cut(grid, w)[None]}  # (1, h, w) int64
        if refinements is not None:
            feed["refinements"] = cut(refinements, w)[None]  # (1, R, h, w)
        for g, p in (parents or {}).items():
            feed[f"parent_{g}"] = cut(p, w, g // factor)[None]
        x_hat = sess.run(feed)[0]  # (3, h * f, w * f) in [0, 1]
        crop = x_hat[(slice(None), *t.crop)]
        # imageio.to_pixels: round(x * 255) in float32, half to even (torch.round and np.rint alike), clamped
        rounded = np.clip(np.rint(crop * np.float32(255.0)), 0, 255).astype(np.uint8)
        out[t.pixels] = rounded.transpose(1, 2, 0)
    return out


def decode_level(model_path: str | Path, config: ModelConfig, fingerprint: bytes, tokens, factor: int,
                 threads: int = 0, tile: int = DEFAULT_TILE, depth: int = 1) -> np.ndarray:
    """Level ``factor`` of ``tokens`` at ``depth``, with the coarser grids a top-down decoder reads: (H, W, 3) uint8."""
    graphs = read_graphs(model_path, fingerprint)
    graph = graphs.decoders.get((factor, depth))
    if graph is None:
        raise HvqModelError(f"{manifest_path(model_path).name} has no decoder graph of level {graph_key(factor, depth)}")
    parents = {g: tokens.grid(g) for g in graph.parents} or None
    refinements = tokens.refinements[factor][: depth - 1] if depth > 1 else None  # (depth - 1, rows, cols)
    return decode_tiled(session(model_path, graph, threads), config, tokens.grid(factor), factor,
                        tokens.width, tokens.height, tile, parents, refinements)


def can_decode(model_path: str | Path, fingerprint: bytes, factor: int, depth: int) -> bool:
    """Whether the model's graphs (if any, and its own) include level ``factor`` at ``depth``."""
    if not has_graphs(model_path):
        return False
    return (factor, depth) in read_graphs(model_path, fingerprint).decoders
