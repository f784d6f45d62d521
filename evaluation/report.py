"""The run's results as text: JSON, CSV (per image and means) and markdown tables.

Everything returns a string; ``cli/bench.py`` writes the files (atomically).
JSON holds NaN and infinity as null, since JSON has no such numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field

from hvq.evaluation.bjontegaard import METHOD, MIN_OVERLAP, UNITS, BDResult
from hvq.evaluation.envelope import HeadToHead
from hvq.evaluation.records import Measurement, SettingMean
from hvq.evaluation.speed import Machine, SpeedResult

METRIC_NAMES = {"psnr": "PSNR", "ms_ssim_db": "MS-SSIM (dB)", "ssimulacra2": "SSIMULACRA 2"}


@dataclass(frozen=True)
class RunContext:
    """What the numbers depend on besides the codecs' settings."""

    dataset: str
    images: int
    machine: Machine
    libraries: dict[str, str]
    hvq_model: str | None  # the model's fingerprint, None when hvq was not run
    hvq_curve: tuple[str, ...]  # the hvq settings BD uses
    torch_threads: int
    jobs: int
    published: tuple[str, ...] = field(default_factory=tuple)  # result files of the published curves drawn
    ssimulacra2: bool = True  # whether SSIMULACRA 2 was scored
    hvq_qualities: tuple = (None,)  # the ``quality=`` values hvq was swept over (None: its default)
    hvq_effort: int | None = None  # rate control's effort at those qualities (None: the codec's default)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _measurement_row(m: Measurement) -> dict:
    return {**asdict(m), "bpp": m.bpp}


def _head_to_head_row(h: HeadToHead) -> dict:
    return {"setting": h.setting, "bpp": h.bpp, "metric": h.metric, "hvq": h.hvq,
            "best_codec": h.best.codec if h.best else None, "best": h.best.quality if h.best else None,
            "delta": h.delta}


def rd_json(context: RunContext, measurements: list[Measurement], means: list[SettingMean],
            comparisons: list[BDResult], against_best: list[HeadToHead] = ()) -> str:
    document = {
        "context": asdict(context),
        "bd_method": {"interpolation": METHOD, "min_overlap": MIN_OVERLAP},
        "mean": [asdict(m) for m in means],
        "bd": [asdict(c) for c in comparisons],
        "against_best": [_head_to_head_row(h) for h in against_best],
        "per_image": [_measurement_row(m) for m in measurements],
    }
    return json.dumps(_finite_or_none(document), indent=1) + "\n"


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return buffer.getvalue()


def per_image_csv(measurements: list[Measurement]) -> str:
    return _csv([_measurement_row(m) for m in measurements])


def means_csv(means: list[SettingMean]) -> str:
    return _csv([asdict(m) for m in means])


