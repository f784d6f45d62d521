"""Shared fixtures: tiny seeded random models, and the paths of ../shared."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("HVQ_SHARED", Path(__file__).resolve().parents[2] / "shared"))
KODAK = SHARED / "datasets" / "kodak"
TRAIN = SHARED / "datasets" / "train"

TINY = dict(
    codebook_size=16,
    code_dim=8,
    encoder_channels=(8, 8),
    decoder_channels=((16, 8), (8, 8), (4, 8), (2, 8), (1, 8)),
)


def mutate(data: bytes, mutations) -> bytes:
    """Apply (op, position, value) edits, op one of set, insert, delete, xor; positions wrap around."""
    out = bytearray(data)
    for op, pos, value in mutations:
        if op == "insert":
            out.insert(pos % (len(out) + 1), value)
        elif out:
            pos %= len(out)
            if op == "set":
                out[pos] = value
            elif op == "xor":
                out[pos] ^= value
            else:
                del out[pos]
    return bytes(out)


def mutations(max_size: int = 8):
    """A hypothesis strategy of edit lists for ``mutate``."""
    from hypothesis import strategies as st

    edit = st.tuples(st.sampled_from(["set", "insert", "delete", "xor"]), st.integers(0, 2**16), st.integers(0, 255))
    return st.lists(edit, min_size=1, max_size=max_size)


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing: these tests need ../shared beside the checkout (or HVQ_SHARED)")
    return path


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    return require(KODAK)


@pytest.fixture(scope="session")
def train_dir() -> Path:
    return require(TRAIN)


def random_context_prior(factors, k: int, seed: int = 0) -> dict:
    """Seeded random context tables for every level (the coarsest without a parent term)."""
    from hvq.bitstream.context import LevelContextModel

    rng = np.random.default_rng(seed)
    models = {}
    for factor in factors:
        models[factor] = LevelContextModel(
            static=rng.integers(1, 60, k).astype(np.int32),
            bias=rng.integers(-80, 80, k).astype(np.int16),
            horizontal=rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
            vertical=rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
            **({} if 2 * factor not in factors else {
                "parent": rng.integers(-128, 128, (k, k)).astype(np.int8),
                "parent_horizontal": rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
                "parent_vertical": rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
            }),
        )
    return models


def make_tiny_model(path: Path, seed: int = 0, context: bool = False, **overrides) -> Path:
    """A seeded random model with a k-means-initialised codebook and skewed prior tables.

    With ``context``, it also carries random context-prior tables (whose
    static tables are the model's), and a random depth prior for the levels
    of ``depths=`` (an override of the config).
    """
    import torch

    from hvq.codec.model.config import ModelConfig
    from hvq.codec.model.vqvae import HierarchicalVQVAE
    from hvq.codec.model.prior import FrequencyPrior
    from hvq.codec.runtime.weights import save_model

    torch.manual_seed(seed)
    config = ModelConfig(**{**TINY, **overrides})
    net = HierarchicalVQVAE(config)
    net.train()
    net(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    net.eval()
    rng = np.random.default_rng(seed)
    prior = FrequencyPrior.from_counts({f: rng.integers(0, 50, config.codebook_size) for f in config.factors})
    models = None
    if context:
        models = random_context_prior(config.factors, config.codebook_size, seed)
        models = {f: replace(m, static=prior.tables[f]) for f, m in models.items()}
    depth_models = random_depth_prior(config.depths, prior.tables, config.codebook_size, seed) if context else None
    save_model(net, prior, path, models, depth_models)
    return path


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_codec(tiny_model_path):
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(tiny_model_path)


@pytest.fixture(scope="session")
def tiny_context_model_path(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-context.safetensors", context=True)


@pytest.fixture(scope="session")
def tiny_context_codec(tiny_context_model_path):
    from hvq.codec.runtime.pipeline import Codec

    return Codec.for_model(tiny_context_model_path)


@pytest.fixture
def noise_folder(tmp_path):
    """Three 72x56 noise images: a training folder for runs that test mechanics, not quality."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (56, 72, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def photo():
    """A small smooth RGB test image with an odd size (not a multiple of 16)."""
    from PIL import Image

    y, x = np.mgrid[0:37, 0:45]
    rgb = np.stack([x * 5, y * 6, (x + y) * 3], axis=-1) % 256
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def random_depth_prior(depths, static: dict, k: int, seed: int = 0) -> dict:
    """Seeded random depth-prior tables: {(factor, d): model} for d = 2..D of each (factor, D) in ``depths``."""
    from hvq.bitstream.prior_tables import depth_model

    rng = np.random.default_rng(1000 + seed)
    models = {}
    for factor, deepest in dict(depths).items():
        for depth in range(2, deepest + 1):
            models[(factor, depth)] = depth_model(
                static[factor],
                parent=rng.integers(-128, 128, (k, k)).astype(np.int8),
                parent_horizontal=rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
                parent_vertical=rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
                horizontal=rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
                vertical=rng.integers(-60, 60, (k + 1, k)).astype(np.int8),
            )
    return models
