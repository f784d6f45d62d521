"""Seed 002's ablation: what the hierarchy, the DownSample block and the shared codebook each buy.

Trains every variant below on the same budget (steps, batch, crops, learning
rate schedule, seed, and ``../shared/datasets/train``; never Kodak) with
``hvq.codec.train.loop.train``, then scores each level on Kodak with
``hvq.codec.train.validation.validate`` and writes seed 002's two tables:

- **Table 1**: single-level VQ-VAEs at 1/4, 1/8 and 1/16 against the joint
  hierarchical model with each DownSample block (sub-sampling, average pool,
  strided conv, residual pooling = conv + average pool, hvq's own);
- **Table 2**: the hierarchical model with one codebook shared by all levels
  (hvq's) against one codebook per level, with each level's codebook usage
  and the share of the codebook that every level uses.

Every variant is a ``ModelConfig`` of the codec itself (``factors``,
``downsample``, ``shared_codebook``), so what is measured is what hvq would
ship.  A run is resumable: each variant trains in ``RUNS/<name>/`` (its
checkpoint resumes where it stopped) and its scores land in
``OUT/variants/<name>.json`` (a variant with scores is skipped), so running
the same command again finishes an interrupted study and re-renders
``OUT/ablation.json`` and ``OUT/ablation.md``.

    python -m hvq.benchmarks.ablation --full -o benchmarks/results/ablation --jobs 2
    python -m hvq.benchmarks.ablation --quick -o /tmp/ablation   # CI: under 2 min, tiny crops
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from hvq.cli.output import write_atomic
from hvq.codec.model.config import ModelConfig
from hvq.codec.train.data import list_images
from hvq.codec.train.config import CHECKPOINT, CONFIG, METRICS, TrainConfig
from hvq.codec.train.loop import load_training_state, train
from hvq.codec.train.validation import load_validation_images, validate

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HVQ_SHARED", REPO.parent / "shared"))
LEVELS = (4, 8, 16)


@dataclass(frozen=True)
class Variant:
    """One model of the study: which levels it codes, how it halves grids, and its codebooks."""

    name: str  # folder and JSON key
    label: str  # row of the tables
    factors: tuple[int, ...]
    downsample: str = "residual"
    shared_codebook: bool = True


# Hierarchical variants first: they cost most, so two parallel jobs end together.
VARIANTS = (
    Variant("hier-residual", "hierarchical, residual pooling (hvq)", LEVELS),
    Variant("hier-residual-separate", "hierarchical, residual pooling, one codebook per level", LEVELS,
            shared_codebook=False),
    Variant("hier-conv", "hierarchical, strided conv", LEVELS, downsample="conv"),
    Variant("hier-avgpool", "hierarchical, average pool", LEVELS, downsample="avgpool"),
    Variant("hier-subsample", "hierarchical, sub-sampling", LEVELS, downsample="subsample"),
    Variant("single-4", "single level, 1/4", (4,)),
    Variant("single-8", "single level, 1/8", (8,)),
    Variant("single-16", "single level, 1/16", (16,)),
)
TABLE1 = ("single-4", "single-8", "single-16", "hier-subsample", "hier-avgpool", "hier-conv", "hier-residual")
TABLE2 = ("hier-residual", "hier-residual-separate")


@dataclass(frozen=True)
class Preset:
    """The budget every variant gets, and what it is scored on."""

    model: ModelConfig  # widths and codebook; the variant sets factors, downsample and codebooks
    crop: int
    batch_size: int
    steps: int
    warmup_steps: int
    lr: float
    log_every: int
    checkpoint_every: int
    eval_images: int  # the first N images of the evaluation folder; 0 = all
    eval_side: int | None  # centre-crop evaluation images to this side (None: whole images)
    train_images: int  # the first N training images, centre-cropped to train_side (0 = the folder as is)
    train_side: int = 0


PRESETS = {
    # A smaller model than the shipped one (codebook 256 x 32, about 2/3 of its
    # widths) and a seventh of its training crops, so that all eight variants
    # train on a shared 2-core CPU in about an hour; the same budget for each.
    "full": Preset(
        model=ModelConfig(
            codebook_size=256,
            code_dim=32,
            encoder_channels=(32, 64),
            decoder_channels=((16, 64), (8, 64), (4, 64), (2, 32), (1, 16)),
        ),
        crop=64, batch_size=8, steps=1500, warmup_steps=100, lr=1.5e-3, log_every=50, checkpoint_every=100,
        eval_images=0, eval_side=None, train_images=0,
    ),
    # CI: shows that the study runs and renders, nothing about the variants.
    "quick": Preset(
        model=ModelConfig(
            codebook_size=32,
            code_dim=8,
            encoder_channels=(8, 16),
            decoder_channels=((16, 16), (8, 16), (4, 16), (2, 8), (1, 8)),
        ),
        crop=32, batch_size=4, steps=6, warmup_steps=2, lr=1.5e-3, log_every=2, checkpoint_every=3,
        eval_images=3, eval_side=176, train_images=8, train_side=96,  # 176 px: MS-SSIM's five scales fit
    ),
}


def train_config(preset: Preset, variant: Variant, data: Path, threads: int, seed: int = 0) -> TrainConfig:
    """The run of one variant: the preset's budget, the variant's model."""
    model = replace(preset.model, factors=variant.factors, downsample=variant.downsample,
                    shared_codebook=variant.shared_codebook)
    return TrainConfig(
        data=(str(data),), model=model, crop=preset.crop, batch_size=preset.batch_size, steps=preset.steps,
        lr=preset.lr, warmup_steps=preset.warmup_steps, seed=seed, threads=threads, workers=0,
        log_every=preset.log_every, checkpoint_every=preset.checkpoint_every,
    )


def synthetic_image(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth random colour field with a little noise: something to fit when ../shared is missing."""
    y, x = np.mgrid[0:side, 0:side] / side
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 4, 2).tolist() + [rng.uniform(0, 2 * math.pi)]
        channels.append(0.5 + 0.4 * np.sin(2 * math.pi * (fx * x + fy * y) + phase))
    rgb = np.stack(channels, axis=-1) + rng.normal(0, 0.03, (side, side, 3))
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[top : top + side, left : left + side]