def _number(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _context_lines(context: RunContext) -> list[str]:
    m = context.machine
    libraries = ", ".join(f"{k} {v}" for k, v in context.libraries.items())
    return [
        f"- Images: {context.images} from `{context.dataset}`.",
        f"- Machine: {m.cpu}, {m.logical_cpus} logical CPUs ({m.usable_cpus} usable), {m.platform}, "
        f"Python {m.python}; torch threads {context.torch_threads}; {context.jobs} worker process(es).",
        f"- Libraries: {libraries}.",
    ] + ([f"- hvq model: fingerprint `{context.hvq_model}`."] if context.hvq_model else [])


def _against_best_lines(against_best: list[HeadToHead]) -> list[str]:
    lines = [
        "",
        "## hvq against the best alternative at its rate",
        "",
        "For each point of hvq's curve, the best any other measured codec (downscale + codec baselines "
        "included) reaches at the same bpp, interpolated linearly in log(bpp) between its points, never "
        "extrapolated. Delta > 0: hvq is the better choice at that rate.",
        "",
        "| metric | hvq point | bpp | hvq | best alternative | its quality | delta |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in against_best:
        unit = UNITS[h.metric]
        best = h.best.codec if h.best else "none covers this rate"
        value = f"{h.best.quality:.2f}" if h.best else ""
        delta = f"{h.delta:+.2f} {unit}" if h.best else ""
        lines.append(f"| {METRIC_NAMES[h.metric]} | {h.setting} | {h.bpp:.4f} | {h.hvq:.2f} | {best} | {value} "
                     f"| {delta} |")
    return lines


def rd_markdown(context: RunContext, means: list[SettingMean], comparisons: list[BDResult],
                against_best: list[HeadToHead] = ()) -> str:
    lines = [
        f"# Rate-distortion: {context.dataset}",
        "",
        *_context_lines(context),
        "- bpp is the real encoded file's size (bytes x 8 / pixels); PSNR over RGB, 8-bit; MS-SSIM by "
        "pytorch-msssim on RGB (data range 255; n/a for images of 160 px or less a side); every column "
        "is a mean over images (MS-SSIM in dB: per image, then the mean). Every image is decoded from "
        "the encoded bytes.",
        "- SSIMULACRA 2: libjxl's perceptual metric (100: identical; 90 visually lossless, 70 high, 50 medium, "
        "30 low, 10 very low quality), computed by `hvq.evaluation.ssimulacra` on RGB, no learned weights"
        + ("." if context.ssimulacra2 else "; not scored in this run (`--no-ssimulacra2`)."),
        "- `avif-down4` and the like: the image shrunk to 1/4 of each side (Pillow, Lanczos), coded, decoded and "
        "upscaled back (bicubic) before scoring; bpp is the small file over the full-size pixel count.",
        "- hvq: one file per image with all levels; `levels=16,8` is that file stripped to those "
        "levels (rate: the whole stripped file; picture: its finest level)"
        + (f"; each level alone at quality {', '.join('default' if q is None else f'{q:g}' for q in context.hvq_qualities)}"
           + ("" if context.hvq_effort is None else f", effort {context.hvq_effort}") + "."
           if tuple(context.hvq_qualities) != (None,) else "."),
        "",
        "## Means per codec and setting",
        "",
        "| codec | setting | images | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) | SSIMULACRA 2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in means:
        lines.append(f"| {m.codec} | {m.setting} | {m.images} | {m.bpp:.4f} | {_number(m.psnr, 2)} "
                     f"| {_number(m.ms_ssim, 4)} | {_number(m.ms_ssim_db, 2)} | {_number(m.ssimulacra2, 2)} |")
    if against_best:
        lines += _against_best_lines(against_best)
    if comparisons:
        lines += [
            "",
            "## Bjøntegaard deltas of hvq against each codec",
            "",
            f"hvq's curve is the envelope of its levels, each stored with the least it needs: alone, or with the "
            "coarser levels a top-down decoder reads, one file per depth where a level has several "
            f"({', '.join(context.hvq_curve)}); the "
            "subsets of levels are left out. "
            f"Interpolation: {METHOD} (piecewise cubic Hermite, as in the HEVC/VVC test conditions: with three "
            "points a single cubic is under-determined and overshoots), by the `bjontegaard` package. "
            "Each delta averages only over the range both curves cover (BD-rate: the quality range; "
            "BD-quality: the log-rate range), shown beside it; where that overlap is empty or under "
            f"{MIN_OVERLAP:.0%} of the narrower curve's span there is no number, only both ranges. "
            "BD-rate < 0: hvq needs fewer bits for the same quality; BD-quality > 0: hvq is better at the "
            "same rate.",
            "",
            "| against | metric | BD-rate | over quality | BD-quality | over rate |",
            "|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            unit = UNITS[c.metric]
            rate = f"{c.bd_rate:+.1f}%" if c.bd_rate is not None else c.rate_note
            over_quality = f"{c.quality_range[0]:.2f}–{c.quality_range[1]:.2f} {unit}" if c.quality_range else ""
            quality = f"{c.bd_quality:+.2f} {unit}" if c.bd_quality is not None else c.quality_note
            over_rate = f"{c.bpp_range[0]:.3f}–{c.bpp_range[1]:.3f} bpp" if c.bpp_range else ""
            lines.append(f"| {c.anchor} | {METRIC_NAMES[c.metric]} | {rate} | {over_quality} | {quality} "
                         f"| {over_rate} |")
        if context.published:
            lines += ["", "Published curves (CompressAI, measured by its authors on the 24 Kodak images, MSE-trained "
                      "models, 8-bit reconstructions) compare only with a run on Kodak: "
                      + ", ".join(f"`{p}`" for p in context.published) + "."]
    return "\n".join(lines) + "\n"


def speed_json(machine: Machine, repeats: int, results: list[SpeedResult]) -> str:
    document = {"machine": asdict(machine), "repeats": repeats, "results": [asdict(r) for r in results]}
    return json.dumps(_finite_or_none(document), indent=1) + "\n"


def speed_markdown(dataset: str, machine: Machine, repeats: int, results: list[SpeedResult]) -> str:
    methods = sorted({r.memory_method for r in results})
    lines = [
        f"# Speed and memory: {dataset}",
        "",
        f"- Machine: {machine.cpu}, {machine.logical_cpus} logical CPUs ({machine.usable_cpus} usable), "
        f"{machine.platform}, Python {machine.python}. Timings on a shared or busy machine are not comparable.",
        f"- Time: per image, the median of {repeats} run(s) of each operation (format conversions included); "
        "the table gives the mean of those medians over images, and megapixels per second over all images. "
        "Codecs run one after another, each in a fresh child process.",
        f"- Peak memory: {'; '.join(methods)}, over all of a codec's encodes and decodes; resident memory, "
        "native libraries included; the imports, the model and the images are in the baseline, not in the peak.",
        "- hvq: one encode makes all levels; each level is decoded from the file that shows it (the level alone, or with the coarser levels a top-down model reads).",
        "- The CompressAI reference (bmshj2018-hyperprior, N=128, M=192) has **random weights**: only its "
        "time and memory mean anything.",
        "- Threads: what each codec ran with. torch (hvq, CompressAI), libavif and libjxl take a thread count; "
        "Pillow runs libjpeg-turbo, libwebp and OpenJPEG on one thread.",
        "",
        "| codec | setting | operation | images | s / image | MP/s | peak (MiB) | threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peak = "n/a" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        for op in r.operations:
            lines.append(f"| {r.codec} | {r.setting} | {op.operation} | {r.images} | {op.seconds_per_image:.3f} "
                         f"| {op.megapixels_per_second:.2f} | {peak} | {r.threads} |")
    return "\n".join(lines) + "\n"
