"""Images per second over a folder: `hvq compress`/`decompress` as one process, against cwebp/avifenc run alike.

A user compressing a folder runs one command: hvq loads its model once and
codes the files side by side on worker threads (``--threads``).  cwebp and
avifenc take one file per process, so they run the way a shell script would
use both cores: one process per file, ``--threads`` of them at a time (as
``xargs -P``), each single-threaded (``avifenc -j 1``).  Every wall time
includes the start-ups it needs, hvq's once and the classical tools' once
per file, and decoding writes PNG files in both cases.

    python -m hvq.benchmarks.throughput ../shared/datasets/kodak --threads 1,2 \\
        -o benchmarks/results/throughput/throughput.json

Settings: hvq the shipped model, all levels stored, the finest decoded;
cwebp its default (``-q 75``); avifenc speed 6 (its default) with quantizers 24-32
(libavif 0.11 has no ``-q``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from hvq.benchmarks.reports import machine, write_report
from hvq.benchmarks.startup import child_env


def _run(argv: list[str], env=None) -> None:
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode:
        raise click.ClickException(f"{' '.join(map(str, argv))}: {done.stderr.decode()[-300:]}")


def _per_file(make_argv, files: list[Path], parallel: int) -> float:
    """Wall seconds to run one process per file, ``parallel`` at a time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda f: _run(make_argv(f)), files))
    return time.perf_counter() - started


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    _run(argv, child_env(os.environ.get("PYTHONPATH")))
    return time.perf_counter() - started


def _bytes(folder: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(f"*{suffix}"))


def measure(images: list[Path], threads: list[int], repeats: int, work: Path) -> list[dict]:
    hvq = [sys.executable, "-m", "hvq.cli.main"]
    pixels = 0
    from PIL import Image

    for path in images:
        with Image.open(path) as im:
            pixels += im.width * im.height
    rows = []
    for t in threads:
        runs: dict[str, list[float]] = {}
        for _ in range(repeats):
            for name in ("hvq", "webp", "avif"):
                out = work / f"{name}-{t}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                png = work / f"{name}-{t}-png"
                shutil.rmtree(png, ignore_errors=True)
                png.mkdir()
                if name == "hvq":
                    enc = _timed([*hvq, "compress", *map(str, images), "-d", str(out), "--threads", str(t)])
                    dec = _timed([*hvq, "decompress", *map(str, sorted(out.glob("*.hvq"))), "-d", str(png),
                                  "--threads", str(t)])
                    suffix = ".hvq"
                elif name == "webp":
                    enc = _per_file(lambda f: ["cwebp", "-quiet", "-q", "75", str(f), "-o", str(out / (f.stem + ".webp"))],
                                    images, t)
                    dec = _per_file(lambda f: ["dwebp", "-quiet", str(f), "-o", str(png / (f.stem + ".png"))],
                                    sorted(out.glob("*.webp")), t)
                    suffix = ".webp"
                else:
                    enc = _per_file(lambda f: ["avifenc", "-j", "1", "--min", "24", "--max", "32", str(f), str(out / (f.stem + ".avif"))],
                                    images, t)
                    dec = _per_file(lambda f: ["avifdec", "-j", "1", str(f), str(png / (f.stem + ".png"))],
                                    sorted(out.glob("*.avif")), t)
                    suffix = ".avif"
                runs.setdefault(f"{name} enc", []).append(enc)
                runs.setdefault(f"{name} dec", []).append(dec)
                runs.setdefault(f"{name} bpp", []).append(8 * _bytes(out, suffix) / pixels)
                click.echo(f"threads {t} {name}: encode {enc:.1f} s, decode {dec:.1f} s", err=True)
        for name in ("hvq", "webp", "avif"):
            enc, dec = statistics.median(runs[f"{name} enc"]), statistics.median(runs[f"{name} dec"])
            rows.append({
                "codec": name, "threads": t, "images": len(images),
                "encode_seconds": enc, "decode_seconds": dec,
                "encode_images_per_s": len(images) / enc, "decode_images_per_s": len(images) / dec,
                "bpp": runs[f"{name} bpp"][0], "repeats": repeats,
            })
    return rows


def tool_versions() -> dict[str, str]:
    versions = {}
    for tool, flag in (("cwebp", "-version"), ("avifenc", "--version")):
        done = subprocess.run([tool, flag], capture_output=True, text=True, check=False)
        versions[tool] = (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"
    import torch

    versions["torch"] = torch.__version__
    return versions


def markdown(report: dict) -> str:
    lines = [
        f"{report['images']} images ({report['dataset']}), {report['machine']}; {report['versions']}. "
        f"Load average {report['load_before'][0]:.1f} before, {report['load_after'][0]:.1f} after. "
        f"Median of {report['rows'][0]['repeats']} runs. hvq: one process per direction, start-up included; "
        "cwebp/avifenc: one process per file, THREADS at a time.",
        "",
        "| codec | threads | bpp | encode images/s | decode images/s | encode s | decode s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['codec']} | {r['threads']} | {r['bpp']:.3f} | {r['encode_images_per_s']:.2f} | "
                     f"{r['decode_images_per_s']:.2f} | {r['encode_seconds']:.1f} | {r['decode_seconds']:.1f} |")
    return "\n".join(lines)


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--threads", default="1,2", show_default=True, help="Thread counts to measure, comma-separated.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(dataset, threads, repeats, output):
    for tool in ("cwebp", "dwebp", "avifenc", "avifdec"):
        if shutil.which(tool) is None:
            raise click.ClickException(f"{tool} is not installed (Debian: apt-get install webp libavif-bin)")
    images = sorted(dataset.glob("*.png"))
    if not images:
        raise click.ClickException(f"{dataset}: no PNG files")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(images, [int(t) for t in threads.split(",")], repeats, Path(tmp))
    report = {
        "dataset": str(dataset), "images": len(images), "rows": rows, "load_before": load_before,
        "load_after": os.getloadavg(), "versions": tool_versions(),
        "machine": machine(),
    }
    table = markdown(report)
    click.echo(table)
    write_report(output, report, table)


if __name__ == "__main__":
    main()
