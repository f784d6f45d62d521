"""Model configuration: every size the network is built from, saved with its weights.

A checkpoint rebuilds itself from this dataclass (stored as JSON in the
safetensors metadata); nothing is inferred from weight shapes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

# The names of hvq.codec.model.layers.DOWNSAMPLERS, here so that the config needs no torch.
DOWNSAMPLE_KINDS = ("subsample", "avgpool", "conv", "residual")
# Fields added after hvq 0.1; their defaults are what every earlier model was, so
# to_json leaves them out at their defaults and earlier fingerprints still hold.
ADDED_AFTER_0_1 = ("downsample", "shared_codebook")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the hierarchical VQ-VAE.

    ``factors`` are the levels, named by their downsampling factor (image side
    divided by grid side), fine to coarse: powers of two from 4 up.  The
    encoder trunk halves the image twice (factor 4); a chain of DownSample
    blocks halves it again down to the coarsest factor, and each level in
    ``factors`` is quantised and decoded from its grid in that chain.  The
    product codes every grid, (4, 8, 16); a single-level model such as (16,)
    still runs the chain through 1/8 but codes only 1/16 (seed 002's
    single-level baselines, ``benchmarks/ablation.py``).

    ``downsample`` names how the chain halves a grid (``hvq.codec.model.layers.DOWNSAMPLERS``):
    "residual" (stride-2 conv + 2x2 average pool, summed; the product's),
    "conv", "avgpool" or "subsample".  ``shared_codebook`` False gives each
    level its own codebook instead of the one shared by all levels.  Both
    exist for the ablation; ``to_json`` leaves them out while they hold their
    defaults, so the config of every model made before them, and its
    fingerprint, is unchanged.
    """

    codebook_size: int = 512
    code_dim: int = 64
    factors: tuple[int, ...] = (4, 8, 16)  # image side / grid side, fine to coarse
    encoder_channels: tuple[int, int] = (48, 96)  # at 1/2 and at 1/4 (and coarser)
    # Decoder width per resolution, keyed by downsampling factor.  Tapered:
    # full-resolution convolutions dominate CPU cost, so they are narrowest.
    decoder_channels: tuple[tuple[int, int], ...] = ((16, 96), (8, 96), (4, 96), (2, 48), (1, 24))
    commitment_beta: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0  # EMA uses per step below which a code is restarted
    downsample: str = "residual"  # how the encoder halves a grid: a key of DOWNSAMPLERS
    shared_codebook: bool = True  # False: one codebook per level (ablation only)

    def __post_init__(self) -> None:
        factors = tuple(int(f) for f in self.factors)
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "encoder_channels", tuple(int(c) for c in self.encoder_channels))
        object.__setattr__(
            self, "decoder_channels", tuple((int(f), int(c)) for f, c in self.decoder_channels)
        )
        if not factors or any(f < 4 or f & (f - 1) for f in factors):
            raise ValueError("factors must be powers of two from 4 up (the encoder trunk's stride is 4)")
        if any(coarse <= fine for fine, coarse in zip(factors, factors[1:])):
            raise ValueError("factors must run fine to coarse without repeats: 4, 8, 16, ...")
        if self.downsample not in DOWNSAMPLE_KINDS:
            raise ValueError(f"downsample must be one of {', '.join(DOWNSAMPLE_KINDS)}")
        if not 2 <= self.codebook_size <= 65536:
            raise ValueError("codebook_size must be in [2, 65536]")
        widths = dict(self.decoder_channels)
        needed = [1 << k for k in range(self.max_factor.bit_length())]
        missing = [f for f in needed if f not in widths]
        if missing:
            raise ValueError(f"decoder_channels lacks widths for factors {missing}")

    @property
    def chain_factors(self) -> tuple[int, ...]:
        """Every grid the encoder computes, 4 up to the coarsest level, whether coded or not."""
        return tuple(1 << k for k in range(2, self.max_factor.bit_length()))

    @property
    def max_factor(self) -> int:
        """Coarsest downsampling factor: image sides are padded to a multiple of it."""
        return self.factors[-1]

    def decoder_width(self, factor: int) -> int:
        return dict(self.decoder_channels)[factor]

    def to_json(self) -> str:
        """Sorted-key JSON; the fields added after hvq 0.1 appear only when they differ from their defaults.

        This string is hashed into a model's fingerprint, so the default config
        must keep serialising byte for byte as it did before those fields existed.
        """
        raw = asdict(self)
        for field in fields(self):
            if field.name in ADDED_AFTER_0_1 and raw[field.name] == field.default:
                del raw[field.name]
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**raw)

