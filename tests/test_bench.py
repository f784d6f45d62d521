"""hvq bench: the evaluation package and the command, on a tiny random model and tiny images."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import SHARED
from hvq.cli.main import main
from hvq.evaluation.bjontegaard import Curve, compare
from hvq.evaluation.classical import CLASSICAL
from hvq.evaluation.hvq_runs import level_subsets, measure_hvq
from hvq.evaluation.metrics import msssim, msssim_db, psnr
from hvq.evaluation.records import mean_by_setting
from hvq.evaluation.sweep import BenchImage, ClassicalTask, run_classical, run_classical_task

SIZE = (64, 48)  # width, height: below MS-SSIM's 161 px, so its columns are empty


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    smooth = np.stack([x * 3 + seed * 20, y * 4, (x + y) * 2], axis=-1)
    return Image.fromarray(np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    _picture(0).save(folder / "a.png")
    _picture(1).save(folder / "b.png")
    _picture(2).save(folder / "sub" / "c.png")
    return folder


@pytest.fixture
def bench():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, ["bench", *map(str, args)], catch_exceptions=False)

    return invoke


def _rows(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


# -- the whole command ------------------------------------------------------------


def test_bench_writes_every_output(bench, dataset, tiny_model_path, tmp_path):
    out = tmp_path / "results"
    result = bench(dataset, "--codecs", "hvq,jpeg,webp", "--sweep", "jpeg=20,60,90", "--sweep", "webp=30,90",
                   "--model", tiny_model_path, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    settings = 7 + 3 + 2  # hvq: 3 levels alone, 3 pairs, all three; jpeg 3; webp 2
    per_image = _rows(out / "rd_per_image.csv")
    assert len(per_image) == 3 * settings
    assert {r["image"] for r in per_image} == {"a.png", "b.png", "sub/c.png"}
    assert {r["setting"] for r in per_image if r["codec"] == "hvq"} == {
        "levels=16", "levels=8", "levels=4", "levels=16,8", "levels=16,4", "levels=8,4", "levels=16,8,4"}
    assert all(r["ms_ssim"] == "" for r in per_image)  # 48 px: too small for MS-SSIM
    means = _rows(out / "rd_mean.csv")
    assert len(means) == settings and all(r["images"] == "3" for r in means)
    document = json.loads((out / "rd.json").read_text())
    assert len(document["per_image"]) == 3 * settings and len(document["mean"]) == settings
    assert [c["anchor"] for c in document["bd"]] == ["jpeg", "webp"] * 3  # PSNR, MS-SSIM (dB), SSIMULACRA 2
    assert document["context"]["hvq_curve"] == ["levels=16", "levels=8", "levels=4"]
    markdown = (out / "rd.md").read_text()
    assert markdown.count("\n| hvq | levels=") == 7 and "| jpeg | quality=60 | 3 |" in markdown
    assert "Bjøntegaard" in markdown and "| webp | PSNR |" in markdown
    for figure in ("rd_psnr.png", "rd_msssim.png", "rd_ssimulacra2.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the outputs are kept unless --force
    again = bench(dataset, "--codecs", "jpeg", "--sweep", "jpeg=50", "-o", out, "--no-progress")
    assert again.exit_code == 1 and "exists (use --force" in again.output
    forced = bench(dataset, "--codecs", "jpeg", "--sweep", "jpeg=50", "-o", out, "--no-progress", "--force")
    assert forced.exit_code == 0 and len(_rows(out / "rd_mean.csv")) == 1
    assert json.loads((out / "rd.json").read_text())["bd"] == []  # no hvq, nothing to compare


def test_speed_measures_each_codec_and_labels_the_random_reference(dataset, tiny_model_path):
    """In this process, for speed; the command runs the same function in a child per codec (test below)."""
    from hvq.evaluation.report import speed_markdown
    from hvq.evaluation.speed import COMPRESSAI_REFERENCE, SpeedJob, describe_machine, measure_speed

    paths = tuple(sorted(dataset.rglob("*.png")))
    results = [measure_speed(SpeedJob(name, setting, paths, 1, None, str(tiny_model_path)))
               for name, setting in (("hvq", None), ("jpeg", 50), (COMPRESSAI_REFERENCE, None))]
    hvq, jpeg, reference = results
    assert [op.operation for op in hvq.operations] == [
        "encode (all levels)", "decode level 16", "decode level 8", "decode level 4"]
    assert [op.operation for op in jpeg.operations] == ["encode", "decode"] and jpeg.setting == "quality=50"
    assert jpeg.threads == 1 and hvq.threads >= 1 and reference.threads >= 1
    for r in results:
        assert r.images == 3 and r.megapixels == pytest.approx(3 * 64 * 48 / 1e6)
        assert all(op.seconds_per_image > 0 and op.megapixels_per_second > 0 for op in r.operations)
        assert r.peak_mib is not None and r.peak_mib >= 0 and "VmHWM" in r.memory_method
    assert "random weights" in reference.note
    text = speed_markdown("data", describe_machine(), 1, results)
    assert hvq.setting.startswith("model ") and reference.setting.endswith("random weights")
    assert "**random weights**" in text and "| decode level 8 | 3 |" in text


@pytest.mark.slow
def test_speed_command_runs_a_child_per_codec(bench, dataset, tiny_model_path, tmp_path):
    out = tmp_path / "speed"
    result = bench(dataset, "--codecs", "hvq,jpeg", "--no-rd", "--speed", "--repeats", "1", "--threads", "1",
                   "--model", tiny_model_path, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "speed.json").read_text())
    by_codec = {r["codec"]: r for r in document["results"]}
    assert list(by_codec) == ["hvq", "jpeg", "compressai-bmshj2018-hyperprior"]
    assert by_codec["jpeg"]["setting"] == "quality=30"  # the middle of its default sweep
    assert by_codec["hvq"]["threads"] == 1 and by_codec["jpeg"]["threads"] == 1
    assert (out / "speed.md").exists() and not (out / "rd.json").exists()


# -- what is measured --------------------------------------------------------------


@pytest.mark.parametrize("codec_fixture", ["tiny_codec", "tiny_context_codec"])
def test_bpp_is_the_real_file_size_and_pixels_come_from_the_bytes(codec_fixture, dataset, request):
    tiny_codec = request.getfixturevalue(codec_fixture)
    original = np.asarray(Image.open(dataset / "a.png"))
    pixels = original.shape[0] * original.shape[1]
    rows = {m.setting: m for m in measure_hvq(tiny_codec, "a.png", original)}
    assert list(rows) == [f"levels={','.join(map(str, s))}" for s in level_subsets((4, 8, 16))]
    for levels in ((8,), (16, 4), (16, 8, 4)):
        data = tiny_codec.compress(Image.fromarray(original), levels)  # what the subset's file is
        m = rows["levels=" + ",".join(map(str, levels))]
        assert m.file_bytes == len(data) and m.bpp == 8 * len(data) / pixels
        decoded = np.asarray(tiny_codec.decompress(data))
        assert m.psnr == psnr(original, decoded)
    image = BenchImage(dataset / "a.png", "a.png")
    jpeg = run_classical_task(ClassicalTask(image, "jpeg", (40,)))[0]
    encoded = CLASSICAL["jpeg"].encode(original, 40)
    assert jpeg.bpp == 8 * len(encoded) / pixels
    assert jpeg.psnr == psnr(original, np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB")))


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_every_classical_codec_round_trips(name):
    original = np.asarray(_picture(3))
    codec = CLASSICAL[name]
    low, high = (codec.encode(original, value) for value in (codec.sweep[0], codec.sweep[-1]))
    assert len(low) < len(high)  # the sweep runs from the lowest rate up
    decoded = codec.decode(high)
    assert decoded.shape == original.shape and decoded.dtype == np.uint8
    assert psnr(original, decoded) > 25


def test_thread_counts_reach_the_libraries_that_take_one():
    """AVIF and JPEG XL run with the count asked for and say so; the others report their one thread."""
    from PIL import AvifImagePlugin

    from hvq.evaluation import classical

    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    try:
        assert classical.use_threads("avif", 2) == 2 and AvifImagePlugin.DEFAULT_MAX_THREADS == 2
        assert classical.use_threads("jpegxl", 2) == 2 and classical._jpegxl_threads == 2
        assert [classical.use_threads(name, 2) for name in ("jpeg", "webp", "jpeg2000")] == [1, 1, 1]
        for name in ("avif", "jpegxl"):
            codec = CLASSICAL[name]
            assert codec.decode(codec.encode(rgb, codec.sweep[4])).shape == rgb.shape
    finally:
        assert classical.use_threads("jpegxl", None) == 1  # imagecodecs' default: one thread
        assert classical.use_threads("avif", None) >= 1 and AvifImagePlugin.DEFAULT_MAX_THREADS == 0


def test_workers_give_the_same_results_as_one_process(dataset):
    images = [BenchImage(dataset / n, n) for n in ("a.png", "b.png")]
    sweeps = {"jpeg": (30, 80), "webp": (50,)}
    alone = run_classical(images, sweeps, jobs=1, progress=False)
    pooled = run_classical(images, sweeps, jobs=2, progress=False)
    assert [(m.codec, m.setting, m.image) for m in alone] == [
        ("jpeg", "quality=30", "a.png"), ("jpeg", "quality=30", "b.png"),
        ("jpeg", "quality=80", "a.png"), ("jpeg", "quality=80", "b.png"),
        ("webp", "quality=50", "a.png"), ("webp", "quality=50", "b.png")]
    def key(m):  # NaN MS-SSIM (tiny images) never equals itself
        return m.image, m.codec, m.setting, m.file_bytes, m.psnr

    assert [key(m) for m in pooled] == [key(m) for m in alone]


def test_msssim_and_means():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (170, 170, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    value = msssim(a, b)
    assert 0 < value < 1 and msssim(a, a) == pytest.approx(1.0)
    assert math.isnan(msssim(a[:160], b[:160])) and math.isnan(msssim_db(float("nan")))
    assert msssim_db(0.99) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")


def test_means_skip_nan_msssim_per_image():
    from hvq.evaluation.records import Measurement

    rows = [Measurement("x", "jpeg", "quality=50", 10, 10, 100, 30.0, 0.9, 10.0),
            Measurement("y", "jpeg", "quality=50", 10, 10, 300, 20.0, float("nan"), float("nan"))]
    (mean,) = mean_by_setting(rows)
    assert (mean.images, mean.bpp, mean.psnr, mean.ms_ssim, mean.ms_ssim_images) == (2, 16.0, 25.0, 0.9, 1)


# -- Bjøntegaard deltas ---------------------------------------------------------------

RATES = (0.1, 0.2, 0.4, 0.8)
PSNRS = (25.0, 28.0, 31.0, 34.0)  # 3 dB per doubling: a straight line in log(rate)


def test_identical_curves_have_no_delta():
    result = compare(Curve("hvq", RATES, PSNRS), Curve("jpeg", RATES, PSNRS), "psnr")
    assert result.bd_rate == pytest.approx(0, abs=1e-9) and result.bd_quality == pytest.approx(0, abs=1e-9)


def test_a_constant_rate_factor_is_that_percentage():
    # the same qualities at 80% of the rate: BD-rate -20% exactly; at equal rate the
    # line is log2(1/0.8) doublings ahead, 3 dB each: 3 * log2(1.25) = 0.9658 dB
    result = compare(Curve("hvq", tuple(r * 0.8 for r in RATES), PSNRS), Curve("jpeg", RATES, PSNRS), "psnr")
    assert result.bd_rate == pytest.approx(-20.0, abs=1e-9)
    assert result.bd_quality == pytest.approx(3 * math.log2(1.25), abs=1e-9)
    # three points, as hvq has, and a constant shift in dB
    three = compare(Curve("hvq", RATES[:3], tuple(p + 0.5 for p in PSNRS[:3])), Curve("jpeg", RATES, PSNRS), "psnr")
    assert three.bd_quality == pytest.approx(0.5, abs=1e-9) and three.bpp_range == (0.1, 0.4)


def test_curves_that_do_not_overlap_give_both_ranges():
    low = Curve("hvq", (0.02, 0.1, 0.5), (20.9, 24.5, 26.0))
    high = Curve("avif", (0.6, 1.0, 2.5), (33.0, 36.0, 41.4))
    result = compare(low, high, "psnr")
    assert result.bd_rate is None and result.bd_quality is None
    assert result.quality_note == "no overlap (hvq 0.020–0.500 bpp, avif 0.600–2.500 bpp)"
    assert result.rate_note == "no overlap (hvq 20.90–26.00 dB, avif 33.00–41.40 dB)"
    # a sliver of overlap (under MIN_OVERLAP of the narrower span) counts as none
    sliver = compare(low, Curve("webp", (0.49, 1.0, 2.8), (25.9, 36.0, 41.0)), "psnr")
    assert sliver.bd_rate is None and sliver.quality_note.startswith("no usable overlap (hvq 0.020–0.500 bpp")


def test_dominated_points_are_left_out_and_too_few_points_say_so():
    curve = Curve("jpeg", (0.3, 0.1, 0.2, 0.25), (30.0, 22.0, 27.0, 26.0)).usable()
    assert curve.bpp == (0.1, 0.2, 0.3) and curve.quality == (22.0, 27.0, 30.0)
    result = compare(Curve("hvq", (0.1,), (20.0,)), Curve("jpeg", RATES, PSNRS), "psnr")
    assert result.bd_rate is None and "too few points" in result.rate_note


def test_published_curves_are_read_from_the_anchor_file():
    from hvq.evaluation.anchors import DEFAULT_MODELS, load_published

    path = require_anchor("compressai_kodak.json")
    curves = load_published(path)
    assert [c.name for c in curves] == [f"{m} (mse)" for m in DEFAULT_MODELS]
    for c in curves:
        assert list(c.bpp) == sorted(c.bpp) and len(c.psnr) == len(c.bpp) and "8bit-decoded" in c.source


def test_default_sweeps_are_the_anchor_settings():
    """Our sweeps are the measured anchors' settings, so a Kodak run can be checked point by point."""
    path = require_anchor("kodak_classic_measured.json")
    anchors = json.loads(path.read_text())["codecs"]
    for name, codec in CLASSICAL.items():
        assert sorted(codec.sweep) == sorted(p["q"] for p in anchors[name])


