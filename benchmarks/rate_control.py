"""Rate control on Kodak with the shipped model: RD curves per level, BD-rate, target accuracy, encode time.

Run (niced, the CPU is shared)::

    nice -n 10 python -m hvq.benchmarks.rate_control --kodak ../shared/datasets/kodak \\
        --out benchmarks/results/rate_control

Per image it measures:

- each level stored alone (the RD curve's points, as ``hvq bench`` takes
  them), at every quality in ``QUALITIES``: file bpp and PSNR; Q = 100 is
  the nearest codeword;
- the downscale baseline of the same level: the image resized by ``SCALES``
  (Lanczos), coded with the nearest codewords, decoded and resized back
  (bicubic), the classical way to reach rates below a level's;
- the all-levels file at every quality (the monotonicity check: bytes and
  the finest level's PSNR per image);
- ``--target-bpp`` and ``--target-psnr`` at the targets below: reached within
  tolerance, refused as out of reach, or missed;
- encode time of ``Codec.compress``: nearest codewords, and each quality.

Then BD-rate (pchip, ``hvq.evaluation.bjontegaard``) of each level's RDOQ
curve against (a) its nearest-codeword downscale curve and (b) hvq's
three-level nearest-codeword curve, and a plot of the curves with the
classical and downscale anchors of ../shared/anchors.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

# Few points: the CPU is shared, and each decodes a level (seconds each on the 2-core machine).
QUALITIES = (100, 60, 30, 0)
SCALES = (0.7,)
BYTE_QUALITIES = (100, 80, 60, 40, 20, 0)  # all-levels file: bytes only (no decode)
TARGET_BPP = (0.02, 0.05, 0.1, 0.2, 0.3, 0.45)
TARGET_PSNR = (20, 22, 24, 26, 28)
TIMED_QUALITIES = (50,)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from hvq.evaluation.metrics import psnr

    return float(psnr(a, b))


def measure_image(codec, path: Path, targets: bool) -> dict:
    from hvq.bitstream.info import inspect_file
    from hvq.codec.runtime import rate_control, rdoq
    from hvq.codec.runtime.imageio import load_image, pad_to_multiple
    from hvq.codec.runtime.tiling import candidates_tiled, decode_tiled

    net, prior = codec.model.net, codec.model.prior
    rgb_image = load_image(path, 1 << 26)
    rgb = np.asarray(rgb_image)
    height, width = rgb.shape[:2]
    pixels = width * height
    factors = codec.check_levels(None)  # coarse first
    padded = pad_to_multiple(rgb, codec.model.config.max_factor)
    candidates = candidates_tiled(net, padded, rdoq.DEFAULT_CANDIDATES, codec.tile)
    record = {"image": path.name, "levels": {}, "downscale": {}, "all_levels": {}, "targets": [], "encode_s": {}}
    for f in factors:
        points = []
        for q in QUALITIES:
            grids = rdoq.choose_indices(candidates, (f,), prior, rate_control.lambdas_for(q, (f,)))
            setting = None if q == 100 else rate_control.setting_for(quality=q)
            data = codec._write(grids, (f,), width, height, setting)
            decoded = decode_tiled(net, grids[f], f, width, height, codec.tile)
            points.append({"quality": q, "bpp": 8 * len(data) / pixels, "psnr": _psnr(rgb, decoded)})
        record["levels"][str(f)] = points
        down = []
        for s in SCALES:
            small = rgb_image.resize((max(1, round(width * s)), max(1, round(height * s))), Image.LANCZOS)
            data = codec.compress(small, (f,))
            back = codec.decompress(data).resize((width, height), Image.BICUBIC)
            down.append({"scale": s, "bpp": 8 * len(data) / pixels, "psnr": _psnr(rgb, np.asarray(back))})
        record["downscale"][str(f)] = down
    for q in BYTE_QUALITIES:
        grids = rdoq.choose_indices(candidates, factors, prior, rate_control.lambdas_for(q, factors))
        data = codec._write(grids, factors, width, height, None if q == 100 else rate_control.setting_for(quality=q))
        record["all_levels"][str(q)] = {"bytes": len(data)}
    if not targets:
        return record
    for kind, values in (("bpp", TARGET_BPP), ("psnr", TARGET_PSNR)):
        for target in values:
            start = time.perf_counter()
            try:
                data = codec.compress(rgb_image, **{f"target_{kind}": target})
            except rate_control.HvqTargetError as exc:
                record["targets"].append({"kind": kind, "target": target, "reached": None, "nearest": exc.nearest,
                                          "seconds": time.perf_counter() - start})
                continue
            seconds = time.perf_counter() - start
            info = inspect_file(data)
            value = 8 * len(data) / pixels if kind == "bpp" else _psnr(rgb, np.asarray(codec.decompress(data)))
            record["targets"].append({"kind": kind, "target": target, "reached": value, "seconds": seconds,
                                      "levels": [lv.factor for lv in info.levels], "setting": info.rate_control})
    for q in (None, *TIMED_QUALITIES):
        times = []
        for _ in range(2):
            start = time.perf_counter()
            codec.compress(rgb_image, quality=q)
            times.append(time.perf_counter() - start)
        record["encode_s"]["nearest" if q is None else str(q)] = min(times)
    return record


def summarise(records: list[dict], anchors_dir: Path | None) -> dict:
    from hvq.evaluation.bjontegaard import Curve, compare

    factors = sorted({int(f) for r in records for f in r["levels"]}, reverse=True)
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    curves = {}
    for f in factors:
        curves[f] = {
            "rdoq": [(q, mean([r["levels"][str(f)][i]["bpp"] for r in records]),
                      mean([r["levels"][str(f)][i]["psnr"] for r in records])) for i, q in enumerate(QUALITIES)],
            "downscale": [(1.0, *curves_point(records, f, None))] + [
                (s, mean([r["downscale"][str(f)][i]["bpp"] for r in records]),
                 mean([r["downscale"][str(f)][i]["psnr"] for r in records])) for i, s in enumerate(SCALES)],
        }
    nearest = Curve("hvq nearest (levels)", tuple(curves[f]["rdoq"][0][1] for f in factors),
                    tuple(curves[f]["rdoq"][0][2] for f in factors))
    bd = []
    for f in factors:
        rd = Curve(f"rdoq level {f}", tuple(p[1] for p in curves[f]["rdoq"]), tuple(p[2] for p in curves[f]["rdoq"]))
        down = Curve(f"nearest level {f} downscaled", tuple(p[1] for p in curves[f]["downscale"]),
                     tuple(p[2] for p in curves[f]["downscale"]))
        for anchor in (down, nearest):
            result = compare(rd, anchor, "psnr")
            bd.append({"level": f, "anchor": anchor.name, "bd_rate_percent": result.bd_rate,
                       "bd_psnr_db": result.bd_quality, "note": result.rate_note or result.quality_note})
    monotone = {"all_levels_bytes": 0, "images": len(records)}
    for r in records:
        ordered = [r["all_levels"][str(q)]["bytes"] for q in sorted(BYTE_QUALITIES)]
        monotone["all_levels_bytes"] += all(a <= b for a, b in zip(ordered, ordered[1:]))
    for f in factors:
        monotone[f"level_{f}_bytes"] = monotone[f"level_{f}_psnr"] = 0
        for r in records:
            points = sorted(r["levels"][str(f)], key=lambda p: p["quality"])
            monotone[f"level_{f}_bytes"] += all(a["bpp"] <= b["bpp"] for a, b in zip(points, points[1:]))
            monotone[f"level_{f}_psnr"] += all(a["psnr"] <= b["psnr"] for a, b in zip(points, points[1:]))
    targets = {}
    for kind, values in (("bpp", TARGET_BPP), ("psnr", TARGET_PSNR)):
        for t in values:
            rows = [x for r in records for x in r["targets"] if x["kind"] == kind and x["target"] == t]
            reached = [x for x in rows if x["reached"] is not None]
            within = [x for x in reached if (abs(x["reached"] - t) <= 0.05 * t if kind == "bpp"
                                             else abs(x["reached"] - t) <= 0.1)]
            targets[f"{kind} {t}"] = {"images": len(rows), "reached": len(reached), "within_tolerance": len(within),
                                      "refused_out_of_reach": len(rows) - len(reached),
                                      "mean_seconds": mean([x["seconds"] for x in rows]) if rows else None}
    timed = [r for r in records if r["encode_s"]]
    encode = {k: mean([r["encode_s"][k] for r in timed]) for k in timed[0]["encode_s"]} if timed else {}
    return {"images": len(records), "curves": {str(f): c for f, c in curves.items()}, "bd_rate": bd,
            "monotone_over_quality": monotone, "targets": targets, "encode_seconds": encode,
            "qualities": QUALITIES, "scales": SCALES, "byte_qualities": BYTE_QUALITIES,
            "timed_images": len(timed)}


def curves_point(records, f, _):
    """Level f at full size with the nearest codewords (the downscale curve's scale-1 point)."""
    return (float(np.mean([r["levels"][str(f)][0]["bpp"] for r in records])),
            float(np.mean([r["levels"][str(f)][0]["psnr"] for r in records])))


def plot(summary: dict, anchors_dir: Path | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    colours = {"16": "tab:blue", "8": "tab:orange", "4": "tab:green"}
    nearest = [(c["rdoq"][0][1], c["rdoq"][0][2]) for c in summary["curves"].values()]
    ax.plot(*zip(*sorted(nearest)), "k-o", label="hvq nearest codeword (levels 16, 8, 4)", zorder=5)
    for f, c in summary["curves"].items():
        col = colours.get(f)
        ax.plot([p[1] for p in c["rdoq"]], [p[2] for p in c["rdoq"]], "-^", color=col, label=f"hvq RDOQ level {f} (Q 100..0)")
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


def report(summary: dict) -> str:
    lines = [f"# Rate control on Kodak ({summary['images']} images, shipped model)", "",
             "## Mean RD points per level (each level stored alone)", "",
             "| level | Q | bpp | PSNR dB |", "|---|---|---|---|"]
    for f, c in summary["curves"].items():
        for q, b, p in c["rdoq"]:
            lines.append(f"| {f} | {q} | {b:.4f} | {p:.2f} |")
    lines += ["", "| level | downscale | bpp | PSNR dB |", "|---|---|---|---|"]
    for f, c in summary["curves"].items():
        for s, b, p in c["downscale"]:
            lines.append(f"| {f} | {s} | {b:.4f} | {p:.2f} |")
    lines += ["", "## BD-rate of RDOQ (pchip, at equal PSNR; negative: RDOQ needs fewer bits)", "",
              "| level | anchor | BD-rate % | BD-PSNR dB | note |", "|---|---|---|---|---|"]
    for row in summary["bd_rate"]:
        rate = "—" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.1f}"
        q = "—" if row["bd_psnr_db"] is None else f"{row['bd_psnr_db']:+.3f}"
        lines.append(f"| {row['level']} | {row['anchor']} | {rate} | {q} | {row['note']} |")
    m = summary["monotone_over_quality"]
    lines += ["", f"Monotone in Q (images out of {m['images']}): all-levels file bytes over Q = "
              f"{', '.join(map(str, sorted(summary['byte_qualities'])))}: {m['all_levels_bytes']}; "
              f"each level alone over Q = {', '.join(map(str, sorted(summary['qualities'])))}: "
              + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in m.items() if k.startswith("level_")) + ".", "",
              f"## Targets ({summary['timed_images']} images)", "", "| target | images | reached | within tolerance | refused (out of reach) | mean s |",
              "|---|---|---|---|---|---|"]
    for name, t in summary["targets"].items():
        lines.append(f"| {name} | {t['images']} | {t['reached']} | {t['within_tolerance']} | "
                     f"{t['refused_out_of_reach']} | {t['mean_seconds']:.2f} |")
    lines += ["", f"## Encode time (Codec.compress, mean over {summary['timed_images']} images, best of 2)", "", "| setting | s | x nearest |",
              "|---|---|---|"]
    base = summary["encode_seconds"]["nearest"]
    for k, v in summary["encode_seconds"].items():
        lines.append(f"| {'nearest' if k == 'nearest' else 'quality ' + k} | {v:.3f} | {v / base:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--anchors", type=Path, default=None)
    parser.add_argument("--images", type=int, default=None, help="the first N images only")
    parser.add_argument("--targets-every", type=int, default=6, help="targets and timing on every Nth image")
    parser.add_argument("--reverse", action="store_true", help="walk the shard's images from the end")
    parser.add_argument("--shard", default="0/1", help="I/N: measure images I, I+N, ... (run N at once; same --out)")
    args = parser.parse_args(argv)
    import torch

    from hvq.codec.runtime.pipeline import Codec

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    codec = Codec.for_model(None)
    paths = sorted(args.kodak.glob("*.png"))[: args.images]
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
        for path in reversed(mine) if args.reverse else mine:
            read_log()
            if path.name in done:
                continue
            start = time.perf_counter()
            rec = measure_image(codec, path, targets=paths.index(path) % args.targets_every == 0)
            done[path.name] = rec
            os.write(f.fileno(), (json.dumps(rec) + "\n").encode())  # one write: shards append to one log
            print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)
    read_log()
    missing = [p.name for p in paths if p.name not in done]
    if missing:
        print(f"{len(missing)} images not measured yet (other shards?); no summary")
        return
    records = [done[p.name] for p in paths]
    summary = summarise(records, args.anchors)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / "rate_control.md").write_text(report(summary))
    plot(summary, args.anchors, args.out / "rd_levels.png")
    print(report(summary))


if __name__ == "__main__":
    main()
