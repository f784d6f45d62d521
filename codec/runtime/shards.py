"""Token datasets on disk: safetensors shards of concatenated grids and a JSON manifest.

What ``hvq tokens`` writes and ``hvq detokenize`` reads, laid out as
tokenised datasets usually are (a flat array per shard and offsets into it),
so a training loader memory-maps one shard and slices::

    OUT/manifest.json             format, model fingerprint, vocabulary, levels, one entry per image
    OUT/tokens-00000.safetensors  "level16", "level8", ...: uint16, every image's grid raveled, concatenated
    OUT/tokens-00001.safetensors  the next ``shard_size`` images

An entry names the image, its size, its shard and, per level, the offset
(in tokens) and grid shape: ``grid = shard["level8"][offset : offset + h * w].reshape(h, w)``.
A level with refinement depths (format 3) also has ``"depths": D`` and
``"refinements_offset"``: its depths 2..D are
``shard["level4.refinements"][o : o + (D - 1) * h * w].reshape(D - 1, h, w)``;
a dataset without depths is written exactly as before.
Every level indexes the one shared codebook, so the vocabulary is
``range(codebook_size)`` at every level.  Numpy and safetensors only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from hvq.bitstream.errors import HvqFormatError
from hvq.bitstream.levels import Tokens

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "hvq-tokens"
MANIFEST_VERSION = 1
DEFAULT_SHARD_SIZE = 1024  # images per shard


def shard_name(index: int) -> str:
    return f"tokens-{index:05d}.safetensors"


@dataclass(frozen=True)
class Entry:
    """One image of a token dataset: where its grids lie."""

    name: str  # the source, relative to the folder it was found in
    width: int
    height: int
    shard: str
    levels: dict  # str(factor) -> {"offset": int, "shape": [h, w]}


class ShardWriter:
    """Collects tokens into shards of ``shard_size`` images; ``flush`` hands each shard's bytes to ``write``.

    ``write(name, data)`` places a file (the CLI writes it atomically); the
    manifest comes last, so a dataset without one is incomplete.
    """

    def __init__(self, write, shard_size: int = DEFAULT_SHARD_SIZE):
        if shard_size < 1:
            raise ValueError("a shard holds at least one image")
        self.write = write
        self.shard_size = shard_size
        self.entries: list[Entry] = []
        self.first: Tokens | None = None
        self._pending: list[tuple[str, Tokens]] = []
        self._shards = 0

    def check(self, tokens: Tokens) -> None:
        """Refuse tokens of another model or geometry than the dataset's first."""
        first = self.first
        if first is None:
            return
        if tokens.model_fingerprint != first.model_fingerprint:
            raise HvqFormatError(
                f"tokens of model {tokens.model_fingerprint.hex()}, but this dataset holds model "
                f"{first.model_fingerprint.hex()}"
            )
        if (tokens.grid_multiple, tokens.codebook_size) != (first.grid_multiple, first.codebook_size):
            raise HvqFormatError("tokens of another grid multiple or codebook size than this dataset's")

    def add(self, name: str, tokens: Tokens) -> None:
        self.check(tokens)
        if self.first is None:
            self.first = tokens
        self._pending.append((name, tokens))
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        shard = shard_name(self._shards)
        flat: dict[str, list[np.ndarray]] = {}
        used: dict[str, int] = {}

        def append(key: str, array: np.ndarray) -> int:
            offset = used.get(key, 0)
            flat.setdefault(key, []).append(array.ravel())
            used[key] = offset + array.size
            return offset

        for name, tokens in self._pending:
            levels = {}
            for factor, grid in tokens.grids.items():
                levels[str(factor)] = {"offset": append(f"level{factor}", grid), "shape": list(grid.shape)}
                if tokens.depth(factor) > 1:
                    levels[str(factor)]["depths"] = tokens.depth(factor)
                    levels[str(factor)]["refinements_offset"] = append(
                        f"level{factor}.refinements", tokens.refinements[factor])
            self.entries.append(Entry(name, tokens.width, tokens.height, shard, levels))
        tensors = {key: np.concatenate(parts).astype(np.uint16) for key, parts in flat.items()}
        self.write(shard, save(tensors, metadata={"format": MANIFEST_FORMAT}))
        self._shards += 1
        self._pending = []

    def manifest(self) -> bytes:
        """The manifest of everything added (after ``flush``)."""
        first = self.first
        levels = sorted({int(f) for e in self.entries for f in e.levels}, reverse=True)
        head = json.dumps({
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "model_fingerprint": first.model_fingerprint.hex(),
            "codebook_size": first.codebook_size,
            "vocabulary": f"indices 0..{first.codebook_size - 1} of one codebook, shared by every level",
            "grid_multiple": first.grid_multiple,
            "levels": levels,
            "shard_size": self.shard_size,
        }, indent=1)
        rows = ",\n  ".join(json.dumps(e.__dict__, separators=(",", ":")) for e in self.entries)
        return (head[:-2] + f',\n "images": [\n  {rows}\n ]\n}}\n').encode()  # one line per image


