"""Tokens to .hvq bytes and back, and strip: the entropy coding and the container, torch-free.

::

    encode_tokens:  Tokens --prior of tokens.model_fingerprint--> write_tokens --> bytes
    decode_tokens:  bytes --read_file--> HEAD names the model --prior--> read_tokens --> Tokens
    strip_file:     bytes --read_file--> needs_prior? --(prior)--> strip --> bytes

Which prior: ``prior=`` if given; else the tables of ``model=`` (a model
file or a loaded model), which must be the model the tokens or the file
name; else the installed model with that fingerprint (``registry``).  Only
the prior's integer tables are read, never the network, so nothing here
imports torch.
"""

from __future__ import annotations

from pathlib import Path

from hvq.bitstream.container import read_file
from hvq.bitstream.errors import HvqModelError
from hvq.bitstream.levels import Tokens, as_selection, needs_prior, read_tokens, stored_levels, strip, write_tokens
from hvq.bitstream.prior_tables import PriorTables
from hvq.codec.runtime.checks import with_parents
from hvq.codec.runtime.registry import find_model, read_config, read_prior


def encode_tokens(tokens: Tokens, model=None, prior: PriorTables | None = None) -> bytes:
    """A .hvq file holding every level of ``tokens``: deterministic, the same bytes for the same tokens."""
    if not isinstance(tokens, Tokens):
        raise HvqModelError(f"encode_tokens takes hvq.Tokens, not {type(tokens).__name__}")
    return write_tokens(tokens, resolve_prior(tokens.model_fingerprint, bytes(16), model, prior))


def decode_tokens(data, levels=None, model=None, prior: PriorTables | None = None, partial: bool = False) -> Tokens:
    """The tokens a .hvq file (bytes, path, file object) stores; no transform runs.

    ``levels`` (default: every level stored) must be stored and complete;
    "16,4:2" reads level 4 at depths 1..2 (F alone: every depth whole in the
    file).  A truncated file raises unless ``levels`` names complete levels
    or ``partial`` asks for the complete ones.
    """
    parsed = read_file(data)
    selection = as_selection(levels)
    factors = stored_levels(parsed, None if selection is None else tuple(f for f, _ in selection), partial)
    depths = {f: d for f, d in selection or () if d is not None}
    header = parsed.header
    prior = resolve_prior(header.model_fingerprint, header.prior_fingerprint, model, prior)
    return read_tokens(parsed, factors, prior, depths)


def strip_file(data, keep, model=None) -> bytes:
    """Keep only the levels in ``keep`` ("16,8,4:2": F:D keeps depths 1..D): parsed once, the prior read only if a level must be re-coded."""
    parsed = read_file(data)
    keep = as_selection(keep) or ()
    header = parsed.header
    keep = _with_stored_parents(parsed, keep, model)
    prior = None
    if needs_prior(parsed, keep):
        try:
            prior = resolve_prior(header.model_fingerprint, header.prior_fingerprint, model, None)
        except HvqModelError as exc:
            raise HvqModelError(f"re-coding needs the file's model: {exc}") from None
    return strip(parsed, keep, prior)


def _with_stored_parents(parsed, keep, model) -> tuple:
    """``keep`` plus the stored coarser levels a top-down model decodes each kept level with (``checks.with_parents``).

    Without the file's model (not installed, none given) the selection stands as asked.
    """
    try:
        if model is None:
            config = read_config(find_model(parsed.header.model_fingerprint))  # the header only, not the tables
        elif isinstance(model, (str, Path)):
            config = read_config(model)
        else:
            config = model.config  # a loaded model
    except HvqModelError:
        return keep
    if not config.topdown:
        return keep
    stored = {level.factor for level in parsed.levels}
    asked = dict(keep)
    extended = with_parents(config, asked)
    return tuple((f, asked[f] if f in asked else 1) for f in extended if f in asked or f in stored)  # parents at depth 1


def resolve_prior(model_fingerprint: bytes, file_prior: bytes, model=None, prior: PriorTables | None = None) -> PriorTables:
    """The prior tables for a model fingerprint: ``prior``, ``model``'s, or the installed model's."""
    if prior is not None:
        return prior
    if model is None:
        return read_prior(find_model(model_fingerprint, file_prior)).prior
    if isinstance(model, (str, Path)):
        loaded = read_prior(model)
        given, tables, name = loaded.fingerprint, loaded.prior, Path(model).name
    else:  # a loaded model (weights.LoadedModel): its tables are already in memory
        given, tables, name = model.fingerprint, model.prior, Path(model.path).name
    if given != model_fingerprint:
        raise HvqModelError(f"made with model {model_fingerprint.hex()}, but {name} is model {given.hex()}")
    return tables
