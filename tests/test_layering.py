"""The layering rule, checked by walking every module's imports (AST, imports inside functions included).

::

    errors <- bitstream <- model <- runtime (and the public API) <- train, fit, evaluation <- cli <- benchmarks

An arrow points from a layer to one it may import: a module imports its own
layer or lower ones, never a higher one.  Besides the order:

- ``hvq.bitstream`` imports neither torch nor ``hvq.codec`` (files can be read
  and checked without the 6 GB install);
- nothing below ``hvq.cli`` imports click (only the command line knows it);
- the product never imports ``hvq.benchmarks``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Longest prefix wins: hvq.bitstream.errors sits below the rest of hvq.bitstream.
LAYERS = {
    "hvq.bitstream.errors": 0,
    "hvq.bitstream": 1,
    "hvq.codec.model": 2,
    "hvq.codec.runtime": 3,
    "hvq": 3,  # the package's __init__: the public API over the runtime
    "hvq.codec.train": 4,
    "hvq.codec.fit": 4,
    "hvq.evaluation": 4,
    "hvq.cli": 5,
    "hvq.benchmarks": 6,
}
FOLDERS = {"bitstream": "hvq.bitstream", "codec": "hvq.codec", "evaluation": "hvq.evaluation",
           "cli": "hvq.cli", "benchmarks": "hvq.benchmarks"}


def layer_of(module: str) -> int | None:
    """The layer of an hvq module (None for a module outside hvq, or hvq.codec's bare __init__)."""
    if module == "hvq":
        return LAYERS["hvq"]
    best = None
    for prefix in LAYERS:
        if prefix != "hvq" and (module == prefix or module.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best):
                best = prefix
    return None if best is None else LAYERS[best]


def modules() -> dict[str, Path]:
    """Every product and benchmark module by dotted name."""
    found = {"hvq": ROOT / "__init__.py"}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # ``from hvq.codec import pipeline`` imports the submodule, not the package
            for alias in node.names:
                found.append((f"{name}.{alias.name}", node.lineno))
    return found


def violations(known: dict[str, Path] | None = None) -> list[str]:
    known = modules() if known is None else known
    found = []
    for module, path in known.items():
        own = layer_of(module)
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for name, line in imports_of(path, module):
            top = name.split(".")[0]
            if top == "hvq":
                if name not in known and name.rpartition(".")[0] in known:
                    continue  # ``from hvq.x import function``: the module entry covers it
                if name.startswith("hvq.benchmarks") and not module.startswith("hvq.benchmarks"):
                    found.append(f"{rel}:{line}: the product imports {name}")
                    continue
                theirs = layer_of(name)
                if own is not None and theirs is not None and theirs > own:
                    found.append(f"{rel}:{line}: {module} (layer {own}) imports {name} (layer {theirs})")
                if module.startswith("hvq.bitstream") and name.startswith("hvq.codec"):
                    found.append(f"{rel}:{line}: bitstream imports {name}")
            elif top == "torch" and module.startswith("hvq.bitstream"):
                found.append(f"{rel}:{line}: bitstream imports torch")
            elif top == "click" and own is not None and own < LAYERS["hvq.cli"]:
                found.append(f"{rel}:{line}: {module} imports click below the command line")
    return found


def test_every_import_follows_the_layering_rule():
    assert violations() == []


def test_the_walk_sees_every_package():
    names = modules()
    for package in ("hvq.bitstream", "hvq.codec.model", "hvq.codec.runtime", "hvq.codec.train",
                    "hvq.codec.fit", "hvq.evaluation", "hvq.cli", "hvq.benchmarks"):
        assert package in names, package
    assert len(names) > 40


@pytest.mark.parametrize(
    "source, module, expected",
    [
        ("import torch\n", "hvq.bitstream.coder", "bitstream imports torch"),
        ("def f():\n    from hvq.codec.runtime import pipeline\n", "hvq.codec.model.vqvae", "layer 2) imports hvq.codec.runtime.pipeline"),
        ("import click\n", "hvq.codec.runtime.pipeline", "imports click below the command line"),
        ("from hvq.benchmarks import kodak\n", "hvq.cli.bench", "the product imports hvq.benchmarks"),
        ("from ..runtime.weights import load_model\n", "hvq.codec.model.vqvae", "imports hvq.codec.runtime.weights"),
    ],
)
def test_the_rule_catches_an_arrow_against_it(tmp_path, source, module, expected):
    """Each kind of violation, planted in a scratch module, is reported (lazy and relative imports too)."""
    path = tmp_path / "planted.py"
    path.write_text(source)
    found = violations({**modules(), module: path})
    assert any(expected in v for v in found), found
