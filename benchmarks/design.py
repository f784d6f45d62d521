"""The design study for model v2 (issue 12): candidate designs at equal compute, scored through the product.

Every candidate is a ``ModelConfig`` / ``TrainConfig`` of the codec itself
(options of one behaviour each), trained on the same data with the same seed
and the same **budget of process CPU time on one thread** (not wall clock:
the machine is shared, and CPU time is what the other jobs cannot steal).
To keep each candidate's cosine learning-rate schedule complete, a short
timing probe (a few training steps of the candidate on the real data, not
counted) measures its CPU seconds per step, and its run gets
``budget / seconds per step`` steps; the plan is written to
``RUNS/<name>/plan.json`` once, so a resumed run keeps its step count.
Steps, CPU time and wall time of the run are recorded beside its scores.

Scoring goes through the product, as a user would see it:

1. ``hvq.codec.fit.export.export_checkpoint`` fits the static and context
   priors on the same fixed subset of training images for every candidate
   (the first ``fit_images``), and writes a ``.safetensors`` model;
2. ``hvq.codec.runtime.pipeline.Codec`` compresses every Kodak image at each
   level alone and decompresses it: real file bits per pixel, bits per
   index of the level's payload, PSNR on RGB, MS-SSIM and SSIMULACRA 2;
3. codebook usage per level, and the share used by every level, on the
   fitting images (training images, never Kodak).

A top-down candidate decodes level f from a file holding f and every coarser
level, so its rate is that whole file's; each other level decodes alone.
Single-level candidates are compared with the baseline hierarchy at equal
rate (the baseline's PSNR interpolated in log-rate to their bpp).

The study is resumable and can be extended: a candidate with a scores file
(``OUT/candidates/<name>.json``) is skipped, one with a checkpoint resumes,
and a lock file (``RUNS/<name>/lock``, holding the runner's pid) keeps two
runners off the same candidate, so a second runner may be started for new
candidates while the first still runs.  Every invocation re-renders
``OUT/design.json`` and ``OUT/design.md`` from the scores present.

    python -m hvq.benchmarks.design --full -o benchmarks/results/design --runs /work/design-runs --jobs 2
    python -m hvq.benchmarks.design --quick -o /tmp/design   # CI: seconds, tiny model and images
"""

from __future__ import annotations

import json
import math
import os
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

from hvq.benchmarks.ablation import centre_crop, hardware, prepare_study, synthetic_image
from hvq.cli.output import write_atomic
from hvq.codec.fit.context_prior import ContextFitConfig
from hvq.codec.fit.export import export_checkpoint
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.train.config import CHECKPOINT, CONFIG, METRICS, TrainConfig
from hvq.codec.train.data import CropSampler, list_images, read_image
from hvq.codec.train.loop import load_training_state, step_seed, train
from hvq.codec.train.objective import objective

LEVELS = (4, 8, 16)


@dataclass(frozen=True)
class Candidate:
    """One design of the study: the options it changes from the preset's model and training run."""

    name: str  # folder and JSON key
    label: str  # row of the tables
    question: str  # what it tests (issue 12)
    model: tuple[tuple[str, object], ...] = ()  # ModelConfig fields to override
    train: tuple[tuple[str, object], ...] = ()  # TrainConfig fields to override


def _options(**values) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(values.items()))


