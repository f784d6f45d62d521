"""The installed models, found by the fingerprint a file names, and the prior tables of a model file.

A ``.hvq`` file names its model by fingerprint (HEAD), so a reader picks the
installed model that made it instead of assuming the newest::

    codec/models/hvq-default.safetensors   e966873f...   model v2.1: the default for new files
    codec/models/hvq-v2.0.safetensors      71270e82...   files written with model v2.0, installed beside it
    codec/models/hvq-0.2.safetensors       55a1cbc1...   hvq 0.1 and 0.2 files, installed beside it
    codec/models/<another>.safetensors     ...           found by its fingerprint

``find_model`` maps a fingerprint to the installed file; an explicit model
(``model=``, ``--model``) always overrides it.  The index reads only each
file's header (``safe_open(...).metadata()``), and ``read_prior`` assembles
a model's integer prior tables with numpy alone, so token coding and
``strip`` pick and check a model without torch or the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safetensors import SafetensorError, safe_open

from hvq.bitstream.errors import HvqModelError
from hvq.bitstream.prior_tables import PriorTables
from hvq.codec.model.config import ModelConfig
from hvq.codec.runtime.fingerprints import verified_split

MODELS_DIR = Path(__file__).parents[1] / "models"  # tests point this at a folder of tiny models
DEFAULT_FILE = "hvq-default.safetensors"  # the model new files are written with
MODEL_FILE_VERSION = 1  # the one weights.py writes and reads


@dataclass(frozen=True)
class InstalledModel:
    """An installed model file and the fingerprints its metadata declares."""

    path: Path
    fingerprint: bytes  # 16 bytes: what HEAD names
    prior_fingerprint: bytes  # 16 bytes; zeros for a static prior only


@dataclass(frozen=True)
class ModelPrior:
    """A model file's integer prior tables and the fingerprint they were checked against, with its config."""

    path: Path
    fingerprint: bytes
    prior: PriorTables
    config: ModelConfig  # what a torch-free decoder (onnx_backend) checks a file against


def default_model() -> Path:
    """The model that compress uses when none is given."""
    return MODELS_DIR / DEFAULT_FILE


def installed() -> tuple[InstalledModel, ...]:
    """Every hvq model file in the models folder, the default first; unreadable files are left out."""
    files = sorted(MODELS_DIR.glob("*.safetensors"), key=lambda p: (p.name != DEFAULT_FILE, p.name))
    stamps = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
    return _index(tuple(stamps))


@lru_cache(maxsize=8)
def _index(stamps: tuple) -> tuple[InstalledModel, ...]:
    found = []
    for path, *_ in stamps:
        try:
            with safe_open(path, "numpy") as f:
                meta = f.metadata() or {}
            if meta.get("format") != "hvq-model":
                continue
            fp = bytes.fromhex(meta["fingerprint"])
            prior_fp = bytes.fromhex(meta.get("prior_fingerprint", "00" * 16))
        except (OSError, SafetensorError, KeyError, ValueError):
            continue  # a broken file cannot match a fingerprint; it does not block the others
        if len(fp) == 16 and len(prior_fp) == 16:
            found.append(InstalledModel(Path(path), fp, prior_fp))
    return tuple(found)


def find_model(model_fingerprint: bytes, prior_fingerprint: bytes = bytes(16)) -> Path:
    """The installed model file with this fingerprint (and, among several, this context prior)."""
    matches = [m for m in installed() if m.fingerprint == model_fingerprint]
    if not matches:
        names = ", ".join(f"{m.path.name} ({m.fingerprint.hex()[:8]})" for m in installed()) or "none"
        raise HvqModelError(
            f"made with model {model_fingerprint.hex()}, which is not installed (installed: {names}); "
            "pass its model file"
        )
    same_prior = [m for m in matches if m.prior_fingerprint == prior_fingerprint]
    return (same_prior or matches)[0].path


def read_config(path: str | Path) -> ModelConfig:
    """A model file's config, from its header alone (no tensor is read): what ``strip`` asks of a model."""
    name = Path(path).name
    try:
        with safe_open(str(path), "numpy") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "hvq-model":
            raise HvqModelError(f"{name}: not an hvq model file")
        return ModelConfig.from_json(meta["config"])
    except (OSError, SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise HvqModelError(f"{name}: damaged model file: {exc}") from None


def read_prior(path: str | Path) -> ModelPrior:
    """A model file's prior tables, checked against its fingerprints, without loading the network."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise HvqModelError(f"{path.name}: cannot read model: {exc.strerror or exc}") from None
    return _read_prior(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _read_prior(path: str, *stamp) -> ModelPrior:
    name = Path(path).name
    try:
        with safe_open(path, "numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "hvq-model":
                raise HvqModelError(f"{name}: not an hvq model file")
            if meta.get("model_file_version") != str(MODEL_FILE_VERSION):
                raise HvqModelError(f"{name}: model file version {meta.get('model_file_version')} is not {MODEL_FILE_VERSION}")
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        config = ModelConfig.from_json(meta["config"])
    except (OSError, SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise HvqModelError(f"{name}: damaged model file: {exc}") from None
    try:
        extra, fp, context_fp = verified_split(tensors, meta)
    except HvqModelError as exc:
        raise HvqModelError(f"{name}: {exc}") from None
    try:
        prior = PriorTables.from_tensors({**tensors, **extra}, config.factors, config.codebook_size, context_fp)
    except HvqModelError as exc:
        raise HvqModelError(f"{name}: {exc}") from None
    return ModelPrior(Path(path), fp, prior, config)