def prepare_study(preset, out: Path, runs: Path, train_data: Path | None, eval_data: Path | None):
    """A study's folders, made, and its data: (out, runs, training folder, scoring folder).

    The data default to ``../shared``'s training images and Kodak (``SHARED``,
    looked up at call time: tests point it elsewhere); a preset that scores on
    Kodak is refused without them.  Shared by the ablation and the design study.
    """
    out, runs = out.resolve(), runs.resolve()
    train_data = train_data or _existing(SHARED / "datasets" / "train")
    eval_data = eval_data or _existing(SHARED / "datasets" / "kodak")
    if preset.train_images == 0 and eval_data is None:
        raise click.UsageError("this preset scores on Kodak: pass --eval-data (or provide ../shared)")
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    return out, runs, training_folder(preset, train_data, runs), eval_data


def training_folder(preset: Preset, data: Path | None, runs: Path) -> Path:
    """The folder to train on: ``data`` as is, or (for small presets) a few centre crops of it written under ``runs``.

    Without ``data`` (no ../shared), synthetic images stand in.
    """
    if preset.train_images == 0:
        if data is None:
            raise click.UsageError("this preset trains on real images: pass --train-data (or provide ../shared)")
        return data
    folder = runs / "train-images"
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        for i, path in enumerate(list_images([str(data)])[: preset.train_images]):
            with Image.open(path) as im:
                pixels = centre_crop(np.asarray(im.convert("RGB")), preset.train_side)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    else:
        rng = np.random.default_rng(0)
        for i in range(preset.train_images):
            Image.fromarray(synthetic_image(rng, preset.train_side)).save(folder / f"{i:03d}.png")
    return folder


def evaluation_images(preset: Preset, folder: Path | None) -> list:
    """The scoring images as (1, 3, H, W) tensors in [0, 1]: the folder's (the first few, centre-cropped
    when the preset says so), or synthetic ones when there is no folder."""
    if folder is None:
        rng = np.random.default_rng(1)
        side, count = preset.eval_side or 256, preset.eval_images or 3
        return [torch.from_numpy(synthetic_image(rng, side)).permute(2, 0, 1)[None].float() / 255 for _ in range(count)]
    images = load_validation_images(str(folder), preset.eval_images)
    if preset.eval_side:
        side = preset.eval_side
        images = [centre_crop(x.permute(0, 2, 3, 1)[0], side).permute(2, 0, 1)[None].contiguous() for x in images]
    return images


