"""Many files through one loaded model: worker threads share it, and the cores are split between them.

One image keeps the cores busy only while a convolution runs; loading the
image, entropy coding and writing PNG run on one core.  So for several
files, ``--threads N`` starts ``min(N, files)`` worker threads, each with
``N // workers`` torch threads, all on the same model (inference only reads
its weights; torch releases the GIL inside its operators).  For one file
all N threads go to torch.  Results come back in input order, and at most
two per worker are held at once, so a folder of large images does not pile
up in memory.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from hvq.bitstream.errors import HvqError

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class ThreadPlan:
    """How ``threads`` CPU threads are used: ``workers`` files at once, ``torch_threads`` inside each.

    Without torch (``on_torch`` false: the onnxruntime decoder) the threads
    inside each file are onnxruntime's, handed to each session by the caller.
    """

    workers: int
    torch_threads: int
    on_torch: bool = True

    @classmethod
    def for_files(cls, threads: int | None, files: int, on_torch: bool = True) -> "ThreadPlan":
        """Split ``threads`` (default: torch's own count, the physical cores or ``OMP_NUM_THREADS``) over ``files``."""
        if on_torch:
            import torch

            total = threads or torch.get_num_threads()
        else:
            total = threads or os.cpu_count() or 1
        workers = max(1, min(total, files))
        return cls(workers, max(1, total // workers), on_torch)

    @contextmanager
    def applied(self):
        """torch's intra-op thread count set for the block, and restored after it (the CLI may run in a library)."""
        if not self.on_torch:
            yield self
            return
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        try:
            yield self
        finally:
            torch.set_num_threads(before)


def in_order(
    work: Callable[[Item], Result], items: Iterable[Item], workers: int
) -> Iterator[tuple[Item, Result | None, HvqError | None]]:
    """``(item, work(item), None)`` or ``(item, None, error)`` for each item, in the items' order.

    Errors other than ``HvqError`` are bugs and propagate.  When the caller
    stops early (Ctrl-C), work not yet started is cancelled; the images
    already being coded finish in their threads and are dropped.
    """
    if workers <= 1:
        for item in items:
            try:
                yield item, work(item), None
            except HvqError as exc:
                yield item, None, exc
        return

    def attempt(item):
        try:
            return work(item), None
        except HvqError as exc:
            return None, exc

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hvq")
    pending: deque[tuple[Item, Future]] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append((item, pool.submit(attempt, item)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            item, future = pending.popleft()
            result, error = future.result()
            for more in source:  # keep the window full
                pending.append((more, pool.submit(attempt, more)))
                break
            yield item, result, error
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
