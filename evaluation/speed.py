"""Encode and decode time, and peak memory, of each codec: one fresh child process per codec.

Time: for each image, the median of ``repeats`` runs of each operation
(image to bytes, bytes to image, format conversions included), then the
mean of those medians over images; megapixels per second is the images'
pixels over the sum of their medians.  The thread count each codec ran
with and the CPU are recorded with the numbers, since both move them; where
a library lets it be set (torch, libavif, libjxl), ``SpeedJob.threads``
sets it (``classical.use_threads``).

Memory: the child's peak resident set (``VmHWM`` in ``/proc/self/status``)
over all its encodes and decodes, minus its resident set just before them,
after the imports, the model and the images are loaded.  Just before, the
peak is reset by writing 5 to ``/proc/self/clear_refs`` (Linux 4.0+), so
the transients of importing torch do not hide the work's own peak.  This is
resident memory, native libraries included (tracemalloc would see only
Python's allocations, not libjpeg's or torch's).  Each codec gets a fresh
process because ``ru_maxrss`` and, after a fork, the parent's pages carry
over; a spawned child starts from an empty interpreter.

The CompressAI reference is ``ScaleHyperprior`` (bmshj2018-hyperprior,
N=128, M=192, the zoo's qualities 1-5) built with random weights: nothing is
downloaded, so only its time and memory mean anything, not its rate or
quality.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COMPRESSAI_REFERENCE = "compressai-bmshj2018-hyperprior"


@dataclass(frozen=True)
class SpeedJob:
    """What one child process measures: one codec at one setting on the given images."""

    codec: str  # a classical codec, "hvq", or COMPRESSAI_REFERENCE
    setting: float | None  # the classical codec's parameter value; None for the learned codecs
    images: tuple[Path, ...]
    repeats: int
    threads: int | None  # threads for torch, libavif and libjxl (None: each library's default)
    model_path: str | None = None  # hvq's model (None: the shipped one)


@dataclass(frozen=True)
class OperationTime:
    operation: str  # "encode", "decode", "encode (all levels)", "decode level 16", ...
    seconds_per_image: float  # mean over images of each image's median
    megapixels_per_second: float


@dataclass(frozen=True)
class SpeedResult:
    codec: str
    setting: str
    images: int
    megapixels: float  # all images together
    operations: tuple[OperationTime, ...]
    peak_mib: float | None  # None where /proc is missing
    memory_method: str
    threads: int  # the threads the codec ran with (torch's, or its library's; 1 for the single-threaded ones)
    note: str = ""


@dataclass(frozen=True)
class Machine:
    cpu: str
    logical_cpus: int
    usable_cpus: int  # those this process may run on (affinity), what torch's default is based on
    platform: str
    python: str


def describe_machine() -> Machine:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(cpu, os.cpu_count() or 1, usable, platform.platform(terse=True), platform.python_version())


# -- memory -------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory of this process from now on, in MiB above the current resident set."""

    def __init__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
            self.method = "VmHWM - VmRSS before the runs (peak reset via /proc/self/clear_refs)"
        except OSError:
            self.method = "VmHWM - VmRSS before the runs (peak not resettable: may include import transients)"
        self.baseline_kib = _status_kib("VmRSS")
        if self.baseline_kib is None:
            self.method = "unavailable (no /proc/self/status)"

    def peak_mib(self) -> float | None:
        peak = _status_kib("VmHWM")
        if peak is None or self.baseline_kib is None:
            return None
        return max(0, peak - self.baseline_kib) / 1024


# -- the codecs: each prepares (imports, model) and returns "time one image" ----------


