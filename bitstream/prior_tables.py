"""A model's prior as the bitstream sees it: integer tables only, read from the model file's tensors.

The model file (FORMAT.md, section 9) names them ``prior.table.<f>`` (the
static tables) and ``prior.context.<f>.<table>`` (the context prior).  They
are assembled and checked here, with numpy alone, so that the format tools
and the fuzzers can decode payloads without torch or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hvq.bitstream.coder import check_freqs
from hvq.bitstream.container import (
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


@dataclass(frozen=True)
class PriorTables:
    """A model's prior as integer tables: everything coding needs, no weights."""

    static: dict[int, np.ndarray]  # factor -> (K,) int32 frequency table
    context: dict[int, LevelContextModel] = field(default_factory=dict)  # factor -> model; empty: static only
    context_fingerprint: bytes = bytes(16)  # identifies the context tables; zeros without them

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
        for key, value in tensors.items():
            if not key.startswith(CONTEXT_PREFIX):
                continue
            level, _, table = key[len(CONTEXT_PREFIX):].partition(".")
            if table not in CONTEXT_TABLES or not level.isdigit() or int(level) not in factors:
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
        return cls(static, context, context_fingerprint if context else bytes(16))

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The context prior's tensors, named as the model file names them (the static tables are the model's)."""
        tensors = {}
        for factor, model in self.context.items():
            for name in CONTEXT_TABLES:
                table = getattr(model, name)
                if table is not None:
                    tensors[f"{CONTEXT_PREFIX}{factor}.{name}"] = table
        return tensors
