"""Cold start of the runtime commands: wall time and peak memory of one `hvq` process per run, against `import torch`.

A new user pays, for every ``hvq compress`` of one photo, the interpreter,
the imports and loading the model before the codec's own work.  This runs
each command as a fresh process, several times, round-robin over the
commands and the code variants (so load drifts on a shared machine touch
all of them alike), and keeps the median wall time and the median peak
resident memory (the child's ``ru_maxrss`` from ``wait4``; this parent
imports nothing heavy, so what the child inherits at fork is a few MB).

The floor is ``python -c "import torch"``: what any torch codec pays.
With ``--onnx`` (the default when onnxruntime is installed) this checkout's
``hvq decompress`` runs once more with ``HVQ_BACKEND=onnx`` (the torch-free
decoder, ``codec/runtime/onnx_backend.py``), against its own floor
``python -c "import onnxruntime"``.
``--before NAME=PYTHONPATH`` adds a variant whose ``hvq`` resolves elsewhere
(an export of an older commit), measured in the same run:

    git archive a203ea7 | tar -x -C /tmp/before && mkdir -p /tmp/pp && ln -s /tmp/before /tmp/pp/hvq
    python -m hvq.benchmarks.startup samples/kodim23.png --before a203ea7=/tmp/pp \\
        -o benchmarks/results/startup/startup.json

The children run without the OMP/MKL thread limits of a development shell,
as a user's shell would.  The page cache is warm after the first run of
each command: "cold" is the process, not the disk.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from hvq.benchmarks.reports import machine, write_report

THREAD_LIMITS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def child_env(pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_LIMITS and k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise click.ClickException(f"{' '.join(argv)} exited {child.returncode}: {child.stderr.read().decode()[-400:]}")
    child.stderr.close()
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


ONNX_COMMANDS = ("floor: import onnxruntime", "hvq decompress (HVQ_BACKEND=onnx)")  # this checkout's only


def commands(image: Path, work: Path, onnx: bool = False) -> dict[str, list[str]]:
    hvq = [sys.executable, "-m", "hvq.cli.main"]
    out = {
        "python": [sys.executable, "-c", "pass"],
        "floor: import torch": [sys.executable, "-c", "import torch"],
        "hvq info": [*hvq, "info", str(work / "ref.hvq")],
        "hvq compress": [*hvq, "compress", str(image), "-o", str(work / "c.hvq"), "--force"],
        "hvq decompress": [*hvq, "decompress", str(work / "ref.hvq"), "-o", str(work / "d.png"), "--force"],
    }
    if onnx:  # env execs in place: the child's pid, wall time and ru_maxrss are hvq's
        out[ONNX_COMMANDS[0]] = [sys.executable, "-c", "import onnxruntime"]
        out[ONNX_COMMANDS[1]] = ["env", "HVQ_BACKEND=onnx", *hvq, "decompress", str(work / "ref.hvq"),
                                 "-o", str(work / "o.png"), "--force"]
    return out


def measure(image: Path, variants: dict[str, str | None], runs: int, onnx: bool = False) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for variant, pythonpath in variants.items():
            env = child_env(pythonpath)
            vwork = work / variant
            vwork.mkdir()
            # Each variant decodes a file of its own model and format version.
            run_once(commands(image, vwork)["hvq compress"][:-3] + ["-o", str(vwork / "ref.hvq")], env, vwork)
        load_before = os.getloadavg()
        for _ in range(runs):
            for variant, pythonpath in variants.items():
                env = child_env(pythonpath)
                vwork = work / variant
                mine = onnx and variant == list(variants)[-1]  # "this checkout" is the last variant
                for name, argv in commands(image, vwork, mine).items():
                    if variant != next(iter(variants)) and name in ("python", "floor: import torch"):
                        continue  # the same interpreter and torch for every variant: measured once per round
                    samples.setdefault((variant, name), []).append(run_once(argv, env, vwork))
        load_after = os.getloadavg()
    for (variant, name), values in samples.items():
        results.setdefault(variant, {})[name] = {
            "seconds_median": statistics.median(v[0] for v in values),
            "seconds_min": min(v[0] for v in values),
            "peak_rss_mb_median": statistics.median(v[1] for v in values),
            "runs": len(values),
        }
    return {"load_before": load_before, "load_after": load_after, "results": results}


def torch_version(pythonpath: str | None) -> str:
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                          env=child_env(pythonpath), capture_output=True, text=True, check=True)
    return done.stdout.strip()


def markdown(report: dict) -> str:
    variants = list(report["results"])
    first = report["results"][variants[0]]
    floor = first["floor: import torch"]["seconds_median"]
    lines = [
        f"Cold start, one process per command, median of {first['hvq info']['runs']} runs "
        f"(round-robin over commands and variants); {report['image']}; {report['machine']}; torch {report['torch']}, "
        f"Python {report['python']}. Load average {report['load_before'][0]:.1f} before, "
        f"{report['load_after'][0]:.1f} after (a machine shared with other jobs). "
        f"Peak: the child's ru_maxrss. Over floor: wall time minus `import torch` ({floor:.2f} s).",
        "",
        "| command | " + " | ".join(f"{v} s | {v} over floor s | {v} peak MB" for v in variants) + " |",
        "|---|" + "---|---|---|" * len(variants),
    ]
    names = list(dict.fromkeys(name for v in variants for name in report["results"][v]))
    for name in names:
        cells = []
        for v in variants:
            r = report["results"][v].get(name) or (first[name] if name in ("python", "floor: import torch") else None)
            if r is None:  # the onnx decoder: this checkout's only
                cells.append("| |")
                continue
            cells.append(f"{r['seconds_median']:.2f} | {r['seconds_median'] - floor:+.2f} | {r['peak_rss_mb_median']:.0f}")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--runs", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--before", "befores", multiple=True, help="NAME=PYTHONPATH: another hvq to measure in the same run.")
@click.option("--onnx/--no-onnx", default=None,
              help="Also decompress with HVQ_BACKEND=onnx (default: when onnxruntime is installed).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(image, runs, befores, onnx, output):
    variants: dict[str, str | None] = {}
    for given in befores:
        name, _, path = given.partition("=")
        variants[name] = path
    variants["this checkout"] = os.environ.get("PYTHONPATH")
    if onnx is None:
        import importlib.util

        onnx = importlib.util.find_spec("onnxruntime") is not None
    report = measure(image.resolve(), variants, runs, onnx)
    report.update(
        image=f"{image.name} ({image.stat().st_size // 1024} KB)",
        machine=machine(),
        torch=torch_version(None),
        python=platform.python_version(),
    )
    table = markdown(report)
    click.echo(table)
    write_report(output, report, table)


if __name__ == "__main__":
    main()
