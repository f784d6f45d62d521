"""Fitting the context prior: a log-linear model trained in float, frozen into integer tables.

The model (``hvq.bitstream.context``) scores codeword x for a token as::

    anchors, parent stored:       P(x)
    non-anchors, parent stored:   P(x) + h[left, x] + h[right, x] + v[up, x] + v[down, x]
    non-anchors, parent absent:   bias[x] + h[left, x] + h[right, x] + v[up, x] + v[down, x]
    anchors, parent absent:       the static table (counts), nothing to fit

    with P(x) = parent[p, x] + parent_horizontal[ph, x] + parent_vertical[pv, x]

and the coder uses softmax(score).  A refinement depth d of a level (format
3) is fitted the same way with depth d - 1 of the level in the parent's
place (``previous_contexts``) and only the parent-stored case, the one its
coder (4) uses.  Every term is a table row picked by an
integer context, so fitting is multinomial logistic regression on index
grids: Adam on the summed cross-entropy of the three fitted cases, in
PyTorch, on the CPU.  One set of neighbour tables serves both the parent and
the parent-less case, and left/right (up/down) share a table, which keeps
the shipped file small at a measured cost of under 0.01 bit per index.

Freezing rounds each score to 1/8 bit.  A constant added to a whole row
cancels in the softmax, so each row is first shifted to put its largest
entry at the top of int8's range: the likely codewords keep full precision,
and only entries about 30 bits below the best one clip.  Determinism does not
depend on this fit (it may differ between machines); it depends only on the
integer tables it writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hvq.bitstream.context import (
    SCORE_UNITS_PER_BIT, LevelContextModel, anchor_mask, neighbours, parent_contexts, previous_contexts,
)
from hvq.bitstream.prior_tables import DEPTH_TABLES, depth_model


@dataclass(frozen=True)
class ContextFitConfig:
    """Budget of the fit (per level)."""

    steps: int = 400
    batch_tokens: int = 16384
    lr: float = 0.05
    final_lr: float = 0.01  # after 70% of the steps
    seed: int = 0


@dataclass(frozen=True)
class LevelTokens:
    """Every token of one level over a set of images, with its contexts (flattened)."""

    index: np.ndarray  # (N,) the codeword to predict
    anchor: np.ndarray  # (N,) bool: coded in the first pass
    parent: np.ndarray | None  # (N,) the coarser level's index there; None for the coarsest level
    parent_horizontal: np.ndarray | None  # (N,) the parent's neighbour on the token's side; K outside
    parent_vertical: np.ndarray | None
    left: np.ndarray  # (N,) neighbours; K outside the grid
    right: np.ndarray
    up: np.ndarray
    down: np.ndarray


_COLUMNS = ("index", "anchor", "parent", "parent_horizontal", "parent_vertical", "left", "right", "up", "down")


def level_tokens(grids: list[dict[int, np.ndarray]], factor: int, codebook_size: int) -> LevelTokens:
    """Tokens of level ``factor`` from per-image grids ({factor: (H/f, W/f)}), contexts as the coder sees them."""
    columns: dict[str, list[np.ndarray]] = {k: [] for k in _COLUMNS}
    has_parent = all(2 * factor in g for g in grids)
    for image in grids:
        grid = image[factor]
        columns["index"].append(grid.reshape(-1))
        columns["anchor"].append(anchor_mask(grid.shape).reshape(-1))
        if has_parent:
            contexts = parent_contexts(image[2 * factor], grid.shape, outside=codebook_size)
            for name, values in zip(("parent", "parent_horizontal", "parent_vertical"), contexts):
                columns[name].append(values.reshape(-1))
        for name, values in zip(("left", "right", "up", "down"), neighbours(grid, outside=codebook_size)):
            columns[name].append(values.reshape(-1))
    joined = {k: np.concatenate(v).astype(np.int64) if v else None for k, v in columns.items()}  # None: no parent
    joined["anchor"] = joined["anchor"].astype(bool)
    return LevelTokens(**joined)


def depth_tokens(stacks: list[np.ndarray], depth: int, codebook_size: int) -> LevelTokens:
    """Tokens of refinement ``depth`` of one level from per-image depth stacks ((D, H/f, W/f) each, D >= depth).

    The "parent" columns are the previous depth's contexts (``previous_contexts``), as coder 4 sees them.
    """
    columns: dict[str, list[np.ndarray]] = {k: [] for k in _COLUMNS}
    for stack in stacks:
        grid = stack[depth - 1]
        columns["index"].append(grid.reshape(-1))
        columns["anchor"].append(anchor_mask(grid.shape).reshape(-1))
        contexts = previous_contexts(stack[depth - 2], outside=codebook_size)
        for name, values in zip(("parent", "parent_horizontal", "parent_vertical"), contexts):
            columns[name].append(values.reshape(-1))
        for name, values in zip(("left", "right", "up", "down"), neighbours(grid, outside=codebook_size)):
            columns[name].append(values.reshape(-1))
    joined = {k: np.concatenate(v).astype(np.int64) for k, v in columns.items()}
    joined["anchor"] = joined["anchor"].astype(bool)
    return LevelTokens(**joined)


class _LogLinear(nn.Module):
    """The float model being fitted (scores in nats); ``conditional_only``: only the parent-stored case (a depth)."""

    def __init__(self, k: int, static_log_probs: torch.Tensor, with_parent: bool, conditional_only: bool = False):
        super().__init__()
        self.conditional_only = conditional_only
        self.parent = nn.Parameter(static_log_probs.repeat(k, 1)) if with_parent else None
        self.parent_horizontal = nn.Parameter(torch.zeros(k + 1, k)) if with_parent else None
        self.parent_vertical = nn.Parameter(torch.zeros(k + 1, k)) if with_parent else None
        self.horizontal = nn.Parameter(torch.zeros(k + 1, k))
        self.vertical = nn.Parameter(torch.zeros(k + 1, k))
        self.bias = nn.Parameter(static_log_probs.clone())

    def spatial(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.horizontal[t["left"]] + self.horizontal[t["right"]] + self.vertical[t["up"]] + self.vertical[t["down"]]

    def loss(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed mean cross-entropy (nats) of the fitted cases on a batch."""
        others = ~t["anchor"]
        spatial = self.spatial({k: v[others] for k, v in t.items() if k in ("left", "right", "up", "down")})
        total = 0 if self.conditional_only else F.cross_entropy(self.bias + spatial, t["index"][others])
        if self.parent is not None:
            conditional = (
                self.parent[t["parent"]]
                + self.parent_horizontal[t["parent_horizontal"]]
                + self.parent_vertical[t["parent_vertical"]]
            )
            conditional[others] = conditional[others] + spatial
            total = total + F.cross_entropy(conditional, t["index"])
        return total


