"""How much rate a sharper prior could save: the shipped integer tables against float conv-net context models.

Issue 12's design study left one lever untried: the shared codebook costs
the coarse levels 6-7 bits per index, and the shipped context prior (a
log-linear model of five table rows, ``hvq.bitstream.context``) may be what
leaves bits on the table.  Before anyone builds an integer version of a
richer prior, this measures the ceiling of that lever.  For each level of a
model, three float context models are trained on the training set's index grids
(the data ``hvq export`` fits the shipped prior on) and scored on Kodak's,
encoded as a file encodes them:

- ``checkerboard``: the shipped coder's decode order (anchors given the
  coarser level, then non-anchors given the coarser level and every
  anchor), so it could decode in two parallel passes as the shipped one
  does; but a conv net over learned codeword embeddings sees a wide
  neighbourhood of both where the tables see five rows;
- ``raster``: an autoregressive masked-convolution net (PixelCNN order)
  plus the coarser level: every earlier cell is context.  Decoding would be
  one cell at a time; it is the serial ceiling, not a shippable design;
- ``four-pass``: the checkerboard net in four parallel passes over the
  2 x 2 lattice, so that only a quarter of the cells (not half) go without
  neighbours: the order a coarsest level could afford;
- ``wide-tables``: the shipped family itself (a sum of integer-table rows,
  the checkerboard order), with 21 rows per cell where it has 3 or 7: what
  more tables, with no network at coding time, could reach.

Their cross-entropy on Kodak is the ideal code length (a range coder gets
within a fraction of a percent of it); the shipped prior's bits are its
real payloads.  The bits a level saves come off every file that stores it
(a level-4 file holds 16, 8 and 4), which gives each file's bpp at
unchanged pictures, and so where each level would stand against the best
alternative at that rate (``hvq bench``'s ``rd.json``).  A float net in the
coder is not deterministic across machines (FORMAT.md, section 11): what
this measures is how much an integer design of such a prior could buy::

    python -m hvq.benchmarks.prior_ceiling ../shared/datasets/train ../shared/datasets/kodak \
        --rd benchmarks/results/rd/rd.json -o benchmarks/results/prior/ceiling
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hvq.bitstream.context import anchor_mask
from hvq.bitstream.levels import encode_level

KINDS = ("checkerboard", "raster", "wide-tables", "four-pass")


@dataclass(frozen=True)
class CeilingConfig:
    """The budget of one network's training (per level and kind)."""

    steps: int = 1500
    batch: int = 24  # crops per step
    crop: int = 16  # cells of the level's grid per crop side (even, so parents align)
    channels: int = 64
    embedding: int = 32
    lr: float = 2e-3
    seed: int = 0


class _ParentFeatures(nn.Module):
    """The coarser level's context for every cell of a grid twice its size.

        parent (B, H/2, W/2) --embed--> conv 3x3, GELU, conv 3x3 --> (B, 4C, H/2, W/2)
            --pixel shuffle--> (B, C, H, W): a feature per cell and per position within its parent
    """

    def __init__(self, k: int, cfg: CeilingConfig):
        super().__init__()
        self.embed = nn.Embedding(k, cfg.embedding)
        self.body = nn.Sequential(
            nn.Conv2d(cfg.embedding, cfg.channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(cfg.channels, 4 * cfg.channels, 3, padding=1),
        )

    def forward(self, parent: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.body(self.embed(parent).permute(0, 3, 1, 2)), 2)


class _ParentContext(nn.Module):
    """``_ParentFeatures`` of the coarser level, or a learned constant at the coarsest level (no parent)."""

    def __init__(self, k: int, has_parent: bool, cfg: CeilingConfig):
        super().__init__()
        self.features = _ParentFeatures(k, cfg) if has_parent else None
        self.constant = nn.Parameter(torch.zeros(1, cfg.channels, 1, 1))

    def forward(self, parent: torch.Tensor | None) -> torch.Tensor:
        return self.constant if self.features is None else self.features(parent)


def _trunk(cfg: CeilingConfig) -> nn.Sequential:
    """Three 3x3 convs over a grid's embedded tokens: the nets' spatial context."""
    return nn.Sequential(
        nn.Conv2d(cfg.embedding, cfg.channels, 3, padding=1), nn.GELU(),
        nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1), nn.GELU(),
        nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1),
    )


