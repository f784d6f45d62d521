"""Refinement depths (issue 14): RQ against RSQ, and frozen fine-tuning against joint training, at equal steps.

Every arm is a run of the codec's own training loop on the design study's
small model (``hvq.benchmarks.design.PRESETS["full"]``: codebook 256 x 32,
64 px crops, batch 8), the same training images, the same seed and the
same number of optimiser steps; each records its process CPU seconds (one
thread).  The arms:

- ``depth1``: no depths, the reference for what depths cost depth 1;
- ``rq``, ``rsq``: level 4 with D depths trained jointly from scratch,
  nearest-codeword (RQ-VAE) or drawn (RSQ-VAE, seed 001) in training;
- ``base`` then ``frozen``: a depth-1 model trained for half the steps, then
  depths added by fine-tuning the other half with the encoder and the
  codebook frozen (``--init-from``, ``--freeze encoder,codebook``), so the
  pair spends the steps of one joint run.

Scoring (never trained on): every Kodak image whole, padded to a multiple
of 16, through ``encode_depths`` and ``decode(..., refinements=)`` of the
model, decoded to 8 bits: PSNR of every level at depth 1 and of level 4 at
every depth; per depth, the share of the codebook used, the perplexity and
the zeroth-order entropy of its indices on Kodak (bits per index if each
depth were coded with its own static table; the real depth prior,
conditioned on depth d - 1, is issue 14's part 3 and codes less), and the
bits per pixel that entropy gives the stored depths of level 4 alone.

    nice -n 19 python -m hvq.benchmarks.depths -o benchmarks/results/depths --runs /work/depths-runs \\
        --steps 1000 --arms rq,rsq            # and, in a second process, --arms depth1,base,frozen
    python -m hvq.benchmarks.depths -o benchmarks/results/depths --render   # the tables from the scores present
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import torch

from hvq.benchmarks.design import PRESETS, Candidate, candidate_configs
from hvq.cli.output import write_atomic
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.runtime.imageio import pad_to_multiple, to_tensor
from hvq.codec.train.config import CHECKPOINT, CONFIG, METRICS, TrainConfig
from hvq.codec.train.data import list_images, read_image
from hvq.codec.train.loop import load_training_state, train
from hvq.codec.train.validation import perplexity
from hvq.evaluation.metrics import psnr

ARMS = ("depth1", "rq", "rsq", "base", "frozen")
LABELS = {
    "depth1": "no depths (reference)",
    "rq": "RQ, joint from scratch",
    "rsq": "RSQ, joint from scratch",
    "base": "depth-1 model, half the steps",
    "frozen": "base + depths fine-tuned, encoder and codebook frozen",
}


def arm_config(arm: str, data: Path, runs: Path, steps: int, depth: int, seed: int) -> TrainConfig:
    """The run of one arm: the design study's small model and recipe, with the arm's depths and steps."""
    preset = PRESETS["full"]
    depths = () if arm in ("depth1", "base") else ((4, depth),)
    quantiser = "rsq" if arm == "rsq" else "rq"
    arm_steps = steps // 2 if arm in ("base", "frozen") else steps
    candidate = Candidate(arm, LABELS[arm], "", model=(("depths", depths), ("residual_quantiser", quantiser)))
    config = candidate_configs(preset, candidate, data, arm_steps, seed)
    if arm == "frozen":
        config = replace(config, init_from=str(runs / "base" / CHECKPOINT), freeze=("codebook", "encoder"))
    return config


@torch.no_grad()
def score(model: HierarchicalVQVAE, folder: Path) -> dict:
    """Kodak scores of a model: every level at depth 1 and each level with depths at every depth."""
    model.eval()
    config = model.config
    size = config.codebook_size
    levels = {f: [] for f in config.factors}
    depth_psnr = {(f, d): [] for f, n in config.depths for d in range(1, n + 1)}
    counts = {(f, d): np.zeros(size, dtype=np.int64) for f, n in config.depths for d in range(1, n + 1)}
    pixels = 0
    for path in list_images([str(folder)]):
        original = np.asarray(read_image(path))
        h, w = original.shape[:2]
        pixels += h * w
        x = pad_to_multiple(to_tensor(original), config.max_factor)
        grids = model.encode_depths(x)
        parents = {f: g[:, 0] for f, g in grids.items()}
        for f, g in grids.items():
            for d in range(1, g.shape[1] + 1):
                decoded = model.decode(g[:, 0], f, parents, g[:, 1:d])[0, :, :h, :w]
                pixels_out = (decoded * 255).round().byte().permute(1, 2, 0).numpy()
                value = psnr(original, pixels_out)
                if d == 1:
                    levels[f].append(value)
                if (f, d) in depth_psnr:
                    depth_psnr[f, d].append(value)
                    counts[f, d] += np.bincount(g[:, d - 1].reshape(-1).numpy(), minlength=size)
    depths = {}
    for (f, d), values in depth_psnr.items():
        hist = counts[f, d]
        p = hist[hist > 0] / hist.sum()
        entropy = float(-(p * np.log2(p)).sum())
        depths.setdefault(str(f), []).append({
            "depth": d, "psnr": float(np.mean(values)), "usage": float((hist > 0).mean()),
            "perplexity": perplexity(hist), "entropy_bits": entropy,
            "indices_per_pixel": float(hist.sum() / pixels),
        })
    for f, rows in depths.items():  # bpp of level f stored at depths 1..d, each depth at its entropy
        total = 0.0
        for row in rows:
            total += row["entropy_bits"] * row["indices_per_pixel"]
            row["entropy_bpp"] = total
    return {"levels": {str(f): float(np.mean(v)) for f, v in levels.items()}, "depths": depths,
            "images": len(levels[config.factors[0]])}


@torch.no_grad()
def latent_errors(model: HierarchicalVQVAE, folder: Path, limit: int) -> dict:
    """Per level with depths: ||z - z_q(d)||^2 / ||z - mean z||^2 at d = 1..D over the first ``limit`` images.

    Tells the quantiser's share of a depth's gain from the decoder's: a
    depth that shrinks the latent's error but not the image's is waiting on
    the decoder.
    """
    model.eval()
    sums: dict[int, np.ndarray] = {}
    for path in list_images([str(folder)])[:limit]:
        x = pad_to_multiple(to_tensor(np.asarray(read_image(path))), model.config.max_factor)
        latents = dict(zip(model.config.factors, model._latents(x)))
        for f, grids in model.encode_depths(x).items():
            if grids.shape[1] == 1:
                continue
            z, codebook = latents[f], model.codebook_of(f)
            spread = float((z - z.mean((0, 2, 3), keepdim=True)).pow(2).sum())
            errors = [float((z - codebook.lookup(grids[:, 0]) - (
                model.residuals[str(f)].refinement(codebook, grids[:, 1:d]) if d > 1 else 0)).pow(2).sum()) / spread
                for d in range(1, grids.shape[1] + 1)]
            sums[f] = sums.get(f, 0) + np.array(errors)
    return {str(f): (v / limit).tolist() for f, v in sums.items()}


def training_depths(run_dir: Path, window: int = 10) -> dict:
    """Mean training-batch PSNR and index perplexity per depth over the last ``window`` logged steps."""
    records = [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if line.strip()][-window:]
    keys = sorted({k for r in records for k in r if "_d" in k})
    means = {}
    for key in keys:
        values = [r[key] for r in records if key in r and not math.isnan(r[key])]
        means[key] = float(np.mean(values)) if values else float("nan")
    return means


def run_arm(arm: str, data: Path, kodak: Path, runs: Path, out: Path, steps: int, depth: int, seed: int) -> dict:
    """Train (resuming) and score one arm; writes ``OUT/arms/<arm>.json`` and copies its logs."""
    torch.set_num_threads(1)
    config = arm_config(arm, data, runs, steps, depth, seed)
    run_dir = runs / arm
    cpu0, wall0 = time.process_time(), time.time()
    checkpoint = run_dir / CHECKPOINT
    done = checkpoint.exists() and int(load_training_state(checkpoint)["step"]) >= config.steps
    if not done:
        def progress(kind, record):
            if kind == "train" and record.step % (5 * config.log_every) == 0:
                print(f"{arm}: step {record.step}/{config.steps}, CPU {time.process_time() - cpu0:.0f} s", flush=True)

        train(config, run_dir, resume=True, progress=progress)
    train_cpu, train_wall = time.process_time() - cpu0, time.time() - wall0
    state = load_training_state(checkpoint)
    model = HierarchicalVQVAE(ModelConfig.from_json(state["model_config"]))
    model.load_state_dict(state["model"])
    cpu1 = time.process_time()
    scores = score(model, kodak)
    result = {
        "arm": arm, "label": LABELS[arm], "steps": config.steps, "seed": seed,
        "train_cpu_s": round(train_cpu, 1) if not done else None, "train_wall_s": round(train_wall, 1),
        "score_cpu_s": round(time.process_time() - cpu1, 1),
        "train_config": json.loads(config.to_json()), "training_depths": training_depths(run_dir),
        "scales": model.residuals["4"].scales.tolist() if config.model.depths else None,
        "gains": model.residuals["4"].gains.tolist() if config.model.depths else None,
        **scores,
    }
    logs = out / "logs" / arm
    logs.mkdir(parents=True, exist_ok=True)
    for kept in (METRICS, CONFIG):
        shutil.copyfile(run_dir / kept, logs / kept)
    write_atomic(out / "arms" / f"{arm}.json", json.dumps(result, indent=1).encode())
    print(f"{arm}: scored " + ", ".join(f"L{f} {v:.2f} dB" for f, v in scores["levels"].items()), flush=True)
    return result


def _cell(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def render(out: Path, command: str | None = None, latents: dict | None = None) -> str:
    """``OUT/depths.md`` and ``OUT/depths.json`` from the arms' scores present (and ``latents``:
    arm -> ``latent_errors``, kept in ``OUT/latents.json``)."""
    results = {p.stem: json.loads(p.read_text()) for p in sorted((out / "arms").glob("*.json"))}
    latents_path = out / "latents.json"
    if latents:
        write_atomic(latents_path, json.dumps(latents, indent=1).encode())
    latents = json.loads(latents_path.read_text()) if latents_path.exists() else {}
    lines = ["# Refinement depths: RQ against RSQ, frozen against joint (issue 14)", ""]
    if command:
        lines += ["Produced by one process per arm (`--arms rq`, `--arms rsq`, `--arms depth1`, "
                  "`--arms base,frozen`, each `--steps 1000`), then rendered by:", "", "    " + command, ""]
    images = next(iter(results.values()))["images"] if results else 0
    lines += [f"## Depth 1 of every level (Kodak, {images} images, PSNR dB)", "",
              "| arm | steps | train CPU (s) | level 16 | level 8 | level 4 |", "|---|---|---|---|---|---|"]
    for arm in ARMS:
        if arm in results:
            r = results[arm]
            lines.append(f"| {arm}: {r['label']} | {r['steps']} | {_cell(r['train_cpu_s'], '.0f')} | "
                         + " | ".join(f"{r['levels'][f]:.2f}" for f in ("16", "8", "4")) + " |")
    lines += ["", "## Level 4 at every depth (Kodak)", "",
              "PSNR decoded from depths 1..d; usage = share of the 256 codewords depth d chose on Kodak; "
              "entropy = zeroth-order bits per index of depth d's Kodak indices; bpp = level 4 stored at depths "
              "1..d, each at that entropy (no context prior: an upper bound of what format 3 pays).", "",
              "| arm | depth | PSNR (dB) | ΔPSNR vs depth 1 | usage | perplexity (Kodak) | perplexity (training) | "
              "entropy (bits/index) | bpp | gain g_d |", "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        if arm not in results or not results[arm]["depths"]:
            continue
        r = results[arm]
        rows = r["depths"]["4"]
        for row in rows:
            d = row["depth"]
            train_ppl = r["training_depths"].get(f"perplexity_4_d{d}")
            gain = r["gains"][d - 1] if r.get("gains") else None
            lines.append(f"| {arm} | {d} | {row['psnr']:.2f} | {row['psnr'] - rows[0]['psnr']:+.2f} | "
                         f"{row['usage']:.1%} | {row['perplexity']:.0f} | {_cell(train_ppl, '.0f')} | "
                         f"{row['entropy_bits']:.2f} | {row['entropy_bpp']:.3f} | {_cell(gain, '.3f')} |")
    if latents:
        lines += ["", f"## Level 4's latent error at every depth ({latents.get('images', '?')} Kodak images)", "",
                  "||z - z_q(d)||^2 / ||z - mean z||^2 (the share of the latent's variance depths 1..d leave).", "",
                  "| arm | " + " | ".join(f"depth {d}" for d in range(1, 5)) + " |", "|---" * 5 + "|"]
        for arm in ARMS:
            if arm in latents.get("arms", {}):
                lines.append(f"| {arm} | " + " | ".join(f"{e:.3f}" for e in latents["arms"][arm]["4"]) + " |")
    text = "\n".join(lines) + "\n"
    write_atomic(out / "depths.md", text.encode())
    write_atomic(out / "depths.json", json.dumps(results, indent=1).encode())
    return text


@click.command()
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), default=Path("/work/depths-runs"))
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("/work/shared/datasets/train"))
@click.option("--kodak", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("/work/shared/datasets/kodak"))
@click.option("--arms", default=",".join(ARMS), help="Comma-separated arms, run in this order.")
@click.option("--steps", type=click.IntRange(2), default=1000, show_default=True)
@click.option("--depth", type=click.IntRange(2, 16), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--render", "render_only", is_flag=True, help="Only re-render the tables.")
@click.option("--latents", type=click.IntRange(0), default=0,
              help="With --render: also measure the latent error per depth of the arms' checkpoints in RUNS "
                   "on the first N Kodak images.")
def main(out, runs, data, kodak, arms, steps, depth, seed, render_only, latents):
    """Train and score the arms; re-render the tables."""
    if not render_only:
        for arm in arms.split(","):
            if arm not in ARMS:
                raise click.BadParameter(f"unknown arm {arm!r}", param_hint="--arms")
            run_arm(arm, data, kodak, runs, out, steps, depth, seed)
    measured = None
    if latents:
        torch.set_num_threads(1)
        measured = {"images": latents, "arms": {}}
        for arm in ARMS:
            if (runs / arm / CHECKPOINT).exists():
                state = load_training_state(runs / arm / CHECKPOINT)
                model = HierarchicalVQVAE(ModelConfig.from_json(state["model_config"]))
                model.load_state_dict(state["model"])
                if model.config.depths:
                    measured["arms"][arm] = latent_errors(model, kodak, latents)
    print(render(out, " ".join(["nice -n 19 python -m hvq.benchmarks.depths", *sys.argv[1:]]), measured))


if __name__ == "__main__":
    main()
