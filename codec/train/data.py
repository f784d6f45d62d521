"""Training crops from any folder of images.

Each batch is drawn from a generator seeded by ``(seed, step)``, so a resumed
run sees exactly the batches it would have seen without the interruption, and
no sampler state needs saving.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hvq.bitstream.errors import HvqImageError
from hvq.codec.runtime.imageio import load_image, pillow_errors

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def list_images(folders: list[str] | tuple[str, ...]) -> list[Path]:
    """Image files under the folders, sorted so every machine sees the same order."""
    files: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder")
        files += [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no images under {', '.join(map(str, folders))}")
    return sorted(files)


@contextmanager
def _naming(path: Path):
    """Put the file's name in front of an image error: a data folder holds thousands."""
    try:
        yield
    except HvqImageError as exc:
        raise HvqImageError(f"{path}: {exc}") from None


def read_image(path: Path) -> Image.Image:
    """``load_image`` for one file of a data folder; its error names the file."""
    with _naming(path):
        return load_image(path)


def _training_pixels(path: Path) -> np.ndarray:
    """A training image as 8-bit RGB, converted as training always has (no EXIF turn, alpha dropped)."""
    with _naming(path), pillow_errors(), Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class CropSampler:
    """Random crops with random horizontal flips, images held decoded in memory (uint8).

    Worker processes share the decoded images copy-on-write (fork).
    """

    def __init__(self, files: list[Path], crop: int, seed: int):
        self.crop = crop
        self.seed = seed
        self.images: list[np.ndarray] = []
        for path in files:
            array = _training_pixels(path)
            if min(array.shape[:2]) >= crop:
                self.images.append(array)
        if not self.images:
            raise ValueError(f"none of the {len(files)} training images is at least {crop} px on its shorter side")

    def batch(self, step: int, size: int, rank: int = 0) -> torch.Tensor:
        """The batch for one step (and one rank): (size, 3, crop, crop) float in [0, 1]."""
        rng = np.random.default_rng([self.seed, step, rank])
        out = np.empty((size, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(size):
            image = self.images[rng.integers(len(self.images))]
            top = rng.integers(image.shape[0] - self.crop + 1)
            left = rng.integers(image.shape[1] - self.crop + 1)
            patch = image[top : top + self.crop, left : left + self.crop]
            out[i] = patch[:, ::-1] if rng.integers(2) else patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


class StepBatches(torch.utils.data.Dataset):
    """The batches of steps ``first_step`` .. ``last_step - 1`` as a dataset, for DataLoader workers.

    Item ``i`` is the batch of step ``first_step + i``; since a batch depends
    only on (seed, step, rank), worker processes can cut crops ahead of the
    training loop without changing what it sees.
    """

    def __init__(self, sampler: CropSampler, first_step: int, last_step: int, batch_size: int, rank: int = 0):
        self.sampler = sampler
        self.first_step = first_step
        self.last_step = last_step
        self.batch_size = batch_size
        self.rank = rank

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.sampler.batch(self.first_step + i, self.batch_size, self.rank)


def step_batches(sampler: CropSampler, first_step: int, last_step: int, batch_size: int, rank: int, workers: int):
    """An iterator over the batches of the remaining steps, cut in ``workers`` processes (0: in this one)."""
    dataset = StepBatches(sampler, first_step, last_step, batch_size, rank)
    return iter(
        torch.utils.data.DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=4 if workers else None
        )
    )