def _head(k: int, cfg: CeilingConfig) -> nn.Sequential:
    """Features to logits over the K codewords, through one hidden 1x1 layer."""
    return nn.Sequential(nn.GELU(), nn.Conv2d(cfg.channels, cfg.channels, 1), nn.GELU(), nn.Conv2d(cfg.channels, k, 1))


class CheckerboardContext(nn.Module):
    """Two passes, as the shipped coder decodes: anchors from the parent, non-anchors from the parent and anchors.

        parent --_ParentFeatures--> P (B, C, H, W)          (a learned constant at the coarsest level)
        grid with every non-anchor hidden (token K) --embed, 3 x conv 3x3--> A (B, C, H, W)
        anchor logits = head_a(P);  non-anchor logits = head_n(GELU(P + A))   -> (B, K, H, W)

    A non-anchor's own index never reaches the net (all non-anchors are
    hidden), so any receptive field is causal in the two-pass order.
    """

    def __init__(self, k: int, has_parent: bool, cfg: CeilingConfig):
        super().__init__()
        self.k = k
        self.parent = _ParentContext(k, has_parent, cfg)
        self.embed = nn.Embedding(k + 1, cfg.embedding)  # token K: a hidden non-anchor
        self.anchors = _trunk(cfg)
        self.head_anchor = nn.Sequential(nn.GELU(), nn.Conv2d(cfg.channels, k, 1))
        self.head_other = _head(k, cfg)

    def forward(self, grid: torch.Tensor, parent: torch.Tensor | None) -> torch.Tensor:
        mask = torch.from_numpy(anchor_mask(tuple(grid.shape[-2:])))
        p = self.parent(parent)
        visible = torch.where(mask, grid, torch.full_like(grid, self.k))
        a = self.anchors(self.embed(visible).permute(0, 3, 1, 2))
        return torch.where(mask, self.head_anchor(p), self.head_other(p + a))


def pass_of(shape: tuple[int, int]) -> torch.Tensor:
    """Each cell's pass in a four-pass order over the 2 x 2 lattice: (even, even), (odd, odd), (even, odd), (odd, even)."""
    rows, cols = torch.arange(shape[0])[:, None] % 2, torch.arange(shape[1])[None, :] % 2
    return torch.where(rows == cols, rows, 2 + rows)  # (H, W) in 0..3


class FourPassContext(nn.Module):
    """Four parallel passes where the shipped coder has two: only a quarter of the cells go without neighbours.

        parent --_ParentFeatures--> P (a learned constant at the coarsest level)
        for pass q in 0..3:  grid with every cell of pass >= q hidden --embed, 3 x conv 3x3--> A_q
                             logits of pass q's cells = head(P + A_q + e_q)              -> (B, K, H, W)

    Pass 1 sees its four diagonal neighbours, pass 2 and 3 all four direct
    ones; like the checkerboard net, a cell's own index never reaches it.
    """

    def __init__(self, k: int, has_parent: bool, cfg: CeilingConfig):
        super().__init__()
        self.k = k
        self.parent = _ParentContext(k, has_parent, cfg)
        self.passes = nn.Parameter(torch.zeros(4, cfg.channels, 1, 1))
        self.embed = nn.Embedding(k + 1, cfg.embedding)  # token K: not decoded yet
        self.trunk = _trunk(cfg)
        self.head = _head(k, cfg)

    def forward(self, grid: torch.Tensor, parent: torch.Tensor | None) -> torch.Tensor:
        order = pass_of(tuple(grid.shape[-2:]))
        p = self.parent(parent)
        logits = None
        for q in range(4):
            visible = torch.where(order < q, grid, torch.full_like(grid, self.k))
            a = self.trunk(self.embed(visible).permute(0, 3, 1, 2)) if q else 0
            out = self.head(p + a + self.passes[q])
            logits = out if logits is None else torch.where(order == q, out, logits)
        return logits


