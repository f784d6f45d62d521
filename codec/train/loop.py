"""Resumable, optionally distributed training of the hierarchical VQ-VAE.

A run lives in a folder::

    train_config.json   the whole recipe (TrainConfig), rewritten at each start
    checkpoint.pt       weights, codebook state, optimiser, step, index counts (atomic)
    metrics.jsonl       one line per logged training step
    validation.jsonl    one line per validation pass (when val_data is set)
    rollbacks.jsonl     one line per rollback of a diverging run (hvq.codec.train.guard)
    curves.png          the curves, drawn when the run reaches its last step

Everything random is a pure function of ``(seed, step, rank)``: the crops of
a batch and the torch generator that the codebook's k-means and restarts draw
from are re-seeded at every step.  So a run killed at any point and resumed
from its last checkpoint ends bit-identical to one that was never stopped,
and no RNG state needs saving.  Under ``torchrun`` every rank draws its own
crops, DDP averages the gradients, the codebook's EMA statistics are summed
over ranks, and rank 0 alone writes the run folder.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hvq.bitstream.errors import HvqModelError
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.runtime.distortion import psnr_from_mse
from hvq.codec.train.config import CHECKPOINT, CONFIG, METRICS, ROLLBACKS, VALIDATION, TrainConfig, lr_at
from hvq.codec.train.data import CropSampler, list_images, step_batches
from hvq.codec.train.distributed import Placement, check_in_sync, join, leave
from hvq.codec.train.guard import LR_BACKOFF, MAX_ROLLBACKS, LossWatch, any_rank, give_up, snapshot
from hvq.codec.train.objective import objective
from hvq.codec.train.records import DepthStep, LevelStep, StepRecord
from hvq.codec.train.validation import load_validation_images, perplexity, validate


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step on one rank."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _keep_records_until(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def load_training_state(path: str | Path) -> dict:
    """A checkpoint's contents (CPU tensors); ``HvqModelError`` when the file is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (pickle, zip, EOF, OS errors) for a file that is not one
        raise HvqModelError(f"{path}: not a training checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise HvqModelError(f"{path}: not a training checkpoint")
    return state


class _Run:
    """The state of one training process: model, optimiser, counters, and its place in the job."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool, placement: Placement):
        self.config = config
        self.run_dir = run_dir
        self.placement = placement
        torch.manual_seed(config.seed)  # initial weights: the same on every rank
        self.model = HierarchicalVQVAE(config.model).to(placement.device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.step = 0
        # The divergence guard: the learning rate's scale after rollbacks, their count, the loss's running mean.
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.watch = LossWatch(ratio=config.divergence_ratio)
        size = config.model.codebook_size
        # Index counts since the last validation: the training-set usage and the prior for bits/index.
        self.val_counts = {f: np.zeros(size, dtype=np.int64) for f in config.model.factors}
        checkpoint = run_dir / CHECKPOINT
        if resume and checkpoint.exists():
            self._restore(self._load_weights(checkpoint))
        elif config.init_from:
            self._load_weights(config.init_from, other_depths=True)
        self.model.freeze(config.freeze)
        self.remember()

    def _load_weights(self, path: str | Path, other_depths: bool = False) -> dict:
        """Load a checkpoint's weights into the model (its config must be this run's); returns the checkpoint.

        ``other_depths``: the checkpoint may differ in its refinement depths
        alone (``depths``, ``residual_quantiser``): fine-tuning depths onto a
        trained model.  Its depth scales are then loaded where they fit and
        start afresh where they do not.
        """
        state = load_training_state(path)
        theirs = ModelConfig.from_json(state["model_config"])
        ours = self.config.model
        if other_depths:
            theirs = replace(theirs, depths=ours.depths, residual_quantiser=ours.residual_quantiser)
        if theirs != ours:
            raise HvqModelError(f"{path}: its model config differs from this run's")
        weights = state["model"]
        if other_depths:
            own = self.model.state_dict()
            weights = {**{k: v for k, v in own.items() if k.startswith("residuals.")},
                       **{k: v for k, v in weights.items() if not k.startswith("residuals.")
                          or (k in own and own[k].shape == v.shape)}}
            weights = {k: v for k, v in weights.items() if k in own}
        self.model.load_state_dict(weights)
        return state

    def _restore(self, state: dict) -> None:
        """Continue where the checkpoint stopped: optimiser, step and index counts (weights are loaded)."""
        self.optimiser.load_state_dict(state["optimiser"])
        self.step = int(state["step"])
        for f, counts in state.get("val_counts", {}).items():
            self.val_counts[int(f)] = counts.numpy().astype(np.int64)
        guard = state.get("guard")  # absent from checkpoints older than the guard
        if guard:
            self.lr_scale = float(guard["lr_scale"])
            self.rollbacks = int(guard["rollbacks"])
            self.watch.load(guard["watch"])

    def remember(self) -> None:
        """Hold the state a rollback returns to: the one the checkpoint file has (or the start)."""
        self.memory = {**snapshot(self.model, self.optimiser), "step": self.step, "watch": self.watch.state(),
                       "val_counts": {f: c.copy() for f, c in self.val_counts.items()}}

    def roll_back(self, loss: float) -> None:
        """Return to the remembered state at a lower learning rate, or give up after MAX_ROLLBACKS."""
        if self.rollbacks >= MAX_ROLLBACKS:
            raise give_up(self.step + 1, loss, self.rollbacks, self.lr_scale)
        self.rollbacks += 1
        self.lr_scale *= LR_BACKOFF
        memory = self.memory
        self.model.load_state_dict(memory["model"])
        self.optimiser.load_state_dict(copy.deepcopy(memory["optimiser"]))  # Adam steps in place otherwise
        self.step = memory["step"]
        self.watch.load(memory["watch"])
        self.val_counts = {f: c.copy() for f, c in memory["val_counts"].items()}

    def save(self) -> None:
        _save_atomic(
            {
                "model": self.model.state_dict(),
                "optimiser": self.optimiser.state_dict(),
                "step": self.step,
                "model_config": self.config.model.to_json(),
                "train_config": self.config.to_json(),
                "world_size": self.placement.world_size,
                "val_counts": {str(f): torch.from_numpy(c) for f, c in self.val_counts.items()},
                "guard": {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "watch": self.watch.state()},
            },
            self.run_dir / CHECKPOINT,
        )


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, progress=None) -> HierarchicalVQVAE:
    """Train (or resume) the run in ``run_dir`` until ``config.steps``; returns the model.

    ``progress(kind, record)`` is called on rank 0 with ``kind`` "train" and
    a ``StepRecord`` at every logged step, and "val" and a ``ValidationRecord``
    after every validation pass.
    """
    run_dir = Path(run_dir)
    placement = join(config.device)
    finished = False
    try:
        result = _train(config, run_dir, resume, progress, placement)
        finished = True
        return result
    finally:
        leave(placement, finished)


def _train(config: TrainConfig, run_dir: Path, resume: bool, progress, placement: Placement) -> HierarchicalVQVAE:
    torch.set_num_threads(config.threads)
    sampler = CropSampler(list_images(config.data), config.crop, config.seed)
    val_images = load_validation_images(config.val_data, config.val_images) if config.val_data else []
    if placement.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(config, run_dir, resume, placement)
    model = run.model
    trainable = model
    if placement.world_size > 1:
        # The codebook syncs its own EMA statistics; DDP only averages gradients.
        trainable = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    if placement.is_main:
        (run_dir / CONFIG).write_text(config.to_json())
        _keep_records_until(run_dir / METRICS, run.step)
        _keep_records_until(run_dir / VALIDATION, run.step)
        metrics = (run_dir / METRICS).open("a")
    factors = config.model.factors
    window = {f: np.zeros(config.model.codebook_size, dtype=np.int64) for f in factors}
    depth_window = {(f, d): np.zeros(config.model.codebook_size, dtype=np.int64)
                    for f, depth in config.model.depths for d in range(1, depth + 1)}
    batches = step_batches(sampler, run.step, config.steps, config.batch_size, placement.rank, config.workers)
    started = time.time()
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    while run.step < config.steps:
        lr = lr_at(config, run.step) * run.lr_scale
        for group in run.optimiser.param_groups:
            group["lr"] = lr
        torch.manual_seed(step_seed(config.seed, run.step, placement.rank))
        x = next(batches).to(placement.device, non_blocking=True)
        out = trainable(x)
        loss, terms = objective(x, out, model.level_codebooks(), config.loss_weights)
        run.optimiser.zero_grad(set_to_none=True)
        loss.backward()  # on every rank, diverged or not, so that DDP's gradient all-reduce stays in step
        loss_value = loss.item()
        if any_rank(run.watch.diverged(loss_value), placement.world_size, placement.device):
            diverged_at = run.step + 1
            run.roll_back(loss_value)
            del batches  # its worker processes cut crops for steps that are no longer next
            batches = step_batches(sampler, run.step, config.steps, config.batch_size, placement.rank,
                                   config.workers)
            for counts in (*window.values(), *depth_window.values()):
                counts[:] = 0
            if placement.is_main:
                metrics.close()
                _keep_records_until(run_dir / METRICS, run.step)
                _keep_records_until(run_dir / VALIDATION, run.step)
                metrics = (run_dir / METRICS).open("a")
                with (run_dir / ROLLBACKS).open("a") as log:
                    log.write(json.dumps({"step": diverged_at, "loss": loss_value, "back_to": run.step,
                                          "lr_scale": run.lr_scale, "rollback": run.rollbacks}) + "\n")
            continue
        # The norm before clipping (an infinite limit clips nothing), logged either way.
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip or math.inf).item()
        run.optimiser.step()
        run.watch.update(loss_value)
        run.step += 1
        for level in out.levels:
            hist = np.bincount(level.indices.reshape(-1).cpu().numpy(), minlength=config.model.codebook_size)
            window[level.factor] += hist
            run.val_counts[level.factor] += hist
            if level.depth_indices is not None:
                for d in range(level.depth_indices.shape[1]):
                    depth_window[level.factor, d + 1] += np.bincount(
                        level.depth_indices[:, d].reshape(-1).cpu().numpy(), minlength=config.model.codebook_size)
        last = run.step == config.steps
        if placement.is_main and (run.step % config.log_every == 0 or last):
            record = StepRecord(
                step=run.step,
                levels=tuple(
                    LevelStep(
                        factor=t.factor,
                        psnr=psnr_from_mse(t.mse),
                        l1=t.l1,
                        ms_ssim=t.ms_ssim,  # NaN, and left out of the line, without an MS-SSIM term
                        commit=t.commitment,
                        usage_penalty=t.usage,
                        perplexity=perplexity(window[t.factor]),
                    )
                    for t in terms
                ),
                time_s=round(time.time() - started, 1),
                lr=lr,
                loss=loss_value,
                world_size=placement.world_size,
                dead_codes=sum(
                    int((codebook.cluster_size < config.model.dead_code_threshold).sum())
                    for codebook, _ in model.codebook_groups()
                ),
                depths=tuple(
                    DepthStep(t.factor, d + 1, psnr_from_mse(mse) if mse == mse else float("nan"),
                              t.depth_share[d], perplexity(depth_window[t.factor, d + 1]))
                    for t in terms for d, mse in enumerate(t.depth_mse)
                ),
                grad_norm=grad_norm,
            )
            metrics.write(record.to_json() + "\n")
            metrics.flush()
            if progress is not None:
                progress("train", record)
        if run.step % config.log_every == 0:
            for counts in (*window.values(), *depth_window.values()):
                counts[:] = 0
        if val_images and (run.step % config.val_every == 0 or last):
            if placement.is_main:
                scores = validate(model, val_images, run.val_counts, run.step)
                with (run_dir / VALIDATION).open("a") as log:
                    log.write(scores.to_json() + "\n")
                if progress is not None:
                    progress("val", scores)
            for counts in run.val_counts.values():
                counts[:] = 0
        if run.step % config.checkpoint_every == 0 or last:
            check_in_sync(model, placement)
            if placement.is_main:
                run.save()
            run.remember()
    if placement.is_main:
        metrics.close()
        from hvq.codec.train.plot import plot_run

        plot_run(run_dir)
    return model


if __name__ == "__main__":  # pragma: no cover - `hvq train` is the tool; this runs a saved config as is
    import sys

    cfg_path, run = sys.argv[1], sys.argv[2]
    cfg = TrainConfig.from_json(Path(cfg_path).read_text())
    train(cfg, run, resume=True, progress=lambda kind, r: print(kind, r.to_json(), flush=True))
