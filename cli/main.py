"""The ``hvq`` command line: compress, decompress, info, strip, train, export.

Library errors (``HvqError``) become one-line messages naming the file and
exit 1; misuse of the command line exits 2.  Torch and the model are imported
only by the commands that run the transforms, so ``info`` and ``strip`` start
instantly.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from hvq import __version__
from hvq.bitstream.errors import HvqError, HvqModelError
from hvq.cli.options import EXIT_CODES, LevelList, force_option, model_option, output_option
from hvq.cli.inputs import plan
from hvq.cli.output import check_target, signals_held, terminate_as_interrupt, write_atomic
from hvq.cli.bench import bench
from hvq.cli.train import export, fit_prior, train

EXIT_INTERRUPTED = 130


def _fail(path, exc: Exception) -> click.ClickException:
    return click.ClickException(f"{path}: {exc}")


def _progress(items, label):
    """A progress bar for more than one item; silent for one."""
    if len(items) <= 1:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=label, unit="file", file=sys.stderr)


def _report(line: str) -> None:
    """One line on stderr, on its own line even while a progress bar is drawn."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


class HvqGroup(click.Group):
    """The command group; Ctrl-C in any command is one line and exit 130, not click's "Aborted!"."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted; no partial output is left", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=HvqGroup, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvq")
def main() -> None:
    """hvq: a neural image codec with progressive, level-by-level .hvq files.

    Levels are named by their downsampling factor: 16 (coarsest, smallest),
    8, and 4 (finest).
    """


@main.command(epilog=EXIT_CODES)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_option("Output file (one input).")
@click.option("-d", "--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--levels", type=LevelList(), default=None, help="Levels to store, e.g. 16,8 (default: all).")
@model_option
@force_option
@click.pass_context
def compress(ctx, inputs, output, output_dir, levels, model_path, force):
    """Compress images to .hvq files (default: beside each input, suffix .hvq).

    INPUTS are image files or folders; a folder means every image file under
    it, and -d mirrors its subfolders.  A file that fails is reported and the
    rest go on; the exit code is then 1.  Outputs are written whole or not at
    all, never over an input, and never over an existing file without --force.
    """
    if output and output_dir:
        raise click.BadParameter("give -o/--output or -d/--output-dir, not both")
    jobs = plan(inputs, output, output_dir, ".hvq")
    from hvq.codec.runtime.pipeline import Codec

    try:
        codec = Codec.for_model(model_path)
        chosen = codec.check_levels(levels)
    except HvqError as exc:
        raise _fail(model_path or "model", exc)
    sources = [job.source for job in jobs]
    written: set[Path] = set()
    failures = 0
    with terminate_as_interrupt():
        try:
            for job in _progress(jobs, "compress"):
                try:
                    if job.target.resolve() in written:
                        raise click.ClickException(f"{job.target}: written from another input in this run")
                    check_target(job.target, sources, force)
                    data = codec.compress(job.source, chosen)
                    with signals_held():  # the count in the interrupt message includes this file
                        write_atomic(job.target, data)
                        written.add(job.target.resolve())
                except click.ClickException as exc:
                    failures += 1
                    _report(f"Error: {exc.message}")
                except HvqError as exc:
                    failures += 1
                    _report(f"Error: {job.source}: {exc}")
        except KeyboardInterrupt:
            _report(f"Interrupted: {len(written)} of {len(jobs)} files written, no partial file left")
            ctx.exit(EXIT_INTERRUPTED)
    if failures:
        if len(jobs) > 1:
            _report(f"{failures} of {len(jobs)} files failed")
        ctx.exit(1)


@main.command(epilog=EXIT_CODES)
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@output_option("Output image (default: IN.png).")
@click.option("--level", type=int, default=None, help="Level to decode (default: the finest stored).")
@click.option("--partial", is_flag=True, help="Decode the finest complete level of a truncated file.")
@model_option
@force_option
def decompress(input, output, level, partial, model_path, force):
    """Decode a .hvq file to an image; the format follows the output's suffix."""
    from PIL import Image

    output = output or input.with_suffix(".png")
    image_format = Image.registered_extensions().get(output.suffix.lower())
    if image_format is None:
        raise click.BadParameter(f"{output.suffix or 'no suffix'} is not an image format Pillow writes", param_hint="-o")
    check_target(output, [input], force)
    from hvq.codec.runtime.pipeline import Codec

    try:
        codec = Codec.for_model(model_path)
    except HvqError as exc:
        raise _fail(model_path or "model", exc)
    with terminate_as_interrupt():
        try:
            image = codec.decompress(input, level, partial=partial)
        except HvqError as exc:
            raise _fail(input, exc)
        buffer = io.BytesIO()
        image.save(buffer, format=image_format)
        write_atomic(output, buffer.getvalue())


