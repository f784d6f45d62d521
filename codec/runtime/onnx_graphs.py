"""Export a model's decoder graphs for the torch-free runtime (``onnx_backend``): structure only, beside the model file.

::

    model.safetensors --load_model--> net --torch.onnx.export, per level (and depth)--> model.decoder-F[-D].onnx
                                                                        \\-> model.graphs.json (fingerprint, tensors)

Each level's decoder (``net.decode``: indices (1, h, w) int64, and for a
top-down model each coarser level's indices, -> (1, 3, H, W) in [0, 1]),
once per refinement depth the level has (depth d also reads the indices of
depths 2..d) is exported by torch's TorchScript exporter (``dynamo=False``,
opset 17, height and width dynamic, constant folding off so every weight
keeps its own initializer).  Every initializer that is a tensor of the
model file is renamed to its state-dict name and left external, so a graph
is a few KB and the weights live once, in the fingerprinted .safetensors;
``onnx_backend`` feeds them with ``add_external_initializers``.  The
manifest lists each graph's tensors, since onnxruntime refuses a name a
graph lacks and reading the graph's own list would need the onnx package
at run time.

Torch and onnx are needed here only (``pip install onnx``), at export time.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path

from hvq.bitstream.errors import HvqConfigError, HvqModelError
from hvq.codec.runtime.onnx_backend import GRAPHS_FORMAT, GRAPHS_VERSION, decoder_file, graph_key, manifest_path

OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError:
        raise HvqConfigError("writing onnx decoder graphs needs the onnx package: pip install onnx") from None
    return onnx


def decoder_graph(net, factor: int, file_tensors, depth: int = 1) -> tuple[bytes, tuple[str, ...]]:
    """Level ``factor``'s decoder at ``depth`` as a structure-only ONNX graph, and the model-file tensors it takes.

    At depth d >= 2 the graph also reads ``refinements`` (1, d - 1, h, w)
    int64, the indices of depths 2..d (a fixed count: the exporter unrolls
    the sum over depths, so each depth is a graph of its own).
    """
    onnx = _onnx()
    import torch
    from onnx.external_data_helper import set_external_data

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, indices, *more):  # (1, h, w) int64 [, refinements] [, coarser grids] -> (1, 3, H, W)
            refinements, parents = (more[0], more[1:]) if depth > 1 else (None, more)
            return self.net.decode(indices, factor, dict(zip(needed, parents)) or None, refinements=refinements)

    needed = tuple(net.parents_needed(factor))
    side = 4 * net.config.max_factor  # any image the coarsest grid tiles: the shapes are dynamic
    args = [torch.zeros(1, side // factor, side // factor, dtype=torch.int64)]
    names = ["indices"]
    axes = {"indices": {1: f"rows_{factor}", 2: f"cols_{factor}"}}
    if depth > 1:
        args.append(torch.zeros(1, depth - 1, side // factor, side // factor, dtype=torch.int64))
        names.append("refinements")
        axes["refinements"] = {2: f"rows_{factor}", 3: f"cols_{factor}"}
    for g in needed:
        args.append(torch.zeros(1, side // g, side // g, dtype=torch.int64))
        names.append(f"parent_{g}")
        axes[f"parent_{g}"] = {1: f"rows_{g}", 2: f"cols_{g}"}
    args = tuple(args)
    axes["image"] = {2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on traced integer shapes
        torch.onnx.export(Decode().eval(), args, buffer, dynamo=False, opset_version=OPSET, do_constant_folding=False,
                          input_names=names, output_names=["image"], dynamic_axes=axes)
    model = onnx.load_from_string(buffer.getvalue())
    state = {f"net.{k}" for k in net.state_dict()}
    renamed = {}
    for init in model.graph.initializer:
        if init.name in state:
            name = init.name[len("net."):]  # the model file's tensor name
            if name not in file_tensors:
                raise HvqModelError(f"decoder of level {factor} reads {name}, which the model file does not hold")
            renamed[init.name] = name
            init.name = name
            set_external_data(init, location="model.safetensors")  # fed by the session, never read from disk
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
    for node in model.graph.node:
        for i, value in enumerate(node.input):
            node.input[i] = renamed.get(value, value)
    return model.SerializeToString(), tuple(sorted(renamed.values()))


def export_graphs(net, model_path: str | Path, fingerprint: bytes) -> Path:
    """Every level's decoder graph beside ``model_path`` and the manifest naming ``fingerprint``; the manifest's path.

    The manifest is written last, so a folder never holds a manifest
    without its graphs; each file replaces its old version atomically.
    """
    from safetensors import safe_open

    model_path = Path(model_path)
    with safe_open(str(model_path), "numpy") as f:
        file_tensors = set(f.keys())
    decoders = {}
    for factor in net.config.factors:
        for depth in range(1, net.depth_of(factor) + 1):
            data, weights = decoder_graph(net, factor, file_tensors, depth)
            path = decoder_file(model_path, factor, depth)
            _write(path, data)
            decoders[graph_key(factor, depth)] = {"file": path.name, "parents": list(net.parents_needed(factor)),
                                                  "weights": list(weights), "bytes": len(data)}
    manifest = {"format": GRAPHS_FORMAT, "version": GRAPHS_VERSION, "model_fingerprint": fingerprint.hex(),
                "opset": OPSET, "decoders": decoders}
    path = manifest_path(model_path)
    _write(path, (json.dumps(manifest, indent=1) + "\n").encode())
    return path


def write_graphs(model_path: str | Path) -> Path:
    """``export_graphs`` of an existing model file (loaded with torch, its fingerprints checked); the manifest's path."""
    from hvq.codec.runtime.weights import load_model

    _onnx()  # before the model loads: a missing exporter is the first thing to say
    loaded = load_model(model_path)
    return export_graphs(loaded.net, model_path, loaded.fingerprint)


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".hvq-graph.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
