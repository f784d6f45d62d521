"""Training as a tool: exact resume (also after a kill), DDP, validation, the objective, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY
from hvq.bitstream.errors import HvqConfigError, HvqDataError, HvqImageError, HvqModelError
from hvq.codec.model.config import ModelConfig
from hvq.codec.train.config import TrainConfig, lr_at
from hvq.codec.train.loop import load_training_state, train


def _config(folder, steps, **changes):
    settings = dict(crop=32, batch_size=2, warmup_steps=2, log_every=1, checkpoint_every=2, threads=1, workers=0)
    return TrainConfig(data=(str(folder),), model=ModelConfig(**TINY), steps=steps, **{**settings, **changes})


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resumed_run_matches_an_uninterrupted_one(noise_folder, tmp_path):
    whole = train(_config(noise_folder, 4, usage_weight=0.1), tmp_path / "whole")
    train(_config(noise_folder, 2, usage_weight=0.1), tmp_path / "split")  # as if killed after its checkpoint
    resumed = train(_config(noise_folder, 4, usage_weight=0.1), tmp_path / "split", resume=True)
    _same_weights(whole.state_dict(), resumed.state_dict())
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_data_loading_workers_do_not_change_the_run(noise_folder, tmp_path):
    inline = train(_config(noise_folder, 3), tmp_path / "inline")
    workers = train(_config(noise_folder, 3, workers=2), tmp_path / "workers")
    _same_weights(inline.state_dict(), workers.state_dict())


def test_a_killed_run_resumes_exactly(noise_folder, tmp_path):
    """SIGKILL `hvq train` mid-run, resume it, and end where an uninterrupted run ends."""
    steps = 400
    (tmp_path / "tiny.json").write_text(ModelConfig(**TINY).to_json())
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "hvq.cli.main", "train", "--data", str(noise_folder), "-o", str(run_dir),
               "--model-config", str(tmp_path / "tiny.json"), "--steps", str(steps), "--crop", "32",
               "--batch-size", "2", "--warmup-steps", "2", "--checkpoint-every", "5", "--log-every", "1",
               "--threads", "1", "--workers", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run_dir / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_training_state(checkpoint)["step"]
    assert 0 < killed_at < steps, "the run ended before it could be killed"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] >= killed_at  # it logged past its checkpoint before dying
    result = subprocess.run(command[:4] + ["-o", str(run_dir), "--resume", "--workers", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reference = train(_config(noise_folder, steps, checkpoint_every=5, log_every=1), tmp_path / "reference")
    _same_weights(reference.state_dict(), load_training_state(checkpoint)["model"])
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, steps + 1))  # lines after the checkpoint were dropped, then rewritten


def test_two_gloo_processes_train_under_torchrun(noise_folder, tmp_path):
    """`torchrun --nproc-per-node 2` runs DistributedDataParallel over gloo on the CPU."""
    (tmp_path / "tiny.json").write_text(ModelConfig(**TINY).to_json())
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "hvq.cli.main", "train", "--data", str(noise_folder), "-o", str(run_dir),
               "--model-config", str(tmp_path / "tiny.json"), "--steps", "4", "--crop", "32", "--batch-size", "2",
               "--checkpoint-every", "2", "--log-every", "1", "--threads", "1", "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_training_state(run_dir / "checkpoint.pt")
    assert state["step"] == 4 and state["world_size"] == 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # rank 0 alone writes the log
    assert all(r["world_size"] == 2 for r in records)
    single = train(_config(noise_folder, 4), tmp_path / "single")
    # Two ranks see twice the crops: the weights differ from a one-process run of the same recipe.
    assert not torch.equal(single.state_dict()["encoder.heads.0.1.weight"], state["model"]["encoder.heads.0.1.weight"])


def test_validation_logs_every_level_and_the_run_draws_its_curves(noise_folder, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(noise_folder, 4, val_data=str(noise_folder), val_every=2), run_dir)
    records = [json.loads(line) for line in (run_dir / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    for f in (4, 8, 16):
        assert 5 < records[-1][f"psnr_{f}"] < 60
        assert 0 < records[-1][f"usage_{f}"] <= 1 and 0 < records[-1][f"train_usage_{f}"] <= 1
        assert 0 <= records[-1][f"bits_per_index_{f}"] < 20
    assert 0 < records[-1]["usage_all"] <= 1
    metrics = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "lr", "psnr_4", "perplexity_16", "usage_penalty_8"} <= metrics.keys()
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_round_trip_checks_and_schedule(noise_folder):
    config = _config(noise_folder, 100, crop=48, ms_ssim_weight=0.5, l1_weight=1.0)
    assert TrainConfig.from_json(config.to_json()) == config
    assert lr_at(config, 0) == pytest.approx(config.lr / 2)
    assert lr_at(config, 2) == pytest.approx(config.lr)
    assert lr_at(config, 100) == pytest.approx(config.lr * config.final_lr_fraction)
    assert lr_at(replace(config, warmup_steps=0), 50) < config.lr
    with pytest.raises(HvqConfigError, match="unknown training config keys: colour"):
        TrainConfig.from_json(json.dumps({**json.loads(config.to_json()), "colour": 1}))
    with pytest.raises(HvqConfigError, match="multiple of 16"):
        replace(config, crop=40)
    with pytest.raises(HvqConfigError, match="MS-SSIM loss needs crops of at least 33"):
        replace(config, crop=32, ms_ssim_weight=1.0)
    with pytest.raises(HvqConfigError, match="at least one of MSE, L1 and MS-SSIM"):
        replace(config, mse_weight=0.0, l1_weight=0.0, ms_ssim_weight=0.0)
    for text, match in (("{not json", "not a valid training config"), ("[1, 2]", "a JSON object is needed"),
                        ('{"data": ["d"], "crop": "big"}', "not a valid training config"),
                        ('{"data": ["d"], "model": {"factors": [3]}}', "powers of two")):
        with pytest.raises(HvqConfigError, match=match):
            TrainConfig.from_json(text)


def test_every_loss_term_trains(noise_folder, tmp_path):
    config = _config(noise_folder, 2, crop=48, mse_weight=0.5, l1_weight=0.5, ms_ssim_weight=0.5, usage_weight=0.1)
    train(config, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(0 < record[f"ms_ssim_{f}"] <= 1 and record[f"l1_{f}"] > 0 for f in (4, 8, 16))


def test_init_from_starts_from_a_checkpoints_weights(noise_folder, tmp_path):
    base = train(_config(noise_folder, 2), tmp_path / "base")
    config = _config(noise_folder, 1, init_from=str(tmp_path / "base" / "checkpoint.pt"), lr=1e-12, warmup_steps=0)
    tuned = train(config, tmp_path / "tuned")
    decoder = "decoders.4.net.0.weight"
    assert torch.allclose(base.state_dict()[decoder], tuned.state_dict()[decoder], atol=1e-6)
    other = replace(config, model=ModelConfig(**{**TINY, "codebook_size": 8}))
    with pytest.raises(HvqModelError, match="model config differs"):
        train(other, tmp_path / "other")


def test_export_writes_a_model_that_round_trips(noise_folder, tmp_path):
    from hvq.codec.fit.export import export_checkpoint
    from hvq.codec.runtime.pipeline import Codec

    train(_config(noise_folder, 2), tmp_path / "run")
    report = export_checkpoint(tmp_path / "run" / "checkpoint.pt", [str(noise_folder)], tmp_path / "m.safetensors")
    codec = Codec.for_model(tmp_path / "m.safetensors")
    assert codec.model.fingerprint == report.fingerprint and report.images == 3
    usage = report.usage
    assert all(0 < u <= 1 for u in usage.levels.values())
    assert usage.every_level <= min(usage.levels.values()) <= max(usage.levels.values()) <= usage.all_levels
    assert all(codec.model.prior.table(f).min() >= 1 for f in (4, 8, 16))
    image = Image.open(next(noise_folder.iterdir()))
    assert codec.decompress(codec.compress(image)).size == image.size


def test_committed_training_logs_load_as_records_and_write_back_the_same_lines():
    """Every metrics.jsonl and validation.jsonl under benchmarks/results loads; a complete line round-trips."""
    from pathlib import Path

    from hvq.codec.train.records import StepRecord, ValidationRecord, read_log

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    logs = sorted(results.rglob("metrics.jsonl")) + sorted(results.rglob("validation.jsonl"))
    assert logs
    for path in logs:
        kind = StepRecord if path.name == "metrics.jsonl" else ValidationRecord
        records = read_log(path, kind)
        assert records and all(r.levels and r.step > 0 for r in records), path
        last = json.loads(path.read_text().splitlines()[-1])
        if kind is ValidationRecord and "l1_4" in last or kind is StepRecord and "world_size" in last:
            assert json.loads(records[-1].to_json()) == last, path  # the same keys, values and order
    stage1 = read_log(results / "training" / "stage1" / "metrics.jsonl", StepRecord)[-1]
    assert stage1.factors == (4, 8, 16) and np.isnan(stage1.level(4).perplexity)  # not logged then


def test_training_reads_folders_as_the_codec_does(tmp_path):
    """One rule for which files are images, and EXIF orientation applied to training images."""
    from hvq.cli.inputs import images_in
    from hvq.codec.train.data import CropSampler, list_images

    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / ".cache").mkdir()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (40, 72, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: viewers show the 72 x 40 picture 40 wide and 72 tall
    Image.fromarray(pixels).save(folder / "turned.jpg", exif=exif, quality=95)
    Image.fromarray(pixels).save(folder / "sub" / "b.gif")
    Image.fromarray(pixels).save(folder / ".cache" / "hidden.png")
    Image.fromarray(pixels).save(folder / "._resource.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "a.hvq").write_bytes(b"\x89HVQ\r\n\x1a\n")
    found = list_images([str(folder)])
    assert found == images_in(folder) == [folder / "sub" / "b.gif", folder / "turned.jpg"]
    sampler = CropSampler([folder / "turned.jpg"], 32, seed=0)
    assert sampler.images[0].shape == (72, 40, 3)  # rotated as the codec reads it, not 40 x 72
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HvqDataError, match="no images under"):
        list_images([str(empty)])
    with pytest.raises(HvqDataError, match="is at least 96 px"):
        CropSampler(found, 96, seed=0)
    Image.fromarray(np.zeros((40, 40, 4), dtype=np.uint8)).save(folder / "clear.png")  # transparent
    with pytest.raises(HvqImageError, match="clear.png: image has transparency"):
        CropSampler([folder / "clear.png"], 32, seed=0)


@pytest.mark.parametrize("command", ["train", "export"])
def test_an_internal_error_is_a_traceback_not_a_user_error(command, noise_folder, tmp_path, monkeypatch):
    """A bug (here a ValueError from inside the library) is not dressed as a one-line "Error:" message."""
    from click.testing import CliRunner

    import hvq.codec.fit.export
    import hvq.codec.train.loop
    from hvq.cli.main import main

    def bug(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"")
    if command == "train":
        monkeypatch.setattr(hvq.codec.train.loop, "train", bug)
        args = ["train", "--data", str(noise_folder), "-o", str(tmp_path / "run"), "--steps", "1"]
    else:
        monkeypatch.setattr(hvq.codec.train.loop, "load_training_state", lambda path: {"train_config": "{}"})
        monkeypatch.setattr(hvq.codec.fit.export, "export_checkpoint", bug)
        args = ["export", str(checkpoint), "--data", str(noise_folder), "-o", str(tmp_path / "m.safetensors")]
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, ValueError) and str(result.exception) == "an internal invariant broke"
    assert "Error:" not in result.output


def test_validation_scores_a_level_as_hvq_bench_scores_its_file(tiny_codec, photo):
    """One PSNR: validation's score of a level is bench's score of that level decoded from a real file."""
    from hvq.codec.runtime.imageio import to_tensor
    from hvq.codec.train.validation import validate
    from hvq.evaluation.metrics import psnr

    counts = {f: np.ones(16, dtype=np.int64) for f in (4, 8, 16)}
    record = validate(tiny_codec.model.net, [to_tensor(photo)], counts, step=7)
    assert record.step == 7 and record.factors == (4, 8, 16)
    data = tiny_codec.compress(photo)
    for f in (4, 8, 16):
        decoded = np.asarray(tiny_codec.decompress(data, level=f))
        assert record.level(f).psnr == pytest.approx(psnr(np.asarray(photo), decoded), abs=1e-3)
