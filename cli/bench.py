"""``hvq bench``: rate-distortion, BD deltas, speed and memory of hvq against classical codecs.

The measuring is ``hvq.evaluation``; this module reads the command
line, checks it before anything long starts, and writes the results.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import click

from hvq.bitstream.settings import EFFORTS
from hvq.cli.options import EXIT_CODES, force_option, model_option, output_option
from hvq.cli.output import terminate_as_interrupt, write_atomic

# hvq, the full-size codecs, then the downscale + codec baselines (evaluation.classical.CODECS, in order)
ALL_CODECS = ("hvq", "jpeg", "webp", "avif", "jpeg2000", "jpegxl",
              "avif-down2", "avif-down4", "avif-down8", "webp-down2", "webp-down4", "webp-down8")
RD_FILES = ("rd.json", "rd_per_image.csv", "rd_mean.csv", "rd.md", "rd_psnr.png", "rd_msssim.png",
            "rd_ssimulacra2.png")
SPEED_FILES = ("speed.json", "speed.md")

EPILOG = """\b
Writes to RESULTS_DIR: rd.json, rd_per_image.csv, rd_mean.csv, rd.md (means,
hvq against the best alternative at its rates, BD deltas of hvq against
each codec), rd_psnr.png, rd_msssim.png, rd_ssimulacra2.png; with --speed,
speed.json and speed.md.

""" + EXIT_CODES


class CodecList(click.ParamType):
    """A comma-separated list of codec names, e.g. hvq,jpeg,webp."""

    name = "CODECS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = tuple(dict.fromkeys(part.strip().lower() for part in str(value).split(",") if part.strip()))
        unknown = [n for n in names if n not in ALL_CODECS]
        if unknown or not names:
            self.fail(f"unknown codec {', '.join(unknown) or '(none given)'}; choose from {','.join(ALL_CODECS)}",
                      param, ctx)
        return names


class Sweep(click.ParamType):
    """CODEC=V1,V2,...: the values a classical codec's parameter takes instead of its default sweep."""

    name = "CODEC=VALUES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, _, values = str(value).partition("=")
        name = name.strip().lower()
        if name not in ALL_CODECS or name == "hvq":
            self.fail(f"{value!r}: {name or '(no codec)'} is not a classical codec "
                      f"({','.join(ALL_CODECS[1:])})", param, ctx)
        try:
            numbers = tuple(float(v) for v in values.split(",") if v.strip())
        except ValueError:
            numbers = ()
        if not numbers or not all(math.isfinite(v) and v >= 0 for v in numbers):
            self.fail(f"{value!r}: give numbers after '=', e.g. jpeg=10,50,90", param, ctx)
        return name, numbers


class Qualities(click.ParamType):
    """Q1,Q2,...: values 0-100 of hvq's quality setting."""

    name = "Q1,Q2,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(float(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            numbers = ()
        if not numbers or not all(0 <= v <= 100 for v in numbers):
            self.fail(f"{value!r}: give qualities from 0 to 100, e.g. 25,50,75", param, ctx)
        return tuple(dict.fromkeys(numbers))


def _check_output_dir(folder: Path, names: list[str], force: bool) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise click.ClickException(f"{folder}: cannot write results there ({exc.strerror or exc})")
    existing = [n for n in names if (folder / n).exists()]
    if existing and not force:
        raise click.ClickException(f"{folder / existing[0]}: exists (use --force to overwrite)")


@click.command(epilog=EPILOG)
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.option("--codecs", type=CodecList(), default=",".join(ALL_CODECS), show_default=True,
              help="Codecs to measure, comma-separated.")
@output_option("Folder for the results.", folder=True, dest="results_dir", default=Path("hvq-bench"),
               show_default=True, metavar="RESULTS_DIR")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes for the classical codecs (over images); hvq runs in the main process meanwhile.")
@model_option
@click.option("--anchors", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="compressai_kodak.json: draw published learned-codec curves and add their BD rows (Kodak only).")
@click.option("--sweep", "sweeps", type=Sweep(), multiple=True,
              help="Replace a classical codec's default sweep, e.g. --sweep jpeg=10,50,90 (repeatable).")
@click.option("--others-from", "others_from", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Take the other codecs' measurements from an earlier run's rd.json on the same images and "
                   "measure hvq alone (a new model against the committed baselines, in minutes, not hours).")
@click.option("--hvq-quality", "hvq_qualities", type=Qualities(), default=None,
              help="Sweep hvq's quality setting over these values (0-100), each level becoming a curve; "
                   "default: one point per level, at the codec's default.")
@click.option("--hvq-effort", type=click.IntRange(min(EFFORTS), max(EFFORTS)), default=None,
              help="Rate control's effort at every --hvq-quality: 1 (the codec's default) weighs latent "
                   "distance; 2 also pixel error, for smaller files at 20-75x the encode time.")
