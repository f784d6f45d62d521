"""Deployable model files: network weights plus prior tables in one safetensors file.

The file's metadata holds the model config (JSON), the file-format version
and two fingerprints, each the first 16 bytes of a SHA-256 over tensors
(name, dtype, shape, bytes) in sorted order:

- the model fingerprint covers the config, the weights and the static prior
  tables: everything except the context prior, so files written before the
  context prior existed still match a model that gained one;
- the prior fingerprint covers the context prior's integer tables.

Both are written into every .hvq file, so a decoder refuses a file made with
other weights or tables instead of producing a wrong image.  Weights load
only from safetensors (never pickle), so a model file cannot run code.

Convolution weights are stored as float16 to keep the shipped file small;
they are widened to float32 on load, so inference is float32 everywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

from hvq.bitstream.context import LevelContextModel
from hvq.bitstream.errors import HvqModelError
from hvq.bitstream.prior_tables import CONTEXT_PREFIX, STATIC_PREFIX, PriorTables
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.model.prior import FrequencyPrior
from hvq.codec.runtime.fingerprints import CONTEXT_PRIOR_NAME, fingerprint, prior_fingerprint  # noqa: F401 (re-exported)

MODEL_FILE_VERSION = 1
DEFAULT_MODEL = Path(__file__).parents[1] / "models" / "hvq-default.safetensors"
MAX_MODEL_BYTES = 1 << 30
# Buffers only training needs; a deployable file leaves them out.
_TRAINING_ONLY = ("cluster_size", "embed_sum", "initialised")  # of the codebook(s): codebook.*, codebooks.<f>.*


def _is_codebook(name: str) -> bool:
    return name.startswith(("codebook.", "codebooks."))


def _training_only(name: str) -> bool:
    return _is_codebook(name) and name.rsplit(".", 1)[-1] in _TRAINING_ONLY


@dataclass(frozen=True)
class LoadedModel:
    """A network in eval mode with its frozen prior and fingerprint."""

    config: ModelConfig
    net: HierarchicalVQVAE
    prior: PriorTables
    fingerprint: bytes  # 16 bytes
    path: str

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def model_tensors(net: HierarchicalVQVAE, prior: FrequencyPrior) -> dict[str, np.ndarray]:
    """The tensors of a deployable file: half-precision convs, float32 codebook, int32 tables."""
    tensors: dict[str, np.ndarray] = {}
    for name, value in net.state_dict().items():
        if _training_only(name):
            continue
        array = value.detach().cpu().numpy()
        if _is_codebook(name):
            tensors[name] = array.astype(np.float32)  # codeword distances decide indices: keep full precision
        else:
            tensors[name] = array.astype(np.float16)
    for factor, table in prior.tables.items():
        tensors[f"{STATIC_PREFIX}{factor}"] = np.asarray(table, dtype=np.int32)
    return tensors


def save_model(
    net: HierarchicalVQVAE,
    prior: FrequencyPrior,
    path: str | Path,
    context: dict[int, LevelContextModel] | None = None,
) -> bytes:
    """Write a deployable model file, with a context prior if given; returns the model fingerprint."""
    tensors = model_tensors(net, prior)
    fp = fingerprint(tensors, net.config.to_json())
    extra = PriorTables(prior.tables, context or {}).to_tensors()
    metadata = {
        "format": "hvq-model",
        "model_file_version": str(MODEL_FILE_VERSION),
        "config": net.config.to_json(),
        "prior": CONTEXT_PRIOR_NAME if extra else "static-v1",
        "fingerprint": fp.hex(),
    }
    if extra:
        metadata["prior_fingerprint"] = prior_fingerprint(extra).hex()
        tensors.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(save_numpy(tensors, metadata=metadata))
    tmp.replace(path)
    return fp


def _read_metadata(raw: bytes, name: str) -> dict:
    # safetensors layout: u64 little-endian header length, then a JSON header.
    if len(raw) < 8:
        raise HvqModelError(f"{name}: not a safetensors model file")
    length = int.from_bytes(raw[:8], "little")
    if length > len(raw) - 8:
        raise HvqModelError(f"{name}: not a safetensors model file")
    try:
        header = json.loads(raw[8 : 8 + length])
    except ValueError:
        raise HvqModelError(f"{name}: not a safetensors model file") from None
    return header.get("__metadata__") or {}


def load_model(path: str | Path | None = None) -> LoadedModel:
    """Load a deployable model (default: the one shipped in the package); cached per path."""
    resolved = (Path(path) if path is not None else DEFAULT_MODEL).resolve()
    try:
        stat = resolved.stat()
        version = (stat.st_mtime_ns, stat.st_size)  # a file rewritten in place is loaded again
    except OSError:
        version = None  # _load_cached reports it
    return _load_cached(str(resolved), version)


@lru_cache(maxsize=4)
def _load_cached(path: str, version=None) -> LoadedModel:
    name = Path(path).name
    try:
        if Path(path).stat().st_size > MAX_MODEL_BYTES:
            raise HvqModelError(f"{name}: model file exceeds {MAX_MODEL_BYTES} bytes")
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise HvqModelError(f"{name}: cannot read model: {exc.strerror or exc}") from None
    meta = _read_metadata(raw, name)
    if meta.get("format") != "hvq-model":
        raise HvqModelError(f"{name}: not an hvq model file")
    try:
        version = int(meta.get("model_file_version", "0"))
    except ValueError:
        version = 0
    if version > MODEL_FILE_VERSION:
        raise HvqModelError(
            f"{name}: model file version {version} is newer than this hvq reads ({MODEL_FILE_VERSION}); upgrade hvq"
        )
    if version < 1:
        raise HvqModelError(f"{name}: model file version is missing or invalid")
    try:
        tensors = load_numpy(raw)
        config = ModelConfig.from_json(meta["config"])
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise HvqModelError(f"{name}: damaged model file: {exc}") from None
    extra = {k: tensors.pop(k) for k in list(tensors) if k.startswith(CONTEXT_PREFIX)}
    fp = fingerprint(tensors, meta["config"])
    if fp.hex() != meta.get("fingerprint"):
        raise HvqModelError(f"{name}: fingerprint {fp.hex()} does not match its metadata {meta.get('fingerprint')}")
    context_fp = prior_fingerprint(extra)
    if extra and context_fp.hex() != meta.get("prior_fingerprint"):
        raise HvqModelError(
            f"{name}: prior fingerprint {context_fp.hex()} does not match its metadata {meta.get('prior_fingerprint')}"
        )
    try:
        prior = PriorTables.from_tensors({**tensors, **extra}, config.factors, config.codebook_size, context_fp)
    except HvqModelError as exc:
        raise HvqModelError(f"{name}: {exc}") from None
    net = HierarchicalVQVAE(config)
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items() if not k.startswith(STATIC_PREFIX)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise HvqModelError(f"{name}: weights do not fit the config: {str(exc).splitlines()[0]}") from None
    if unexpected or [name for name in missing if not _training_only(name)]:
        raise HvqModelError(f"{name}: weights do not fit the config (missing {missing}, unexpected {unexpected})")
    for codebook, _ in net.codebook_groups():
        codebook.initialised.fill_(True)
    net.eval()
    return LoadedModel(config, net, prior, fp, path)
