"""A 4096x4096 photo through the shipped model: time, peak memory, and tiled against untiled quality.

No 4K photograph ships with the test data, so the input is a mosaic of the
24 Kodak images (768x512 each, portrait ones rotated, tiled 6 across and 8
down, cropped to 4096x4096): real photographic content at full size, with
the mosaic's own edges at places unrelated to hvq's tile grid.

Each operation runs in a fresh child process, so its peak resident memory
(VmHWM, which includes Python, torch and the model) is its own:

    python -m hvq.benchmarks.large_image ../shared/datasets/kodak -o benchmarks/results/large_image.json

``--tiles`` lists tile sides to measure; 0 means untiled (one window: the
whole image, as hvq 0.1 did).  PSNR is against the mosaic, per level, and
between the tiled and untiled decodes of the same file.  ``--decode-levels``
narrows the decodes (``--decode-levels 4 --tiles 1024`` is the quick check
of the memory bound); the torch version is part of the result, since the
baseline memory differs between builds (the CUDA wheels map about 0.5 GB
more than the CPU ones before any work).  Run it under each interpreter to
compare torch versions: the children use the same one.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

from hvq.benchmarks.reports import write_report
from hvq.evaluation.metrics import psnr

SIDE = 4096


def build_mosaic(kodak: Path, side: int = SIDE) -> Image.Image:
    """The 24 Kodak images (landscape, 768x512), tiled in reading order and cropped to side x side."""
    files = sorted(kodak.glob("*.png"))
    if len(files) != 24:
        raise click.ClickException(f"{kodak}: expected the 24 Kodak PNGs, found {len(files)}")
    canvas = Image.new("RGB", (side, side))
    slot = 0
    for top in range(0, side, 512):
        for left in range(0, side, 768):
            with Image.open(files[slot % 24]) as im:
                im = im.convert("RGB")
                if im.height > im.width:
                    im = im.rotate(90, expand=True)
                canvas.paste(im, (left, top))
            slot += 1
    return canvas


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MB, from /proc.

    Not ``ru_maxrss``: Linux carries that over from the parent through fork
    and exec, so a child started by a large parent would report the parent's
    peak.  VmHWM belongs to the process image and starts afresh at exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise click.ClickException(f"/proc/self/status has no {field}: this benchmark needs Linux")


def child(operation: str, source: str, target: str, tile: int, level: int | None) -> dict:
    """Run one operation in this process and report its time and this process's peak memory."""
    import torch

    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.runtime.weights import load_model

    codec = Codec.for_model(load_model(), tile=tile or SIDE)  # 0: one window holds the whole image
    baseline_mb = memory_mb("VmRSS")
    started = time.perf_counter()
    if operation == "compress":
        Path(target).write_bytes(codec.compress(source))
    else:
        codec.decompress(source, level).save(target)
    seconds = time.perf_counter() - started
    peak_mb = memory_mb("VmHWM")
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "baseline_rss_mb": baseline_mb, "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def run_child(*args: str) -> dict:
    command = [sys.executable, "-m", "hvq.benchmarks.large_image", "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise click.ClickException(f"child {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(kodak: Path, tiles: list[int], work: Path, levels: tuple[int, ...] = (16, 8, 4)) -> dict:
    source = work / "mosaic.png"
    mosaic = build_mosaic(kodak)
    mosaic.save(source)  # PNG is lossless: the children read back exactly these pixels
    original = np.asarray(mosaic)
    results = {}
    for tile in tiles:
        name = f"tile {tile}" if tile else "untiled"
        file = work / f"{tile}.hvq"
        record = {"tile": tile, "compress": run_child("compress", str(source), str(file), str(tile), "0")}
        record["file_bytes"] = file.stat().st_size
        record["bpp"] = 8 * record["file_bytes"] / (SIDE * SIDE)
        record["levels"] = {}
        for level in levels:
            out = work / f"{tile}-{level}.png"
            timing = run_child("decompress", str(file), str(out), str(tile), str(level))
            decoded = np.asarray(Image.open(out))
            record["levels"][str(level)] = {"decompress": timing, "psnr": psnr(original, decoded)}
        results[name] = record
        click.echo(f"{name}: {json.dumps(record)}", err=True)
    return results


def compare(results: dict, work: Path) -> None:
    """PSNR of each tiled decode against the untiled decode of the untiled file, per level."""
    if "untiled" not in results:
        return
    for name, record in results.items():
        same_file = (work / f"{record['tile']}.hvq").read_bytes() == (work / "0.hvq").read_bytes()
        record["same_file_as_untiled"] = same_file
        for level, entry in record["levels"].items():
            a = np.asarray(Image.open(work / f"{record['tile']}-{level}.png"))
            b = np.asarray(Image.open(work / f"0-{level}.png"))
            entry["psnr_vs_untiled"] = psnr(a, b)
            if level in results["untiled"]["levels"]:
                entry["psnr_delta_db"] = entry["psnr"] - results["untiled"]["levels"][level]["psnr"]


def markdown(results: dict) -> str:
    lines = [
        f"4096x4096 Kodak mosaic, shipped model, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {next(iter(results.values()))['compress']['torch']}, "
        f"torch threads {next(iter(results.values()))['compress']['threads']}, "
        f"load average {os.getloadavg()[0]:.1f} at the end. "
        "Peak: the child process's VmHWM, Python, torch and the model included. PSNR against the mosaic; "
        "the last column compares each decode with the untiled decode of the untiled file.",
        "",
        "| transforms | compress s | compress peak MB | level | decompress s | decompress peak MB | PSNR dB | vs untiled dB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for level, e in r["levels"].items():
            d = e["decompress"]
            vs = e.get("psnr_vs_untiled")
            lines.append(
                f"| {name} | {r['compress']['seconds']:.1f} | {r['compress']['peak_rss_mb']:.0f} | {level} | "
                f"{d['seconds']:.1f} | {d['peak_rss_mb']:.0f} | {e['psnr']:.2f} | "
                f"{'identical' if vs == float('inf') else f'{vs:.1f}' if vs is not None else '-'} |"
            )
    return "\n".join(lines)


@click.command()
@click.argument("kodak", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False)
@click.option("--tiles", default="1024,0", help="Tile sides to measure; 0 = untiled.")
@click.option("--decode-levels", default="16,8,4", show_default=True, help="Levels to decode, comma-separated.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--child", "child_args", nargs=5, default=None, hidden=True)
def main(kodak, tiles, decode_levels, output, child_args):
    if child_args:
        operation, source, target, tile, level = child_args
        print(json.dumps(child(operation, source, target, int(tile), int(level) or None)))
        return
    if kodak is None:
        raise click.UsageError("give the Kodak folder")
    with tempfile.TemporaryDirectory() as tmp:
        levels = tuple(int(v) for v in decode_levels.split(",") if v.strip())
        results = measure(kodak, [int(t) for t in tiles.split(",")], Path(tmp), levels)
        compare(results, Path(tmp))
    table = markdown(results)
    click.echo(table)
    write_report(output, {"image": "4096x4096 Kodak mosaic", "results": results}, table)


if __name__ == "__main__":
    main()