def _median_seconds(run, repeats: int):
    """The median wall time of ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _encode_decode_timer(encode, decode, repeats: int):
    """The image timer of a codec with one encode and one decode: median seconds of each."""

    def time_image(rgb: np.ndarray) -> dict[str, float]:
        encode_s, coded = _median_seconds(lambda: encode(rgb), repeats)
        decode_s, _ = _median_seconds(lambda: decode(coded), repeats)
        return {"encode": encode_s, "decode": decode_s}

    return time_image


def _prepare_classical(job: SpeedJob):
    """Returns the function that times one image, and the setting's label."""
    from hvq.evaluation.classical import CLASSICAL

    codec = CLASSICAL[job.codec]
    timer = _encode_decode_timer(lambda rgb: codec.encode(rgb, job.setting), codec.decode, job.repeats)
    return timer, codec.setting(job.setting)


def _prepare_hvq(job: SpeedJob):
    from PIL import Image

    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.runtime.tokens import strip_file

    codec = Codec.for_model(job.model_path)
    factors = sorted(codec.model.config.factors, reverse=True)

    def time_image(rgb: np.ndarray) -> dict[str, float]:
        image = Image.fromarray(rgb, "RGB")
        times = {}
        times["encode (all levels)"], data = _median_seconds(lambda: codec.compress(image), job.repeats)
        for factor in factors:
            alone = strip_file(data, (factor,), codec.model)  # outside the clock: the file a user would fetch (with a top-down level's parents)
            times[f"decode level {factor}"], _ = _median_seconds(lambda: codec.decompress(alone), job.repeats)
        return times

    return time_image, f"model {codec.model.fingerprint_hex[:12]}"


def _prepare_compressai(job: SpeedJob):
    import warnings

    import torch
    import torch.nn.functional as F

    with warnings.catch_warnings():  # compressai scripts a helper at import; torch 2.9+ warns of that on every run
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
        from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    net = ScaleHyperprior(N=128, M=192).eval()
    net.update(force=True)  # builds the entropy coders' tables from the (random) weights

    def encode(rgb):
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % 64, 0, -height % 64), mode="replicate")  # its transforms need multiples of 64
        with torch.inference_mode():
            return net.compress(x), (height, width)

    def decode(coded):
        out, (height, width) = coded
        with torch.inference_mode():
            x_hat = net.decompress(out["strings"], out["shape"])["x_hat"][..., :height, :width]
        return (x_hat.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()

    return _encode_decode_timer(encode, decode, job.repeats), "N=128, M=192, random weights"


def measure_speed(job: SpeedJob) -> SpeedResult:
    """Times and peak memory of one codec; meant to run in a fresh child process (``run_speed``)."""
    from hvq.codec.runtime.image_files import read_image

    if job.codec in ("hvq", COMPRESSAI_REFERENCE):
        import torch

        if job.threads:
            torch.set_num_threads(job.threads)
        threads = torch.get_num_threads()
        time_image, setting = (_prepare_hvq if job.codec == "hvq" else _prepare_compressai)(job)
    else:
        from hvq.evaluation.classical import use_threads

        threads = use_threads(job.codec, job.threads)
        time_image, setting = _prepare_classical(job)
    originals = [np.asarray(read_image(path)) for path in job.images]
    memory = PeakMemory()  # after imports, model and images: what remains is coding's own memory
    per_image = [time_image(rgb) for rgb in originals]
    peak_mib = memory.peak_mib()
    megapixels = [rgb.shape[0] * rgb.shape[1] / 1e6 for rgb in originals]
    operations = []
    for operation in per_image[0]:
        seconds = [times[operation] for times in per_image]
        operations.append(OperationTime(operation, float(np.mean(seconds)), sum(megapixels) / sum(seconds)))
    note = "random weights: only time and memory are meaningful" if job.codec == COMPRESSAI_REFERENCE else ""
    return SpeedResult(job.codec, setting, len(originals), sum(megapixels), tuple(operations),
                       peak_mib, memory.method, threads, note)


def run_speed(jobs: list[SpeedJob], progress: bool = True) -> list[SpeedResult]:
    """Each job in its own spawned child process, one after another, so they neither share memory nor cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")
    results = []
    for job in tqdm(jobs, desc="speed", unit="codec", file=sys.stderr, disable=not progress, leave=False):
        with ProcessPoolExecutor(1, mp_context=context) as child:
            results.append(child.submit(measure_speed, job).result())
    return results
