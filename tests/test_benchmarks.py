"""The Kodak evaluation script, on a tiny model and two small images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hvq.benchmarks.kodak import anchor_psnr, evaluate, markdown


def test_anchor_interpolation_stays_inside_the_measured_range():
    points = [{"bpp": 0.1, "psnr": 20.0}, {"bpp": 0.4, "psnr": 26.0}]
    assert anchor_psnr(points, 0.1) == pytest.approx(20.0)
    assert anchor_psnr(points, 0.2) == pytest.approx(23.0)  # halfway in log(bpp)
    assert anchor_psnr(points, 0.05) is None and anchor_psnr(points, 1.0) is None


def test_evaluate_reports_every_level(tiny_codec, photo, tmp_path):
    photo.resize((176, 168)).save(tmp_path / "a.png")
    photo.save(tmp_path / "b.png")  # too small for MS-SSIM's five scales
    result = evaluate(tiny_codec, sorted(tmp_path.glob("*.png")))
    assert result["images"] == 2 and list(result["mean"]) == [16, 8, 4]
    for m in result["mean"].values():
        assert m["bpp"] > 0 and math.isfinite(m["psnr"]) and math.isnan(m["ms_ssim"])
    for level in result["per_image"][0]["levels"].values():
        assert 0 < level["ms_ssim"] <= 1
    assert 0 < result["codebook_usage"]["all_levels"] <= 1
    anchors = {"codecs": {"jpeg": [{"bpp": 0.01, "psnr": 10.0}, {"bpp": 9.0, "psnr": 40.0}], "webp": []}}
    table = markdown(result, anchors)
    assert table.count("\n| ") >= 3 and "below its lowest rate" in table


def test_training_stages_are_drawn_as_one_run(tmp_path):
    import json

    from click.testing import CliRunner

    from hvq.benchmarks.plot_training import main

    for stage, steps in (("stage1", (25, 50)), ("stage2", (25, 50, 75))):
        folder = tmp_path / stage
        folder.mkdir()
        lines = [json.dumps({"step": s, **{f"psnr_{f}": 20.0 + s / 25 for f in (4, 8, 16)},
                             **{f"perplexity_{f}": 100.0 for f in (4, 8, 16)}}) for s in steps]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "stage2" / "validation.jsonl").write_text(
        json.dumps({"step": 75, **{f"{k}_{f}": 0.5 for k in ("psnr", "ms_ssim", "bits_per_index", "usage",
                                                              "train_usage") for f in (4, 8, 16)}}) + "\n")
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(main, [str(tmp_path / "stage1"), str(tmp_path / "stage2"), "-o", str(out)])
    assert result.exit_code == 0 and "2 stages, 125 steps" in result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def photo_folder(tmp_path, photo):
    """A dataset folder of one small photo."""
    folder = tmp_path / "images"
    folder.mkdir()
    photo.save(folder / "a.png")
    return folder


@pytest.mark.parametrize("topdown", [False, True])
def test_depth_files_compares_the_progressive_file_with_the_deep_level_alone(tmp_path, photo_folder, topdown):
    from click.testing import CliRunner

    from conftest import make_tiny_model
    from hvq.benchmarks.depth_files import main

    model = make_tiny_model(tmp_path / "m.safetensors", context=True, depths=((4, 3),), topdown=topdown)
    result = CliRunner().invoke(main, [str(model), str(photo_folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads((tmp_path / "out" / "files.json").read_text())["summary"]
    assert list(summary) == ["1", "2", "3"]
    bpp = [summary[d]["progressive_bpp"] for d in ("1", "2", "3")]
    assert bpp == sorted(bpp) and all(summary[d]["bits_per_index"] > 0 for d in summary)
    # top-down: level 4 alone is not a picture, so "alone" holds its coarser levels and equals the progressive file
    assert all((summary[d]["ratio"] == 1.0) == topdown for d in summary)
    assert "| 3 |" in (tmp_path / "out" / "files.md").read_text()


def test_latent_ceiling_scores_every_level_quantised_and_not(tmp_path, photo_folder, tiny_model_path):
    from click.testing import CliRunner

    from hvq.benchmarks.latent_ceiling import main

    result = CliRunner().invoke(main, [str(tiny_model_path), str(photo_folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    import json

    mean = json.loads((tmp_path / "out" / "ceiling.json").read_text())["mean"]
    assert sorted(mean) == ["16", "4", "8"]
    assert all(0 < m["latent_error"] < 10 and m["depth1"] > 5 and m["ceiling"] > 5 for m in mean.values())
    assert "| 4 |" in (tmp_path / "out" / "ceiling.md").read_text()


@pytest.mark.parametrize("effort", [1, 2])
def test_rate_control_benchmark_measures_curves_windows_and_real_searches(tmp_path, tiny_context_model_path, effort):
    """Two small images through the product's path: per-level curves, BD-rate, windows and target searches."""
    import json

    from PIL import Image

    from hvq.benchmarks import rate_control

    folder = tmp_path / "kodak"
    folder.mkdir()
    rng = np.random.default_rng(effort)
    for name in ("a", "b"):
        smooth = np.add.outer(np.arange(48), np.arange(64))[..., None] * np.array([1, 2, 3]) % 256
        noisy = (smooth + rng.integers(0, 40, smooth.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noisy, "RGB").save(folder / f"{name}.png")
    out = tmp_path / "out"
    rate_control.main(["--kodak", str(folder), "--out", str(out), "--model", str(tiny_context_model_path),
                       "--windows-every", "1", "--effort", str(effort), "--targets"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["effort"] == effort and summary["images"] == 2
    assert [q for q, *_ in summary["curves"]["4"]["rdoq"]] == list(rate_control.QUALITIES[effort])
    searches = summary["searches"]
    for kind, values in (("bpp", rate_control.SEARCH_BPP), ("psnr", rate_control.SEARCH_PSNR)):
        assert searches[kind]["searches"] == 2 * len(values)
        assert searches[kind]["missed"] == 0  # a search either meets its target or refuses it
    report = (out / "rate_control.md").read_text()
    assert f"effort {effort})" in report and "## Target searches" in report and (out / "rd_levels.png").exists()


def test_latent_metric_starts_from_the_codecs_own_nearest_codewords(tmp_path, photo_folder, tiny_model_path, photo):
    import json

    import torch
    from click.testing import CliRunner

    from hvq.benchmarks.latent_metric import VARIANTS, main, metric_grid
    from hvq.codec.runtime.pipeline import Codec

    result = CliRunner().invoke(main, [str(photo_folder), str(photo_folder), "-o", str(tmp_path / "out"),
                                       "--model", str(tiny_model_path), "--train-images", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "latent_metric.json").read_text())
    assert list(report["means"]) == [name for name, _, _ in VARIANTS]
    codec = Codec.for_model(str(tiny_model_path))
    whole_file = 8 * len(codec.compress(photo)) / (photo.width * photo.height)
    assert report["means"][VARIANTS[0][0]][-1]["bpp"] == pytest.approx(whole_file)
    # the identity metric is latent distance: the same grid
    codebook = codec.model.net.codebook_of(4)
    z = torch.randn(1, codebook.embed.shape[1], 5, 7)
    eye = torch.eye(codebook.embed.shape[1])
    assert (metric_grid(codebook, z, eye, None) == metric_grid(codebook, z, None, None)).all()
    assert "| pixel metric, nearest 6 |" in (tmp_path / "out" / "latent_metric.md").read_text()


@pytest.mark.parametrize("topdown", [False, True])
def test_prior_report_codes_every_prior_and_names_a_top_down_models_files(tmp_path, photo_folder, topdown):
    from click.testing import CliRunner

    from conftest import make_tiny_model
    from hvq.benchmarks.prior import PRIORS, main

    model = make_tiny_model(tmp_path / "m.safetensors", context=True, topdown=topdown)
    result = CliRunner().invoke(main, [str(photo_folder), "--model", str(model), "--repeats", "1",
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    import json

    kodak = json.loads((tmp_path / "out" / "prior.json").read_text())["kodak"]
    assert set(kodak["priors"]) == set(PRIORS)
    assert all(m["bits_per_index"] > 0 for levels in kodak["priors"].values() for m in levels.values())
    assert (kodak["all_over_finest_bytes"] == 1.0) == topdown  # top-down: the finest level's file holds them all
    md = (tmp_path / "out" / "prior.md").read_text()
    assert ("no smaller finest-only file" in md) == topdown and ("target <= 1.10" in md) != topdown
