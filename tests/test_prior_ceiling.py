"""The prior-ceiling study: its context networks are causal in their decode order, and it reports through the product."""

import json
import math

import numpy as np
import pytest
import torch

from hvq.benchmarks.prior_ceiling import (
    KINDS, CeilingConfig, CheckerboardContext, RasterContext, WideTables, ideal_bits, train_level,
)
from hvq.bitstream.context import anchor_mask

K = 8
SMALL = CeilingConfig(steps=150, batch=8, crop=8, channels=16, embedding=8, lr=5e-3)


def _grids(seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, K, (1, 8, 10))).long(), torch.from_numpy(rng.integers(0, K, (1, 4, 5))).long()


def _logits(net, grid, parent):
    with torch.no_grad():
        return net(grid, parent)


@pytest.mark.parametrize("has_parent", [False, True])
@pytest.mark.parametrize("network", [CheckerboardContext, WideTables])
def test_checkerboard_anchors_see_only_the_parent_and_no_cell_sees_a_non_anchor(network, has_parent):
    torch.manual_seed(0)
    net = network(K, has_parent, SMALL).eval()
    for p in net.parameters():  # the tables start at zero: give every row something to say
        torch.nn.init.normal_(p)
    grid, parent = _grids()
    parent = parent if has_parent else None
    base = _logits(net, grid, parent)
    anchors = torch.from_numpy(anchor_mask((8, 10)))
    for r, c in [(0, 1), (3, 4), (7, 8)]:  # non-anchors: hidden from every cell
        changed = grid.clone()
        changed[0, r, c] = (changed[0, r, c] + 1) % K
        assert torch.equal(_logits(net, changed, parent), base)
    changed = grid.clone()
    changed[0, 2, 2] = (changed[0, 2, 2] + 1) % K  # an anchor: the second pass may read it, the first may not
    after = _logits(net, changed, parent)
    assert torch.equal(after[..., anchors], base[..., anchors])
    assert not torch.equal(after[..., ~anchors], base[..., ~anchors])


def test_raster_context_reads_only_earlier_cells():
    torch.manual_seed(0)
    net = RasterContext(K, True, SMALL).eval()
    grid, parent = _grids()
    base = _logits(net, grid, parent)
    order = torch.arange(80).reshape(8, 10)
    for r, c in [(0, 0), (3, 4), (7, 9)]:
        changed = grid.clone()
        changed[0, r, c] = (changed[0, r, c] + 1) % K
        after = _logits(net, changed, parent)
        earlier_or_same = order <= order[r, c]
        assert torch.equal(after[..., earlier_or_same], base[..., earlier_or_same])
        if (r, c) != (7, 9):
            assert not torch.equal(after[..., ~earlier_or_same], base[..., ~earlier_or_same])


@pytest.mark.parametrize("kind", KINDS)
def test_a_trained_network_learns_a_level_that_copies_its_parent(kind):
    rng = np.random.default_rng(1)
    grids = []
    for _ in range(6):
        parent = rng.integers(0, K, (6, 6))
        grids.append({8: parent, 4: np.kron(parent, np.ones((2, 2), dtype=parent.dtype))})
    net = train_level(kind, grids, 4, K, True, SMALL)
    bits = sum(ideal_bits(net, grids, 4, True)) / sum(g[4].size for g in grids)
    assert bits < 0.5 * math.log2(K)  # each index follows from its parent: far below 3 bits


