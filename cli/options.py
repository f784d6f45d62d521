"""Options, parameter types and help text that several commands share, declared once.

As in pip-tools' ``scripts/options.py``: a command names what it shares
(``@output_option(...)``, ``@data_option(...)``, ``epilog=EXIT_CODES``), so
that ``-o/--output`` is spelt, typed and checked alike everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

EXIT_CODES = """\b
Exit codes:
  0  success
  1  an input, file, model or setting was refused (one line per fault on stderr)
  2  the command line was misused
  130  interrupted (Ctrl-C or SIGTERM); no partial file is left"""

model_option = click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file (.safetensors). Default: compress uses the default model; reading uses the installed model the file names.",
)
force_option = click.option("--force", is_flag=True, help="Overwrite existing output files.")


def output_option(help: str | None = None, *, folder: bool = False, stdio: bool = False, dest: str = "output",
                  **settings):
    """``-o/--output``: a file (a folder with ``folder``), passed to the command as ``dest``.

    With ``stdio`` the file may also be ``-`` (standard output) or ``FOLDER/``
    (``OutputPath``).  ``settings`` are click's (``required``, ``default``,
    ``show_default``, ``metavar``).
    """
    if stdio:
        kind = OutputPath()
    elif folder:
        kind = click.Path(file_okay=False, path_type=Path)
        settings.setdefault("callback", _not_standard_output)
    else:
        kind = click.Path(dir_okay=False, path_type=Path)
    return click.option("-o", "--output", dest, type=kind, help=help, **settings)


def _not_standard_output(ctx, param, value):
    """A folder output is never ``-``: a command that writes several files cannot write them to stdout.

    Without this check ``hvq bench -o -`` made a folder named ``-``.
    """
    if value is not None and str(value) == "-":
        raise click.BadParameter("this command writes a folder of files, not standard output; name a folder", ctx, param)
    return value


def data_option(help: str, required: bool = False):
    """``--data``, repeatable: folders of images (found by ``hvq.codec.runtime.image_files``), as ``data_dirs``."""
    return click.option("--data", "data_dirs", multiple=True, required=required,
                        type=click.Path(file_okay=False, exists=True), help=help)


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


class LevelFactor(click.ParamType):
    """One level factor, e.g. 16: a power of two from 4 up (what a level can be, in any model)."""

    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            factor = value
        else:
            try:
                factor = int(str(value))
            except ValueError:
                self.fail(f"{value!r} is not a level such as 16", param, ctx)
        if factor < 4 or factor & (factor - 1):
            self.fail(f"{factor} is not a level: levels are powers of two from 4 up (4, 8, 16, ...)", param, ctx)
        return factor


class LevelDepthList(click.ParamType):
    """Levels with optional depths, e.g. 16,8,4:2 (F: the level with every depth; F:D: depths 1..D)."""

    name = "LEVELS"

    def convert(self, value, param, ctx):
        from hvq.bitstream.errors import HvqUsageError
        from hvq.bitstream.levels import as_selection

        if isinstance(value, tuple):
            return value
        try:
            selection = as_selection(str(value))
        except HvqUsageError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)
        if any(f < 1 for f, _ in selection):
            self.fail(f"{value!r} names no level", param, ctx)
        return selection


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
threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads in all (default: torch's, the physical cores or OMP_NUM_THREADS); several files run side by side.",
)
