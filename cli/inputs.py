"""Which files a command works on, and where each one's output goes.

``hvq compress`` takes files and folders.  A folder stands for the image
files under it, at any depth, in sorted order: the files whose suffix Pillow
knows as an image format (``.hvq`` files and hidden files and folders are
left out).  Outputs go beside each input, or under ``--output-dir``, where a
folder's subfolders are mirrored so that two ``a.png`` in different
subfolders do not collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import click


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@lru_cache(maxsize=1)
def image_suffixes() -> frozenset[str]:
    from PIL import Image

    return frozenset(s for s, fmt in Image.registered_extensions().items() if fmt in Image.OPEN) - {".hvq"}


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def images_in(folder: Path) -> list[Path]:
    suffixes = image_suffixes()
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes and not _is_hidden(p, folder)
    )


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
