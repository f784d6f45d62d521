"""Rate control on Kodak with the shipped model (or --model): RD curves per level, BD-rate, target windows, encode time.

Run (niced, the CPU is shared; two shards at once share one log)::

    nice -n 10 python -m hvq.benchmarks.rate_control --kodak ../shared/datasets/kodak \\
        --out benchmarks/results/rate_control --shard 0/2 &
    nice -n 10 python -m hvq.benchmarks.rate_control --kodak ../shared/datasets/kodak \\
        --out benchmarks/results/rate_control --shard 1/2

Per image it measures, through ``Codec.compress`` / ``decompress`` (the product's path), at one
``--effort`` (1: the latent-distance choice alone; 2: with the pixel-distortion passes):

- each level stored alone, with the nearest codewords (no setting) and at
  every quality in ``QUALITIES[effort]``: file bpp, PSNR and encode seconds;
- the downscale baseline of the same level: the image resized by ``SCALES``
  (Lanczos), coded with the nearest codewords, decoded and resized back
  (bicubic); with the full-size nearest point it is the nearest-codeword
  curve that RDOQ's BD-rate is measured against;
- on every ``--windows-every``-th image, the all-levels file at
  ``WINDOW_QUALITIES``: its bytes and each level's PSNR (the monotonicity
  check), and the windows a target search can reach: the files of levels
  16, 16+8 and 16+8+4 are prefixes of it (a level's chunk is the same in
  each, so a prefix's size is the file's less the finer chunks), and Q 0
  and 100 are a search's ends;
- with ``--targets``, real target searches (``target_bpp=`` over ``SEARCH_BPP``,
  ``target_psnr=`` over ``SEARCH_PSNR``, the levels chosen by the search):
  whether each was met within its tolerance, or refused, and with what nearest value.

Then BD-rate (pchip, ``hvq.evaluation.bjontegaard``) of each level's RDOQ
curve against its nearest-codeword (downscale) curve, the share of a grid
of targets that lie in a window (a search bisects Q inside a window, so
these are reached; ``tests/test_rate_control.py`` checks the search), the
gaps between windows, and a plot with the classical and downscale anchors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

QUALITIES = {1: (100, 75, 50, 25, 0), 2: (100, 50, 0)}  # effort 2 costs 20-75x the nearest codewords per point
SCALES = (0.7, 1.2)
WINDOW_QUALITIES = (100, 50, 0)
SEARCH_BPP = (0.02, 0.03, 0.1, 0.15, 0.4, 0.5)
SEARCH_PSNR = (21.0, 23.0, 25.0, 27.0, 29.0)
TARGET_BPP = (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
TARGET_PSNR = tuple(20 + 0.5 * i for i in range(21))  # 20..30 dB


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from hvq.evaluation.metrics import psnr

    return float(psnr(a, b))


def measure_image(codec, path: Path, windows: bool, effort: int = 2, targets: bool = False) -> dict:
    from hvq.bitstream.info import inspect_file
    from hvq.codec.runtime.imageio import load_image

    rgb_image = load_image(path, 1 << 26)
    rgb = np.asarray(rgb_image)
    height, width = rgb.shape[:2]
    pixels = width * height
    factors = codec.check_levels(None)  # coarse first
    record = {"image": path.name, "effort": effort, "qualities": QUALITIES[effort], "levels": {}, "downscale": {},
              "all_levels": {}}

    def point(levels, quality):
        start = time.perf_counter()
        data = codec.compress(rgb, levels, quality=quality, effort=None if quality is None else effort)
        seconds = time.perf_counter() - start
        return data, seconds

    def alone(f):  # a level stored alone, with the coarser levels a top-down decoder reads (none for 0.2)
        return tuple(sorted({f, *codec.model.net.parents_needed(f)}, reverse=True))

    for f in factors:
        points = []
        for q in (None, *QUALITIES[effort]):
            data, seconds = point(alone(f), q)
            decoded = np.asarray(codec.decompress(data, level=f))
            points.append({"quality": q, "bpp": 8 * len(data) / pixels, "psnr": _psnr(rgb, decoded),
                           "seconds": seconds})
        record["levels"][str(f)] = points
        down = []
        for s in SCALES:
            small = rgb_image.resize((max(1, round(width * s)), max(1, round(height * s))), Image.LANCZOS)
            data = codec.compress(small, alone(f))
            back = codec.decompress(data, level=f).resize((width, height), Image.BICUBIC)
            down.append({"scale": s, "bpp": 8 * len(data) / pixels, "psnr": _psnr(rgb, np.asarray(back))})
        record["downscale"][str(f)] = down
    if windows:
        for q in (None, *WINDOW_QUALITIES):
            data, seconds = point(factors, q)
            info = inspect_file(data)
            chunk = {lv.factor: lv.chunk_bytes for lv in info.levels}
            prefixes = {}
            for i, f in enumerate(factors):  # the file of levels factors[:i+1] is this one less the finer chunks
                size = len(data) - sum(chunk[g] for g in factors[i + 1 :])
                decoded = np.asarray(codec.decompress(data, level=f))
                prefixes[str(f)] = {"bpp": 8 * size / pixels, "psnr": _psnr(rgb, decoded)}
            record["all_levels"]["nearest" if q is None else str(q)] = {"bytes": len(data), "seconds": seconds,
                                                                         "prefixes": prefixes}
    if targets:
        record["targets"] = search_targets(codec, rgb, effort)
    return record


def search_targets(codec, rgb: np.ndarray, effort: int) -> list[dict]:
    """Each target of ``SEARCH_BPP`` and ``SEARCH_PSNR`` searched for as ``hvq compress --target-*`` does."""
    from hvq.codec.runtime.rate_control import HvqTargetError

    pixels = rgb.shape[0] * rgb.shape[1]
    out = []
    for kind, values in (("bpp", SEARCH_BPP), ("psnr", SEARCH_PSNR)):
        for target in values:
            start = time.perf_counter()
            try:
                data = codec.compress(rgb, **{f"target_{kind}": target}, effort=effort)
            except HvqTargetError as exc:
                out.append({"kind": kind, "target": target, "reached": None, "nearest": exc.nearest,
                            "seconds": time.perf_counter() - start})
                continue
            seconds = time.perf_counter() - start
            value = 8 * len(data) / pixels if kind == "bpp" else _psnr(rgb, np.asarray(codec.decompress(data)))
            out.append({"kind": kind, "target": target, "reached": value, "nearest": None, "seconds": seconds})
    return out


def summarise(records: list[dict], anchors_dir: Path | None) -> dict:
    from hvq.evaluation.bjontegaard import Curve, compare

    factors = sorted({int(f) for r in records for f in r["levels"]}, reverse=True)
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    effort = records[0].get("effort", 2)  # the first logs were effort 2's, before there were two
    qualities = tuple(records[0].get("qualities", QUALITIES[2]))
    if any(r.get("effort", 2) != effort for r in records):
        raise SystemExit("the log mixes efforts: give each effort its own --out")
    curves = {}
    for f in factors:
        pts = lambda i: (mean([r["levels"][str(f)][i]["bpp"] for r in records]),  # noqa: E731
                         mean([r["levels"][str(f)][i]["psnr"] for r in records]))
        down = [(s, mean([r["downscale"][str(f)][i]["bpp"] for r in records]),
                 mean([r["downscale"][str(f)][i]["psnr"] for r in records])) for i, s in enumerate(SCALES)]
        curves[f] = {"nearest": [None, *pts(0)], "rdoq": [(q, *pts(i + 1)) for i, q in enumerate(qualities)],
                     "downscale": sorted(down + [(1.0, *pts(0))])}
    bd = []
    for f in factors:
        rd = Curve(f"rdoq level {f}", tuple(p[1] for p in curves[f]["rdoq"]), tuple(p[2] for p in curves[f]["rdoq"]))
        anchor = Curve(f"nearest level {f} (scales {', '.join(str(p[0]) for p in curves[f]['downscale'])})",
                       tuple(p[1] for p in curves[f]["downscale"]), tuple(p[2] for p in curves[f]["downscale"]))
        result = compare(rd, anchor, "psnr")
        bd.append({"level": f, "anchor": anchor.name, "bd_rate_percent": result.bd_rate,
                   "bd_psnr_db": result.bd_quality, "note": result.rate_note or result.quality_note})
    monotone = {"images": len(records)}
    for f in factors:
        monotone[f"level_{f}_bytes"] = monotone[f"level_{f}_psnr"] = 0
        for r in records:
            points = sorted(r["levels"][str(f)][1:], key=lambda p: p["quality"])
            monotone[f"level_{f}_bytes"] += all(a["bpp"] <= b["bpp"] for a, b in zip(points, points[1:]))
            monotone[f"level_{f}_psnr"] += all(a["psnr"] <= b["psnr"] for a, b in zip(points, points[1:]))
    windowed = [r for r in records if r["all_levels"]]
    monotone["windowed_images"] = len(windowed)
    monotone["all_levels_bytes"] = monotone["all_levels_psnr"] = 0
    finest = str(factors[-1])
    for r in windowed:
        points = [r["all_levels"][str(q)] for q in sorted(WINDOW_QUALITIES)]
        monotone["all_levels_bytes"] += all(a["bytes"] <= b["bytes"] for a, b in zip(points, points[1:]))
        monotone["all_levels_psnr"] += all(a["prefixes"][finest]["psnr"] <= b["prefixes"][finest]["psnr"]
                                           for a, b in zip(points, points[1:]))
    windows, hits = _windows(windowed, factors), {}
    for kind, values, tol in (("bpp", TARGET_BPP, None), ("psnr", TARGET_PSNR, 0.1)):
        inside = []
        for t in values:
            n = 0
            for spans in windows["per_image"]:
                n += any((lo * 0.95 <= t <= hi * 1.05) if kind == "bpp" else (lo - tol <= t <= hi + tol)
                         for lo, hi in (s[kind] for s in spans.values()))
            inside.append({"target": t, "images": len(windows["per_image"]), "reachable": n})
        hits[kind] = inside
    seconds = {}
    for f in factors:
        seconds[str(f)] = {("nearest" if p["quality"] is None else f"quality {p['quality']}"):
                           mean([r["levels"][str(f)][i]["seconds"] for r in records])
                           for i, p in enumerate(records[0]["levels"][str(f)])}
    if windowed:
        seconds["all levels"] = {("nearest" if k == "nearest" else f"quality {k}"):
                                 mean([r["all_levels"][k]["seconds"] for r in windowed])
                                 for k in windowed[0]["all_levels"]}
    return {"images": len(records), "image_names": [r["image"] for r in records],
            "windowed_names": [r["image"] for r in windowed], "curves": {str(f): c for f, c in curves.items()}, "bd_rate": bd,
            "monotone_over_quality": monotone, "windows": windows["mean"], "target_hits": hits,
            "encode_seconds": seconds, "qualities": qualities, "scales": SCALES,
            "window_qualities": WINDOW_QUALITIES, "effort": effort, "searches": _searches(records)}


def _searches(records: list[dict]) -> dict:
    """The real target searches: per kind, how many were met within the product's tolerance, refused, or missed."""
    from hvq.codec.runtime.rate_control import BPP_TOLERANCE, PSNR_TOLERANCE

    out = {}
    for kind, tolerance in (("bpp", lambda t: BPP_TOLERANCE * t), ("psnr", lambda t: PSNR_TOLERANCE)):
        rows = [t for r in records for t in r.get("targets", []) if t["kind"] == kind]
        if not rows:
            continue
        met = [t for t in rows if t["reached"] is not None and abs(t["reached"] - t["target"]) <= tolerance(t["target"])]
        refused = [t for t in rows if t["reached"] is None]
        per_target = {}
        for t in rows:
            row = per_target.setdefault(f"{t['target']:g}", {"searches": 0, "met": 0, "refused": 0})
            row["searches"] += 1
            row["met"] += t in met
            row["refused"] += t in refused
        out[kind] = {"searches": len(rows), "met": len(met), "refused": len(refused),
                     "missed": len(rows) - len(met) - len(refused),
                     "mean_seconds": float(np.mean([t["seconds"] for t in rows])), "per_target": per_target}
    return out


