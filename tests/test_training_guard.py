"""The trainer's divergence guard and gradient clipping (hvq.codec.train.guard)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from conftest import TINY
from hvq.bitstream.errors import HvqConfigError, HvqTrainingError
from hvq.codec.model.config import ModelConfig
from hvq.codec.train.config import TrainConfig, lr_at
from hvq.codec.train.guard import MAX_ROLLBACKS, LossWatch
from hvq.codec.train.loop import load_training_state, train


def _config(folder, steps, **changes):
    settings = dict(crop=32, batch_size=2, warmup_steps=2, log_every=1, checkpoint_every=2, threads=1, workers=0)
    return TrainConfig(data=(str(folder),), model=ModelConfig(**TINY), steps=steps, **{**settings, **changes})


def _poison(monkeypatch, from_call: int, until_call: int | None = None):
    """Make the objective's loss NaN on calls from_call..until_call (1-based; None: every later call)."""
    import hvq.codec.train.loop as loop

    real = loop.objective
    calls = [0]

    def objective(*args, **kwargs):
        calls[0] += 1
        loss, terms = real(*args, **kwargs)
        if calls[0] >= from_call and (until_call is None or calls[0] <= until_call):
            loss = loss * math.nan
        return loss, terms

    monkeypatch.setattr(loop, "objective", objective)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_non_finite_loss_rolls_the_run_back_at_half_the_learning_rate(noise_folder, tmp_path, monkeypatch):
    _poison(monkeypatch, from_call=6, until_call=6)  # steps 1-5 train, step 6 blows up; the checkpoint is at 4
    config = _config(noise_folder, 8)
    run = tmp_path / "run"
    model = train(config, run)
    (event,) = _lines(run / "rollbacks.jsonl")
    assert {k: event[k] for k in ("step", "back_to", "lr_scale", "rollback")} == {
        "step": 6, "back_to": 4, "lr_scale": 0.5, "rollback": 1}
    assert math.isnan(event["loss"])
    metrics = _lines(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 9))  # step 5 logged once: the first try was dropped
    assert metrics[3]["lr"] == pytest.approx(lr_at(config, 3))
    assert metrics[4]["lr"] == pytest.approx(lr_at(config, 4) * 0.5)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert load_training_state(run / "checkpoint.pt")["guard"]["lr_scale"] == 0.5

    monkeypatch.undo()
    train(replace(config, steps=10), run, resume=True)  # a resumed run keeps the lowered rate
    resumed = _lines(run / "metrics.jsonl")
    assert [m["step"] for m in resumed] == list(range(1, 11))
    assert resumed[8]["lr"] == pytest.approx(lr_at(replace(config, steps=10), 8) * 0.5)


def test_a_loss_that_keeps_diverging_stops_the_run_and_keeps_the_last_good_checkpoint(noise_folder, tmp_path,
                                                                                        monkeypatch):
    _poison(monkeypatch, from_call=4)
    run = tmp_path / "run"
    with pytest.raises(HvqTrainingError, match=rf"training diverged at step 3 \(loss nan\) after {MAX_ROLLBACKS} "
                                               r"rollbacks, the learning rate already at 0.0625 x"):
        train(_config(noise_folder, 8), run)
    state = load_training_state(run / "checkpoint.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [e["back_to"] for e in _lines(run / "rollbacks.jsonl")] == [2] * MAX_ROLLBACKS


def test_the_command_line_reports_a_diverged_run_in_one_line(noise_folder, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hvq.cli.main import main

    _poison(monkeypatch, from_call=1)
    (tmp_path / "tiny.json").write_text(ModelConfig(**TINY).to_json())
    result = CliRunner().invoke(main, ["train", "--data", str(noise_folder), "-o", str(tmp_path / "run"),
                                       "--model-config", str(tmp_path / "tiny.json"), "--steps", "4", "--crop", "32",
                                       "--batch-size", "2", "--threads", "1", "--workers", "0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: training diverged at step 1 (loss nan)") and "--grad-clip" in lines[-1]
    assert "Traceback" not in result.output


def test_the_loss_watch_tests_against_a_running_mean_after_it_settles():
    watch = LossWatch(ratio=10.0, settle=3)
    assert watch.diverged(math.inf) and watch.diverged(math.nan)
    for loss in (100.0, 1.0, 1.0):  # a fresh model's loss falls fast: not tested while settling
        assert not watch.diverged(loss)
        watch.update(loss)
    mean = watch.mean
    assert not watch.diverged(9.9 * mean) and watch.diverged(10.1 * mean)
    restored = LossWatch(ratio=10.0, settle=3)
    restored.load(watch.state())
    assert restored == watch
    assert not LossWatch(ratio=0.0, settle=0, mean=1.0, seen=5).diverged(1e9)  # off: only non-finite losses trip


def test_gradient_clipping_logs_the_norm_before_clipping_and_changes_the_update(noise_folder, tmp_path):
    free = train(_config(noise_folder, 3), tmp_path / "free")
    clipped = train(_config(noise_folder, 3, grad_clip=1e-4), tmp_path / "clipped")
    norms = [[m["grad_norm"] for m in _lines(tmp_path / name / "metrics.jsonl")] for name in ("free", "clipped")]
    assert all(n > 1e-4 for n in norms[0])
    assert norms[0][0] == norms[1][0]  # the same first gradient, logged before it is clipped
    assert any(not torch.equal(a, b) for a, b in zip(free.state_dict().values(), clipped.state_dict().values()))


@pytest.mark.parametrize("changes, match", [(dict(grad_clip=-1.0), "grad_clip must be >= 0"),
                                            (dict(divergence_ratio=0.5), "divergence_ratio 0 \\(off\\) or > 1")])
def test_guard_settings_are_checked(noise_folder, changes, match):
    with pytest.raises(HvqConfigError, match=match):
        _config(noise_folder, 2, **changes)