@main.command(epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object per file (a list for several).")
@click.pass_context
def info(ctx, files, as_json):
    """Show a file's size, model fingerprint and levels; no model needed."""
    from hvq.bitstream.info import inspect_file

    records, failures = [], 0
    for path in files:
        try:
            summary = inspect_file(path)
        except HvqError as exc:
            failures += 1
            click.echo(f"Error: {path}: {exc}", err=True)
            continue
        if as_json:
            records.append({"file": str(path), **asdict(summary)})
        else:
            click.echo(_describe(path, summary))
    if as_json and records:
        click.echo(json.dumps(records[0] if len(files) == 1 else records, indent=2))
    if failures:
        ctx.exit(1)


def _describe(path, s) -> str:
    lines = [
        f"{path}: .hvq v{s.version}, {s.width}x{s.height}, {s.file_bytes} bytes, {s.bpp:.4f} bpp"
        + ("" if s.complete else f", TRUNCATED (missing levels {','.join(map(str, s.missing))})"),
        f"  model {s.model_fingerprint}, codebook {s.codebook_size}, prior {s.prior}"
        + (f" {s.prior_fingerprint}" if s.prior != "static" else ""),
        "  level  grid       bytes   bits/index  bpp     coder",
    ]
    for lv in s.levels:
        grid = f"{lv.grid_width}x{lv.grid_height}"
        lines.append(
            f"  {lv.factor:>5}  {grid:<9} {lv.chunk_bytes:>7}  {lv.bits_per_index:>10.3f}  {lv.bpp:.4f}  {lv.coder}"
        )
    return "\n".join(lines)


@main.command(epilog=EXIT_CODES)
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keep", type=LevelList(), required=True, help="Levels to keep, e.g. 16,8.")
@output_option("The stripped file.", required=True)
@model_option
@force_option
def strip(input, keep, output, model_path, force):
    """Drop levels from a .hvq file without running the transforms.

    Chunks are copied as they are.  A level coded given a level that is
    dropped is re-coded from its indices with the model's prior (the only
    case that loads the model; the transforms never run).
    """
    from hvq.bitstream.container import read_bytes
    from hvq.bitstream.errors import HvqRecodeNeeded
    from hvq.bitstream.levels import strip as strip_levels

    check_target(output, [input], force)
    with terminate_as_interrupt():
        try:
            data = read_bytes(input)
            try:
                stripped = strip_levels(data, keep)
            except HvqRecodeNeeded:
                stripped = strip_levels(data, keep, _prior_for(data, model_path))
        except HvqError as exc:
            raise _fail(input, exc)
        write_atomic(output, stripped)


def _prior_for(data: bytes, model_path):
    """The prior tables of the model a file was made with (default: the shipped model)."""
    from hvq.bitstream.container import parse
    from hvq.codec.runtime.weights import load_model

    model = load_model(model_path)
    header = parse(data).header
    if header.model_fingerprint != model.fingerprint:
        raise HvqModelError(
            f"re-coding needs the file's model {header.model_fingerprint.hex()}, "
            f"but the loaded model is {model.fingerprint_hex} (give it with --model)"
        )
    return model.prior


main.add_command(train)
main.add_command(bench)
main.add_command(export)
main.add_command(fit_prior)


if __name__ == "__main__":  # pragma: no cover
    main()
