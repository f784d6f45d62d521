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
from hvq.cli.options import EXIT_CODES, FolderPath, LevelList, force_option, model_option, output_option
from hvq.cli.inputs import STDIO, image_source, plan, read_stdin
from hvq.cli.output import (
    check_target, into_folder, show_warnings_as_lines, signals_held, terminate_as_interrupt, writable_format,
    write_output,
)
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
    8, and 4 (finest).  A file name of - is standard input or output
    (compress, decompress, info, strip); binary data is never written to a
    terminal.
    """
    show_warnings_as_lines()


@main.command(epilog=EXIT_CODES)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_option("Output file (one input); - for standard output (never a terminal); FOLDER/ (a trailing slash) is -d FOLDER.",
               stdio=True)
@click.option("-d", "--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--levels", type=LevelList(), default=None, help="Levels to store, e.g. 16,8 (default: all).")
@click.option("-q", "--quality", type=float, default=None,
              help="0 (smallest) to 100 (nearest codewords, the default's indices): rate control.")
@click.option("--target-bpp", type=float, default=None,
              help="Size of the whole file in bits per pixel (within 5%); picks quality and levels.")
@click.option("--target-psnr", type=float, default=None,
              help="PSNR in dB of the finest level (within 0.1 dB); picks quality and levels.")
@model_option
@force_option
@click.pass_context
def compress(ctx, inputs, output, output_dir, levels, quality, target_bpp, target_psnr, model_path, force):
    """Compress images to .hvq files (default: beside each input, suffix .hvq).

    INPUTS are image files or folders; a folder means every image file under
    it, and -d mirrors its subfolders.  A file that fails is reported and the
    rest go on; the exit code is then 1.  Outputs are written whole or not at
    all, never over an input, and never over an existing file without --force.
    An input of - reads one image from standard input (give -o).
    """
    if output and output_dir:
        raise click.BadParameter("give -o/--output or -d/--output-dir, not both")
    rate = _rate_options(quality, target_bpp, target_psnr)
    if isinstance(output, FolderPath):
        output, output_dir = None, Path(output)
    jobs = plan(inputs, output, output_dir, ".hvq")
    from hvq.codec.runtime.pipeline import Codec

    try:
        codec = Codec.for_model(model_path)
    except HvqError as exc:  # its message names the model file
        raise click.ClickException(str(exc))
    try:
        chosen = codec.check_levels(levels)
    except HvqError as exc:
        raise click.BadParameter(str(exc), param_hint="--levels")
    sources = [job.source for job in jobs]
    written: set[Path] = set()
    failures = 0
    with terminate_as_interrupt():
        try:
            for job in _progress(jobs, "compress"):
                try:
                    if job.clash:
                        raise click.ClickException(f"{job.target}: also the output of {job.clash}, an earlier input")
                    check_target(job.target, sources, force, stdout_ok=True)
                    data = codec.compress(image_source(job.source), chosen if levels else None, **rate)
                    with signals_held():  # the count in the interrupt message includes this file
                        write_output(job.target, data)
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


def _rate_options(quality, target_bpp, target_psnr) -> dict:
    """The rate-control keywords of Codec.compress, checked: a value or a mix it refuses is misuse (exit 2)."""
    named = (("--quality", quality), ("--target-bpp", target_bpp), ("--target-psnr", target_psnr))
    given = [name for name, value in named if value is not None]
    if len(given) > 1:
        raise click.BadParameter(f"give one of --quality, --target-bpp and --target-psnr, not {' and '.join(given)}")
    if quality is not None and not 0 <= quality <= 100:
        raise click.BadParameter(f"{quality:g} is outside 0..100", param_hint="--quality")
    for name, value in named[1:]:
        if value is not None and not 0 < value < float("inf"):
            raise click.BadParameter(f"{value:g} is not a positive number", param_hint=name)
    return {"quality": quality, "target_bpp": target_bpp, "target_psnr": target_psnr}


@main.command(epilog=EXIT_CODES)
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@output_option("Output image (default: IN.png); - for PNG on standard output (never a terminal); FOLDER/ for FOLDER/IN.png.",
               stdio=True)
@click.option("--level", type=int, default=None, help="Level to decode (default: the finest stored).")
@click.option("--partial", is_flag=True, help="Decode the finest complete level of a truncated file.")
@model_option
@force_option
def decompress(input, output, level, partial, model_path, force):
    """Decode a .hvq file to an image; the format follows the output's suffix.

    Only formats Pillow writes RGB images in are accepted, checked before
    decoding.  An input of - reads standard input (give -o).
    """
    from hvq.bitstream.container import MAX_FILE_BYTES

    if input == STDIO and output is None:
        raise click.BadParameter("reading standard input needs -o FILE (or -o - for standard output)")
    default = input.with_suffix(".png")
    output = into_folder(output, input, default.name) or default
    image_format = "PNG" if output == STDIO else writable_format(output.suffix)
    check_target(output, [input], force, stdout_ok=True)
    from hvq.codec.runtime.pipeline import Codec

    try:
        codec = Codec.for_model(model_path)
    except HvqError as exc:  # its message names the model file
        raise click.ClickException(str(exc))
    with terminate_as_interrupt():
        try:
            image = codec.decompress(read_stdin(MAX_FILE_BYTES) if input == STDIO else input, level, partial=partial)
        except HvqError as exc:
            raise _fail(input, exc)
        buffer = io.BytesIO()
        image.save(buffer, format=image_format)
        write_output(output, buffer.getvalue())


@main.command(epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object per file (a list for several).")
@click.pass_context
def info(ctx, files, as_json):
    """Show a file's size, model fingerprint and levels; no model needed (- reads standard input)."""
    from hvq.bitstream.container import MAX_FILE_BYTES
    from hvq.bitstream.info import inspect_file

    records, failures = [], 0
    for path in files:
        try:
            summary = inspect_file(read_stdin(MAX_FILE_BYTES) if path == STDIO else path)
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
        *([f"  rate control: {s.rate_control}"] if s.rate_control else []),
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
@output_option("The stripped file; - for standard output; FOLDER/.", required=True, stdio=True)
@model_option
@force_option
def strip(input, keep, output, model_path, force):
    """Drop levels from a .hvq file without running the transforms.

    Chunks are copied as they are.  A level coded given a level that is
    dropped is re-coded from its indices with the model's prior (the only
    case that loads the model; the transforms never run).
    """
    from hvq.bitstream.container import MAX_FILE_BYTES, read_bytes
    from hvq.bitstream.errors import HvqRecodeNeeded
    from hvq.bitstream.levels import strip as strip_levels

    output = into_folder(output, input, input.name)
    check_target(output, [input], force, stdout_ok=True)
    with terminate_as_interrupt():
        try:
            data = read_stdin(MAX_FILE_BYTES) if input == STDIO else read_bytes(input)
            try:
                stripped = strip_levels(data, keep)
            except HvqRecodeNeeded:
                stripped = strip_levels(data, keep, _prior_for(data, model_path))
        except HvqError as exc:
            raise _fail(input, exc)
        write_output(output, stripped)


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