# In order of what a partial study should have told first (issue 12's list).
CANDIDATES = (
    Candidate("baseline", "today's design (per-level heads, pooled EMA)", "the baseline"),
    Candidate("sharing", "seed-faithful sharing: one head at 1/4, chain pools the code-space latent",
              "does sharing the code space (seed 002) keep all levels in one codebook, and at what rate?",
              model=_options(level_heads=False)),
    Candidate("balanced", "level-balanced EMA + starved-level restarts + cosine lookup",
              "does balancing the codebook's updates per level keep the coarse levels from starving?",
              model=_options(codebook_balance="level", lookup="cosine")),
    Candidate("crop128", "128 px crops (batch 2: the same pixels per step)",
              "do larger crops (more context per crop) beat more crops?",
              train=_options(crop=128, batch_size=2)),
    Candidate("msssim", "MSE + 0.05 (1 - MS-SSIM) per level",
              "does a structural loss term buy MS-SSIM / SSIMULACRA 2 at little PSNR?",
              train=_options(ms_ssim_weight=0.05)),
    Candidate("decoder-coarse", "decoder: 3 residual blocks and 96 channels at each level's own grid",
              "is decoder capacity on the coarse grids (16-256x cheaper per pixel) worth its CPU?",
              model=_options(decoder_blocks=3, decoder_channels=((16, 96), (8, 96), (4, 96), (2, 32), (1, 16)))),
    Candidate("decoder-coarse-tail", "decoder as decoder-coarse, plus one 1/4-to-image tail shared by all levels",
              "does sharing the full-resolution stages across levels help?",
              model=_options(decoder_blocks=3, shared_tail=True,
                             decoder_channels=((16, 96), (8, 96), (4, 96), (2, 32), (1, 16)))),
    Candidate("lowdim-l2", "low-dimensional lookup: code dimension 16, l2-normalised",
              "does a low-dimensional, normalised code space (ViT-VQGAN) use the codebook better?",
              model=_options(code_dim=16, lookup="cosine")),
    Candidate("sq", "stochastic quantisation in training (SQ-VAE), nearest codeword at inference",
              "does sampling indices in training prevent the collapse?",
              model=_options(stochastic_quantisation=True)),
    Candidate("topdown", "VQ-VAE-2 top-down decoding: a level's decoder also reads the coarser codes",
              "do the coarser codes stored in the file help the finer levels?",
              model=_options(topdown=True)),
    Candidate("single-4-4096", "single level at 1/4, codebook 4096",
              "seed 000: is one level with a large codebook better than the hierarchy at its rate?",
              model=_options(factors=(4,), codebook_size=4096)),
    Candidate("single-8-4096", "single level at 1/8, codebook 4096",
              "seed 000, at 1/8", model=_options(factors=(8,), codebook_size=4096)),
    Candidate("sharing-balanced", "seed-faithful sharing + level-balanced EMA + cosine lookup",
              "do the two codebook fixes add up?",
              model=_options(level_heads=False, codebook_balance="level", lookup="cosine")),
    # Added after the v2 run (sharing + top-down + 3 decoder blocks, K 512 x 64) split its codebook
    # again: which of v2's changes undoes `sharing`?
    Candidate("sharing-topdown", "seed-faithful sharing + top-down decoding",
              "does top-down decoding undo the sharing (v2's codebook split)?",
              model=_options(level_heads=False, topdown=True)),
    Candidate("sharing-v2", "v2's model (sharing, top-down, 3 decoder blocks, K 512 x 64, v2 widths) and optimiser "
              "(lr 5e-4, batch 16, clip 1.0)",
              "does v2's design share its codebook at the study's budget, or does only the long run split it?",
              model=_options(level_heads=False, topdown=True, decoder_blocks=3, codebook_size=512, code_dim=64,
                             encoder_channels=(48, 96),
                             decoder_channels=((16, 96), (8, 96), (4, 96), (2, 48), (1, 24))),
              train=_options(lr=5e-4, batch_size=16, grad_clip=1.0)),
    Candidate("sharing-topdown-k512", "seed-faithful sharing + top-down decoding, codebook 512 x 64 (v2's)",
              "does v2's larger codebook (512 x 64 against 256 x 32) split the levels' codes?",
              model=_options(level_heads=False, topdown=True, codebook_size=512, code_dim=64)),
    # Added after candidate v3 (v2 with 256 x 32) shared its codebook but lost level 4 to v2.1's
    # 512 x 64: which of the two, K or the dimension, splits the levels?
    Candidate("sharing-topdown-k512-d32", "seed-faithful sharing + top-down decoding, codebook 512 x 32",
              "does the number of codewords (512) split the levels, at the study's dimension (32)?",
              model=_options(level_heads=False, topdown=True, codebook_size=512, code_dim=32)),
    Candidate("sharing-topdown-d64", "seed-faithful sharing + top-down decoding, codebook 256 x 64",
              "does the code dimension (64) split the levels, at the study's 256 codewords?",
              model=_options(level_heads=False, topdown=True, codebook_size=256, code_dim=64)),
    # Added after `lowdim-l2` (per-level heads, 16 dimensions, cosine look-up) gained at level 8
    # but kept the baseline's split codebook: do its RD and sharing add up?
    Candidate("sharing-topdown-lowdim", "seed-faithful sharing + top-down decoding, code dimension 16, l2-normalised",
              "does lowdim-l2's look-up keep its RD gain in the shared, top-down design?",
              model=_options(level_heads=False, topdown=True, code_dim=16, lookup="cosine")),
)
# The context prior's neighbour tables are (K + 1) x K: at K = 4096 they alone
# would pass the 30 MB model-file limit, so larger codebooks are coded with the static prior.
MAX_CONTEXT_CODEBOOK = 1024