def test_the_study_reports_bits_and_standing_through_the_product(tmp_path, tiny_context_model_path, photo):
    from click.testing import CliRunner

    from hvq.benchmarks.prior_ceiling import main

    folder = tmp_path / "images"
    folder.mkdir()
    photo.save(folder / "a.png")
    photo.transpose(0).save(folder / "b.png")
    mean = lambda codec, setting, bpp, q: {"codec": codec, "setting": setting, "images": 2, "bpp": bpp, "psnr": q,
                                           "ms_ssim": 0.9, "ms_ssim_db": q / 3, "ms_ssim_images": 2, "ssimulacra2": q}
    rd = {"mean": [mean("hvq", "levels=16", 0.5, 20.0), mean("hvq", "levels=16,8", 1.0, 22.0),
                   mean("hvq", "levels=16,8,4", 2.0, 25.0), mean("webp", "q=1", 0.01, 15.0),
                   mean("webp", "q=99", 4.0, 30.0)]}
    (tmp_path / "rd.json").write_text(json.dumps(rd))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [str(folder), str(folder), "--model", str(tiny_context_model_path),
                                       "--rd", str(tmp_path / "rd.json"), "--steps", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ceiling.json").read_text())
    assert report["kinds"] == list(KINDS)
    assert set(report["bits"]) == {"shipped", *KINDS}
    for level in ("16", "8", "4"):
        shipped = report["bits"]["shipped"][level]["kodak"]
        assert len(shipped) == 2 and all(b > 0 for b in shipped)
        assert all(b > 0 for b in report["bits"]["raster"][level]["train"])
    standing = {(r["level"], r["metric"]): r for r in report["standing"]}
    row = standing[(4, "psnr")]
    assert row["bpp"]["shipped"] == 2.0 and row["shipped"]["codec"] == "webp"
    saved = report["saved_bpp"]["checkerboard"]["4"]
    assert row["bpp"]["checkerboard"] == pytest.approx(2.0 - saved)
    md = (out / "ceiling.md").read_text()
    assert "saving of checkerboard" in md and "| 4 | psnr |" in md


def test_a_study_folder_resumes_kind_by_kind(tmp_path, tiny_context_model_path, photo):
    from click.testing import CliRunner

    from hvq.benchmarks.prior_ceiling import main

    folder = tmp_path / "images"
    folder.mkdir()
    photo.save(folder / "a.png")
    row = lambda setting, bpp: {"codec": "hvq", "setting": setting, "images": 1, "bpp": bpp, "psnr": 20.0,
                                "ms_ssim": 0.9, "ms_ssim_db": 7.0, "ms_ssim_images": 1}
    (tmp_path / "rd.json").write_text(json.dumps({"mean": [row("levels=16", 0.5), row("levels=16,8", 1.0),
                                                           row("levels=16,8,4", 2.0)]}))
    args = [str(folder), str(folder), "--model", str(tiny_context_model_path), "--rd", str(tmp_path / "rd.json"),
            "--steps", "2", "-o", str(tmp_path / "out")]
    first = CliRunner().invoke(main, args + ["--kind", "raster"])
    assert first.exit_code == 0, first.output
    raster = json.loads((tmp_path / "out" / "ceiling.json").read_text())["bits"]["raster"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "raster: kept from" in again.output and "checkerboard: kept" not in again.output
    report = json.loads((tmp_path / "out" / "ceiling.json").read_text())
    assert report["kinds"] == list(KINDS) and report["bits"]["raster"] == raster
    assert all(report["standing"][0][kind] is None for kind in KINDS)  # no alternative measured: none to beat
    changed = CliRunner().invoke(main, args[:-4] + ["--steps", "3", "-o", str(tmp_path / "out")])
    assert changed.exit_code == 0 and "kept from" not in changed.output  # another budget: everything anew


@pytest.mark.parametrize("has_parent", [False, True])
def test_four_pass_cells_read_only_earlier_passes(has_parent):
    from hvq.benchmarks.prior_ceiling import FourPassContext, pass_of

    torch.manual_seed(0)
    net = FourPassContext(K, has_parent, SMALL).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    grid, parent = _grids()
    parent = parent if has_parent else None
    order = pass_of((8, 10))
    assert order[0, 0] == 0 and order[1, 1] == 1 and order[0, 1] == 2 and order[1, 0] == 3
    base = _logits(net, grid, parent)
    for r, c in [(2, 2), (3, 3), (2, 3), (3, 2)]:  # one cell of each pass
        changed = grid.clone()
        changed[0, r, c] = (changed[0, r, c] + 1) % K
        after = _logits(net, changed, parent)
        same = order <= order[r, c]
        assert torch.equal(after[..., same], base[..., same])
        if order[r, c] < 3:
            assert not torch.equal(after[..., ~same], base[..., ~same])