def run_variant(variant: Variant, preset_name: str, data: Path, eval_folder: Path | None, runs: Path, out: Path,
                threads: int, seed: int = 0) -> dict:
    """Train one variant (resuming its checkpoint), score it, and write ``OUT/variants/<name>.json``.

    Runs in a worker process when jobs > 1, so it takes names and paths, not tensors.
    """
    preset = PRESETS[preset_name]
    config = train_config(preset, variant, data, threads, seed)
    run_dir = runs / variant.name
    checkpoint = run_dir / CHECKPOINT
    resumed_from = int(load_training_state(checkpoint)["step"]) if checkpoint.exists() else 0

    def progress(kind: str, record) -> None:  # a StepRecord: the run validates nothing itself
        psnr = " / ".join(f"{record.level(f).psnr:.2f}" for f in variant.factors)
        print(f"{variant.name}: step {record.step}/{config.steps}, {record.time_s:.0f} s, "
              f"loss {record.loss:.4f}, PSNR {psnr} dB (levels {variant.factors})", flush=True)

    started = time.time()
    model = train(config, run_dir, resume=True, progress=progress)
    train_s = time.time() - started
    # Index counts of every training batch of the run (no validation pass resets them): the
    # training-set usage, and the static prior that bits per index are measured against.
    counts = {int(f): c.numpy() for f, c in load_training_state(checkpoint)["val_counts"].items()}
    started = time.time()
    scores = validate(model, evaluation_images(preset, eval_folder), counts)
    eval_s = time.time() - started
    levels = {
        str(f): {
            "l1": scores.level(f).l1,
            "psnr": scores.level(f).psnr,
            "ms_ssim": scores.level(f).ms_ssim,
            "bits_per_index": scores.level(f).bits_per_index,
            "usage": scores.level(f).usage,
            "train_usage": scores.level(f).train_usage,
        }
        for f in variant.factors
    }
    shared = variant.shared_codebook and len(variant.factors) > 1
    result = {
        "variant": asdict(variant),
        "train_config": json.loads(config.to_json()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "resumed_from_step": resumed_from,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "levels": levels,
        # Across levels, usage means something only when the levels share one codebook.
        "usage_every_level": scores.usage_every if shared else None,
        "usage_any_level": scores.usage_all if shared else None,
    }
    write_atomic(out / "variants" / f"{variant.name}.json", json.dumps(result, indent=1).encode())
    logs = out / "logs" / variant.name
    logs.mkdir(parents=True, exist_ok=True)
    for name in (METRICS, CONFIG):
        shutil.copyfile(run_dir / name, logs / name)
    print(f"{variant.name}: done, train {train_s:.0f} s, eval {eval_s:.0f} s, PSNR "
          + " / ".join(f"{levels[str(f)]['psnr']:.2f}" for f in variant.factors) + " dB", flush=True)
    return result


def hardware(threads: int, jobs: int) -> dict:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads_per_variant": threads,
        "parallel_variants": jobs,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


# ---- rendering: the two tables and what they say ----

def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _level_cells(result: dict, factor: int) -> str:
    level = result["levels"].get(str(factor))
    if level is None:
        return " — | — | — |"
    return f" {_cell(255 * level['l1'], 2)} | {_cell(level['psnr'], 2)} | {_cell(level['ms_ssim'], 4)} |"


def table1(results: dict) -> str:
    head = "| model |" + "".join(f" L1 1/{f} | PSNR 1/{f} | MS-SSIM 1/{f} |" for f in LEVELS)
    lines = [head, "|---" * (1 + 3 * len(LEVELS)) + "|"]
    for name in TABLE1:
        if name in results:
            r = results[name]
            lines.append(f"| {r['variant']['label']} |" + "".join(_level_cells(r, f) for f in LEVELS))
    return "\n".join(lines)


def table2(results: dict) -> str:
    head = ("| model |" + "".join(f" L1 1/{f} | PSNR 1/{f} | MS-SSIM 1/{f} |" for f in LEVELS)
            + "".join(f" usage 1/{f} |" for f in LEVELS) + " used by every level | used by some level |")
    lines = [head, "|---" * (3 + 4 * len(LEVELS)) + "|"]
    for name in TABLE2:
        if name not in results:
            continue
        r = results[name]
        usage = "".join(f" {r['levels'][str(f)]['usage']:.1%} |" for f in LEVELS)
        if r["usage_every_level"] is None:
            across = " n/a (separate codebooks) | n/a (separate codebooks) |"
        else:
            across = f" {r['usage_every_level']:.1%} | {r['usage_any_level']:.1%} |"
        lines.append(f"| {r['variant']['label']} |" + "".join(_level_cells(r, f) for f in LEVELS) + usage + across)
    return "\n".join(lines)


def findings(results: dict) -> list[str]:
    """Sentences read off the numbers: the best DownSample per level, the hierarchy's cost, shared vs separate."""
    found = []
    downs = [n for n in ("hier-subsample", "hier-avgpool", "hier-conv", "hier-residual") if n in results]
    if downs:
        for f in LEVELS:
            ranked = sorted(downs, key=lambda n: -results[n]["levels"][str(f)]["psnr"])
            best, runner = ranked[0], ranked[1] if len(ranked) > 1 else None
            text = (f"Level 1/{f}: the best DownSample by PSNR is {results[best]['variant']['downsample']} "
                    f"({results[best]['levels'][str(f)]['psnr']:.2f} dB")
            if runner:
                gap = results[best]["levels"][str(f)]["psnr"] - results[runner]["levels"][str(f)]["psnr"]
                text += f", {gap:.2f} dB ahead of {results[runner]['variant']['downsample']}"
            by_l1 = min(downs, key=lambda n: results[n]["levels"][str(f)]["l1"])
            by_ssim = max(downs, key=lambda n: _nan_low(results[n]["levels"][str(f)]["ms_ssim"]))
            text += (f"); by L1 {results[by_l1]['variant']['downsample']}, "
                     f"by MS-SSIM {results[by_ssim]['variant']['downsample']}.")
            found.append(text)
    if "hier-residual" in results:
        hier = results["hier-residual"]["levels"]
        deltas = []
        for f in LEVELS:
            single = results.get(f"single-{f}")
            if single:
                delta = hier[str(f)]["psnr"] - single["levels"][str(f)]["psnr"]
                deltas.append(f"1/{f}: {delta:+.2f} dB")
        if deltas:
            found.append("The joint hierarchy (residual pooling, shared codebook) against a single-level model "
                         "at the same level, PSNR difference: " + ", ".join(deltas) + ".")
    if set(TABLE2) <= results.keys():
        shared, separate = (results[n]["levels"] for n in TABLE2)
        deltas = ", ".join(f"1/{f}: {shared[str(f)]['psnr'] - separate[str(f)]['psnr']:+.2f} dB" for f in LEVELS)
        usage = ", ".join(f"1/{f}: {shared[str(f)]['usage']:.1%} vs {separate[str(f)]['usage']:.1%}" for f in LEVELS)
        found.append(f"Shared codebook against one per level, PSNR difference: {deltas}; codebook usage "
                     f"(shared vs separate; a separate codebook is each level's own): {usage}.")
    return found


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def render(preset_name: str, results: dict, machine: dict, out: Path, seed: int, wall_s: float) -> str:
    preset = PRESETS[preset_name]
    budget = (f"{preset.steps} steps of batch {preset.batch_size} random {preset.crop} px crops "
              f"({preset.steps * preset.batch_size} crops), Adam, peak lr {preset.lr:g} after "
              f"{preset.warmup_steps} warm-up steps, cosine decay to 2%, MSE + 0.25 commitment per level, "
              f"seed {seed}; the same for every variant")
    model = preset.model
    lines = [
        f"# Ablation (seed 002's Tables 1 and 2), preset `{preset_name}`",
        "",
        f"- **Budget**: {budget}.",
        f"- **Model** (every variant): codebook {model.codebook_size} x {model.code_dim}, encoder widths "
        f"{model.encoder_channels}, decoder widths {dict(model.decoder_channels)}, EMA codebook with k-means "
        "init and dead-code restarts; the variant sets the coded levels, the DownSample block and the codebooks. "
        "Single-level models keep the encoder trunk and, above 1/4, the residual-pooling chain to their grid.",
        "- **Training data**: " + ("`../shared/datasets/train` (never Kodak)" if preset.train_images == 0 else
                                   f"{preset.train_images} training images centre-cropped to {preset.train_side} px"),
        "- **Scored on**: " + ("the 24 Kodak images, whole" if preset.eval_images == 0 else
                               f"{preset.eval_images} images centre-cropped to {preset.eval_side} px")
        + ", each level decoded alone and rounded to 8 bits. L1 is the mean absolute error in 8-bit levels "
        "(0-255); PSNR in dB on RGB; MS-SSIM by pytorch-msssim (5 scales, 11-px window). Codebook usage: the "
        "share of a codebook's codewords chosen at least once on the scoring images.",
        f"- **Hardware**: {machine['cpu']} ({machine['cpu_count']} cores, shared with other work), "
        f"{machine['platform']}, torch {machine['torch']}, {machine['torch_threads_per_variant']} torch thread(s) "
        f"per variant, {machine['parallel_variants']} variant(s) at a time; load average at start "
        f"{machine['load_average_at_start']}.",
        f"- **Wall clock** of the study: {wall_s / 60:.0f} min (training and scoring the variants below).",
        "",
        "## Table 1: single-level models against the hierarchy with each DownSample block",
        "",
        table1(results),
        "",
        "## Table 2: one shared codebook against one codebook per level",
        "",
        table2(results),
        "",
        "## Findings read off the tables",
        "",
        *[f"- {sentence}" for sentence in findings(results)],
        "",
        "## Time per variant",
        "",
        "| variant | parameters | train (s) | scoring (s) | bits/index per level (prior fitted on its training batches) |",
        "|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        if variant.name not in results:  # not scored yet, or not chosen (--only)
            continue
        r = results[variant.name]
        resumed = f" (resumed at step {r['resumed_from_step']})" if r["resumed_from_step"] else ""
        bits = ", ".join(f"1/{f}: {r['levels'][str(f)]['bits_per_index']:.2f}" for f in variant.factors)
        lines.append(f"| {variant.name} | {r['parameters']:,} | {r['train_s']:.0f}{resumed} | {r['eval_s']:.0f} | {bits} |")
    discussion = out / "discussion.md"
    if discussion.exists():  # the hand-written reading of the numbers, kept beside the generated tables
        lines += ["", discussion.read_text().strip()]
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="quick", show_default=True,
              help="quick: tiny model and crops, for CI; full: the study.")
@click.option("--quick", "preset_name", flag_value="quick", help="Same as --preset quick.")
@click.option("--full", "preset_name", flag_value="full", help="Same as --preset full.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for ablation.json, ablation.md, per-variant scores and training logs.")
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the variants' checkpoints  [default: runs/ablation-PRESET]")
@click.option("--train-data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Training images  [default: ../shared/datasets/train; quick: synthetic when missing]")
@click.option("--eval-data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Scoring images  [default: ../shared/datasets/kodak; quick: synthetic when missing]")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True, help="Variants trained at once.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Torch threads per variant.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of every variant's run (initial weights, crops); another seed measures run-to-run noise.")
@click.option("--only", multiple=True, type=click.Choice([v.name for v in VARIANTS]),
              help="Train only these variants (repeatable); the tables show every variant scored so far.")
