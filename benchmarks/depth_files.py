"""Files with refinement depths on Kodak (issue 14): bits per index per depth, and every depth in one file against alone.

For each image: the file of every level and depth (16, 8, 4:1..4:D), each
depth's bits per index in it, the PSNR of level 4 decoded at each depth, and
per depth d the file of level 4 alone at depths 1..d against the
progressive file 16, 8, 4:1..d (the issue's "a file holding every depth
costs at most 1.15x the same quality stored alone")::

    python -m hvq.benchmarks.depth_files MODEL.safetensors ../shared/datasets/kodak OUT.json
"""
import json
import sys
from pathlib import Path
import numpy as np
from PIL import Image
import torch
from hvq.codec.runtime.pipeline import Codec
from hvq.bitstream.container import parse
torch.set_num_threads(1)
model, kodak, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
codec = Codec.for_model(model)
rows = []
for path in sorted(kodak.glob("*.png")):
    img = Image.open(path).convert("RGB"); ref = np.asarray(img, dtype=np.float64)
    w, h = img.size
    full = codec.compress(img)  # 16, 8, 4:1..4:4
    p = parse(full)
    row = {"image": path.name, "all_bytes": len(full), "depths": {}}
    for ch in p.levels:
        if ch.factor == 4:
            row["bits_4_1"] = 8 * len(ch.payload) / (ch.grid_height * ch.grid_width)
    for ref_ch in p.refinements:
        row[f"bits_4_{ref_ch.depth}"] = 8 * len(ref_ch.payload) / (ref_ch.grid_height * ref_ch.grid_width)
    depth = codec.model.config.depth_of(4)
    for d in range(1, depth + 1):
        dec = np.asarray(codec.decompress(full, level=4, depth=d), dtype=np.float64)
        psnr = 10 * np.log10(255**2 / np.mean((dec - ref) ** 2))
        alone = codec.compress(img, levels=f"4:{d}")
        prefix = codec.compress(img, levels=f"16,8,4:{d}")
        row["depths"][d] = {"psnr": psnr, "alone_bpp": 8 * len(alone) / (w * h), "progressive_bpp": 8 * len(prefix) / (w * h)}
    rows.append(row)
    print(path.name, {d: (round(v["psnr"], 2), round(v["alone_bpp"], 3), round(v["progressive_bpp"], 3)) for d, v in row["depths"].items()}, flush=True)
out.write_text(json.dumps(rows, indent=1))
