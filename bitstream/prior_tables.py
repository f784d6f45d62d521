"""A model's prior as the bitstream sees it: integer tables only, read from the model file's tensors.

The model file (FORMAT.md, section 9) names them ``prior.table.<f>`` (the
static tables), ``prior.context.<f>.<table>`` (the context prior) and
``prior.context.<f>.depth<d>.<table>`` (the depth prior: refinement depth
``d`` of level ``f``, coded given depth ``d - 1``; format 3).  The depth
tables share the context prior's prefix, so its fingerprint covers them and
the model fingerprint does not.  They
are assembled and checked here, with numpy alone, so that the format tools
and the fuzzers can decode payloads without torch or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hvq.bitstream.coder import check_freqs
from hvq.bitstream.container import (
    MAX_DEPTH,
    CODER_CONTEXT,
    CODER_CONTEXT_PARENT,
    CODER_RANGE_STATIC,
    PRIOR_CHECKERBOARD,
    PRIOR_NAMES,
    PRIOR_STATIC,
    Header,
)
from hvq.bitstream.context import LevelContextModel
from hvq.bitstream.errors import HvqModelError

STATIC_PREFIX = "prior.table."
CONTEXT_PREFIX = "prior.context."  # prior.context.<factor>.<table>
CONTEXT_TABLES = ("bias", "horizontal", "vertical", "parent", "parent_horizontal", "parent_vertical")
# A depth's "parent" is its previous depth, always stored before it: no bias (the parent-less case) to keep.
DEPTH_TABLES = ("horizontal", "vertical", "parent", "parent_horizontal", "parent_vertical")
DEPTH_KEY = "depth"  # prior.context.<f>.depth<d>.<table>


@dataclass(frozen=True)
class PriorTables:
    """A model's prior as integer tables: everything coding needs, no weights."""

    static: dict[int, np.ndarray]  # factor -> (K,) int32 frequency table
    context: dict[int, LevelContextModel] = field(default_factory=dict)  # factor -> model; empty: static only
    context_fingerprint: bytes = bytes(16)  # identifies the context tables; zeros without them
    depth: dict[tuple[int, int], LevelContextModel] = field(default_factory=dict)  # (factor, d >= 2) -> model

    @property
    def kind(self) -> int:
        return PRIOR_CHECKERBOARD if self.context else PRIOR_STATIC

    def coder_for(self, factor: int, stored: tuple[int, ...]) -> int:
        """The coder of a level, given the levels the file stores."""
        model = self.context.get(factor)
        if model is None:
            return CODER_RANGE_STATIC
        if model.has_parent and 2 * factor in stored:
            return CODER_CONTEXT_PARENT
        return CODER_CONTEXT

    def depth_of(self, factor: int) -> int:
        """How many depths of a level these tables can code (1 + its depth models)."""
        depth = 1
        while (factor, depth + 1) in self.depth:
            depth += 1
        return depth

    def depth_model(self, factor: int, depth: int) -> LevelContextModel:
        """The model of refinement ``depth`` of a level; without one, refinements cannot be coded."""
        model = self.depth.get((factor, depth))
        if model is None:
            raise HvqModelError(
                f"the model's prior has no depth tables for level {factor}:{depth} "
                f"(it codes level {factor} at depths 1..{self.depth_of(factor)})"
            )
        return model

    def table(self, factor: int) -> np.ndarray:
        """The static frequency table of a level."""
        return self.static[factor]

    def check_file(self, header: Header) -> None:
        """Refuse a file whose context-coded levels need a prior these tables are not."""
        if header.prior_kind == PRIOR_STATIC:
            return
        if header.prior_kind != self.kind or header.prior_fingerprint != self.context_fingerprint:
            mine = self.context_fingerprint.hex() if self.context else "none"
            raise HvqModelError(
                f"file was coded with the {PRIOR_NAMES[header.prior_kind]} prior {header.prior_fingerprint.hex()}, "
                f"but the model's context prior is {mine}"
            )

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, np.ndarray], factors, codebook_size: int, context_fingerprint: bytes = bytes(16)
    ) -> "PriorTables":
        """Assemble and check the prior tensors of a model file (other tensors are ignored)."""
        static = {}
        for key, value in tensors.items():
            if key.startswith(STATIC_PREFIX):
                level = key[len(STATIC_PREFIX):]
                if not level.isdigit() or int(level) not in factors:
                    raise HvqModelError(f"unexpected prior table {key}")
                static[int(level)] = value
        if sorted(static) != sorted(factors):
            raise HvqModelError(f"prior tables do not cover the levels {tuple(factors)}")
        for factor, table in static.items():
            try:
                check_freqs(table)
            except HvqModelError as exc:
                raise HvqModelError(f"prior table of level {factor}: {exc}") from None
            if table.shape != (codebook_size,):
                raise HvqModelError(f"prior table of level {factor} does not fit codebook size {codebook_size}")
        by_level: dict[int, dict[str, np.ndarray]] = {}
        by_depth: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for key, value in tensors.items():
            if not key.startswith(CONTEXT_PREFIX):
                continue
            level, _, table = key[len(CONTEXT_PREFIX):].partition(".")
            if not level.isdigit() or int(level) not in factors:
                raise HvqModelError(f"unexpected context prior tensor {key}")
            if table.startswith(DEPTH_KEY):
                depth, _, table = table[len(DEPTH_KEY):].partition(".")
                if table not in DEPTH_TABLES or not depth.isdigit() or not 2 <= int(depth) <= MAX_DEPTH:
                    raise HvqModelError(f"unexpected depth prior tensor {key}")
                by_depth.setdefault((int(level), int(depth)), {})[table] = value
                continue
            if table not in CONTEXT_TABLES:
                raise HvqModelError(f"unexpected context prior tensor {key}")
            by_level.setdefault(int(level), {})[table] = value
        context = {}
        for factor, parts in by_level.items():
            if any(parts.get(t) is None for t in ("bias", "horizontal", "vertical")):
                raise HvqModelError(f"context prior of level {factor} lacks a table")
            if (parts.get("parent") is None) != (2 * factor not in factors):
                raise HvqModelError(
                    f"context prior of level {factor}: a level has parent tables exactly when level {2 * factor} exists"
                )
            try:
                context[factor] = LevelContextModel(static=static[factor], **{t: parts.get(t) for t in CONTEXT_TABLES})
            except HvqModelError as exc:
                raise HvqModelError(f"context prior of level {factor}: {exc}") from None
        if context and set(context) != set(factors):
            raise HvqModelError(f"context prior does not cover the levels {tuple(factors)}")
        depth = _depth_models(by_depth, static, bool(context))
        return cls(static, context, context_fingerprint if context else bytes(16), depth)

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The context and depth priors' tensors, named as the model file names them (the static tables are the model's)."""
        tensors = {}
        for factor, model in self.context.items():
            for name in CONTEXT_TABLES:
                table = getattr(model, name)
                if table is not None:
                    tensors[f"{CONTEXT_PREFIX}{factor}.{name}"] = table
        for (factor, depth), model in self.depth.items():
            for name in DEPTH_TABLES:
                tensors[f"{CONTEXT_PREFIX}{factor}.{DEPTH_KEY}{depth}.{name}"] = getattr(model, name)
        return tensors


def depth_model(static: np.ndarray, **tables: np.ndarray) -> LevelContextModel:
    """A refinement depth's model from its five tables (``DEPTH_TABLES``).

    The static table and the bias serve only a level stored without its
    parent, which a depth never is (its previous depth always comes first),
    so the level's static table and a zero bias fill those fields.
    """
    return LevelContextModel(static=np.asarray(static, dtype=np.int32), bias=np.zeros(len(static), np.int16), **tables)


def _depth_models(by_depth: dict, static: dict[int, np.ndarray], has_context: bool) -> dict:
    """Check and build the depth models: every table present, depths 2..D of a level without gaps."""
    models = {}
    if by_depth and not has_context:
        raise HvqModelError("depth prior tables need the context prior (prior.context.<f>.*) beside them")
    for (factor, depth), parts in sorted(by_depth.items()):
        missing = [t for t in DEPTH_TABLES if parts.get(t) is None]
        if missing:
            raise HvqModelError(f"depth prior of level {factor}:{depth} lacks table {missing[0]}")
        if depth > 2 and (factor, depth - 1) not in by_depth:
            raise HvqModelError(f"depth prior of level {factor}:{depth} has no tables for depth {depth - 1}")
        try:
            models[(factor, depth)] = depth_model(static[factor], **parts)
        except HvqModelError as exc:
            raise HvqModelError(f"depth prior of level {factor}:{depth}: {exc}") from None
    return models
