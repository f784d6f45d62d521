"""The ``hvq`` command line: compress, decompress, info, strip, tokens, detokenize, train, export, export-graphs.

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
from hvq.bitstream.errors import HvqError, HvqUsageError
from hvq.bitstream.settings import EFFORTS
from hvq.cli.batch import ThreadPlan, in_order
from hvq.cli.options import (
    EXIT_CODES, FolderPath, LevelDepthList, LevelFactor, force_option, model_option, output_option, threads_option,
)
from hvq.cli.inputs import STDIO, image_source, plan, read_stdin
from hvq.cli.output import (
    check_target, into_folder, show_warnings_as_lines, signals_held, terminate_as_interrupt, writable_format,
    write_output,
)
from hvq.cli.bench import bench
from hvq.cli.train import export, export_graphs, fit_prior, train
from hvq.cli.tokens import detokenize, tokens

EXIT_INTERRUPTED = 130


def _fail(path, exc: Exception) -> click.ClickException:
    return click.ClickException(f"{path}: {exc}")


def _report(line: str) -> None:
    """One line on stderr, on its own line even while a progress bar is drawn."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


# What to install for a package a command imports only when it runs (a decoder-only install has no torch)
INSTALL_HINTS = {
    "torch": "pip install torch (only decompress, info and strip run without it, on onnxruntime: hvq[light])",
    "torchvision": "pip install 'hvq[bench]'",
    "compressai": "pip install 'hvq[bench]'",
    "imagecodecs": "pip install 'hvq[bench]'",
    "bjontegaard": "pip install 'hvq[bench]'",
    "onnx": "pip install 'hvq[onnx]'",
    "onnxruntime": "pip install 'hvq[light]'",
    "matplotlib": "pip install matplotlib",
    "pytorch_msssim": "pip install pytorch-msssim",
}


class HvqGroup(click.Group):
    """The command group; Ctrl-C in any command is one line and exit 130, not click's "Aborted!".

    A command whose heavy dependency is not installed (torch on a decoder-only
    install) is one line naming what to install, exit 1, not a traceback.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted; no partial output is left", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing not in INSTALL_HINTS:
                raise
            raise click.ClickException(
                f"hvq {ctx.invoked_subcommand} needs {missing}, which is not installed: {INSTALL_HINTS[missing]}"
            ) from None


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
@click.option("--levels", type=LevelDepthList(), default=None,
              help="Levels to store, e.g. 16,8 (default: all, each at every depth the model has); "
                   "F:D stores depths 1..D of level F, as strip --keep does (16,8,4:2). "
                   "A top-down model's level (the default model's) brings the coarser levels it decodes with.")
@click.option("-q", "--quality", type=float, default=None,
              help="0 (smallest) to 100 (pixel error alone): rate control; without it, the nearest codewords.")
@click.option("--target-bpp", type=float, default=None,
              help="Size of the whole file in bits per pixel (within 5%); picks quality and levels.")
@click.option("--target-psnr", type=float, default=None,
              help="PSNR in dB of the finest level (within 0.1 dB); picks quality and levels.")
@click.option("--effort", type=click.IntRange(min(EFFORTS), max(EFFORTS)), default=None,
              help="With -q or a target: 1 (default) weighs latent distance, 1.0-1.3x the time; "
                   "2 also measures pixel error through the decoders: smaller files, 20-75x the time.")
@model_option
@threads_option
@force_option
@click.pass_context
def compress(ctx, inputs, output, output_dir, levels, quality, target_bpp, target_psnr, effort, model_path, threads,
             force):
    """Compress images to .hvq files (default: beside each input, suffix .hvq).

    INPUTS are image files or folders; a folder means every image file under
    it, and -d mirrors its subfolders.  A file that fails is reported and the
    rest go on; the exit code is then 1.  Outputs are written whole or not at
    all, never over an input, and never over an existing file without --force.
    An input of - reads one image from standard input (give -o).  Several
    files share one loaded model and are coded side by side, one per thread
    (--threads).
    """
    if output and output_dir:
        raise click.BadParameter("give -o/--output or -d/--output-dir, not both")
    rate = _rate_options(quality, target_bpp, target_psnr, effort)
    if isinstance(output, FolderPath):
        output, output_dir = None, Path(output)
    jobs = plan(inputs, output, output_dir, ".hvq")
    from hvq.codec.runtime.pipeline import Codec

    try:
        codec = Codec.for_model(model_path)
    except HvqError as exc:  # its message names the model file
        raise click.ClickException(str(exc))
    try:
        codec.check_selection(levels)  # levels and depths the model has
    except HvqError as exc:
        raise click.BadParameter(str(exc), param_hint="--levels")
    # without a depth named, the factors alone (what rate control takes); else the selection with depths
    chosen = levels and (tuple(f for f, _ in levels) if all(d is None for _, d in levels) else levels)
    sources = [job.source for job in jobs]
    threads_plan = ThreadPlan.for_files(threads, len(jobs))

    def work(job):
        if job.clash:
            raise click.ClickException(f"{job.target}: also the output of {job.clash}, an earlier input")
        check_target(job.target, sources, force, stdout_ok=True)
        # a target search picks the levels too, unless --levels names them
        return codec.compress(image_source(job.source), chosen or None, **rate)

    _run_batch(ctx, jobs, work, threads_plan, "compress")


def _repeated_targets(jobs) -> set:
    """Jobs whose target an earlier job already writes: the first input wins, the others fail."""
    seen, repeated = set(), set()
    for job in jobs:
        key = job.target.resolve()
        if key in seen:
            repeated.add(job)
        seen.add(key)
    return repeated


def _run_batch(ctx, jobs, work, threads_plan: ThreadPlan, label: str) -> None:
    """Run ``work(job) -> bytes`` over the jobs, writing each result atomically in input order.

    A job that fails is reported on one line and the rest go on (exit 1 at
    the end); Ctrl-C or SIGTERM stops the run with whole files only.
    """

    def guarded(job):
        try:
            return work(job)
        except click.ClickException as exc:
            raise _JobFailed(exc.message) from None
        except HvqError as exc:
            raise _JobFailed(f"{getattr(job, 'source', job)}: {exc}") from None

    written = 0
    failures = 0
    with terminate_as_interrupt(), threads_plan.applied():
        results = in_order(guarded, jobs, threads_plan.workers)
        try:
            for job, data, error in _progress_over(results, len(jobs), label):
                if error is not None:
                    failures += 1
                    _report(f"Error: {error}")
                    continue
                with signals_held():  # the count in the interrupt message includes this file
                    write_output(job.target, data)
                    written += 1
        except KeyboardInterrupt:
            results.close()
            _report(f"Interrupted: {written} of {len(jobs)} files written, no partial file left")
            ctx.exit(EXIT_INTERRUPTED)
    if failures:
        if len(jobs) > 1:
            _report(f"{failures} of {len(jobs)} files failed")
        ctx.exit(1)


class _JobFailed(HvqError):
    """One file's failure, its message already naming the file."""