# -- refused input --------------------------------------------------------------------


def test_refused_input_is_one_line(bench, dataset, tmp_path):
    missing = bench(tmp_path / "nowhere", "-o", tmp_path / "r")
    assert missing.exit_code == 1 and missing.output.strip().endswith("nowhere: no such folder")
    assert len(missing.output.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    empty = bench(tmp_path / "empty", "-o", tmp_path / "r")
    assert empty.exit_code == 1 and "empty: no image files under it" in empty.output
    unknown = bench(dataset, "--codecs", "hvq,bpg")
    assert unknown.exit_code == 2 and "unknown codec bpg" in unknown.output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = bench(dataset, "--codecs", "jpeg", "-o", blocker / "results")
    assert unwritable.exit_code == 1 and "cannot write results there" in unwritable.output
    assert len(unwritable.output.strip().splitlines()) == 1
    stdout = bench(dataset, "--codecs", "jpeg", "-o", "-")
    assert stdout.exit_code == 2 and "writes a folder of files, not standard output" in stdout.output
    assert not Path("-").exists()
    bad_sweep = bench(dataset, "--codecs", "jpeg", "--sweep", "webp=50")
    assert bad_sweep.exit_code == 2 and "webp is not among --codecs" in bad_sweep.output
    bad_anchors = tmp_path / "anchors.json"
    bad_anchors.write_text("{}")
    refused = bench(dataset, "--codecs", "jpeg", "--anchors", bad_anchors, "-o", tmp_path / "r2")
    assert refused.exit_code == 1 and "not a compressai_kodak.json" in refused.output
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for image in sorted(dataset.rglob("*.png")):
        (damaged / image.name).write_bytes(image.read_bytes())
    (damaged / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    unreadable = bench(damaged, "--codecs", "jpeg", "-o", tmp_path / "r3")
    assert unreadable.exit_code == 1 and unreadable.output.strip().splitlines() == [
        f"Error: {damaged / 'zz.png'}: not an image Pillow can read"]
    assert not (tmp_path / "r3").exists()  # refused before any codec ran or any result was written


@pytest.mark.slow
@pytest.mark.parametrize("name, value", [("jpeg", 50), ("jpegxl", 2.5)])
def test_kodak_means_reproduce_the_measured_anchors(kodak_dir, name, value):
    """Our runner on the 24 Kodak images gives the anchor's mean bpp and PSNR for that setting.

    (All five codecs matched to the printed digits when this was written; the
    two fastest are kept here, about 10 s.)
    """
    path = require_anchor("kodak_classic_measured.json")
    (anchor,) = [p for p in json.loads(path.read_text())["codecs"][name] if p["q"] == value]
    images = [BenchImage(p, p.name) for p in sorted(kodak_dir.glob("*.png"))]
    codec = CLASSICAL[name]
    bpp, quality = [], []
    for image in images:
        original = np.asarray(Image.open(image.path).convert("RGB"))
        encoded = codec.encode(original, value)
        bpp.append(8 * len(encoded) / (original.shape[0] * original.shape[1]))
        quality.append(psnr(original, codec.decode(encoded)))
    assert np.mean(bpp) == pytest.approx(anchor["bpp"], rel=1e-6)
    assert np.mean(quality) == pytest.approx(anchor["psnr"], abs=1e-4)


def require_anchor(name: str):
    path = SHARED / "anchors" / name
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path


# -- SSIMULACRA 2 ---------------------------------------------------------------------

def _lcg_noise(width: int, height: int, seed: int) -> np.ndarray:
    """The reference cases' noise image: a 64-bit LCG, byte = bits 33..40 of the state, R, G, B per pixel."""
    state, out = seed, np.empty(width * height * 3, np.uint8)
    for i in range(out.size):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        out[i] = (state >> 33) & 0xFF
    return out.reshape(height, width, 3)


def _gradient(width: int, height: int) -> np.ndarray:
    row = (np.arange(width) * 255 // (width - 1)).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], 3, axis=2), height, axis=0)


def _grey(width: int, height: int, value: int) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


@pytest.mark.parametrize("case, original, distorted, digest, expected, tolerance", [
    # Scores of libjxl's C++ ssimulacra2 tool on synthetic images, published with their generator and the
    # SHA-256 of each image's RGB bytes in imazen/ssimulacra2 (ssimulacra2/src/reference_data.rs,
    # examples/capture_cpp_reference.rs); the digests below prove these are the same images.
    ("gradient_vs_uniform_64x64", lambda: _gradient(64, 64), lambda: _grey(64, 64, 128),
     "bfcfaa0618d282841d4469793253649ea6ddab2f1d0351548cb6f05a8fd79b87", -64.56872148, 0.01),
    ("noise_vs_uniform_64x64", lambda: _lcg_noise(64, 64, 42), lambda: _grey(64, 64, 128),
     "7f6be7f433ccb0a006e888f827df518a15c560c44b89852441183c2f61ea59f2", -47.33572558, 0.01),
    # flat images: the reference's float32 rounding of a zero variance moves these a few hundredths
    ("uniform_shift_20_128x128", lambda: _grey(128, 128, 128), lambda: _grey(128, 128, 148),
     "2af5ead05032faafc0818cc27fe86c562e70fe7bea63d38366ef7355051b8fe9", 54.27883917, 0.05),
    ("uniform_shift_50_128x128", lambda: _grey(128, 128, 128), lambda: _grey(128, 128, 178),
     "2af5ead05032faafc0818cc27fe86c562e70fe7bea63d38366ef7355051b8fe9", -9.82383315, 0.05),
])
def test_ssimulacra2_matches_the_reference_tool(case, original, distorted, digest, expected, tolerance):
    """Our SSIMULACRA 2 gives libjxl's scores (the PyPI ``ssimulacra2`` 0.3.0 gives 29.2 and -682 on the first two)."""
    import hashlib

    from hvq.evaluation.metrics import ssimulacra2

    a, b = original(), distorted()
    assert hashlib.sha256(a.tobytes()).hexdigest() == digest
    assert ssimulacra2(a, b) == pytest.approx(expected, abs=tolerance)


def test_ssimulacra2_is_100_for_identical_images_and_falls_with_distortion():
    from hvq.evaluation.metrics import ssimulacra2
    from hvq.evaluation.ssimulacra import blur_kernel

    taps = blur_kernel()
    assert len(taps) == 11 and taps.sum() == pytest.approx(1.0, abs=1e-12) and np.allclose(taps, taps[::-1])
    original = np.asarray(_picture(4))
    scores = [ssimulacra2(original, CLASSICAL["jpeg"].decode(CLASSICAL["jpeg"].encode(original, q)))
              for q in (10, 50, 95)]
    assert ssimulacra2(original, original) == 100.0
    assert scores == sorted(scores) and scores[-1] < 100
    assert math.isnan(ssimulacra2(original[:7], original[:7]))  # below 8 px: not scored


# -- downscale + codec baselines ------------------------------------------------------


def test_downscaled_codecs_code_the_small_picture_and_show_it_full_size(dataset):
    from hvq.evaluation.classical import DOWNSCALED, downscale

    original = np.asarray(Image.open(dataset / "a.png"))  # 64 x 48
    avif4 = DOWNSCALED["avif-down4"]
    encoded = avif4.encode(original, 30)
    assert encoded == CLASSICAL["avif"].encode(downscale(original, 4), 30)  # the 16 x 12 picture, coded
    assert avif4.decode(encoded).shape == (12, 16, 3)
    shown = avif4.decode_to(encoded, original.shape)
    expected = np.asarray(Image.fromarray(avif4.decode(encoded)).resize((64, 48), Image.Resampling.BICUBIC))
    assert np.array_equal(shown, expected)
    (m,) = run_classical_task(ClassicalTask(BenchImage(dataset / "a.png", "a.png"), "avif-down4", (30,)))
    assert m.codec == "avif-down4" and m.bpp == 8 * len(encoded) / (64 * 48)  # over the full-size pixels
    assert m.psnr == psnr(original, shown)
    for name, codec in DOWNSCALED.items():
        assert name == f"{codec.base}-down{codec.factor}" and codec.decode_to(
            codec.encode(original, codec.sweep[-1]), original.shape).shape == original.shape


def test_every_codec_can_be_asked_for_by_name():
    from hvq.cli.bench import ALL_CODECS
    from hvq.evaluation.classical import CODECS

    assert ALL_CODECS == ("hvq", *CODECS)


def test_downscale_sweeps_hold_the_anchor_qualities():
    from hvq.evaluation.classical import DOWNSCALED

    path = require_anchor("kodak_lowrate_measured.json")
    anchors = json.loads(path.read_text())["codecs"]
    assert sorted(anchors) == sorted(name.replace("-", "_") for name in DOWNSCALED)
    for name, points in anchors.items():
        assert sorted(p["q"] for p in points) == sorted(DOWNSCALED[name.replace("_", "-")].sweep)


@pytest.mark.slow
@pytest.mark.parametrize("name, value", [("avif-down4", 10), ("webp-down4", 0)])
def test_kodak_downscale_reproduces_the_lowrate_anchors(kodak_dir, name, value):
    """The 24 Kodak images give the anchor's mean bpp and PSNR (matched to every printed digit; about 10 s)."""
    from hvq.evaluation.classical import DOWNSCALED

    path = require_anchor("kodak_lowrate_measured.json")
    (anchor,) = [p for p in json.loads(path.read_text())["codecs"][name.replace("-", "_")] if p["q"] == value]
    codec = DOWNSCALED[name]
    bpp, quality = [], []
    for image in sorted(kodak_dir.glob("*.png")):
        original = np.asarray(Image.open(image).convert("RGB"))
        encoded = codec.encode(original, value)
        bpp.append(8 * len(encoded) / (original.shape[0] * original.shape[1]))
        quality.append(psnr(original, codec.decode_to(encoded, original.shape)))
    assert np.mean(bpp) == pytest.approx(anchor["bpp"], rel=1e-6)
    assert np.mean(quality) == pytest.approx(anchor["psnr"], abs=1e-4)


# -- envelopes: hvq's curve over its levels, the best alternative at a rate --------------


def _mean(codec, setting, bpp, psnr_db, score=float("nan")):
    from hvq.evaluation.records import SettingMean

    return SettingMean(codec, setting, 1, bpp, psnr_db, float("nan"), float("nan"), 0, score)


def test_best_alternative_interpolates_in_log_rate_and_never_extrapolates():
    from hvq.evaluation.envelope import best_alternative, hvq_against_best

    means = [_mean("avif", "quality=0", 0.1, 26.0), _mean("avif", "quality=50", 0.4, 32.0),
             _mean("avif-down4", "quality=10", 0.01, 21.0), _mean("avif-down4", "quality=50", 0.04, 24.0),
             _mean("jpeg", "quality=2", 0.08, 21.0), _mean("jpeg", "quality=20", 0.45, 29.0),
             _mean("hvq", "levels=16", 0.02, 20.5), _mean("hvq", "levels=8", 0.2, 27.0),
             _mean("hvq", "levels=16,8", 0.21, 27.0)]
    at_02 = best_alternative(means, "psnr", 0.02)  # halfway in log rate from 0.01 to 0.04
    assert at_02.codec == "avif-down4" and at_02.quality == pytest.approx(22.5)
    at_2 = best_alternative(means, "psnr", 0.2)  # avif at 0.2: 26 + 6 * log(2) / log(4) = 29; jpeg less
    assert at_2.codec == "avif" and at_2.quality == pytest.approx(29.0)
    assert best_alternative(means, "psnr", 0.05) is None and best_alternative(means, "psnr", 1.0) is None
    rows = hvq_against_best(means, ["levels=16", "levels=8"], ["psnr", "ssimulacra2"])
    assert [(r.setting, r.best.codec) for r in rows] == [("levels=16", "avif-down4"), ("levels=8", "avif")]
    assert [r.delta for r in rows] == [pytest.approx(-2.0), pytest.approx(-2.0)]  # no SSIMULACRA 2 scored


def test_hvq_curve_is_the_envelope_of_its_levels():
    from hvq.evaluation.bjontegaard import curve_of
    from hvq.evaluation.envelope import envelope

    swept = [_mean("hvq", "levels=16 quality=20", 0.01, 20.0), _mean("hvq", "levels=16 quality=80", 0.03, 22.0),
             _mean("hvq", "levels=8 quality=20", 0.025, 21.5), _mean("hvq", "levels=8 quality=80", 0.1, 25.0),
             _mean("hvq", "levels=4 quality=20", 0.12, 24.5), _mean("hvq", "levels=4 quality=80", 0.4, 28.0)]
    kept = [m.setting for m in envelope(swept, "psnr")]
    assert kept == ["levels=16 quality=20", "levels=8 quality=20", "levels=16 quality=80", "levels=8 quality=80",
                    "levels=4 quality=80"]  # level 4 at quality 20 costs more than level 8 at 80 and gives less
    usable = curve_of(swept, "hvq", "psnr").usable()  # what BD integrates: the same points
    assert usable.bpp == tuple(m.bpp for m in envelope(swept, "psnr"))


class _QualityCodec:
    """The tiny codec with a ``quality=`` keyword, as ``hvq compress --quality`` will have: records each call."""

    def __init__(self, codec):
        self.codec, self.model, self.asked = codec, codec.model, []

    def compress(self, image, levels=None, quality=None):
        self.asked.append(quality)
        return self.codec.compress(image, levels)

    def decompress(self, data):
        return self.codec.decompress(data)


def test_hvq_quality_sweep_measures_each_level_at_each_quality(tiny_codec, dataset):
    from hvq.evaluation.hvq_runs import curve_settings, parse_setting, takes_quality

    swept = _QualityCodec(tiny_codec)
    assert takes_quality(swept)
    original = np.asarray(Image.open(dataset / "a.png"))
    rows = measure_hvq(swept, "a.png", original, qualities=(None, 30, 70), perceptual=False)
    assert swept.asked == [None, 30, 70]  # one compress per quality
    settings = [m.setting for m in rows]
    assert settings[:7] == [f"levels={','.join(map(str, s))}" for s in level_subsets((4, 8, 16))]
    assert settings[7:] == ["levels=16 quality=30", "levels=8 quality=30", "levels=4 quality=30",
                            "levels=16 quality=70", "levels=8 quality=70", "levels=4 quality=70"]
    assert set(curve_settings(tiny_codec.model.net, (None, 30, 70))) == {s for s in settings if "," not in s}
    assert parse_setting("levels=16 quality=30") == ((16,), 30.0) and parse_setting("levels=16,8") == ((16, 8), None)
    assert all(math.isnan(m.ssimulacra2) for m in rows)  # perceptual=False


def test_a_top_down_model_with_depths_is_benched_on_files_it_can_decode(tmp_path, dataset):
    """Top-down: a level is scored with the coarser levels it decodes from; depths: one curve file per depth."""
    from conftest import make_tiny_model
    from hvq.codec.runtime.pipeline import Codec
    from hvq.evaluation.hvq_runs import curve_of_setting, curve_settings

    codec = Codec.for_model(make_tiny_model(tmp_path / "td.safetensors", context=True, topdown=True,
                                            depths=((4, 3),)))
    original = np.asarray(Image.open(dataset / "a.png"))
    rows = measure_hvq(codec, "a.png", original, perceptual=False)
    settings = [m.setting for m in rows]
    assert settings == ["levels=16", "levels=16,8", "levels=16,8,4:3", "levels=16,8,4:1", "levels=16,8,4:2"]
    assert curve_settings(codec.model.net) == ["levels=16", "levels=16,8", "levels=16,8,4:1", "levels=16,8,4:2",
                                               "levels=16,8,4:3"]
    assert [curve_of_setting(s) for s in settings[2:]] == [(4, 3), (4, 1), (4, 2)]
    by = {m.setting: m for m in rows}
    assert by["levels=16,8,4:1"].bpp < by["levels=16,8,4:2"].bpp < by["levels=16,8,4:3"].bpp
    deepest = codec.decompress(codec.compress(Image.fromarray(original)))
    assert by["levels=16,8,4:3"].psnr == pytest.approx(
        10 * np.log10(255**2 / np.mean((np.asarray(deepest, dtype=np.float64) - original) ** 2)), abs=1e-6)


def test_hvq_quality_option_needs_a_codec_that_takes_one(bench, dataset, tiny_model_path, tmp_path):
    from hvq.codec.runtime.pipeline import Codec
    from hvq.evaluation.hvq_runs import takes_quality

    result = bench(dataset, "--codecs", "hvq,webp-down2", "--sweep", "webp-down2=20", "--hvq-quality", "40,80",
                   "--model", tiny_model_path, "-o", tmp_path / "q", "--no-progress", "--no-ssimulacra2")
    if not takes_quality(Codec.for_model(tiny_model_path)):
        assert result.exit_code == 1 and "this hvq's compress has no quality setting" in result.output
        return
    assert result.exit_code == 0, result.output  # once compress takes quality=: each level a curve
    document = json.loads((tmp_path / "q" / "rd.json").read_text())
    assert "levels=16 quality=40" in document["context"]["hvq_curve"]
    assert document["context"]["hvq_qualities"] == [40.0, 80.0]
    bad = bench(dataset, "--codecs", "hvq", "--hvq-quality", "120", "--model", tiny_model_path)
    assert bad.exit_code == 2 and "from 0 to 100" in bad.output
    alone = bench(dataset, "--codecs", "hvq", "--hvq-effort", "2", "--model", tiny_model_path)
    assert alone.exit_code == 2 and "needs --hvq-quality" in alone.output
    beyond = bench(dataset, "--codecs", "hvq", "--hvq-quality", "40", "--hvq-effort", "3", "--model", tiny_model_path)
    assert beyond.exit_code == 2 and "--hvq-effort" in beyond.output


def test_hvq_effort_reaches_every_compress_and_every_label(tiny_context_codec, dataset):
    """--hvq-effort 2: each quality's file is the codec's own at that effort, and the labels say so."""
    from hvq.evaluation.hvq_runs import curve_settings, parse_setting

    original = np.asarray(Image.open(dataset / "a.png"))
    rows = measure_hvq(tiny_context_codec, "a.png", original, qualities=(None, 40), perceptual=False, effort=2)
    swept = [m for m in rows if "quality" in m.setting]
    assert [m.setting for m in swept] == ["levels=16 quality=40 effort=2", "levels=8 quality=40 effort=2",
                                          "levels=4 quality=40 effort=2"]
    assert {m.setting for m in swept} <= set(curve_settings(tiny_context_codec.model.net, (None, 40), 2))
    assert parse_setting("levels=8 quality=40 effort=2") == ((8,), 40.0)
    whole = tiny_context_codec.compress(Image.fromarray(original), quality=40, effort=2)
    from hvq.bitstream.levels import strip

    finest = swept[-1]
    assert finest.bpp == pytest.approx(8 * len(strip(whole, [(4, None)], tiny_context_codec.model.prior))
                                       / (original.shape[0] * original.shape[1]))


def test_downscale_baselines_and_ssimulacra2_reach_every_output(bench, dataset, tiny_model_path, tmp_path):
    out = tmp_path / "down"
    result = bench(dataset, "--codecs", "hvq,avif-down2,webp-down4", "--sweep", "avif-down2=10,60",
                   "--sweep", "webp-down4=0,80", "--model", tiny_model_path, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    means = {(r["codec"], r["setting"]): r for r in _rows(out / "rd_mean.csv")}
    assert ("avif-down2", "quality=60") in means and ("webp-down4", "quality=0") in means
    assert all(float(r["ssimulacra2"]) <= 100 for r in means.values())  # scored for every codec
    document = json.loads((out / "rd.json").read_text())
    assert {c["anchor"] for c in document["bd"]} == {"avif-down2", "webp-down4"}
    assert {c["metric"] for c in document["bd"]} == {"psnr", "ms_ssim_db", "ssimulacra2"}
    best = document["against_best"]
    assert best and {b["setting"] for b in best} <= {"levels=16", "levels=8", "levels=4"}
    markdown = (out / "rd.md").read_text()
    assert "## hvq against the best alternative at its rate" in markdown and "| SSIMULACRA 2 |" in markdown
    assert (out / "rd_ssimulacra2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    skipped = bench(dataset, "--codecs", "webp-down4", "--sweep", "webp-down4=50", "-o", tmp_path / "none",
                    "--no-progress", "--no-ssimulacra2")
    assert skipped.exit_code == 0 and not (tmp_path / "none" / "rd_ssimulacra2.png").exists()
    assert _rows(tmp_path / "none" / "rd_mean.csv")[0]["ssimulacra2"] == ""


def test_hvq_runs_in_the_main_process_while_the_workers_code(dataset):
    """``meanwhile`` (hvq, in ``hvq bench``) runs once, before any worker result is collected; the rows are
    those of a run without it."""
    images = [BenchImage(dataset / "a.png", "a.png")]
    calls = []
    rows = run_classical(images, {"webp-down2": (50,)}, jobs=2, progress=False, ssimulacra2=False,
                         meanwhile=lambda: calls.append("hvq"))
    assert calls == ["hvq"] and [(m.codec, m.setting) for m in rows] == [("webp-down2", "quality=50")]
    alone = run_classical(images, {"webp-down2": (50,)}, jobs=1, progress=False, ssimulacra2=False,
                          meanwhile=lambda: calls.append("again"))
    assert calls == ["hvq", "again"] and alone[0].file_bytes == rows[0].file_bytes


def test_others_from_scores_a_new_model_against_an_earlier_runs_codecs(bench, dataset, tiny_model_path, tmp_path):
    """--others-from: the classical rows come back from rd.json unchanged; hvq is measured anew; the tables use both."""
    first = tmp_path / "first"
    result = bench(dataset, "--codecs", "hvq,jpeg", "--sweep", "jpeg=20,90", "--model", tiny_model_path,
                   "-o", first, "--no-progress")
    assert result.exit_code == 0, result.output
    again = tmp_path / "again"
    result = bench(dataset, "--codecs", "hvq", "--others-from", first / "rd.json", "--model", tiny_model_path,
                   "-o", again, "--no-progress")
    assert result.exit_code == 0, result.output
    before, after = (json.loads((d / "rd.json").read_text()) for d in (first, again))
    assert [r for r in after["per_image"] if r["codec"] == "jpeg"] == [r for r in before["per_image"] if r["codec"] == "jpeg"]
    assert [r for r in after["per_image"] if r["codec"] == "hvq"] == [r for r in before["per_image"] if r["codec"] == "hvq"]
    assert after["bd"] == before["bd"] and after["context"]["libraries"] == before["context"]["libraries"]
    # refusals: other images, a damaged file, options that contradict it
    (dataset / "d.png").write_bytes((dataset / "a.png").read_bytes())
    other = bench(dataset, "--codecs", "hvq", "--others-from", first / "rd.json", "-o", tmp_path / "x")
    assert other.exit_code == 1 and "measured other images than these (missing d.png)" in other.output
    assert len(other.output.strip().splitlines()) == 1
    (dataset / "d.png").unlink()
    broken = tmp_path / "broken.json"
    broken.write_text("{\"per_image\": 3}")
    damaged = bench(dataset, "--codecs", "hvq", "--others-from", broken, "-o", tmp_path / "x")
    assert damaged.exit_code == 1 and "not an hvq bench rd.json" in damaged.output
    no_hvq = bench(dataset, "--codecs", "jpeg", "--others-from", first / "rd.json", "-o", tmp_path / "x")
    assert no_hvq.exit_code == 2 and "needs hvq among --codecs" in no_hvq.output
    swept = bench(dataset, "--codecs", "hvq,jpeg", "--sweep", "jpeg=5", "--others-from", first / "rd.json")
    assert swept.exit_code == 2 and "settings are those of the earlier run" in swept.output