def main(preset_name, out, runs, train_data, eval_data, jobs, threads, seed, only):
    """Train and score every variant of the ablation, resuming what an earlier run left, and render the tables."""
    preset = PRESETS[preset_name]
    runs = runs or REPO / "runs" / (f"ablation-{preset_name}" + (f"-seed{seed}" if seed else ""))
    out, runs, data, eval_data = prepare_study(preset, out, runs, train_data, eval_data)
    machine = hardware(threads, jobs)
    chosen = [v for v in VARIANTS if not only or v.name in only]
    todo = [v for v in chosen if not (out / "variants" / f"{v.name}.json").exists()]
    click.echo(f"ablation {preset_name}: {len(chosen) - len(todo)} variant(s) already scored, {len(todo)} to run",
               err=True)
    started = time.time()
    if jobs == 1:
        for variant in todo:
            run_variant(variant, preset_name, data, eval_data, runs, out, threads, seed)
    else:
        # spawn: a forked child would inherit torch's thread pools mid-state
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_variant, v, preset_name, data, eval_data, runs, out, threads, seed)
                       for v in todo]
            for future in futures:
                future.result()
    results = {}
    for variant in VARIANTS:
        path = out / "variants" / f"{variant.name}.json"
        if path.exists():
            results[variant.name] = json.loads(path.read_text())
    # The hardware and wall clock are those of the invocations that trained: one that
    # only re-renders (everything already scored) keeps what the earlier ones recorded.
    summary_path = out / "ablation.json"
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    wall_s = previous.get("wall_s", 0.0)
    if todo or not previous:
        wall_s += time.time() - started
    else:
        machine = previous["hardware"]
    summary = {
        "preset": preset_name,
        "seed": seed,
        "budget": {**{k: v for k, v in asdict(preset).items() if k != "model"},
                   "model": json.loads(preset.model.to_json())},
        "hardware": machine,
        "wall_s": round(wall_s, 1),  # summed over the invocations that trained something
        "variants": results,
        "findings": findings(results),
    }
    write_atomic(summary_path, json.dumps(summary, indent=1).encode())
    text = render(preset_name, results, machine, out, seed, wall_s)
    write_atomic(out / "ablation.md", text.encode())
    click.echo(text)


def _existing(path: Path) -> Path | None:
    return path if path.is_dir() else None


if __name__ == "__main__":
    main()
