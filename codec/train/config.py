"""The recipe of a training run, complete and JSON-serialisable (no torch here).

``hvq train`` builds one from its options, every run folder saves it as
``train_config.json`` beside the checkpoint, and ``--config`` replays it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from hvq.bitstream.errors import HvqConfigError
from hvq.codec.model.config import ModelConfig, config_faults, parse_json_object

# The files of a run folder (written by hvq.codec.train.loop, drawn by hvq.codec.train.plot).
CHECKPOINT = "checkpoint.pt"
CONFIG = "train_config.json"
METRICS = "metrics.jsonl"
VALIDATION = "validation.jsonl"
CURVES = "curves.png"
ROLLBACKS = "rollbacks.jsonl"

# What --freeze may hold still while fine-tuning (hvq.codec.model.vqvae.HierarchicalVQVAE.freeze).
FREEZABLE = ("encoder", "codebook")

MS_SSIM_MIN_CROP = 33  # five MS-SSIM scales need a side > (window - 1) * 16 with the smallest window, 3


@dataclass(frozen=True)
class LossWeights:
    """Per-level weights of the objective's terms (see ``hvq.codec.train.objective``)."""

    mse: float = 1.0
    l1: float = 0.0
    ms_ssim: float = 0.0
    usage: float = 0.0
    usage_temperature: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """A training run, complete: data, crops, schedule, loss, model and seed."""

    data: tuple[str, ...]
    model: ModelConfig = field(default_factory=ModelConfig)
    crop: int = 64
    batch_size: int = 16
    steps: int = 5000
    lr: float = 1.5e-3
    warmup_steps: int = 200
    final_lr_fraction: float = 0.02  # cosine decay ends at lr * this
    grad_clip: float = 0.0  # largest gradient norm an update may have (0: not clipped)
    # A step whose loss is not finite, or above this x the running mean, rolls the run back to its
    # last checkpoint at a lower learning rate (hvq.codec.train.guard); 0: only non-finite losses do.
    divergence_ratio: float = 10.0
    # Loss weights, per level (see hvq.codec.train.objective).
    mse_weight: float = 1.0
    l1_weight: float = 0.0
    ms_ssim_weight: float = 0.0
    usage_weight: float = 0.0
    usage_temperature: float = 1.0
    seed: int = 0
    init_from: str | None = None  # a checkpoint.pt whose weights start the run (fine-tuning)
    # Parts held still (of FREEZABLE), for adding depths to a trained model; needs init_from.
    freeze: tuple[str, ...] = ()
    val_data: str | None = None  # folder of held-out images (Kodak for hvq's own runs)
    val_every: int = 1000
    val_images: int = 0  # validate on the first N images of val_data; 0 = all
    # Hardware: may change on --resume without changing the recipe.
    threads: int = 2
    workers: int = 1  # data-loading processes; 0 = cut crops in the training process
    device: str = "auto"
    log_every: int = 25
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        """Refuse a recipe no run can follow (``HvqConfigError``: it comes from options or a config file)."""
        object.__setattr__(self, "data", tuple(self.data))
        object.__setattr__(self, "freeze", tuple(sorted(set(self.freeze))))
        if any(part not in FREEZABLE for part in self.freeze):
            raise HvqConfigError(f"freeze takes {' and '.join(FREEZABLE)}")
        if self.freeze and not self.init_from:
            raise HvqConfigError("freezing parts of the model needs init_from (a trained checkpoint)")
        multiple = self.model.max_factor
        if self.crop < multiple or self.crop % multiple:
            raise HvqConfigError(f"crop must be a multiple of {multiple} (the coarsest level's factor)")
        if self.ms_ssim_weight > 0 and self.crop < MS_SSIM_MIN_CROP:
            raise HvqConfigError(f"an MS-SSIM loss needs crops of at least {MS_SSIM_MIN_CROP} px")
        weights = (self.mse_weight, self.l1_weight, self.ms_ssim_weight, self.usage_weight)
        if min(weights) < 0 or not any(weights[:3]):
            raise HvqConfigError("loss weights must be >= 0, with at least one of MSE, L1 and MS-SSIM > 0")
        if self.grad_clip < 0 or self.divergence_ratio < 0 or 0 < self.divergence_ratio <= 1:
            raise HvqConfigError("grad_clip must be >= 0, divergence_ratio 0 (off) or > 1")
        if self.batch_size < 1 or self.steps < 1 or self.warmup_steps < 0:
            raise HvqConfigError("batch_size and steps must be >= 1, warmup_steps >= 0")

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(self.mse_weight, self.l1_weight, self.ms_ssim_weight, self.usage_weight,
                           self.usage_temperature)

    def to_json(self) -> str:
        raw = asdict(self)
        raw["model"] = json.loads(self.model.to_json())
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """The recipe a JSON object describes; any fault in it is one ``HvqConfigError``."""
        with config_faults("training config"):
            raw = parse_json_object(text)
            unknown = sorted(set(raw) - {f.name for f in fields(cls)})
            if unknown:
                raise HvqConfigError(f"unknown training config keys: {', '.join(unknown)}")
            raw["model"] = ModelConfig.from_dict(raw.get("model", {}))
            return cls(**raw)


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    floor = config.final_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