@click.option("--ssimulacra2/--no-ssimulacra2", "perceptual", default=True, show_default=True,
              help="Score SSIMULACRA 2 too (about 0.3 s per image and setting at 768 x 512).")
@click.option("--rd/--no-rd", default=True, show_default=True, help="Measure rate and distortion.")
@click.option("--speed/--no-speed", default=False, show_default=True,
              help="Measure encode/decode time and peak memory (one child process per codec, serially).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per image and operation for --speed; the median is kept.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for hvq and the CompressAI reference (torch), AVIF and JPEG XL (default: each "
                   "library's choice; JPEG, WebP and JPEG 2000 run on one).")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@force_option
def bench(dataset_dir, codecs, results_dir, jobs, model_path, anchors, sweeps, others_from, hvq_qualities, hvq_effort,
          perceptual, rd, speed, repeats, threads, progress, force):
    """Measure hvq and classical codecs on the images under DATASET_DIR.

    For each image and setting: bpp from the encoded file's real size, PSNR,
    MS-SSIM and MS-SSIM in dB, scored on the image decoded from those bytes.
    hvq runs each level with the least it needs (alone, or with the coarser
    levels a top-down model reads; one file per refinement depth) and every
    subset of levels it can decode; JPEG, WebP, AVIF,
    JPEG 2000 and JPEG XL sweep their quality parameter over the settings of
    hvq's measured Kodak anchors (or --sweep), and so do the "downscale +
    codec" baselines (avif-down4: shrunk to 1/4 of each side, AVIF, upscaled
    back).  SSIMULACRA 2 is scored beside PSNR and MS-SSIM.  Results are JSON
    and CSV per image and averaged, RD plots, and markdown tables: hvq against
    the best other codec at its rates, and hvq's BD-rate and BD-PSNR against
    each codec where their ranges overlap.
    """
    from hvq.bitstream.errors import HvqDataError, HvqError
    from hvq.evaluation.classical import CODECS, unavailable

    sweep_values = {name: CODECS[name].sweep for name in codecs if name != "hvq"}
    for name, values in sweeps:
        if name not in codecs:
            raise click.BadParameter(f"{name} is not among --codecs", param_hint="--sweep")
        sweep_values[name] = values
    if not rd and not speed:
        raise click.BadParameter("nothing to do: --no-rd without --speed", param_hint="--rd")
    if others_from is not None:
        if "hvq" not in codecs or not rd:
            raise click.BadParameter("needs hvq among --codecs and --rd", param_hint="--others-from")
        if sweeps:
            raise click.BadParameter("the other codecs' settings are those of the earlier run", param_hint="--sweep")
        sweep_values = {}  # their rows come from the earlier run
    if not dataset_dir.is_dir():
        raise click.ClickException(f"{dataset_dir}: no such folder")
    from hvq.evaluation.sweep import check_readable, find_images

    try:
        images = find_images(dataset_dir)
    except HvqDataError:
        raise click.ClickException(f"{dataset_dir}: no image files under it")
    try:
        check_readable(images)
    except HvqError as exc:  # names the file
        raise click.ClickException(str(exc))
    reused = None
    if others_from is not None:
        from hvq.evaluation.reuse import read_others

        try:
            reused = read_others(others_from, images, perceptual)
        except HvqError as exc:
            raise click.ClickException(str(exc))
    for name in sweep_values:
        reason = unavailable(name)
        if reason:
            raise click.ClickException(f"{name}: {reason}")
    from importlib.util import find_spec  # the bench extra is optional: say so in one line, not a traceback

    needed = (["bjontegaard"] if rd and "hvq" in codecs else []) + (["compressai"] if speed else [])
    missing = [m for m in needed if find_spec(m) is None]
    if missing:
        raise click.ClickException(f"{', '.join(missing)} is not installed: pip install 'hvq[bench]'")
    _check_output_dir(results_dir, list(RD_FILES if rd else ()) + list(SPEED_FILES if speed else ()), force)
    published = []
    if anchors is not None:
        from hvq.evaluation.anchors import load_published

        try:
            published = load_published(anchors)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{anchors}: {getattr(exc, 'strerror', None) or exc}")
    codec = None
    if "hvq" in codecs:
        import torch

        from hvq.codec.runtime.pipeline import Codec

        if threads:
            torch.set_num_threads(threads)
        try:
            codec = Codec.for_model(model_path)
        except HvqError as exc:
            raise click.ClickException(f"{model_path or 'model'}: {exc}")
    if hvq_qualities is not None:
        from hvq.evaluation.hvq_runs import takes_quality

        if codec is None:
            raise click.BadParameter("hvq is not among --codecs", param_hint="--hvq-quality")
        if not takes_quality(codec):
            raise click.ClickException("--hvq-quality: this hvq's compress has no quality setting")
    if hvq_effort is not None:
        from hvq.evaluation.hvq_runs import takes_effort

        if hvq_qualities is None:
            raise click.BadParameter("needs --hvq-quality (an effort says how rate control reaches a quality)",
                                     param_hint="--hvq-effort")
        if not takes_effort(codec):
            raise click.ClickException("--hvq-effort: this hvq's compress has no effort setting")

    with terminate_as_interrupt():
        if rd:
            _rate_distortion(dataset_dir, images, sweep_values, codec, hvq_qualities or (None,), perceptual,
                             published, jobs, results_dir, progress, reused, hvq_effort)
        if speed:
            _speed(dataset_dir, images, codecs, sweep_values, model_path, repeats, threads, results_dir, progress)