@dataclass(frozen=True)
class Preset:
    """The budget every candidate gets, and what it is scored on."""

    model: ModelConfig  # the candidate overrides some fields
    crop: int
    batch_size: int
    lr: float
    cpu_budget_s: float  # process CPU seconds of training, one thread
    probe_steps: int  # timed steps of the probe (after two untimed ones)
    min_steps: int
    warmup_fraction: float
    log_every: int
    checkpoint_every: int
    fit_images: int  # the prior is fitted on the first N training images (whole)
    context: ContextFitConfig | None
    eval_images: int  # the first N scoring images; 0 = all
    eval_side: int | None  # centre-crop scoring images to this side
    train_images: int = 0  # > 0: train on the first N training images centre-cropped to train_side
    train_side: int = 0


PRESETS = {
    # The ablation's `full` model (codebook 256 x 32, about 2/3 of the shipped
    # widths), so the pilot of issue 12 compares; 20 CPU-minutes of one thread each.
    "full": Preset(
        model=ModelConfig(
            codebook_size=256,
            code_dim=32,
            encoder_channels=(32, 64),
            decoder_channels=((16, 64), (8, 64), (4, 64), (2, 32), (1, 16)),
        ),
        crop=64, batch_size=8, lr=1.5e-3, cpu_budget_s=1200.0, probe_steps=12, min_steps=200,
        warmup_fraction=0.05, log_every=50, checkpoint_every=100,
        fit_images=200, context=ContextFitConfig(), eval_images=0, eval_side=None,
    ),
    # CI: shows that the study runs, resumes and renders; nothing about the designs.
    "quick": Preset(
        model=ModelConfig(
            codebook_size=16,
            code_dim=8,
            encoder_channels=(8, 8),
            decoder_channels=((16, 8), (8, 8), (4, 8), (2, 8), (1, 8)),
        ),
        crop=48, batch_size=2, lr=1.5e-3, cpu_budget_s=0.05, probe_steps=1, min_steps=3,
        warmup_fraction=0.3, log_every=1, checkpoint_every=2,
        fit_images=3, context=ContextFitConfig(steps=5, batch_tokens=256), eval_images=2, eval_side=64,
        train_images=4, train_side=128,
    ),
}


def candidate_configs(preset: Preset, candidate: Candidate, data: Path, steps: int, seed: int) -> TrainConfig:
    """The run of one candidate: the preset's budget, the candidate's overrides, ``steps`` from its plan."""
    model = replace(preset.model, **dict(candidate.model))
    base = TrainConfig(
        data=(str(data),), model=model, crop=preset.crop, batch_size=preset.batch_size, steps=steps,
        lr=preset.lr, warmup_steps=max(1, round(preset.warmup_fraction * steps)), seed=seed, threads=1,
        workers=0, log_every=preset.log_every, checkpoint_every=preset.checkpoint_every,
    )
    return replace(base, **dict(candidate.train))


def probe_seconds_per_step(config: TrainConfig, steps: int) -> float:
    """Process CPU seconds of one training step of ``config``, timed over ``steps`` after two untimed ones.

    The probe trains a throw-away copy (same seed, same data) in this process;
    the first step (k-means) and second (allocator warm-up) are not timed.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = HierarchicalVQVAE(config.model).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    sampler = CropSampler(list_images(config.data), config.crop, config.seed)
    started = 0.0
    for step in range(steps + 2):
        if step == 2:
            started = time.process_time()
        torch.manual_seed(step_seed(config.seed, step, 0))
        x = sampler.batch(step, config.batch_size)
        out = model(x)
        loss, _ = objective(x, out, model.level_codebooks(), config.loss_weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return (time.process_time() - started) / steps


def plan(preset: Preset, candidate: Candidate, data: Path, run_dir: Path, seed: int) -> dict:
    """The candidate's step count from its probe, measured once and kept in ``run_dir/plan.json``."""
    path = run_dir / "plan.json"
    if path.exists():
        return json.loads(path.read_text())
    probe = candidate_configs(preset, candidate, data, 1000, seed)
    per_step = probe_seconds_per_step(probe, preset.probe_steps)
    steps = max(preset.min_steps, int(preset.cpu_budget_s / per_step))
    record = {"cpu_s_per_step": per_step, "steps": steps, "cpu_budget_s": preset.cpu_budget_s,
              "probe_steps": preset.probe_steps, "load_average": [round(v, 2) for v in os.getloadavg()],
              "cpu": hardware(1, 1)["cpu"]}  # the budget is CPU time: a faster CPU buys more steps
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1).encode())
    return record


# ---- scoring through the product ----