def _windows(records: list[dict], factors) -> dict:
    """Per image and level set (named by its finest level): the bpp and PSNR a quality can reach."""
    per_image = []
    for r in records:
        spans = {}
        for f in factors:
            pts = [r["all_levels"][str(q)]["prefixes"][str(f)] for q in WINDOW_QUALITIES]
            spans[str(f)] = {k: (min(p[k] for p in pts), max(p[k] for p in pts)) for k in ("bpp", "psnr")}
        per_image.append(spans)
    mean = {str(f): {k: [float(np.mean([s[str(f)][k][j] for s in per_image])) for j in (0, 1)]
                     for k in ("bpp", "psnr")} for f in factors} if per_image else {}
    return {"per_image": per_image, "mean": mean}


def plot(summary: dict, anchors_dir: Path | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    colours = {"16": "tab:blue", "8": "tab:orange", "4": "tab:green"}
    nearest = [(c["nearest"][1], c["nearest"][2]) for c in summary["curves"].values()]
    ax.plot(*zip(*sorted(nearest)), "k-o", label="hvq nearest codeword (levels 16, 8, 4)", zorder=5)
    for f, c in summary["curves"].items():
        col = colours.get(f)
        ax.plot([p[1] for p in c["rdoq"]], [p[2] for p in c["rdoq"]], "-^", color=col, label=f"hvq RDOQ effort {summary.get('effort', 2)}, level {f} (Q 100..0)")
        ax.plot([p[1] for p in c["downscale"]], [p[2] for p in c["downscale"]], ":s", color=col, alpha=0.7,
                label=f"hvq nearest level {f}, downscaled by {', '.join(str(p[0]) for p in c['downscale'])}")
    if anchors_dir is not None:
        for name, style in (("kodak_classic_measured.json", "--"), ("kodak_lowrate_measured.json", "-.")):
            path = anchors_dir / name
            if not path.exists():
                continue
            for codec, points in json.loads(path.read_text())["codecs"].items():
                pts = sorted((p["bpp"], p["psnr"]) for p in points if p["bpp"] <= 0.7)
                if len(pts) >= 2:
                    ax.plot(*zip(*pts), style, lw=1, alpha=0.6, label=codec)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.set_title(f"Kodak ({summary['images']} images): rate control per level")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def report(summary: dict, command: str) -> str:
    lines = [f"# Rate control on Kodak ({summary['images']} images, model {summary.get('model', 'hvq-default')}, "
             f"effort {summary.get('effort', 2)})", "",
             f"Command: `{command}`", "",
             f"Images: {', '.join(summary['image_names'])}; the all-levels file (windows) on "
             f"{', '.join(summary['windowed_names']) or 'none'}.", "",
             "## Mean RD points per level (each level stored alone)", "",
             "| level | setting | bpp | PSNR dB |", "|---|---|---|---|"]
    for f, c in summary["curves"].items():
        lines.append(f"| {f} | nearest | {c['nearest'][1]:.4f} | {c['nearest'][2]:.2f} |")
        for q, b, p in c["rdoq"]:
            lines.append(f"| {f} | quality {q} | {b:.4f} | {p:.2f} |")
        for sc, b, p in c["downscale"]:
            if sc != 1.0:
                lines.append(f"| {f} | nearest, image scaled by {sc} | {b:.4f} | {p:.2f} |")
    lines += ["", "## BD-rate of RDOQ against the nearest codewords (pchip, at equal PSNR; negative: RDOQ needs fewer bits)",
              "", "The nearest-codeword curve of a level is its full-size point and the image rescaled (Lanczos) "
              "before coding, bicubic back after decoding.", "",
              "| level | anchor | BD-rate % | BD-PSNR dB | note |", "|---|---|---|---|---|"]
    for row in summary["bd_rate"]:
        rate = "—" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.1f}"
        q = "—" if row["bd_psnr_db"] is None else f"{row['bd_psnr_db']:+.3f}"
        lines.append(f"| {row['level']} | {row['anchor']} | {rate} | {q} | {row['note']} |")
    m = summary["monotone_over_quality"]
    lines += ["", f"Monotone over Q = {', '.join(map(str, sorted(summary['qualities'])))} (images out of {m['images']}): "
              + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in m.items() if k.startswith("level_"))
              + f"; the all-levels file over Q = {', '.join(map(str, sorted(summary['window_qualities'])))} "
              f"({m['windowed_images']} images): bytes {m['all_levels_bytes']}, finest PSNR {m['all_levels_psnr']}.", "",
              f"## Target windows ({m['windowed_images']} images; mean over images)", "",
              "| levels stored | bpp from | bpp to | PSNR from | PSNR to |", "|---|---|---|---|---|"]
    for f, w in summary["windows"].items():
        lines.append(f"| 16 .. {f} | {w['bpp'][0]:.4f} | {w['bpp'][1]:.4f} | {w['psnr'][0]:.2f} | {w['psnr'][1]:.2f} |")
    for kind, unit in (("bpp", "bpp (±5%)"), ("psnr", "dB (±0.1)")):
        rows = summary["target_hits"][kind]
        total = sum(r["images"] for r in rows)
        hit = sum(r["reachable"] for r in rows)
        lines += ["", f"Targets in {unit} inside a window: {hit} of {total} ({100 * hit / max(total, 1):.0f}%): "
                  + ", ".join(f"{r['target']:g}: {r['reachable']}/{r['images']}" for r in rows)]
    if summary.get("searches"):
        lines += ["", "## Target searches (`target_bpp=` / `target_psnr=`, the search choosing the levels)", "",
                  "A search is met within 5% (bpp) or 0.1 dB (PSNR), or refused with the nearest reachable value; "
                  "a miss would be a file written outside the tolerance.", "",
                  "| kind | searches | met | refused (out of reach) | missed | mean s | per target: met / refused of n |",
                  "|---|---|---|---|---|---|---|"]
        for kind, row in summary["searches"].items():
            per = ", ".join(f"{t}: {v['met']}/{v['refused']} of {v['searches']}" for t, v in row["per_target"].items())
            lines.append(f"| {kind} | {row['searches']} | {row['met']} | {row['refused']} | {row['missed']} | "
                         f"{row['mean_seconds']:.1f} | {per} |")
    lines += ["", "## Encode time (Codec.compress, mean seconds per image, one thread, shared CPU)", "",
              "| levels | setting | s | x nearest |", "|---|---|---|---|"]
    for levels, row in summary["encode_seconds"].items():
        base = row["nearest"]
        for k, v in row.items():
            lines.append(f"| {levels} | {k} | {v:.2f} | {v / base:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--anchors", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="a model file (default: the shipped model)")
    parser.add_argument("--images", type=int, default=None, help="the first N images only")
    parser.add_argument("--images-every", type=int, default=1, help="every Nth image only (a shared CPU)")
    parser.add_argument("--names", default=None, help="these images only, by name, comma-separated (kodim21,kodim02)")
    parser.add_argument("--windows-every", type=int, default=3,
                        help="the all-levels file (windows) on every Nth image (0: on none)")
    parser.add_argument("--reverse", action="store_true", help="walk the shard's images from the end")
    parser.add_argument("--summary-only", action="store_true",
                        help="summarise the images the log holds so far, measuring none (the report says how many)")
    parser.add_argument("--shard", default="0/1", help="I/N: measure images I, I+N, ... (run N at once; same --out)")
    parser.add_argument("--effort", type=int, choices=(1, 2), default=2,
                        help="rate control's effort (one per --out: 2's log is the first one's)")
    parser.add_argument("--targets", action="store_true",
                        help="also run real target searches per image (SEARCH_BPP, SEARCH_PSNR)")
    args = parser.parse_args(argv)
    import torch

    from hvq.codec.runtime.pipeline import Codec

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    codec = Codec.for_model(args.model)
    paths = sorted(args.kodak.glob("*.png"))[: args.images][:: args.images_every]
    if args.names:
        names = [n if n.endswith(".png") else f"{n}.png" for n in args.names.split(",")]
        paths = [p for p in paths if p.name in names]
    log = args.out / "images.jsonl"
    done: dict[str, dict] = {}

    def read_log():  # every shard's images so far
        if log.exists():
            for line in log.read_text().splitlines():
                rec = json.loads(line)
                done.setdefault(rec["image"], rec)
    shard, shards = (int(x) for x in args.shard.split("/"))
    mine = paths[shard::shards]
    with log.open("a") as f:
        for path in [] if args.summary_only else reversed(mine) if args.reverse else mine:
            read_log()
            if path.name in done:
                continue
            start = time.perf_counter()
            windows = args.windows_every > 0 and (paths.index(path) // shards) % args.windows_every == 0
            rec = measure_image(codec, path, windows=windows, effort=args.effort, targets=args.targets)
            done[path.name] = rec
            os.write(f.fileno(), (json.dumps(rec) + "\n").encode())  # one write: shards append to one log
            print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)
    read_log()
    missing = [p.name for p in paths if p.name not in done]
    if args.summary_only:
        paths = [p for p in paths if p.name in done]
    elif missing:
        print(f"{len(missing)} images not measured yet (other shards?); no summary")
        return
    records = [done[p.name] for p in paths]
    summary = summarise(records, args.anchors)
    summary["model"] = (args.model.stem if args.model else "hvq-default")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    command = "python -m hvq.benchmarks.rate_control " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "rate_control.md").write_text(report(summary, command))
    plot(summary, args.anchors, args.out / "rd_levels.png")
    print(report(summary, command))


if __name__ == "__main__":
    main()