def _progress(items, label: str):
    """A progress bar over a list of items (``hvq tokens``, ``hvq detokenize``); silent for one."""
    return _progress_over(items, len(items), label)


def _progress_over(results, total: int, label: str):
    """A progress bar over a result stream of ``total`` items; silent for one."""
    if total <= 1:
        return results
    from tqdm import tqdm

    return tqdm(results, total=total, desc=label, unit="file", file=sys.stderr)


def _rate_options(quality, target_bpp, target_psnr, effort=None) -> dict:
    """The rate-control keywords of Codec.compress, checked: a value or a mix it refuses is misuse (exit 2)."""
    named = (("--quality", quality), ("--target-bpp", target_bpp), ("--target-psnr", target_psnr))
    given = [name for name, value in named if value is not None]
    if len(given) > 1:
        raise click.BadParameter(f"give one of --quality, --target-bpp and --target-psnr, not {' and '.join(given)}")
    if effort is not None and not given:
        raise click.BadParameter("needs --quality, --target-bpp or --target-psnr", param_hint="--effort")
    if quality is not None and not 0 <= quality <= 100:
        raise click.BadParameter(f"{quality:g} is outside 0..100", param_hint="--quality")
    for name, value in named[1:]:
        if value is not None and not 0 < value < float("inf"):
            raise click.BadParameter(f"{value:g} is not a positive number", param_hint=name)
    return {"quality": quality, "target_bpp": target_bpp, "target_psnr": target_psnr, "effort": effort}


@main.command(epilog=EXIT_CODES)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@output_option("Output image (one input; default: IN.png); - for PNG on standard output (never a terminal); "
               "FOLDER/ for FOLDER/IN.png.", stdio=True)
