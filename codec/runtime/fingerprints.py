"""Fingerprints of model files: what a .hvq file names its model and its context prior by.

Each is the first 16 bytes of a SHA-256 over a name and tensors (name,
dtype, shape, bytes) in sorted order.  Numpy only, so that the model
registry and the torch-free token coding can check a model file without
loading the network (``weights.py`` re-exports them).
"""

from __future__ import annotations

import hashlib

import numpy as np

CONTEXT_PRIOR_NAME = "checkerboard-parent-v1"


def fingerprint(tensors: dict[str, np.ndarray], config_json: str) -> bytes:
    """SHA-256 (first 16 bytes) over the config and sorted (name, dtype, shape, bytes): identifies a model.

    Arrays are hashed in little-endian order whatever the machine, so the
    fingerprint is the same everywhere.
    """
    digest = hashlib.sha256(config_json.encode())
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.digest()[:16]


def prior_fingerprint(tensors: dict[str, np.ndarray]) -> bytes:
    """Fingerprint of the context prior's tables (zeros when there are none)."""
    return fingerprint(tensors, CONTEXT_PRIOR_NAME) if tensors else bytes(16)


def verified_split(tensors: dict[str, np.ndarray], meta: dict) -> tuple[dict[str, np.ndarray], bytes, bytes]:
    """Split a model file's context tables off ``tensors`` (in place) and check both fingerprints.

    Returns (context tables, model fingerprint, prior fingerprint).  The
    model fingerprint covers the weights, static tables and config; the
    prior's covers the context tables, so a refitted prior keeps the model's.
    ``HvqModelError`` (without the file's name: callers add it) on a mismatch.
    """
    from hvq.bitstream.errors import HvqModelError
    from hvq.bitstream.prior_tables import CONTEXT_PREFIX

    extra = {k: tensors.pop(k) for k in list(tensors) if k.startswith(CONTEXT_PREFIX)}
    fp = fingerprint(tensors, meta["config"])
    if fp.hex() != meta.get("fingerprint"):
        raise HvqModelError(f"fingerprint {fp.hex()} does not match its metadata {meta.get('fingerprint')}")
    context_fp = prior_fingerprint(extra)
    if extra and context_fp.hex() != meta.get("prior_fingerprint"):
        raise HvqModelError(
            f"prior fingerprint {context_fp.hex()} does not match its metadata {meta.get('prior_fingerprint')}"
        )
    return extra, fp, context_fp

