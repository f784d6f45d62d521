"""Which files of a folder are images: the one rule for every folder hvq reads.

``hvq compress`` on a folder, the training and validation images of ``hvq
train``, the fitting images of ``hvq export`` and ``hvq fit-prior``, and the
images of ``hvq bench`` are all found here, so a folder means the same files
to every command.  A file is an image when Pillow opens files with its
suffix (``.hvq`` left out: hvq's own files are outputs, not inputs) and no
part of its path below the folder is hidden (a leading dot: ``.git``,
thumbnail caches, macOS's ``._`` files).  Folders are searched at any depth
and listed sorted, so every machine sees the same order.  Each file is then
read by ``imageio.load_image``, EXIF orientation included, the same way the
codec reads an input.

Pillow and torch are imported only when used: ``hvq info`` imports the
command line's input planning and must start instantly.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from hvq.bitstream.errors import HvqDataError, HvqImageError


@lru_cache(maxsize=1)
def image_suffixes() -> frozenset[str]:
    """Lower-case suffixes of the formats Pillow opens, without ``.hvq``."""
    from PIL import Image

    return frozenset(s for s, fmt in Image.registered_extensions().items() if fmt in Image.OPEN) - {".hvq"}


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def images_in(folder: Path) -> list[Path]:
    """The image files under ``folder``, at any depth, sorted (empty when there are none).

    Symbolic links to files and folders are followed; each real folder is
    searched once, so a link back up the tree cannot loop.
    """
    suffixes = image_suffixes()
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        here = os.stat(root)
        if (here.st_dev, here.st_ino) in seen:  # a link back up the tree, or a second link to one folder
            dirs[:] = []
            continue
        seen.add((here.st_dev, here.st_ino))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root, name)
            if not name.startswith(".") and path.suffix.lower() in suffixes and path.is_file():
                found.append(path)
    return sorted(found)


def list_images(folders: list[str] | tuple[str, ...]) -> list[Path]:
    """The image files under several folders, sorted; ``HvqDataError`` for a missing folder or no image at all."""
    files: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise HvqDataError(f"{folder}: not a folder")
        files += images_in(root)
    if not files:
        raise HvqDataError(f"no images under {', '.join(map(str, folders))}")
    return sorted(files)


@contextmanager
def naming(path: Path):
    """Put the file's name in front of an image error: a data folder holds thousands."""
    try:
        yield
    except HvqImageError as exc:
        raise HvqImageError(f"{path}: {exc}") from None


def read_image(path: Path):
    """``load_image`` for one file of a folder: 8-bit RGB, EXIF orientation applied; its error names the file."""
    from hvq.codec.runtime.imageio import load_image

    with naming(path):
        return load_image(path)
