"""Options and parameter types that several commands share, declared once."""

from __future__ import annotations

import os
from pathlib import Path

import click

model_option = click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file (.safetensors). Default: the model shipped with hvq.",
)
force_option = click.option("--force", is_flag=True, help="Overwrite existing output files.")


class LevelList(click.ParamType):
    """A comma-separated list of level factors, e.g. 16,8,4."""

    name = "LEVELS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            factors = tuple(int(part) for part in str(value).split(",") if part.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of factors such as 16,8,4", param, ctx)
        if not factors or any(f < 1 for f in factors):
            self.fail(f"{value!r} names no level", param, ctx)
        return factors


class FolderPath(type(Path())):
    """An ``-o`` given with a trailing slash: the folder to write into (made if missing), not a file name."""


class OutputPath(click.ParamType):
    """``-o``: a file, ``-`` (standard output), or ``FOLDER/`` to write into that folder.

    ``Path("out/")`` drops the slash, so ``-o out/`` would write a file named
    ``out``; the slash is read here, before it is lost.
    """

    name = "PATH"

    def convert(self, value, param, ctx):
        if isinstance(value, Path):
            return value
        text = os.fsdecode(value)
        if not text:
            self.fail("is empty", param, ctx)
        if text.endswith(("/", os.sep)) and text.strip("/" + os.sep):
            return FolderPath(text)
        return Path(text)