def ssimulacra2(original: np.ndarray, decoded: np.ndarray) -> float:
    """SSIMULACRA 2 of 8-bit RGB arrays (H, W, 3) by hvq's own (``hvq.evaluation.metrics``; 100 = identical).

    The committed study (benchmarks/results/design/) was scored with the
    ``ssimulacra2`` package, which hvq does not depend on and which does not
    reproduce the reference tool (README, "Benchmarks"); hvq's own port of
    libjxl's metric replaced it on 2 December 2026, so a fresh install runs
    the study (and its test) with what ``hvq bench`` uses.
    """
    from hvq.evaluation.metrics import ssimulacra2 as score

    return float(score(original, decoded))


def fitting_folder(preset: Preset, data: Path, runs: Path) -> Path:
    """The images every candidate's prior is fitted on: links to the first ``fit_images`` training images."""
    folder = runs / f"fit-images-{preset.fit_images}"
    if folder.is_dir():
        return folder
    tmp = runs / f".fit-images-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    for path in list_images([str(data)])[: preset.fit_images]:
        (tmp / path.name).symlink_to(path.resolve())
    try:
        os.replace(tmp, folder)
    except OSError:  # another runner made it first
        for link in tmp.iterdir():
            link.unlink()
        tmp.rmdir()
    return folder


def scoring_images(preset: Preset, folder: Path | None) -> list[tuple[str, np.ndarray]]:
    """(name, 8-bit RGB array) of the scoring images: the folder's first few (centre-cropped when the
    preset says so), or synthetic ones when there is no folder."""
    if folder is None:
        rng = np.random.default_rng(1)
        side = preset.eval_side or 256
        return [(f"synthetic{i}", synthetic_image(rng, side)) for i in range(preset.eval_images or 3)]
    files = list_images([str(folder)])
    if preset.eval_images:
        files = files[: preset.eval_images]
    images = [(path.name, np.asarray(read_image(path))) for path in files]
    if preset.eval_side:
        images = [(name, np.ascontiguousarray(centre_crop(x, preset.eval_side))) for name, x in images]
    return images


def score_model(model_path: Path, images: list[tuple[str, np.ndarray]]) -> dict:
    """Per level: mean real bpp, bits per index, PSNR, MS-SSIM and SSIMULACRA 2 over ``images``.

    Each level is compressed alone, except where the model's decoder needs
    coarser levels (top-down): then the file holds them too, and its rate is
    the whole file's.  ``static_bits_per_index``: the level coded with the
    static prior instead, for rate comparisons across priors.
    """
    from hvq.bitstream.container import parse
    from hvq.codec.fit.export import heldout_bits
    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.runtime.weights import load_model
    from hvq.evaluation.metrics import msssim, psnr

    model = load_model(model_path)
    codec = Codec.for_model(model)
    factors = model.config.factors
    rows = {f: [] for f in factors}
    grids = []
    for name, original in images:
        picture = Image.fromarray(original)
        for f in factors:
            stored = (f, *model.net.parents_needed(f))
            data = codec.compress(picture, stored)
            decoded = np.asarray(codec.decompress(data, f))
            pixels = original.shape[0] * original.shape[1]
            rows[f].append({
                "image": name,
                "bpp": 8 * len(data) / pixels,
                "bits_per_index": parse(data).level(f).bits_per_index,
                "psnr": psnr(original, decoded),
                "ms_ssim": msssim(original, decoded),
                "ssimulacra2": ssimulacra2(original, decoded),
            })
        from hvq.codec.runtime.imageio import pad_to_multiple, to_tensor

        x = pad_to_multiple(to_tensor(original), model.config.max_factor)
        grids.append({f: g[0].numpy() for f, g in model.net.encode(x).items()})
    static = heldout_bits(grids, model.prior).get("static", {})
    levels = {}
    for f in factors:
        levels[str(f)] = {key: float(np.mean([r[key] for r in rows[f]]))
                          for key in ("bpp", "bits_per_index", "psnr", "ms_ssim", "ssimulacra2")}
        levels[str(f)]["static_bits_per_index"] = float(static.get(f, float("nan")))
        levels[str(f)]["stored_levels"] = [f, *model.net.parents_needed(f)]
    return {"levels": levels, "per_image": {str(f): rows[f] for f in factors},
            "model_bytes": model_path.stat().st_size}


# ---- one candidate, in a worker process ----

class Busy(Exception):
    """Another live runner holds the candidate's lock."""


