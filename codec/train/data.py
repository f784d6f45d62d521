"""Training crops from any folder of images.

Each batch is drawn from a generator seeded by ``(seed, step)``, so a resumed
run sees exactly the batches it would have seen without the interruption, and
no sampler state needs saving.  The images are found and read as the codec
finds and reads its inputs (``hvq.codec.runtime.image_files``): the same
files of a folder, EXIF orientation applied, so the model learns the
pictures it will be asked to code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hvq.bitstream.errors import HvqDataError
from hvq.codec.runtime.image_files import list_images, read_image
from hvq.codec.runtime.imageio import to_tensor

__all__ = ["CropSampler", "StepBatches", "list_images", "read_image", "step_batches"]


class CropSampler:
    """Random crops with random horizontal flips, images held decoded in memory (uint8).

    Worker processes share the decoded images copy-on-write (fork).
    """

    def __init__(self, files: list[Path], crop: int, seed: int):
        self.crop = crop
        self.seed = seed
        self.images: list[np.ndarray] = []
        for path in files:
            array = np.asarray(read_image(path))  # as the codec reads an input: EXIF turn, 16 bits scaled
            if min(array.shape[:2]) >= crop:
                self.images.append(array)
        if not self.images:
            raise HvqDataError(f"none of the {len(files)} training images is at least {crop} px on its shorter side")

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
        return to_tensor(out)


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
