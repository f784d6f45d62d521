"""Training resumes exactly, and export turns a checkpoint into a working model file."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY
from hvq.codec.config import ModelConfig
from hvq.codec.training import TrainConfig, lr_at, train


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _config(folder, steps):
    return TrainConfig(
        data=(str(folder),), model=ModelConfig(**TINY), crop=32, batch_size=2, steps=steps,
        warmup_steps=2, log_every=1, checkpoint_every=2, threads=1,
    )


def test_resumed_run_matches_an_uninterrupted_one(image_folder, tmp_path):
    whole = train(_config(image_folder, 4), tmp_path / "whole")
    train(_config(image_folder, 2), tmp_path / "split")  # stops at step 2, as if killed after its checkpoint
    resumed = train(_config(image_folder, 4), tmp_path / "split", resume=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_config_round_trip_and_schedule(image_folder):
    config = _config(image_folder, 100)
    assert TrainConfig.from_json(config.to_json()) == config
    assert lr_at(config, 0) == pytest.approx(config.lr / 2)
    assert lr_at(config, 2) == pytest.approx(config.lr)
    assert lr_at(config, 100) == pytest.approx(config.lr * config.final_lr_fraction)
    assert lr_at(replace(config, warmup_steps=0), 50) < config.lr


def test_export_writes_a_model_that_round_trips(image_folder, tmp_path):
    from hvq.codec.export import export_checkpoint
    from hvq.codec.pipeline import Codec

    train(_config(image_folder, 2), tmp_path / "run")
    fp = export_checkpoint(tmp_path / "run" / "checkpoint.pt", [str(image_folder)], tmp_path / "m.safetensors")
    codec = Codec.for_model(tmp_path / "m.safetensors")
    assert codec.model.fingerprint == fp
    assert all(codec.model.prior.table(f).min() >= 1 for f in (4, 8, 16))
    image = Image.open(next(image_folder.iterdir()))
    assert codec.decompress(codec.compress(image)).size == image.size
