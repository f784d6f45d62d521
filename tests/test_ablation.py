"""The ablation study's quick preset: it trains every variant, scores it, and renders both tables.

Nothing about the variants is asserted: six steps on tiny crops say nothing.
The full preset's results are in benchmarks/results/ablation/.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from hvq.benchmarks import ablation


def _run(tmp_path, *extra):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        ablation.main, ["--quick", "-o", str(out), "--runs", str(tmp_path / "runs"), *extra]
    )
    assert result.exit_code == 0, result.output
    return out


def test_quick_preset_produces_both_tables(tmp_path, monkeypatch):
    """Uses ../shared (training crops, Kodak crops) when present, synthetic images otherwise.

    The runs draw no curves.png: matplotlib took two thirds of the time, and
    neither table reads the curves (tests/test_training.py checks them).
    """
    import hvq.codec.train.plot

    monkeypatch.setattr(hvq.codec.train.plot, "plot_run", lambda *args, **kwargs: None)
    out = _run(tmp_path)
    text = (out / "ablation.md").read_text()
    assert "## Table 1" in text and "## Table 2" in text
    for variant in ablation.VARIANTS:
        assert f"| {variant.label} |" in text or variant.name not in ablation.TABLE1 + ablation.TABLE2
    assert "n/a (separate codebooks)" in text
    summary = json.loads((out / "ablation.json").read_text())
    assert set(summary["variants"]) == {v.name for v in ablation.VARIANTS}
    # A second invocation finds every variant scored and only renders again.
    before = (out / "variants" / "single-4.json").stat().st_mtime_ns
    _run(tmp_path)
    assert (out / "variants" / "single-4.json").stat().st_mtime_ns == before


def test_quick_preset_runs_on_synthetic_images_without_shared(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "SHARED", tmp_path / "no-shared")
    out = _run(tmp_path, "--only", "hier-residual", "--only", "single-16")
    text = (out / "ablation.md").read_text()
    assert "| hierarchical, residual pooling (hvq) |" in text and "| single level, 1/16 |" in text
