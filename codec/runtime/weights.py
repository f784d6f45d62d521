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

import os
import stat
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_numpy

from hvq.bitstream.context import LevelContextModel
from hvq.bitstream.errors import HvqModelError
from hvq.bitstream.prior_tables import STATIC_PREFIX, PriorTables
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.model.prior import FrequencyPrior
from hvq.codec.runtime.fingerprints import (  # noqa: F401 (fingerprint, prior_fingerprint re-exported)
    CONTEXT_PRIOR_NAME, fingerprint, prior_fingerprint, verified_split,
)

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
    """The tensors of a deployable file: half-precision convs, float32 codebook and depth scales, int32 tables."""
    tensors: dict[str, np.ndarray] = {}
    for name, value in net.state_dict().items():
        if _training_only(name):
            continue
        array = value.detach().cpu().numpy()
        if _is_codebook(name) or name.startswith("residuals."):
            # codeword distances decide indices, and so do the depths' look-up scales and gains: full precision
            tensors[name] = array.astype(np.float32)
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
    depth_context: dict[tuple[int, int], LevelContextModel] | None = None,
) -> bytes:
    """Write a deployable model file, with a context prior (and depth prior) if given; returns the model fingerprint.

    The depth prior's tables (``(factor, depth) -> model``) go beside the
    context prior's, under its fingerprint; a model without them keeps its
    exact file.
    """
    if depth_context and not context:
        raise ValueError("a depth prior is stored beside a context prior")
    tensors = model_tensors(net, prior)
    fp = fingerprint(tensors, net.config.to_json())
    extra = PriorTables(prior.tables, context or {}, depth=depth_context or {}).to_tensors()
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
    # A short fixed prefix: NAME + a suffix could pass the 255-byte name limit a legal NAME stays under.
    fd, tmp = tempfile.mkstemp(prefix=".hvq-model.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(save_numpy(tensors, metadata=metadata))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a model file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return fp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and tensors of a safetensors file; any fault is an ``HvqModelError`` (no name: the caller adds it)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise HvqModelError(f"cannot read model: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block, /dev/zero never ends
        raise HvqModelError("cannot read model: not a regular file")
    if info.st_size > MAX_MODEL_BYTES:
        raise HvqModelError(f"model file exceeds {MAX_MODEL_BYTES} bytes")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "hvq-model":
                raise HvqModelError("not an hvq model file")
            return meta, {name: f.get_tensor(name) for name in f.keys()}
    except SafetensorError:  # the header: not JSON, not a map, a metadata value that is not a string, bad offsets
        raise HvqModelError("not a safetensors model file") from None
    except OSError as exc:
        raise HvqModelError(f"cannot read model: {exc.strerror or exc}") from None


def _check_sizes(config: ModelConfig) -> None:
    """Refuse sizes no network has (a file whose fingerprint matches may still hold ``code_dim: -1``)."""
    sizes = {"codebook_size": config.codebook_size, "code_dim": config.code_dim}
    sizes.update({f"encoder_channels[{i}]": c for i, c in enumerate(config.encoder_channels)})
    sizes.update({f"decoder_channels[{f}]": c for f, c in config.decoder_channels})
    for field, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise HvqModelError(f"config {field} is {value!r}, not a positive integer")


def load_model(path: str | Path | None = None) -> LoadedModel:
    """Load a deployable model (default: the one shipped in the package); cached per path.

    Every fault is an ``HvqModelError`` whose message starts with the path as
    given (or the shipped model's file name), once.
    """
    resolved = os.path.realpath(path if path is not None else DEFAULT_MODEL)  # a loop of links: named by stat
    try:
        stat_ = os.stat(resolved)
        # a file rewritten in place (ctime, mtime, size) or replaced by a rename (inode) is loaded again
        version = (stat_.st_ino, stat_.st_ctime_ns, stat_.st_mtime_ns, stat_.st_size)
    except OSError:
        version = None  # _load_cached reports it
    try:
        return _load_cached(resolved, version)
    except HvqModelError as exc:
        name = DEFAULT_MODEL.name if path is None else (str(path) or repr(str(path)))
        raise HvqModelError(f"{name}: {exc}") from None


@lru_cache(maxsize=4)
def _load_cached(path: str, version=None) -> LoadedModel:
    meta, tensors = _read(path)
    try:
        version = int(meta.get("model_file_version", "0"))
    except ValueError:
        version = 0
    if version > MODEL_FILE_VERSION:
        raise HvqModelError(
            f"model file version {version} is newer than this hvq reads ({MODEL_FILE_VERSION}); upgrade hvq"
        )
    if version < 1:
        raise HvqModelError("model file version is missing or invalid")
    try:
        config = ModelConfig.from_json(meta["config"])
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise HvqModelError(f"damaged model file: config: {exc}") from None
    extra, fp, context_fp = verified_split(tensors, meta)
    _check_sizes(config)
    prior = PriorTables.from_tensors({**tensors, **extra}, config.factors, config.codebook_size, context_fp)
    for factor, _ in prior.depth:
        if prior.depth_of(factor) > config.depth_of(factor):
            raise HvqModelError(f"depth prior of level {factor} goes to depth {prior.depth_of(factor)}, "
                                f"but the network's level {factor} has depths 1..{config.depth_of(factor)}")
    try:
        net = HierarchicalVQVAE(config)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError) as exc:  # a consistent file with sizes no net has
        raise HvqModelError(f"its config builds no network ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items() if not k.startswith(STATIC_PREFIX)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise HvqModelError(f"weights do not fit the config: {str(exc).splitlines()[0]}") from None
    if unexpected or [name for name in missing if not _training_only(name)]:
        raise HvqModelError(f"weights do not fit the config (missing {missing}, unexpected {unexpected})")
    for codebook, _ in net.codebook_groups():
        codebook.initialised.fill_(True)
    net.eval()
    return LoadedModel(config, net, prior, fp, path)