@click.option("-d", "--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Output folder (IN's name, suffix .png).")
@click.option("--level", type=LevelFactor(), default=None, help="Level to decode (default: the finest stored).")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Refinement depths of the level to decode, 1 for its grid alone (default: every depth stored whole).")
@click.option("--partial", is_flag=True, help="Decode the finest complete level of a truncated file.")
@model_option
@threads_option
@force_option
@click.pass_context
def decompress(ctx, inputs, output, output_dir, level, depth, partial, model_path, threads, force):
    """Decode .hvq files to images; the format follows the output's suffix.

    Only formats Pillow writes RGB images in are accepted, checked before
    decoding.  An input of - reads standard input (give -o).  Several files
    share one loaded model and are decoded side by side, one per thread
    (--threads); a file that fails is reported and the rest go on.
    HVQ_BACKEND=onnx decodes with onnxruntime, without torch (auto, the
    default: torch when it is installed).
    """
    from hvq.bitstream.container import MAX_FILE_BYTES
    from hvq.cli.inputs import Job

    if output and output_dir:
        raise click.BadParameter("give -o/--output or -d/--output-dir, not both")
    if output and len(inputs) > 1 and not isinstance(output, FolderPath):
        raise click.BadParameter("-o/--output takes one input; use -d/--output-dir for several")
    if STDIO in inputs:
        if len(inputs) > 1:
            raise click.BadParameter("- (standard input) must be the only input", param_hint="INPUTS")
        if output is None:
            raise click.BadParameter("reading standard input needs -o FILE (or -o - for standard output)")

    def target(path: Path) -> Path:
        default = path.with_suffix(".png")
        if output_dir:
            return output_dir / default.name
        return into_folder(output, path, default.name) or default

    jobs = [Job(path, target(path)) for path in inputs]
    image_format = "PNG" if jobs[0].target == STDIO else writable_format(jobs[0].target.suffix)
    if len(jobs) == 1:
        check_target(jobs[0].target, list(inputs), force, stdout_ok=True)  # before the model loads
    from hvq.codec.runtime.backend import decompress as decompress_file, uses_torch

    try:
        on_torch = uses_torch()  # HVQ_BACKEND: torch, or onnxruntime without importing torch
        if on_torch:
            from hvq.codec.runtime.pipeline import Codec

            model = Codec.for_model(model_path).model if model_path else None  # else the model each file names
        else:
            from hvq.codec.runtime.registry import read_prior

            model = read_prior(model_path).path if model_path else None  # checked before any file
    except HvqError as exc:  # its message names the model file
        raise click.ClickException(str(exc))
    threads_plan = ThreadPlan.for_files(threads, len(jobs), on_torch)

    def work(job):
        if job in repeated:
            raise click.ClickException(f"{job.target}: written from another input in this run")
        check_target(job.target, list(inputs), force, stdout_ok=True)
        source = read_stdin(MAX_FILE_BYTES) if job.source == STDIO else job.source
        image = decompress_file(source, level, model, partial=partial, depth=depth,
                                threads=0 if on_torch else threads_plan.torch_threads)
        buffer = io.BytesIO()
        image.save(buffer, format=image_format)
        return buffer.getvalue()

    repeated = _repeated_targets(jobs)
    _run_batch(ctx, jobs, work, threads_plan, "decompress")


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
        + ("" if s.complete else f", TRUNCATED (missing levels {','.join([*map(str, s.missing), *s.missing_depths])})"),
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
        for d in lv.depths:  # refinement depths, each coded given the one before
            name = f"{lv.factor}:{d.depth}"
            lines.append(f"  {name:>5}  {grid:<9} {d.chunk_bytes:>7}  {d.bits_per_index:>10.3f}  {d.bpp:.4f}  {d.coder}")
    return "\n".join(lines)


@main.command(epilog=EXIT_CODES)
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keep", type=LevelDepthList(), required=True,
              help="Levels to keep, e.g. 16,8; F:D keeps depths 1..D of level F (16,8,4:2). "
                   "With a top-down model installed or given, the coarser levels a kept level decodes with stay.")
@output_option("The stripped file; - for standard output; FOLDER/.", required=True, stdio=True)
@model_option
@force_option
def strip(input, keep, output, model_path, force):
    """Drop levels, or a level's finest depths, from a .hvq file without running the transforms.

    Chunks are copied as they are; dropping depths drops the tail of a
    level's chunks.  A level coded given a level that is
    dropped is re-coded from its indices with the prior of the model the
    file names (installed, or --model); only its tables are read, and the
    transforms never run.
    """
    from hvq.bitstream.container import MAX_FILE_BYTES, read_bytes
    from hvq.codec.runtime.tokens import strip_file

    output = into_folder(output, input, input.name)
    check_target(output, [input], force, stdout_ok=True)
    with terminate_as_interrupt():
        try:
            data = read_stdin(MAX_FILE_BYTES) if input == STDIO else read_bytes(input)
            stripped = strip_file(data, keep, model_path)
        except HvqUsageError as exc:  # a depth the file does not store: misuse of --keep
            raise click.BadParameter(f"{input}: {exc}", param_hint="--keep")
        except HvqError as exc:
            raise _fail(input, exc)
        write_output(output, stripped)


main.add_command(train)
main.add_command(bench)
main.add_command(export)
main.add_command(export_graphs)
main.add_command(fit_prior)
main.add_command(tokens)
main.add_command(detokenize)


if __name__ == "__main__":  # pragma: no cover
    main()
