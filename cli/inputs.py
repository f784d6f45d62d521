"""Which files a command works on, and where each one's output goes.

``hvq compress`` takes files and folders.  A folder stands for the image
files under it, at any depth, in sorted order: the files whose suffix Pillow
knows as an image format (``.hvq`` files and hidden files and folders are
left out).  Symbolic links to files and folders are followed (a link that
leads back into a folder already searched is not searched again).
Outputs go beside each input, or under ``--output-dir``, where a folder's
subfolders are mirrored so that two ``a.png`` in different subfolders do not
collide.  ``-`` is standard input: alone, and with ``-o``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click

from hvq.codec.runtime.image_files import images_in

STDIO = Path("-")  # standard input as an input, standard output as an output


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    clash: Path | None = None  # an earlier input of this run with the same target


MAX_IMAGE_BYTES = 1 << 30  # an image file read from standard input (a path is read by Pillow as it needs)


def image_source(path: Path):
    """What ``Codec.compress`` takes for an input: the path, or for ``-`` the image read from standard input."""
    if path != STDIO:
        return path
    import io

    from hvq.codec.runtime.imageio import load_image
    from hvq.codec.runtime.pipeline import MAX_TRANSFORM_PIXELS

    return load_image(io.BytesIO(read_stdin(MAX_IMAGE_BYTES)), MAX_TRANSFORM_PIXELS, name="-")


def read_stdin(limit: int) -> bytes:
    """All of standard input, up to ``limit`` bytes; a terminal or a longer stream is refused."""
    stream = click.get_binary_stream("stdin")
    if stream.isatty():
        raise click.UsageError("- reads standard input, which is a terminal: pipe a file in (hvq compress - < a.png)")
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise click.ClickException(f"-: standard input exceeds the {limit}-byte limit")
    return data


def plan(inputs: tuple[Path, ...], output: Path | None, output_dir: Path | None, suffix: str) -> list[Job]:
    """Pair every input file with its output path; a folder with no image in it is a usage error.

    Two inputs whose outputs would be the same file (``a.png`` and ``a.jpg``
    into one folder) are both planned; the later one carries the earlier one
    as its ``clash`` and is refused when its turn comes.
    """
    if output == STDIO:
        from hvq.cli.output import check_stdout

        check_stdout()  # misuse, before any work
    if STDIO in inputs:
        if len(inputs) > 1:
            raise click.BadParameter("- (standard input) must be the only input", param_hint="INPUTS")
        if output is None:
            raise click.BadParameter("reading standard input needs -o FILE (or -o - for standard output)",
                                     param_hint="INPUTS")
        return [Job(STDIO, output)]
    jobs = []
    for given in inputs:
        if given.is_dir():
            if output:
                raise click.BadParameter(f"{given} is a folder; -o/--output takes one file, use -d/--output-dir")
            found = images_in(given)
            if not found:
                raise click.BadParameter(f"{given}: no image files in this folder", param_hint="INPUTS")
            for path in found:
                where = output_dir / path.relative_to(given).parent if output_dir else path.parent
                jobs.append(Job(path, where / (path.stem + suffix)))
        else:
            target = output or (output_dir / (given.stem + suffix) if output_dir else given.with_suffix(suffix))
            jobs.append(Job(given, target))
    if output and len(jobs) > 1:
        raise click.BadParameter("-o/--output takes one input; use -d/--output-dir for several")
    first: dict[Path, Path] = {}
    for i, job in enumerate(jobs):
        earlier = first.setdefault(Path(os.path.realpath(job.target)), job.source)
        if earlier != job.source:
            jobs[i] = Job(job.source, job.target, earlier)
    return jobs
