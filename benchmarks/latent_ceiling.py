"""How far quantisation is from the transforms' own limit: each level decoded from its latent unquantised.

Refinement depths (issue 14) quantise what depth 1 leaves of a level's
latent; the best they can do is hand the decoder the latent itself.  So the
PSNR of a level decoded from its unquantised latent is the ceiling of any
number of depths on those transforms (with the encoder as trained), and the
gap between it and depth 1 says whether the quantiser or the transforms
limit the picture::

    image --encoder--> z_e --nearest codeword--> z_q --decoder--> depth 1
                        \\--------------------------------decoder--> ceiling

A top-down level reads its coarser levels at their codewords, as a file
gives them.  PSNR is of the 8-bit image, as a file decodes::

    python -m hvq.benchmarks.latent_ceiling MODEL.safetensors ../shared/datasets/kodak -o benchmarks/results/depths/ceiling
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np


def level_psnrs(net, pixels: np.ndarray) -> dict[int, dict[str, float]]:
    """Per level: PSNR decoded from the nearest codewords, from the unquantised latent, and the latent's
    relative squared error after quantisation (whole image, untiled)."""
    import torch

    reference = torch.from_numpy(np.array(pixels, dtype=np.float64))  # a copy: Pillow's arrays are read-only
    x = reference.permute(2, 0, 1)[None].float() / 255
    pad = net.config.max_factor
    h, w = x.shape[-2:]
    x = torch.nn.functional.pad(x, (0, (-w) % pad, 0, (-h) % pad), mode="replicate")
    out = {}
    with torch.inference_mode():
        latents = dict(zip(net.config.factors, net._latents(x)))
        codes = {f: net.codebook_of(f).lookup(i) for f, i in net.encode(x).items()}
        for f in net.config.factors:
            parents = {g: codes[g] for g in net.parents_needed(f)}
            row = {}
            for name, own in (("depth1", codes[f]), ("ceiling", latents[f])):
                image = ((net._synthesise({**parents, f: own}, f) + 0.5).clamp(0, 1) * 255).round()[0, :, :h, :w]
                mse = float(((image.permute(1, 2, 0).double() - reference) ** 2).mean())
                row[name] = 10 * np.log10(255**2 / mse)
            row["latent_error"] = float(((codes[f] - latents[f]) ** 2).sum() / (latents[f] ** 2).sum())
            out[f] = row
    return out


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for ceiling.json and ceiling.md.")
def main(model, dataset, out):
    """Each level's PSNR at depth 1 and from its unquantised latent, over the images of DATASET."""
    import torch
    from PIL import Image

    from hvq.codec.runtime.weights import load_model

    torch.set_num_threads(1)
    loaded = load_model(model)
    net = loaded.net.eval()
    rows = {}
    for path in sorted(dataset.glob("*.png")):
        rows[path.name] = level_psnrs(net, np.asarray(Image.open(path).convert("RGB")))
        click.echo(f"{path.name}: " + ", ".join(f"level {f} {r['depth1']:.2f} -> {r['ceiling']:.2f} dB"
                                                for f, r in rows[path.name].items()), err=True)
    factors = sorted(net.config.factors, reverse=True)
    mean = {f: {k: float(np.mean([r[f][k] for r in rows.values()])) for k in ("depth1", "ceiling", "latent_error")}
            for f in factors}
    lines = [f"# Latent ceiling ({len(rows)} images of {dataset.name}, model {loaded.fingerprint_hex})", "",
             "Command: `python -m hvq.benchmarks.latent_ceiling MODEL DATASET -o OUT`", "",
             "Each level decoded from its nearest codewords (depth 1) and from its unquantised latent (the most "
             "any number of refinement depths can give these transforms). Means over images.", "",
             "| level | depth 1 PSNR dB | unquantised latent PSNR dB | gap dB | latent error left by depth 1 |",
             "|---|---|---|---|---|"]
    lines += [f"| {f} | {m['depth1']:.2f} | {m['ceiling']:.2f} | {m['ceiling'] - m['depth1']:+.2f} | "
              f"{100 * m['latent_error']:.1f}% |" for f, m in mean.items()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ceiling.json").write_text(json.dumps({"model": model, "mean": mean, "images": rows}, indent=1))
    (out / "ceiling.md").write_text("\n".join(lines) + "\n")
    click.echo(out / "ceiling.md")


if __name__ == "__main__":
    main()