def _process_identity(pid: int) -> str | None:
    """``pid`` and its start time (so a pid reused after a reboot is not taken for the runner), or None if gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    stat = Path(f"/proc/{pid}/stat")
    started = stat.read_text().rsplit(")", 1)[1].split()[19] if stat.exists() else "?"
    return f"{pid} {started}"


def _take_lock(run_dir: Path) -> Path:
    """Create ``run_dir/lock`` naming this process; a lock whose process is gone is taken over."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / "lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock.read_text().strip()
            try:
                identity = _process_identity(int(holder.split()[0]))
            except (ValueError, IndexError):
                identity = None
            # a lock of only a pid (the first runners wrote those) is alive while that pid is
            alive = identity is not None and (identity == holder or " " not in holder)
            if not alive:
                lock.unlink(missing_ok=True)  # stale: its runner died
                continue
            raise Busy(f"{run_dir.name} is being run by process {holder.split()[0]}") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(_process_identity(os.getpid()))
        return lock
    raise Busy(f"{run_dir.name}: could not take its lock")


def run_candidate(name: str, preset_name: str, data: Path, eval_folder: Path | None, runs: Path, out: Path,
                  seed: int) -> dict | None:
    """Plan, train (resuming), export and score one candidate; writes ``OUT/candidates/<name>.json``.

    Returns None when another runner holds the candidate.
    """
    preset = PRESETS[preset_name]
    candidate = next(c for c in CANDIDATES if c.name == name)
    run_dir = runs / name
    try:
        lock = _take_lock(run_dir)
    except Busy as busy:
        print(f"{name}: skipped, {busy}", flush=True)
        return None
    try:
        return _run_candidate(candidate, preset, data, eval_folder, runs, run_dir, out, seed)
    finally:
        lock.unlink(missing_ok=True)


def _run_candidate(candidate: Candidate, preset: Preset, data: Path, eval_folder: Path | None, runs: Path,
                   run_dir: Path, out: Path, seed: int) -> dict:
    torch.set_num_threads(1)
    name = candidate.name
    budget = plan(preset, candidate, data, run_dir, seed)
    config = candidate_configs(preset, candidate, data, budget["steps"], seed)
    ledger_path = run_dir / "ledger.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {"train_cpu_s": 0.0, "train_wall_s": 0.0,
                                                                               "invocations": 0}
    previous = dict(ledger)
    cpu0, wall0 = time.process_time(), time.time()

    def account() -> None:
        ledger["train_cpu_s"] = round(previous["train_cpu_s"] + time.process_time() - cpu0, 1)
        ledger["train_wall_s"] = round(previous["train_wall_s"] + time.time() - wall0, 1)
        ledger["invocations"] = previous["invocations"] + 1
        write_atomic(ledger_path, json.dumps(ledger).encode())

    def progress(kind: str, record) -> None:  # a StepRecord (or a ValidationRecord, not printed)
        account()
        if kind == "train" and (record.step % (10 * config.log_every) == 0 or record.step == config.steps):
            psnr = " / ".join(f"{record.level(f).psnr:.2f}" for f in config.model.factors)
            print(f"{name}: step {record.step}/{config.steps}, CPU {ledger['train_cpu_s']:.0f} s, "
                  f"loss {record.loss:.4f}, PSNR {psnr} dB (training batch)", flush=True)

    checkpoint = run_dir / CHECKPOINT
    done = checkpoint.exists() and int(load_training_state(checkpoint)["step"]) >= config.steps
    if not done:
        train(config, run_dir, resume=True, progress=progress)
        account()
    model_path = run_dir / "model.safetensors"
    cpu1, wall1 = time.process_time(), time.time()
    context = preset.context if config.model.codebook_size <= MAX_CONTEXT_CODEBOOK else None
    report = export_checkpoint(checkpoint, [str(fitting_folder(preset, data, runs))], model_path, context=context)
    export_cpu = time.process_time() - cpu1
    scores = score_model(model_path, scoring_images(preset, eval_folder))
    usage = report.usage
    result = {
        "candidate": {**asdict(candidate), "model": dict(candidate.model), "train": dict(candidate.train)},
        "train_config": json.loads(config.to_json()),
        "parameters": sum(p.numel() for p in HierarchicalVQVAE(config.model).parameters()),
        "plan": budget,
        "steps": config.steps,
        "train_cpu_s": ledger["train_cpu_s"],
        "train_wall_s": ledger["train_wall_s"],
        "export_cpu_s": round(export_cpu, 1),
        "score_cpu_s": round(time.process_time() - cpu1 - export_cpu, 1),
        "score_wall_s": round(time.time() - wall1, 1),
        "prior": "static + context" if context is not None else "static",
        "fit_images": report.images,
        "usage": {str(f): u for f, u in usage.levels.items()},
        "usage_every_level": usage.every_level if len(config.model.factors) > 1 else None,
        "usage_any_level": usage.all_levels,
        **scores,
    }
    logs = out / "logs" / name  # the run's record beside its scores (the checkpoint stays in RUNS)
    logs.mkdir(parents=True, exist_ok=True)
    for kept in (METRICS, CONFIG, "plan.json", "ledger.json"):
        shutil.copyfile(run_dir / kept, logs / kept)
    write_atomic(out / "candidates" / f"{name}.json", json.dumps(result, indent=1).encode())
    print(f"{name}: scored, " + ", ".join(
        f"L{f} {lv['bpp']:.4f} bpp {lv['psnr']:.2f} dB" for f, lv in result["levels"].items()), flush=True)
    return result