@dataclass(frozen=True)
class TokenDataset:
    """A token dataset read back: its manifest and the tokens of each image, shard by shard."""

    folder: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | Path) -> "TokenDataset":
        path = Path(path)
        folder = path.parent if path.name == MANIFEST else path
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except OSError as exc:
            raise HvqFormatError(f"no token manifest: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise HvqFormatError(f"{MANIFEST} is not JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise HvqFormatError(f"{MANIFEST} is not an hvq token manifest")
        if manifest.get("version") != MANIFEST_VERSION:
            raise HvqFormatError(f"token manifest version {manifest.get('version')} is not {MANIFEST_VERSION}")
        return cls(folder, manifest)

    @property
    def model_fingerprint(self) -> bytes:
        try:
            fingerprint = bytes.fromhex(self.manifest["model_fingerprint"])
        except (KeyError, TypeError, ValueError):
            fingerprint = b""
        if len(fingerprint) != 16:
            raise HvqFormatError(f"{MANIFEST} names no valid model fingerprint")
        return fingerprint

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.manifest["images"]]

    def __iter__(self):
        """(name, Tokens) for every image, in manifest order; a shard is loaded once."""
        m = self.manifest
        shard_name_, shard = None, None
        try:
            fingerprint = bytes.fromhex(m["model_fingerprint"])
            for entry in m["images"]:
                if entry["shard"] != shard_name_:
                    shard_name_, shard = entry["shard"], self._load(entry["shard"])
                grids, refinements = {}, {}
                for factor, where in entry["levels"].items():
                    h, w = where["shape"]
                    start = int(where["offset"])
                    flat = shard[f"level{factor}"][start : start + h * w]
                    if flat.size != h * w:
                        raise HvqFormatError(f"{entry['name']}: level {factor} lies beyond its shard")
                    grids[int(factor)] = flat.reshape(h, w)
                    if "depths" in where:
                        size = (int(where["depths"]) - 1) * h * w
                        start = int(where["refinements_offset"])
                        flat = shard[f"level{factor}.refinements"][start : start + size]
                        if flat.size != size or size < 1:
                            raise HvqFormatError(f"{entry['name']}: level {factor}'s depths lie beyond its shard")
                        refinements[int(factor)] = flat.reshape(-1, h, w)
                yield entry["name"], Tokens(
                    grids, entry["width"], entry["height"], fingerprint, m["grid_multiple"], m["codebook_size"],
                    refinements,
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise HvqFormatError(f"{MANIFEST} is damaged: {exc!r}") from None

    def _load(self, name: str) -> dict[str, np.ndarray]:
        if Path(name).name != name:
            raise HvqFormatError(f"{MANIFEST} names a shard outside its folder: {name}")
        try:
            return load_file(self.folder / name)
        except (OSError, SafetensorError) as exc:
            raise HvqFormatError(f"{name}: cannot read shard: {exc}") from None