class _MaskedConv(nn.Conv2d):
    """A conv that sees only cells before the centre in raster order (``include_centre``: and the centre)."""

    def __init__(self, cin: int, cout: int, size: int, include_centre: bool):
        super().__init__(cin, cout, size, padding=size // 2)
        mask = torch.zeros(size, size)
        mask[: size // 2] = 1
        mask[size // 2, : size // 2 + int(include_centre)] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class RasterContext(nn.Module):
    """Every earlier cell in raster order, plus the parent: the serial ceiling.

        grid --embed--> masked conv 5x5 (centre excluded), then 3 x masked 3x3 (centre included) --> S
        parent --_ParentFeatures--> P (a learned constant at the coarsest level)
        logits = head(GELU(S + P))                                      -> (B, K, H, W)
    """

    def __init__(self, k: int, has_parent: bool, cfg: CeilingConfig):
        super().__init__()
        self.parent = _ParentContext(k, has_parent, cfg)
        self.embed = nn.Embedding(k, cfg.embedding)
        c = cfg.channels
        self.spatial = nn.Sequential(
            _MaskedConv(cfg.embedding, c, 5, include_centre=False), nn.GELU(),
            _MaskedConv(c, c, 3, include_centre=True), nn.GELU(),
            _MaskedConv(c, c, 3, include_centre=True), nn.GELU(),
            _MaskedConv(c, c, 3, include_centre=True),
        )
        self.head = _head(k, cfg)

    def forward(self, grid: torch.Tensor, parent: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.spatial(self.embed(grid).permute(0, 3, 1, 2)) + self.parent(parent))


# A non-anchor's anchors within a knight's move: the four neighbours the shipped tables read, and eight more
_ANCHOR_OFFSETS = ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -2), (-1, 2), (1, -2), (1, 2), (-2, -1), (-2, 1), (2, -1), (2, 1))
# The parent's 3 x 3 neighbourhood, turned so that +1 points to the cell's side (the shipped ph / pv rule)
_PARENT_OFFSETS = tuple((a, b) for a in (-1, 0, 1) for b in (-1, 0, 1))


class WideTables(nn.Module):
    """The shipped log-linear family with more rows: what integer tables alone could reach.

        anchors:      score[x] = sum over the parent's 9 cells j (3 x 3, turned to the cell's side) of T_j[p_j, x]
        non-anchors:  that + sum over the 12 anchors within a knight's move i of U_i[a_i, x]
        (coarsest level: a bias row in the parent's place, as the shipped tables have)

    One table per relative position, each (K + 1, K), row K for beyond the
    edge: 21 rows summed per cell where the shipped prior sums 3 or 7.
    """

    def __init__(self, k: int, has_parent: bool, cfg: CeilingConfig):
        super().__init__()
        self.k = k
        rows = len(_PARENT_OFFSETS) if has_parent else 0
        self.parent_tables = nn.ModuleList(nn.Embedding(k + 1, k) for _ in range(rows))
        self.anchor_tables = nn.ModuleList(nn.Embedding(k + 1, k) for _ in _ANCHOR_OFFSETS)
        self.bias = nn.Parameter(torch.zeros(2, k))  # (anchors, non-anchors): the level's own frequencies
        for table in [*self.parent_tables, *self.anchor_tables]:
            nn.init.zeros_(table.weight)

    def forward(self, grid: torch.Tensor, parent: torch.Tensor | None) -> torch.Tensor:
        b, h, w = grid.shape
        mask = torch.from_numpy(anchor_mask((h, w)))
        rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
        score = torch.where(mask[..., None], self.bias[0], self.bias[1]).expand(b, h, w, self.k)
        if self.parent_tables:
            padded = F.pad(parent, (1, 1, 1, 1), value=self.k)
            side_r, side_c = rows % 2 * 2 - 1, cols % 2 * 2 - 1  # +1: the cell is in its parent's lower / right half
            for table, (a, c) in zip(self.parent_tables, _PARENT_OFFSETS):
                score = score + table(padded[:, rows // 2 + 1 + a * side_r, cols // 2 + 1 + c * side_c])
        padded = F.pad(grid, (2, 2, 2, 2), value=self.k)
        spatial = 0
        for table, (a, c) in zip(self.anchor_tables, _ANCHOR_OFFSETS):
            spatial = spatial + table(padded[:, rows + 2 + a, cols + 2 + c])  # only anchors, at a non-anchor
        score = score + torch.where(mask[..., None], torch.zeros(()), spatial)
        return score.permute(0, 3, 1, 2)


NETWORKS = {"checkerboard": CheckerboardContext, "four-pass": FourPassContext, "raster": RasterContext,
            "wide-tables": WideTables}
LEARNING_RATES = {"wide-tables": 0.02}  # tables, like the shipped fit's, want a larger step than the nets


def _crops(grids: list[dict[int, np.ndarray]], factor: int, has_parent: bool, cfg: CeilingConfig,
           rng: np.random.Generator):
    """One batch of aligned (grid, parent) crops, images drawn by area; crops start on even cells."""
    areas = np.array([g[factor].size for g in grids], dtype=np.float64)
    picks = rng.choice(len(grids), size=cfg.batch, p=areas / areas.sum())
    # one side for the whole batch: the crop, or the smallest picked grid's even extent if that is smaller
    side = min([cfg.crop] + [min(d - d % 2 for d in grids[i][factor].shape) for i in picks])
    cells, parents = [], []
    for i in picks:
        grid = grids[i][factor]
        h, w = grid.shape
        r = 2 * rng.integers(0, (h - side) // 2 + 1)
        c = 2 * rng.integers(0, (w - side) // 2 + 1)
        cells.append(grid[r:r + side, c:c + side])
        if has_parent:
            parents.append(grids[i][2 * factor][r // 2:(r + side) // 2, c // 2:(c + side) // 2])
    parent = torch.from_numpy(np.stack(parents)).long() if has_parent else None
    return torch.from_numpy(np.stack(cells)).long(), parent


def train_level(kind: str, grids: list[dict[int, np.ndarray]], factor: int, k: int, has_parent: bool,
                cfg: CeilingConfig, log=None) -> nn.Module:
    """Fit one level's network by Adam on the cross-entropy of random crops; cosine decay to 5% of ``lr``."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = NETWORKS[kind](k, has_parent, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATES.get(kind, cfg.lr))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    for step in range(cfg.steps):
        grid, parent = _crops(grids, factor, has_parent, cfg, rng)
        loss = F.cross_entropy(net(grid, parent), grid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (step + 1) % 100 == 0:
            log(step + 1, loss.item() / math.log(2))
    return net.eval()


def ideal_bits(net: nn.Module, grids: list[dict[int, np.ndarray]], factor: int, has_parent: bool) -> list[float]:
    """Each image's code length of level ``factor`` under the net, in bits (the whole grid at once)."""
    out = []
    with torch.inference_mode():
        for image in grids:
            grid = torch.from_numpy(image[factor]).long()[None]
            parent = torch.from_numpy(image[2 * factor]).long()[None] if has_parent else None
            out.append(F.cross_entropy(net(grid, parent), grid, reduction="sum").item() / math.log(2))
    return out


def shipped_bits(grids: list[dict[int, np.ndarray]], factor: int, prior) -> list[float]:
    """Each image's payload bits of level ``factor`` as a file storing every level codes it."""
    coder = prior.coder_for(factor, tuple(prior.static))
    return [8.0 * len(encode_level(image[factor], factor, coder, image, prior)) for image in grids]


def kodak_grids(net, files: list[Path], tile: int) -> tuple[list[dict[int, np.ndarray]], list[int]]:
    """Kodak's index grids as a file holds them (tiled, padded), and each image's pixel count."""
    from hvq.codec.runtime.imageio import load_image
    from hvq.codec.runtime.tiling import encode_tiled

    grids, pixels = [], []
    for path in files:
        rgb = load_image(path)
        grids.append({f: g.astype(np.int64) for f, g in encode_tiled(net, np.asarray(rgb), tile).items()})
        pixels.append(rgb.width * rgb.height)
    return grids, pixels


def file_rates(bits: dict, pixels: list[int], factors: tuple[int, ...], kinds: tuple[str, ...]) -> dict:
    """Per file (the one showing level f holds f and every coarser level): the mean bpp each prior saves."""
    saved = {}
    for kind in kinds:
        per_file = {}
        for finest in factors:
            stored = [f for f in factors if f >= finest]
            per_image = [sum(bits["shipped"][f]["kodak"][i] - bits[kind][f]["kodak"][i] for f in stored) / pixels[i]
                         for i in range(len(pixels))]
            per_file[finest] = float(np.mean(per_image))
        saved[kind] = per_file
    return saved


def standing(rd_path: Path, saved: dict, factors: tuple[int, ...], kinds: tuple[str, ...]) -> list[dict]:
    """Each level's file against the best alternative, at today's rate and at the rate each prior would give."""
    from hvq.evaluation.envelope import best_alternative
    from hvq.evaluation.records import SettingMean

    means = [SettingMean(**m) for m in json.loads(rd_path.read_text())["mean"]]
    rows = []
    for finest in factors:
        setting = "levels=" + ",".join(str(f) for f in factors if f >= finest)
        hvq = next(m for m in means if m.codec == "hvq" and m.setting == setting)
        for metric in ("psnr", "ms_ssim_db", "ssimulacra2"):
            row = {"level": finest, "metric": metric, "hvq": getattr(hvq, metric), "bpp": {"shipped": hvq.bpp}}
            for prior in ("shipped",) + kinds:
                bpp = hvq.bpp - (0.0 if prior == "shipped" else saved[prior][finest])
                best = best_alternative(means, metric, bpp)
                row["bpp"][prior] = bpp
                row[prior] = None if best is None else {"codec": best.codec, "best": best.quality,
                                                        "delta": getattr(hvq, metric) - best.quality}
            rows.append(row)
    return rows


def markdown(result: dict) -> str:
    factors, kinds = tuple(result["factors"]), tuple(result["kinds"])
    bits, cells = result["bits"], result["cells"]
    cfg = result["config"]
    lines = [
        f"Model `{result['model']}` (K = {result['codebook_size']}); networks trained on {result['train_images']} "
        f"training images' grids, scored on Kodak ({result['kodak_images']} images, tiled as files code them).",
        f"Each network: {cfg['steps']} Adam steps of {cfg['batch']} crops of {cfg['crop']} x {cfg['crop']} cells, "
        f"{cfg['channels']} channels, seed {cfg['seed']}, one CPU thread ("
        + "; ".join(f"{kind}: {result['networks'][kind].get('cpu', 'not recorded')}" for kind in kinds) + ").",
        "",
        "**Bits per index** (Kodak; training set in brackets):",
        "",
        "| prior | " + " | ".join(f"level {f}" for f in factors) + " | parameters | train time |",
        "|---" * (len(factors) + 3) + "|",
    ]
    for prior in ("shipped",) + kinds:
        row = []
        for f in factors:
            b = bits[prior][str(f)]
            k = sum(b["kodak"]) / cells["kodak"][str(f)]
            t = "" if "train" not in b else f" ({sum(b['train']) / cells['train'][str(f)]:.3f})"
            row.append(f"{k:.3f}{t}")
        extra = result["networks"].get(prior)
        params = "integer tables" if extra is None else f"{extra['parameters'] / 1e6:.2f} M per level (mean)"
        secs = "" if extra is None else f"{extra['train_s'] / 60:.0f} min"
        lines.append(f"| {prior} | " + " | ".join(row) + f" | {params} | {secs} |")
    for prior in kinds:
        row = []
        for f in factors:
            s, p = sum(bits["shipped"][str(f)]["kodak"]), sum(bits[prior][str(f)]["kodak"])
            row.append(f"{1 - p / s:+.1%}")
        lines.append(f"| saving of {prior} | " + " | ".join(row) + " | | |")
    lines += [
        "",
        "**Where each file would stand** at unchanged pictures: its Kodak bpp with each prior, and hvq minus "
        "the best alternative at that bpp (`hvq bench`'s codecs and downscale baselines, log-bpp interpolation; "
        "— where none covers it):",
        "",
        "| level | metric | hvq | " + " | ".join(f"{p}: bpp / delta" for p in ("shipped",) + kinds) + " |",
        "|---" * (len(kinds) + 4) + "|",
    ]
    for row in result["standing"]:
        cells_ = []
        for prior in ("shipped",) + kinds:
            best = row[prior]
            delta = "—" if best is None else f"{best['delta']:+.2f} ({best['codec']})"
            cells_.append(f"{row['bpp'][prior]:.4f} / {delta}")
        lines.append(f"| {row['level']} | {row['metric']} | {row['hvq']:.2f} | " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def _measured(path: Path, model: str, cfg: CeilingConfig, kinds: tuple[str, ...]) -> dict:
    """The kinds an earlier run into the same folder measured for this model and budget: {kind: (bits, network)}.

    Each kind takes 20-30 CPU-minutes per model, so a folder is resumable
    kind by kind, as the design study is candidate by candidate.
    """
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("model") != model or earlier.get("config") != asdict(cfg):
        return {}
    return {kind: (earlier["bits"][kind], earlier["networks"][kind]) for kind in kinds if kind in earlier.get("networks", {})}


def _parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@click.command()
@click.argument("train", type=click.Path(exists=True, file_okay=False))
@click.argument("kodak", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "model_path", default=None, help="Model file (default: the shipped one).")
@click.option("--rd", "rd_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="`hvq bench`'s rd.json for this model: the alternatives and hvq's own points.")
@click.option("--steps", type=click.IntRange(1), default=CeilingConfig.steps, show_default=True)
@click.option("--kind", "kinds", type=click.Choice(KINDS), multiple=True, help="Only these networks (default: all).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False), required=True)
def main(train, kodak, model_path, rd_path, steps, kinds, threads, output):
    from hvq.codec.fit.export import encode_grids
    from hvq.codec.runtime.pipeline import Codec
    from hvq.codec.train.data import list_images
    from hvq.evaluation.speed import describe_machine

    torch.set_num_threads(threads)
    cfg = CeilingConfig(steps=steps)
    codec = Codec.for_model(model_path)
    model = codec.model
    factors = tuple(sorted(model.config.factors, reverse=True))
    k = model.config.codebook_size
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    click.echo("encoding the training images and Kodak ...", err=True)
    with torch.inference_mode():
        train_grids = encode_grids(model.net, list_images([train]))
        kodak, pixels = kodak_grids(model.net, list_images([kodak]), codec.tile)
    bits = {"shipped": {f: {"kodak": shipped_bits(kodak, f, model.prior)} for f in factors}}
    ran = tuple(dict.fromkeys(kinds or KINDS))
    networks, kept = {}, _measured(out / "ceiling.json", model.fingerprint_hex, cfg, ran)
    for kind, (kind_bits, network) in kept.items():
        click.echo(f"{kind}: kept from {out / 'ceiling.json'} (same model and budget)", err=True)
        bits[kind], networks[kind] = {int(f): b for f, b in kind_bits.items()}, network
    for kind in (k_ for k_ in ran if k_ not in kept):
        bits[kind], spent, params = {}, 0.0, []
        for f in factors:
            has_parent = 2 * f in factors
            started = time.process_time()
            net = train_level(kind, train_grids, f, k, has_parent, cfg,
                              lambda s, b: click.echo(f"{kind} level {f} step {s}: {b:.3f} bits", err=True))
            spent += time.process_time() - started
            params.append(_parameters(net))
            bits[kind][f] = {"kodak": ideal_bits(net, kodak, f, has_parent),
                             "train": ideal_bits(net, train_grids, f, has_parent)}
        networks[kind] = {"train_s": spent, "parameters": float(np.mean(params)), "cpu": describe_machine().cpu}
    saved = file_rates(bits, pixels, factors, ran)
    result = {
        "model": model.fingerprint_hex, "codebook_size": k, "factors": list(factors), "kinds": list(ran),
        "train_images": len(train_grids), "kodak_images": len(kodak), "config": asdict(cfg),
        "cells": {"kodak": {str(f): sum(g[f].size for g in kodak) for f in factors},
                  "train": {str(f): sum(g[f].size for g in train_grids) for f in factors}},
        "bits": {p: {str(f): v for f, v in b.items()} for p, b in bits.items()},
        "networks": networks, "saved_bpp": {p: {str(f): v for f, v in s.items()} for p, s in saved.items()},
        "standing": standing(Path(rd_path), saved, factors, ran),
    }
    (out / "ceiling.json").write_text(json.dumps(result, indent=1))
    report = markdown(result)
    (out / "ceiling.md").write_text(report + "\n")
    click.echo(report)


if __name__ == "__main__":
    main()
