"""The records a training run logs: one per logged step, one per validation pass, as frozen dataclasses.

Code reads and writes these types; only ``to_json`` and ``from_json`` know
the lines of ``metrics.jsonl`` and ``validation.jsonl``.  A line is a flat
JSON object with a key per score and level, ``psnr_4``, ``usage_16``, ...,
so the files stay easy to read with ``jq`` or pandas, and every log written
since the first runs still loads: a score an older run did not log (L1,
perplexity, ...) comes back as NaN and is simply not drawn.  A level with
refinement depths adds keys per depth, ``psnr_4_d2``, ``perplexity_4_d2``,
... (depth 1 included), which the per-level keys' parser passes over.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

NAN = float("nan")


def _level_keys(raw: dict, name: str) -> list[int]:
    """The levels a flat record holds scores of ``name`` for (keys ``name_<factor>``), fine to coarse."""
    prefix = name + "_"
    return sorted(int(k[len(prefix):]) for k in raw if k.startswith(prefix) and k[len(prefix):].isdigit())


def _flatten(levels, skip_nan: tuple[str, ...] = ()) -> dict:
    flat = {}
    for level in levels:
        for f in fields(level):
            value = getattr(level, f.name)
            if f.name != "factor" and not (f.name in skip_nan and math.isnan(value)):
                flat[f"{f.name}_{level.factor}"] = value
    return flat


def _levels(cls, raw: dict) -> tuple:
    """One ``cls`` per level named by a ``psnr_<factor>`` key; scores a record lacks are NaN."""
    names = [f.name for f in fields(cls) if f.name != "factor"]
    return tuple(cls(factor, **{n: float(raw.get(f"{n}_{factor}", NAN)) for n in names})
                 for factor in _level_keys(raw, "psnr"))


def _flatten_depths(depths) -> dict:
    """Per-depth scores as ``<score>_<factor>_d<depth>`` keys (NaN scores left out)."""
    flat = {}
    for depth in depths:
        for f in fields(depth):
            value = getattr(depth, f.name)
            if f.name not in ("factor", "depth") and not math.isnan(value):
                flat[f"{f.name}_{depth.factor}_d{depth.depth}"] = value
    return flat


_DEPTH_KEY = re.compile(r"[a-z]+_(\d+)_d(\d+)$")


def _depths(cls, raw: dict) -> tuple:
    """One ``cls`` per (level, depth) named by some ``<score>_<factor>_d<depth>`` key, in order."""
    pairs = sorted({(int(m[1]), int(m[2])) for m in map(_DEPTH_KEY.match, raw) if m})
    names = [f.name for f in fields(cls) if f.name not in ("factor", "depth")]
    return tuple(cls(f, d, **{n: float(raw.get(f"{n}_{f}_d{d}", NAN)) for n in names}) for f, d in pairs)


@dataclass(frozen=True)
class DepthStep:
    """One depth of a level with refinement depths, on the crops of a logged step that drew it."""

    factor: int
    depth: int  # 1 = the level's ordinary quantisation
    psnr: float  # dB, over the crops reconstructed from this many depths (NaN: none drew it)
    share: float = NAN  # share of the batch's crops drawn at this depth (quantiser dropout)
    perplexity: float = NAN  # exp(entropy) of this depth's indices since the last logged step


@dataclass(frozen=True)
class DepthValidation:
    """One depth of a level with refinement depths, over the validation images."""

    factor: int
    depth: int
    psnr: float  # dB, decoded from depths 1..depth, to 8 bits
    usage: float = NAN  # share of the codebook this depth chose


class _Levels:
    """Look-ups shared by the two records, over their ``levels`` field."""

    @property
    def factors(self) -> tuple[int, ...]:
        return tuple(level.factor for level in self.levels)

    def level(self, factor: int):
        return next(level for level in self.levels if level.factor == factor)


@dataclass(frozen=True)
class LevelStep:
    """One level's scores on the training crops of a logged step."""

    factor: int
    psnr: float  # dB, of the unrounded reconstruction
    l1: float = NAN  # mean absolute error, [0, 1] scale
    ms_ssim: float = NAN  # logged only when the loss has an MS-SSIM term
    commit: float = NAN  # commitment loss
    usage_penalty: float = NAN  # 1 - normalised entropy of the batch's mean soft assignment
    perplexity: float = NAN  # exp(entropy) of the indices since the last logged step


@dataclass(frozen=True)
class StepRecord(_Levels):
    """A line of ``metrics.jsonl``: one logged training step."""

    step: int
    levels: tuple[LevelStep, ...]  # fine to coarse
    time_s: float = NAN  # since this process started (a resumed run restarts the clock)
    lr: float = NAN
    loss: float = NAN
    world_size: int = 1
    dead_codes: int = 0  # codewords whose EMA use is below the restart threshold
    depths: tuple[DepthStep, ...] = ()  # levels with refinement depths only
    grad_norm: float = NAN  # of this step's update, before clipping

    def to_json(self) -> str:
        head = {"step": self.step, "time_s": self.time_s, "lr": self.lr, "loss": self.loss,
                "world_size": self.world_size, "dead_codes": self.dead_codes}
        if self.grad_norm == self.grad_norm:
            head["grad_norm"] = self.grad_norm
        return json.dumps({**head, **_flatten(self.levels, skip_nan=("ms_ssim",)), **_flatten_depths(self.depths)})

    @classmethod
    def from_json(cls, line: str) -> "StepRecord":
        raw = json.loads(line)
        return cls(int(raw["step"]), _levels(LevelStep, raw), float(raw.get("time_s", NAN)),
                   float(raw.get("lr", NAN)), float(raw.get("loss", NAN)), int(raw.get("world_size", 1)),
                   int(raw.get("dead_codes", 0)), _depths(DepthStep, raw), float(raw.get("grad_norm", NAN)))


@dataclass(frozen=True)
class LevelValidation:
    """One level's scores over the validation images, decoded to 8 bits as a file would be."""

    factor: int
    psnr: float  # dB, mean over images
    l1: float = NAN  # mean absolute error, [0, 1] scale
    ms_ssim: float = NAN  # NaN when no image is large enough for five scales
    bits_per_index: float = NAN  # under the static prior of the training counts
    usage: float = NAN  # share of the codebook this level chose on the validation images
    train_usage: float = NAN  # ... and on the training batches since the last pass


@dataclass(frozen=True)
class ValidationRecord(_Levels):
    """A line of ``validation.jsonl``: one validation pass (``step`` 0 for a model scored outside a run)."""

    step: int
    levels: tuple[LevelValidation, ...]  # fine to coarse
    usage_all: float = NAN  # share of the codebook chosen by some level
    usage_every: float = NAN  # ... and by every level
    depths: tuple[DepthValidation, ...] = ()  # levels with refinement depths only, every depth

    def to_json(self) -> str:
        return json.dumps({"step": self.step, **_flatten(self.levels),
                           "usage_all": self.usage_all, "usage_every": self.usage_every,
                           **_flatten_depths(self.depths)})

    @classmethod
    def from_json(cls, line: str) -> "ValidationRecord":
        raw = json.loads(line)
        return cls(int(raw["step"]), _levels(LevelValidation, raw), float(raw.get("usage_all", NAN)),
                   float(raw.get("usage_every", NAN)), _depths(DepthValidation, raw))


def read_log(path: str | Path, kind: type) -> list:
    """Every record of a log file (``kind``: ``StepRecord`` or ``ValidationRecord``); none when it is missing."""
    path = Path(path)
    if not path.exists():
        return []
    return [kind.from_json(line) for line in path.read_text().splitlines() if line.strip()]
