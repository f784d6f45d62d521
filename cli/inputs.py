"""Which files a command works on, and where each one's output goes.

``hvq compress`` takes files and folders.  A folder stands for the image
files under it, at any depth, in sorted order, by the rule every command
uses (``hvq.codec.runtime.image_files``: the suffixes Pillow opens, without
``.hvq`` files and hidden files and folders).  Outputs go beside each input,
or under ``--output-dir``, where a folder's subfolders are mirrored so that
two ``a.png`` in different subfolders do not collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from hvq.codec.runtime.image_files import images_in


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def plan(inputs: tuple[Path, ...], output: Path | None, output_dir: Path | None, suffix: str) -> list[Job]:
    """Pair every input file with its output path; a folder with no image in it is a usage error."""
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
    return jobs
