"""The design study's quick preset: it plans, trains, exports, scores through the product, resumes and renders.

Nothing about the designs is asserted: three steps on tiny crops say nothing.
The full preset's results are in benchmarks/results/design/.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from hvq.benchmarks import ablation, design


def _run(tmp_path, *extra):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        design.main, ["--quick", "-o", str(out), "--runs", str(tmp_path / "runs"), *extra]
    )
    assert result.exit_code == 0, result.output
    return out


def test_quick_study_scores_candidates_through_the_product_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "SHARED", tmp_path / "no-shared")  # synthetic images: fast and self-contained
    out = _run(tmp_path, "--only", "baseline", "--only", "topdown", "--only", "single-8-4096")
    summary = json.loads((out / "design.json").read_text())
    assert set(summary["candidates"]) == {"baseline", "topdown", "single-8-4096"}
    baseline = summary["candidates"]["baseline"]
    assert set(baseline["levels"]) == {"4", "8", "16"}
    for level in baseline["levels"].values():
        assert level["bpp"] > 0 and level["psnr"] > 5 and level["bits_per_index"] > 0
        assert "ssimulacra2" in level and "static_bits_per_index" in level
    assert baseline["steps"] == baseline["plan"]["steps"] >= design.PRESETS["quick"].min_steps
    assert baseline["prior"] == "static + context" and baseline["usage_every_level"] is not None
    assert (out / "logs" / "baseline" / "metrics.jsonl").exists() and (out / "logs" / "baseline" / "plan.json").exists()
    assert summary["candidates"]["single-8-4096"]["prior"] == "static"  # K > MAX_CONTEXT_CODEBOOK
    # A top-down level's file holds its coarser levels too, and its rate counts them.
    assert summary["candidates"]["topdown"]["levels"]["4"]["stored_levels"] == [4, 8, 16]
    text = (out / "design.md").read_text()
    assert "## Rate-distortion per level" in text and "| baseline | 1/4 |" in text
    assert "## Not scored yet" in text and "`sharing`" in text
    # The budget is CPU time, so each record names the CPU that fixed its step count, and the table shows it.
    cpu = ablation.hardware(1, 1)["cpu"]
    assert baseline["plan"]["cpu"] == cpu
    assert f"| {baseline['steps']} | {cpu} |" in text
    # A second invocation finds the candidates scored and only renders again.
    before = (out / "candidates" / "baseline.json").stat().st_mtime_ns
    _run(tmp_path, "--only", "baseline")
    assert (out / "candidates" / "baseline.json").stat().st_mtime_ns == before
    # Scores lost, checkpoint kept: the candidate is re-scored from its finished run, not retrained.
    (out / "candidates" / "baseline.json").unlink()
    ledger = (tmp_path / "runs" / "baseline" / "ledger.json").read_text()
    _run(tmp_path, "--only", "baseline")
    again = json.loads((out / "candidates" / "baseline.json").read_text())
    assert again["levels"] == baseline["levels"] and again["steps"] == baseline["steps"]
    assert (tmp_path / "runs" / "baseline" / "ledger.json").read_text() == ledger


def test_a_candidate_held_by_a_live_runner_is_skipped_and_a_dead_runners_lock_is_taken(tmp_path):
    run_dir = tmp_path / "runs" / "baseline"
    run_dir.mkdir(parents=True)
    parent = design._process_identity(os.getppid())
    (run_dir / "lock").write_text(parent)  # a live process
    with pytest.raises(design.Busy, match="being run by process"):
        design._take_lock(run_dir)
    (run_dir / "lock").write_text(str(os.getppid()))  # a pid alone: alive while that pid is
    with pytest.raises(design.Busy, match="being run by process"):
        design._take_lock(run_dir)
    (run_dir / "lock").write_text(f"{os.getppid()} 1")  # the same pid, another start time: reused after a reboot
    assert design._take_lock(run_dir).read_text() == design._process_identity(os.getpid())
    (run_dir / "lock").write_text("999999999 5")  # no such process
    assert design._take_lock(run_dir).read_text().split()[0] == str(os.getpid())


def test_every_candidate_is_a_valid_run_of_the_full_preset(tmp_path):
    """The full study's configs build (sizes, crops, loss weights), one behaviour per candidate."""
    names = [c.name for c in design.CANDIDATES]
    assert len(set(names)) == len(names) and names[0] == "baseline"
    for candidate in design.CANDIDATES:
        config = design.candidate_configs(design.PRESETS["full"], candidate, tmp_path, 1000, 0)
        assert config.threads == 1 and config.steps == 1000
    baseline = design.candidate_configs(design.PRESETS["full"], design.CANDIDATES[0], tmp_path, 1000, 0)
    assert baseline.model == design.PRESETS["full"].model


def test_rate_matching_interpolates_the_baseline_in_log_rate():
    def levels(points):
        return {"levels": {f: {"bpp": b, "psnr": p} for f, (b, p) in points.items()}}

    results = {"baseline": levels({"16": (0.01, 20.0), "8": (0.04, 24.0), "4": (0.16, 28.0)}),
               "single-8-4096": levels({"8": (0.02, 23.0)}), "far": levels({"4": (1.0, 30.0)})}
    assert design.rate_matched(results, "single-8-4096")["8"] == pytest.approx(1.0)  # baseline: 22 dB at 0.02
    assert design.rate_matched(results, "far")["4"] is None
