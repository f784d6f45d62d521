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
