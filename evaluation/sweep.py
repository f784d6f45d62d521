"""Runs the codecs over a folder of images and collects one ``Measurement`` per image and setting.

The classical codecs run in ``jobs`` worker processes, one task per (image,
codec) covering that codec's whole sweep; hvq runs in this process, since
its model is loaded once and torch already uses every core, while the
workers code.  Workers are
started with ``spawn``: forking a process whose torch has run OpenMP code is
not safe, and each worker then imports torch once (for MS-SSIM) and keeps it.
Results come back in a fixed order (codec, setting, image) whatever the
order the workers finish in, so two runs write the same files.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvq.evaluation.classical import CODECS
from hvq.evaluation.records import Measurement, measure


@dataclass(frozen=True)
class BenchImage:
    path: Path
    name: str  # relative to the dataset folder: unique, and the same on every machine


def find_images(folder: Path) -> list[BenchImage]:
    """The image files under ``folder`` (any depth), sorted; ``HvqDataError`` when there are none."""
    from hvq.codec.runtime.image_files import list_images

    return [BenchImage(path, path.relative_to(folder).as_posix()) for path in list_images([str(folder)])]


def load_original(image: BenchImage) -> np.ndarray:
    """The image as every codec sees it: 8-bit RGB (H, W, 3), converted as hvq converts its inputs.

    An unreadable file raises ``HvqImageError`` naming it.
    """
    from hvq.codec.runtime.image_files import read_image

    return np.asarray(read_image(image.path))


def check_readable(images: list[BenchImage]) -> None:
    """Decode every image once before any codec runs: a damaged file stops the run at once, named."""
    for image in images:
        load_original(image)


@dataclass(frozen=True)
class ClassicalTask:
    """One image through one classical codec's whole sweep: a unit of work for a worker."""

    image: BenchImage
    codec: str
    values: tuple[float, ...]
    ssimulacra2: bool = True  # score SSIMULACRA 2 too (the slowest score)


def run_classical_task(task: ClassicalTask) -> list[Measurement]:
    original = load_original(task.image)
    codec = CODECS[task.codec]
    rows = []
    for value in task.values:
        encoded = codec.encode(original, value)
        rows.append(measure(task.image.name, codec.name, codec.setting(value), original, encoded,
                            codec.decode_to(encoded, original.shape), task.ssimulacra2))
    return rows


def _single_threaded_worker() -> None:
    """Worker start-up: one torch thread each, so ``jobs`` workers share the cores instead of fighting."""
    import torch

    torch.set_num_threads(1)


def _bar(total: int, label: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="task", file=sys.stderr, disable=not progress, leave=False)


def run_classical(images: list[BenchImage], sweeps: dict[str, tuple[float, ...]], jobs: int = 1,
                  progress: bool = True, ssimulacra2: bool = True, meanwhile=None) -> list[Measurement]:
    """Every image through every classical codec's sweep, in ``jobs`` processes (1: in this process).

    ``meanwhile``, a function of no arguments, runs in this process while
    the workers code (first, with one job): ``hvq bench`` runs hvq there, so
    the main process does not sit idle waiting for the workers.
    """
    tasks = [ClassicalTask(image, name, values, ssimulacra2) for name, values in sweeps.items() for image in images]
    done: dict[tuple[str, str], list[Measurement]] = {}
    if jobs <= 1:
        if meanwhile is not None:
            meanwhile()
        for name in sweeps:
            mine = [t for t in tasks if t.codec == name]
            with _bar(len(mine), name, progress) as bar:
                for task in mine:
                    done[task.codec, task.image.name] = run_classical_task(task)
                    bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_single_threaded_worker) as pool:
            futures = {pool.submit(run_classical_task, task): task for task in tasks}
            try:
                if meanwhile is not None:
                    meanwhile()
                with _bar(len(tasks), "+".join(sweeps), progress) as bar:
                    for future in as_completed(futures):
                        task = futures[future]
                        done[task.codec, task.image.name] = future.result()
                        bar.update()
            except BaseException:  # Ctrl-C, SIGTERM or a failure: drop the queued tasks instead of running them
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    rows = []
    for name, values in sweeps.items():
        for index in range(len(values)):
            rows += [done[name, image.name][index] for image in images]
    return rows


def run_hvq(images: list[BenchImage], codec, progress: bool = True, qualities=(None,),
            ssimulacra2: bool = True, effort: int | None = None) -> list[Measurement]:
    """Every image through hvq (every level alone at each quality, every subset), in this process;
    ``codec`` is a Codec; ``effort`` is rate control's at every quality (None: the codec's default)."""
    from hvq.evaluation.hvq_runs import measure_hvq

    per_image = []
    with _bar(len(images), "hvq", progress) as bar:
        for image in images:
            per_image.append(measure_hvq(codec, image.name, load_original(image), qualities, ssimulacra2, effort))
            bar.update()
    settings = len(per_image[0]) if per_image else 0
    return [rows[index] for index in range(settings) for rows in per_image]  # by setting, then image