def fit_level(
    tokens: LevelTokens, static: np.ndarray, config: ContextFitConfig = ContextFitConfig(), progress=None,
    conditional_only: bool = False,
):
    """Fit one level's tables; returns the frozen ``LevelContextModel``.

    ``conditional_only`` fits the parent-stored case alone (a refinement depth, whose bias is never used).
    """
    k = int(static.shape[0])
    generator = torch.Generator().manual_seed(config.seed)
    static_log_probs = torch.log(torch.as_tensor(static, dtype=torch.float64) / float(static.sum())).float()
    model = _LogLinear(k, static_log_probs, tokens.parent is not None, conditional_only)
    data = {name: torch.from_numpy(getattr(tokens, name)) for name in _COLUMNS if getattr(tokens, name) is not None}
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = len(tokens.index)
    for step in range(config.steps):
        if step == int(0.7 * config.steps):
            for group in optimiser.param_groups:
                group["lr"] = config.final_lr
        batch = torch.randint(n, (min(config.batch_tokens, n),), generator=generator)
        loss = model.loss({name: values[batch] for name, values in data.items()})
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress is not None:
            progress(loss.item() / math.log(2))
    return freeze(model, static)


def _to_units(table: torch.Tensor) -> np.ndarray:
    return (table.detach().double().numpy() / math.log(2) * SCORE_UNITS_PER_BIT)