# ---- rendering ----

def _cell(value, digits: int, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}%}" if percent else f"{value:.{digits}f}"


def rate_matched(results: dict, name: str, reference: str = "baseline") -> dict:
    """PSNR minus the reference's PSNR at the same bpp, per level of ``name`` (log-rate interpolation).

    None where the level's rate lies outside the reference's curve.
    """
    if reference not in results or name == reference:
        return {}
    ref = results[reference]["levels"]
    points = sorted((math.log(ref[f]["bpp"]), ref[f]["psnr"]) for f in ref)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    deltas = {}
    for f, level in results[name]["levels"].items():
        x = math.log(level["bpp"])
        deltas[f] = None if not xs[0] <= x <= xs[-1] else level["psnr"] - float(np.interp(x, xs, ys))
    return deltas


def table(results: dict) -> str:
    head = ("| candidate | level | stored | bpp | bits/index | PSNR (dB) | MS-SSIM | SSIMULACRA 2 | "
            "usage (train) | ΔPSNR at baseline's rate |")
    lines = [head, "|---" * 10 + "|"]
    for candidate in CANDIDATES:
        if candidate.name not in results:
            continue
        r = results[candidate.name]
        matched = rate_matched(results, candidate.name)
        for f in sorted(r["levels"], key=int, reverse=True):
            lv = r["levels"][f]
            stored = "+".join(str(s) for s in sorted(lv["stored_levels"], reverse=True))
            delta = matched.get(f)
            lines.append(
                f"| {candidate.name} | 1/{f} | {stored} | {lv['bpp']:.4f} | {lv['bits_per_index']:.2f} | "
                f"{lv['psnr']:.2f} | {_cell(lv['ms_ssim'], 4)} | {_cell(lv['ssimulacra2'], 1)} | "
                f"{r['usage'][f]:.1%} | {'—' if candidate.name == 'baseline' else _cell(delta, 2)} |")
    return "\n".join(lines)


def sharing_table(results: dict) -> str:
    lines = ["| candidate | usage 1/16 | usage 1/8 | usage 1/4 | used by every level | used by some level | "
             "steps | CPU | train CPU (s) | train wall (s) | parameters | model file (MB) | prior |",
             "|---" * 13 + "|"]
    for candidate in CANDIDATES:
        if candidate.name not in results:
            continue
        r = results[candidate.name]
        usage = "".join(f" {_cell(r['usage'].get(str(f)), 1, True)} |" for f in (16, 8, 4))
        lines.append(
            f"| {candidate.name} |{usage} {_cell(r['usage_every_level'], 1, True)} | "
            f"{_cell(r['usage_any_level'], 1, True)} | {r['steps']} | {r['plan'].get('cpu', 'not recorded')} | "
            f"{r['train_cpu_s']:.0f} | "
            f"{r['train_wall_s']:.0f} | {r['parameters']:,} | {r['model_bytes'] / 1e6:.1f} | {r['prior']} |")
    return "\n".join(lines)


def training_progress(runs: Path, pending: list[str], window: int = 10) -> list[dict]:
    """Where each unscored candidate's training stands: step, CPU so far, and its last ``window`` logged
    records' mean training-batch PSNR and index perplexity per level (not Kodak: a progress report only)."""
    rows = []
    for name in pending:
        run_dir = runs / name
        metrics, plan_path = run_dir / "metrics.jsonl", run_dir / "plan.json"
        if not metrics.exists() or not plan_path.exists():
            continue
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if not records:
            continue
        ledger_path = run_dir / "ledger.json"
        ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
        last = records[-window:]
        factors = sorted(int(k.split("_")[1]) for k in records[-1] if k.startswith("psnr_"))
        rows.append({
            "candidate": name,
            "step": records[-1]["step"],
            "steps": json.loads(plan_path.read_text())["steps"],
            "train_cpu_s": ledger.get("train_cpu_s"),
            "train_wall_s": ledger.get("train_wall_s"),
            "running": (run_dir / "lock").exists(),
            "psnr": {str(f): float(np.mean([r[f"psnr_{f}"] for r in last])) for f in factors},
            "perplexity": {str(f): float(np.mean([r[f"perplexity_{f}"] for r in last])) for f in factors},
            "dead_codes": records[-1].get("dead_codes"),
            "records": records,
        })
    # The same steps see the same crops (one seed), so at a step every candidate has reached
    # their training-batch scores compare like with like, whatever CPU share each got.
    common = min((r["step"] for r in rows), default=0)
    for r in rows:
        records = r.pop("records")
        near = [x for x in records if common - window * 50 < x["step"] <= common] or records[-1:]
        r["common_step"] = common
        r["psnr_at_common_step"] = {f: float(np.mean([x[f"psnr_{f}"] for x in near])) for f in r["psnr"]}
        r["perplexity_at_common_step"] = {f: float(np.mean([x[f"perplexity_{f}"] for x in near])) for f in r["psnr"]}
    return rows


