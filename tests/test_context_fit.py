"""Fitting the context prior (``hvq.codec.fit.context_prior``) and adding it to a model (``hvq fit-prior``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hvq.bitstream.coder import encode_indices, encode_indices_in_context
from hvq.cli.main import main
from hvq.codec.fit.context_prior import ContextFitConfig, fit_context_prior, level_tokens
from hvq.codec.fit.export import holdout_split
from hvq.codec.runtime.weights import load_model

K = 16


def structured_grids(n: int, seed: int) -> list[dict[int, np.ndarray]]:
    """Grids where a level mostly copies its parent and its left neighbour: something a context model can learn."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        coarse = rng.integers(0, K, (4, 6))
        grids = {16: coarse}
        for factor in (8, 4):
            up = grids[2 * factor].repeat(2, 0).repeat(2, 1)
            noise = rng.random(up.shape) < 0.25
            grids[factor] = np.where(noise, (up + rng.integers(1, 3, up.shape)) % K, up)
        images.append(grids)
    return images


def test_the_fit_learns_the_structure_and_freezes_valid_tables():
    train, test = structured_grids(40, 0), structured_grids(10, 1)
    static = {f: np.bincount(np.concatenate([g[f].ravel() for g in train]), minlength=K).astype(np.int32) + 1
              for f in (4, 8, 16)}
    models = fit_context_prior(train, static, ContextFitConfig(steps=150, batch_tokens=2048))
    assert not models[16].has_parent and models[8].has_parent and models[4].has_parent
    for factor in (8, 4):
        static_bits = sum(len(encode_indices(g[factor], static[factor])) for g in test)
        context_bits = sum(len(encode_indices_in_context(g[factor], models[factor], g[2 * factor])) for g in test)
        assert context_bits < 0.75 * static_bits, factor


def test_tokens_carry_the_coder_contexts():
    grids = structured_grids(2, 3)
    tokens = level_tokens(grids, 8, K)
    n = sum(g[8].size for g in grids)
    assert len(tokens.index) == n and tokens.anchor.sum() == n // 2
    assert tokens.parent is not None and tokens.parent_horizontal.max() == K  # the edge row is used
    assert level_tokens(grids, 16, K).parent is None


def test_holdout_split_is_by_name_and_stable(tmp_path):
    files = [tmp_path / f"img{i:03d}.png" for i in range(200)]
    fit, held = holdout_split(files, 10)
    assert len(fit) + len(held) == 200 and 5 < len(held) < 40
    again = holdout_split(list(reversed(files)) + [tmp_path / "new.png"], 10)[1]
    assert set(held) <= set(again)


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    y, x = np.mgrid[0:48, 0:64]
    for i in range(8):
        smooth = np.stack([x * (2 + i), y * 3, (x + y) * 2], -1) % 256
        noisy = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"im{i}.png")
    return folder


def test_fit_prior_keeps_the_model_and_its_files(tiny_model_path, image_folder, tmp_path, photo):
    out = tmp_path / "with-context.safetensors"
    result = CliRunner().invoke(main, ["fit-prior", "--model", str(tiny_model_path), "--data", str(image_folder),
                                       "--holdout", "30", "--prior-steps", "20", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "bits per index on the" in result.output and "context+parent" in result.output
    before, after = load_model(tiny_model_path), load_model(out)
    assert after.fingerprint == before.fingerprint and after.prior.context
    from hvq.codec.runtime.pipeline import Codec

    old_file = Codec.for_model(before).compress(photo)
    assert np.array_equal(np.asarray(Codec.for_model(after).decompress(old_file)),
                          np.asarray(Codec.for_model(before).decompress(old_file)))
    if importlib.util.find_spec("onnx") is not None:  # like export, it writes the decoder graphs beside the model
        assert "decoder graphs of with-context.safetensors" in result.output
        assert (tmp_path / "with-context.graphs.json").exists()


def test_fit_prior_refuses_an_empty_fit(tiny_model_path, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    result = CliRunner().invoke(main, ["fit-prior", "--model", str(tiny_model_path), "--data", str(empty),
                                       "-o", str(tmp_path / "o.safetensors")])
    assert result.exit_code == 1 and "no images under" in result.output
    assert not (tmp_path / "o.safetensors").exists()


def test_fit_prior_takes_its_model_like_every_command(tiny_model_path, tmp_path):
    """--model, as compress, decompress, strip and bench take it; the old positional MODEL still works, warned."""
    empty = tmp_path / "none"
    empty.mkdir()
    out = ["--data", str(empty), "-o", str(tmp_path / "o.safetensors")]
    result = CliRunner().invoke(main, ["fit-prior", str(tiny_model_path), *out])
    assert result.exit_code == 1 and "no images under" in result.output  # it got as far as the images
    assert "`hvq fit-prior MODEL` is deprecated; use `hvq fit-prior --model MODEL`" in result.output
    result = CliRunner().invoke(main, ["fit-prior", str(tiny_model_path), "--model", str(tiny_model_path), *out])
    assert result.exit_code == 2 and "give the model once, with --model" in result.output
    assert "--model" in CliRunner().invoke(main, ["fit-prior", "--help"]).output
