"""Model configuration: every size the network is built from, saved with its weights.

A checkpoint rebuilds itself from this dataclass (stored as JSON in the
safetensors metadata); nothing is inferred from weight shapes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the hierarchical VQ-VAE.

    ``factors`` are the levels, named by their downsampling factor (image side
    divided by grid side), fine to coarse.  The first must be 4: the encoder
    trunk halves the image twice; each further level halves the previous one
    with a residual-pooling DownSample block.
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

    def __post_init__(self) -> None:
        factors = tuple(int(f) for f in self.factors)
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "encoder_channels", tuple(int(c) for c in self.encoder_channels))
        object.__setattr__(
            self, "decoder_channels", tuple((int(f), int(c)) for f, c in self.decoder_channels)
        )
        if not factors or factors[0] != 4:
            raise ValueError("factors must start at 4 (the encoder trunk's stride)")
        for fine, coarse in zip(factors, factors[1:]):
            if coarse != 2 * fine:
                raise ValueError("each level must halve the previous one: factors 4, 8, 16, ...")
        if not 2 <= self.codebook_size <= 65536:
            raise ValueError("codebook_size must be in [2, 65536]")
        widths = dict(self.decoder_channels)
        needed = [1 << k for k in range(self.max_factor.bit_length())]
        missing = [f for f in needed if f not in widths]
        if missing:
            raise ValueError(f"decoder_channels lacks widths for factors {missing}")

    @property
    def max_factor(self) -> int:
        """Coarsest downsampling factor: image sides are padded to a multiple of it."""
        return self.factors[-1]

    def decoder_width(self, factor: int) -> int:
        return dict(self.decoder_channels)[factor]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**raw)