def progress_table(rows: list[dict]) -> str:
    common = rows[0]["common_step"] if rows else 0
    lines = ["| candidate | step / steps | train CPU (s) | wall (s) | training-batch PSNR 1/16, 1/8, 1/4 (dB) | "
             "index perplexity 1/16, 1/8, 1/4 | dead codes | runner | "
             f"PSNR 1/16, 1/8, 1/4 up to step {common} | perplexity up to step {common} |", "|---" * 10 + "|"]
    for r in rows:
        psnr = ", ".join(_cell(r["psnr"].get(str(f)), 2) for f in (16, 8, 4))
        perplexity = ", ".join(_cell(r["perplexity"].get(str(f)), 0) for f in (16, 8, 4))
        psnr_common = ", ".join(_cell(r["psnr_at_common_step"].get(str(f)), 2) for f in (16, 8, 4))
        perplexity_common = ", ".join(_cell(r["perplexity_at_common_step"].get(str(f)), 0) for f in (16, 8, 4))
        lines.append(f"| {r['candidate']} | {r['step']} / {r['steps']} | {_cell(r['train_cpu_s'], 0)} | "
                     f"{_cell(r['train_wall_s'], 0)} | {psnr} | {perplexity} | {r['dead_codes']} | "
                     f"{'running' if r['running'] else 'stopped'} | {psnr_common} | {perplexity_common} |")
    return "\n".join(lines)


def render(preset_name: str, results: dict, pending: list[str], machine: dict, out: Path, seed: int,
           progress: list[dict] = ()) -> str:
    preset = PRESETS[preset_name]
    model = preset.model
    lines = [
        f"# Design study for model v2 (issue 12), preset `{preset_name}`",
        "",
        f"- **Budget**: {preset.cpu_budget_s / 60:g} minutes of process CPU time on one thread per candidate "
        f"(torch threads 1, crops cut in the training process); each candidate's step count is that budget over "
        f"its CPU seconds per step, measured by a {preset.probe_steps}-step probe (not counted), so its cosine "
        f"schedule runs complete. Batch {preset.batch_size} random {preset.crop} px crops unless the candidate "
        f"says otherwise, Adam, peak lr {preset.lr:g} after {preset.warmup_fraction:.0%} of the steps, cosine "
        f"decay to 2%, MSE + 0.25 commitment per level, seed {seed}.",
        f"- **Model** (before the candidate's options): codebook {model.codebook_size} x {model.code_dim}, "
        f"encoder widths {model.encoder_channels}, decoder widths {dict(model.decoder_channels)}.",
        "- **Training data**: " + ("`../shared/datasets/train` (never Kodak)" if preset.train_images == 0 else
                                   f"{preset.train_images} training images centre-cropped to {preset.train_side} px"),
        f"- **Prior**: static + context prior fitted (``export_checkpoint``) on the first {preset.fit_images} "
        f"training images, whole, for every candidate; codebooks over {MAX_CONTEXT_CODEBOOK} use the static "
        "prior alone (the context tables grow as K^2). Codebook usage is measured on those images.",
        "- **Scored on**: " + ("the 24 Kodak images, whole" if preset.eval_images == 0 else
                               f"{preset.eval_images} images centre-cropped to {preset.eval_side} px")
        + ", through the product: `Codec.compress` with the level alone (top-down: with its coarser levels, "
        "whose bits the rate includes), `Codec.decompress`; bpp is the real file size; PSNR on RGB; MS-SSIM by "
        "pytorch-msssim; SSIMULACRA 2 by `hvq.evaluation.ssimulacra` (the committed study's by the `ssimulacra2` package). ΔPSNR at baseline's rate: the "
        "candidate's PSNR minus the baseline hierarchy's, interpolated in log-bpp between its three levels.",
        f"- **Hardware**: this rendering on {machine['cpu']} ({machine['cpu_count']} cores, shared with other "
        f"work), torch {machine['torch']}. Each candidate's CPU is in the cost table: the budget is CPU time, so a "
        "faster CPU buys a candidate more steps, and ΔPSNR at baseline's rate compares fairly only candidates "
        "trained on the baseline's CPU.",
        "",
        "## Rate-distortion per level",
        "",
        table(results),
        "",
        "## Codebook sharing and cost",
        "",
        sharing_table(results),
        "",
    ]
    if pending:
        lines += ["## Not scored yet", "",
                  *[f"- `{c.name}`: {c.label}" for c in CANDIDATES if c.name in pending], ""]
    if progress:
        lines += ["## Training in progress (training batches, not Kodak; means of 10 logged steps: the last ones, "
                  "and those up to the last step all have reached, where the candidates saw the same crops, crop128 excepted)", "",
                  progress_table(list(progress)), ""]
    lines += ["## Candidates", "", *[f"- `{c.name}`: {c.label}. {c.question}" for c in CANDIDATES], ""]
    discussion = out / "discussion.md"
    if discussion.exists():  # the hand-written reading of the numbers
        lines += [discussion.read_text().strip(), ""]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="quick", show_default=True,
              help="quick: tiny model and images, for CI; full: the study.")