def _rate_distortion(dataset_dir, images, sweep_values, codec, hvq_qualities, perceptual, published, jobs,
                     results_dir, progress, reused=None, hvq_effort=None):
    import torch

    from hvq.evaluation import report
    from hvq.evaluation.bjontegaard import hvq_against_each
    from hvq.evaluation.classical import library_versions
    from hvq.evaluation.envelope import hvq_against_best
    from hvq.evaluation.hvq_runs import curve_settings
    from hvq.evaluation.plots import rd_figure
    from hvq.evaluation.records import mean_by_setting
    from hvq.evaluation.speed import describe_machine
    from hvq.evaluation.sweep import run_classical, run_hvq

    hvq_rows = []

    def run_hvq_meanwhile():  # in this process, while the workers code the classical codecs
        hvq_rows.extend(run_hvq(images, codec, progress, hvq_qualities, perceptual, hvq_effort))

    classical_rows = run_classical(images, sweep_values, jobs, progress, perceptual,
                                   meanwhile=run_hvq_meanwhile if codec is not None else None)
    measurements = hvq_rows + classical_rows + (reused.measurements if reused else [])
    means = mean_by_setting(measurements)
    hvq_curve = curve_settings(codec.model.net, hvq_qualities, hvq_effort) if codec is not None else []
    comparisons = hvq_against_each(means, hvq_curve, published) if codec is not None else []
    metrics = ("psnr", "ms_ssim_db") + (("ssimulacra2",) if perceptual else ())
    against_best = hvq_against_best(means, hvq_curve, metrics) if codec is not None else []
    context = report.RunContext(
        dataset=str(dataset_dir),
        images=len(images),
        machine=describe_machine(),
        libraries=reused.libraries if reused else library_versions(),
        hvq_model=codec.model.fingerprint_hex if codec is not None else None,
        hvq_curve=tuple(hvq_curve),
        torch_threads=torch.get_num_threads(),
        jobs=jobs,
        published=tuple(p.source for p in published),
        ssimulacra2=perceptual,
        hvq_qualities=tuple(hvq_qualities),
        hvq_effort=hvq_effort,
    )
    title = f"{dataset_dir.name}: {len(images)} images"
    outputs = {
        "rd.json": report.rd_json(context, measurements, means, comparisons, against_best),
        "rd_per_image.csv": report.per_image_csv(measurements),
        "rd_mean.csv": report.means_csv(means),
        "rd.md": report.rd_markdown(context, means, comparisons, against_best),
        "rd_psnr.png": rd_figure(means, "psnr", hvq_curve, title, published),
        "rd_msssim.png": rd_figure(means, "ms_ssim_db", hvq_curve, title, published),
    }
    if perceptual:
        outputs["rd_ssimulacra2.png"] = rd_figure(means, "ssimulacra2", hvq_curve, title)
    for name, content in outputs.items():
        write_atomic(results_dir / name, content.encode() if isinstance(content, str) else content)
    click.echo(f"rate-distortion: {len(measurements)} measurements of {len(images)} images -> "
               f"{results_dir / 'rd.md'} (and {len(outputs) - 1} more files)")


def _speed(dataset_dir, images, codecs, sweep_values, model_path, repeats, threads, results_dir, progress):
    from hvq.evaluation import report
    from hvq.evaluation.speed import COMPRESSAI_REFERENCE, SpeedJob, describe_machine, run_speed

    from hvq.evaluation.classical import DOWNSCALED

    paths = tuple(image.path for image in images)
    jobs = []
    for name in codecs:
        if name in DOWNSCALED:
            continue  # its base codec's speed on 1/factor**2 of the pixels, plus two resizes
        if name == "hvq":
            jobs.append(SpeedJob("hvq", None, paths, repeats, threads, str(model_path) if model_path else None))
        else:
            values = sorted(sweep_values[name])
            jobs.append(SpeedJob(name, values[len(values) // 2], paths, repeats, threads))  # the sweep's middle
    jobs.append(SpeedJob(COMPRESSAI_REFERENCE, None, paths, repeats, threads))
    results = run_speed(jobs, progress)
    machine = describe_machine()
    write_atomic(results_dir / "speed.json", report.speed_json(machine, repeats, results).encode())
    write_atomic(results_dir / "speed.md", report.speed_markdown(str(dataset_dir), machine, repeats, results).encode())
    click.echo(f"speed: {len(results)} codecs on {len(images)} images -> {results_dir / 'speed.md'}")
