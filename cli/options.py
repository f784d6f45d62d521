"""Options and parameter types that several commands share, declared once."""

from __future__ import annotations

import click

model_option = click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file (.safetensors). Default: compress uses the default model; reading uses the installed model the file names.",
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