@click.option("--quick", "preset_name", flag_value="quick", help="Same as --preset quick.")
@click.option("--full", "preset_name", flag_value="full", help="Same as --preset full.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for design.json, design.md and per-candidate scores.")
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the candidates' checkpoints, plans, logs and models.")
@click.option("--train-data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Training images  [default: ../shared/datasets/train; quick: synthetic when missing]")
@click.option("--eval-data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Scoring images  [default: ../shared/datasets/kodak; quick: synthetic when missing]")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True, help="Candidates trained at once.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every candidate's run.")
@click.option("--only", multiple=True, type=click.Choice([c.name for c in CANDIDATES]),
              help="Run only these candidates (repeatable); the tables show every candidate scored so far.")
@click.option("--render-only", is_flag=True, help="Train nothing: re-render the tables from the scores present.")
def main(preset_name, out, runs, train_data, eval_data, jobs, seed, only, render_only):
    """Train and score the candidates not scored yet (resuming interrupted ones), then render the tables."""
    preset = PRESETS[preset_name]
    out, runs, data, eval_data = prepare_study(preset, out, runs, train_data, eval_data)
    machine = hardware(1, jobs)
    chosen = [c.name for c in CANDIDATES if not only or c.name in only]
    scored = [n for n in chosen if (out / "candidates" / f"{n}.json").exists()]
    todo = [] if render_only else [n for n in chosen if n not in scored]
    click.echo(f"design {preset_name}: {len(scored)} candidate(s) scored, {len(todo)} to run", err=True)
    failed = []
    if jobs == 1:
        for name in todo:
            try:
                run_candidate(name, preset_name, data, eval_data, runs, out, seed)
            except Exception as exc:  # one broken candidate must not stop a study of hours
                failed.append(name)
                click.echo(f"{name}: FAILED, {type(exc).__name__}: {exc}", err=True)
    elif todo:
        # spawn: a forked child would inherit torch's thread pools mid-state
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = {n: pool.submit(run_candidate, n, preset_name, data, eval_data, runs, out, seed) for n in todo}
            for name, future in futures.items():
                try:
                    future.result()
                except Exception as exc:
                    failed.append(name)
                    click.echo(f"{name}: FAILED, {type(exc).__name__}: {exc}", err=True)
    results = {}
    for candidate in CANDIDATES:
        path = out / "candidates" / f"{candidate.name}.json"
        if path.exists():
            results[candidate.name] = json.loads(path.read_text())
    pending = [c.name for c in CANDIDATES if c.name not in results]
    progress = training_progress(runs, pending)
    summary = {
        "preset": preset_name,
        "seed": seed,
        "budget": {**{k: v for k, v in asdict(preset).items() if k not in ("model", "context")},
                   "model": json.loads(preset.model.to_json()),
                   "context": None if preset.context is None else asdict(preset.context)},
        "hardware": machine,
        "candidates": {name: {k: v for k, v in r.items() if k != "per_image"} for name, r in results.items()},
        "rate_matched_psnr_delta": {name: rate_matched(results, name) for name in results},
        "pending": pending,
        "progress": progress,
    }
    write_atomic(out / "design.json", json.dumps(summary, indent=1).encode())
    text = render(preset_name, results, pending, machine, out, seed, progress)
    write_atomic(out / "design.md", text.encode())
    click.echo(text)
    if failed:
        raise click.ClickException(f"candidate(s) failed: {', '.join(failed)} (their run folders are kept)")


if __name__ == "__main__":
    main()