def _rows_to_int8(table: torch.Tensor) -> np.ndarray:
    """Round each row to 1/8 bit with its largest entry at 127 (a row's constant cancels in the softmax)."""
    units = _to_units(table)
    units += 127 - units.max(axis=1, keepdims=True)
    return np.clip(np.rint(units), -128, 127).astype(np.int8)


def freeze(model: _LogLinear, static: np.ndarray) -> LevelContextModel:
    """The integer tables the coder uses."""
    bias = _to_units(model.bias)
    bias -= bias.max()  # only differences matter; keep the top at 0
    return LevelContextModel(
        static=np.asarray(static, dtype=np.int32),
        bias=np.clip(np.rint(bias), -(1 << 14), 1 << 14).astype(np.int16),
        horizontal=_rows_to_int8(model.horizontal),
        vertical=_rows_to_int8(model.vertical),
        **(
            {}
            if model.parent is None
            else {
                "parent": _rows_to_int8(model.parent),
                "parent_horizontal": _rows_to_int8(model.parent_horizontal),
                "parent_vertical": _rows_to_int8(model.parent_vertical),
            }
        ),
    )


def fit_context_prior(
    grids: list[dict[int, np.ndarray]],
    static: dict[int, np.ndarray],
    config: ContextFitConfig = ContextFitConfig(),
    progress: bool = False,
) -> dict[int, LevelContextModel]:
    """Fit every level's context model on per-image index grids (a level without level 2f has no parent term)."""
    factors = sorted(static)
    models = {}
    for factor in factors:
        k = int(static[factor].shape[0])
        has_parent = 2 * factor in static  # the level a coder-3 payload is coded given
        usable = [g for g in grids if factor in g and (not has_parent or 2 * factor in g)]
        tokens = level_tokens(usable, factor, k)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=config.steps, desc=f"fit context prior, level {factor}", unit="step")
        models[factor] = fit_level(tokens, static[factor], config, (lambda bits: (bar.update(), bar.set_postfix(bits=f"{bits:.3f}"))) if bar else None)
        if bar:
            bar.close()
    return models


def fit_depth_prior(
    stacks: list[dict[int, np.ndarray]],
    static: dict[int, np.ndarray],
    depths: dict[int, int],
    config: ContextFitConfig = ContextFitConfig(),
    progress: bool = False,
) -> dict[tuple[int, int], LevelContextModel]:
    """Fit the depth prior: a model per refinement depth d = 2..D of each level in ``depths`` ({factor: D}).

    ``stacks``: per image {factor: (D, H/f, W/f)} index grids (``model.encode_depths``), depth 1 first.
    Each model's parent row starts from the depth's own index frequencies.
    """
    from hvq.codec.model.prior import table_from_counts

    models = {}
    for factor, deepest in sorted(depths.items(), reverse=True):
        k = int(static[factor].shape[0])
        level_stacks = [image[factor] for image in stacks if factor in image]
        for depth in range(2, deepest + 1):
            tokens = depth_tokens(level_stacks, depth, k)
            counts = np.bincount(tokens.index, minlength=k)
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=config.steps, desc=f"fit depth prior, level {factor}:{depth}", unit="step")
            fitted = fit_level(
                tokens, table_from_counts(counts), config,
                (lambda bits: (bar.update(), bar.set_postfix(bits=f"{bits:.3f}"))) if bar else None,
                conditional_only=True,
            )
            if bar:
                bar.close()
            models[(factor, depth)] = depth_model(static[factor], **{t: getattr(fitted, t) for t in DEPTH_TABLES})
    return models
