"""Resumable training of the hierarchical VQ-VAE.

A run lives in a folder: ``train_config.json`` (the whole recipe),
``checkpoint.pt`` (weights, optimiser, schedule, step; written atomically
every ``checkpoint_every`` steps) and ``metrics.jsonl`` (one line per logged
step).  Batches are a pure function of ``(seed, step)``, so resuming from a
checkpoint continues the exact sequence of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hvq.codec.config import ModelConfig
from hvq.codec.data import CropSampler, list_images
from hvq.codec.model import HierarchicalVQVAE


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]
    model: ModelConfig = field(default_factory=ModelConfig)
    crop: int = 96
    batch_size: int = 16
    steps: int = 6000
    lr: float = 2e-3
    warmup_steps: int = 200
    final_lr_fraction: float = 0.02  # cosine decay ends at lr * this
    seed: int = 0
    threads: int = 2
    log_every: int = 25
    checkpoint_every: int = 200

    def to_json(self) -> str:
        raw = asdict(self)
        raw["model"] = json.loads(self.model.to_json())
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        raw = json.loads(text)
        raw["model"] = ModelConfig(**raw["model"])
        raw["data"] = tuple(raw["data"])
        return cls(**raw)


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    floor = config.final_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, progress=None) -> HierarchicalVQVAE:
    """Train (or resume) a run in ``run_dir`` until ``config.steps``; returns the model."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = HierarchicalVQVAE(config.model)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    step = 0
    checkpoint_path = run_dir / "checkpoint.pt"
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
    (run_dir / "train_config.json").write_text(config.to_json())
    sampler = CropSampler(list_images(config.data), config.crop, config.seed)
    model.train()
    log = (run_dir / "metrics.jsonl").open("a")
    started = time.time()
    while step < config.steps:
        for group in optimiser.param_groups:
            group["lr"] = lr_at(config, step)
        x = sampler.batch(step, config.batch_size)
        out = model(x)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()
        step += 1
        if step % config.log_every == 0 or step == config.steps:
            record = {
                "step": step,
                "time_s": round(time.time() - started, 1),
                "lr": lr_at(config, step - 1),
                "loss": out.loss.item(),
                **{f"psnr_{lv.factor}": -10 * math.log10(max(lv.reconstruction.item(), 1e-10)) for lv in out.levels},
                **{f"commit_{lv.factor}": lv.commitment.item() for lv in out.levels},
                "dead_codes": int((model.codebook.cluster_size < config.model.dead_code_threshold).sum()),
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            if progress is not None:
                progress(record)
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step,
                    "model_config": config.model.to_json(),
                },
                checkpoint_path,
            )
    log.close()
    return model


if __name__ == "__main__":  # pragma: no cover - quick manual runs; `hvq train` is the tool
    import sys

    cfg_path, run = sys.argv[1], sys.argv[2]
    cfg = TrainConfig.from_json(Path(cfg_path).read_text())
    train(cfg, run, resume=True, progress=lambda r: print(json.dumps(r), flush=True))
