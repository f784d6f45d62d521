"""Tokens as the API's middle: tokenize / detokenize, encode_tokens / decode_tokens, the model registry,
and ``hvq tokens`` / ``hvq detokenize``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import hvq
from conftest import make_tiny_model
from hvq.bitstream.container import parse
from hvq.cli.main import main
from hvq.codec.runtime import registry
from hvq.codec.runtime.pipeline import Codec
from hvq.codec.runtime.shards import TokenDataset

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[1]
LEVEL_SETS = [(16, 8, 4), (16,), (8,), (4,), (16, 4), (8, 4)]


@pytest.fixture(params=["static", "context"])
def codec(request, tiny_codec, tiny_context_codec):
    return tiny_codec if request.param == "static" else tiny_context_codec


# -- the three properties of issue 16 ------------------------------------------------------


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=lambda s: "-".join(map(str, s)))
def test_decode_tokens_gives_back_the_arrays_exactly(codec, photo, levels):
    tokens = codec.tokenize(photo, levels)
    assert tokens.levels == levels if levels == tuple(sorted(levels, reverse=True)) else True
    back = hvq.decode_tokens(hvq.encode_tokens(tokens, codec.model), model=codec.model)
    assert back == tokens
    for f in levels:
        assert back.grids[f].dtype == np.uint16 and np.array_equal(back.grids[f], tokens.grids[f])


def test_detokenize_of_a_files_tokens_equals_decompress_at_every_level(codec, photo):
    data = codec.compress(photo)
    tokens = hvq.decode_tokens(data, model=codec.model)
    for f in (16, 8, 4):
        assert np.array_equal(np.asarray(codec.detokenize(tokens, f)), np.asarray(codec.decompress(data, f)))


def test_encode_tokens_is_deterministic_and_is_compress(codec, photo):
    tokens = codec.tokenize(photo, (16, 4))
    first = hvq.encode_tokens(tokens, codec.model)
    assert first == hvq.encode_tokens(codec.tokenize(photo.copy(), (16, 4)), codec.model)
    assert first == codec.compress(photo, (16, 4))  # compress is encode_tokens(tokenize(...))


def test_tokens_hold_uint16_grids_the_size_and_the_fingerprint(tiny_codec, photo):
    tokens = tiny_codec.tokenize(photo)
    assert tokens.size == photo.size == (45, 37)
    assert tokens.model_fingerprint == tiny_codec.model.fingerprint
    assert {f: g.shape for f, g in tokens.grids.items()} == {16: (3, 3), 8: (6, 6), 4: (12, 12)}
    assert tokens.codebook_size == 16 and tokens.grid_multiple == 16
    with pytest.raises(ValueError):
        tokens.grids[16][0, 0] = 1  # read-only: a Tokens is a value
    with pytest.raises(TypeError):
        tokens.grids[2] = tokens.grids[4]


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(grids={16: np.zeros((2, 3), np.uint16)}), r"level 16 grid is \(2, 3\), expected \(3, 3\)"),
        (dict(grids={16: np.full((3, 3), 16)}), r"indices outside \[0, 16\)"),
        (dict(grids={16: np.full((3, 3), -1)}), r"indices outside \[0, 16\)"),
        (dict(grids={}), "at least one level"),
        (dict(model_fingerprint=b"short"), "16 bytes"),
    ],
)
def test_malformed_tokens_are_refused(tiny_codec, photo, change, match):
    tokens = tiny_codec.tokenize(photo)
    fields = dict(grids=dict(tokens.grids), width=45, height=37, model_fingerprint=tokens.model_fingerprint,
                  grid_multiple=16, codebook_size=16)
    with pytest.raises(hvq.HvqFormatError, match=match):
        hvq.Tokens(**{**fields, **change})


def test_tokens_name_what_they_lack(tiny_codec, photo):
    tokens = tiny_codec.tokenize(photo, (16, 8))
    with pytest.raises(hvq.HvqFormatError, match=r"level 4 is not in these tokens \(levels: 16,8\)"):
        tiny_codec.detokenize(tokens, 4)
    assert tokens.select((8,)).levels == (8,)
    with pytest.raises(hvq.HvqModelError, match="takes hvq.Tokens"):
        hvq.encode_tokens({16: np.zeros((3, 3))})


def test_tokens_of_another_model_are_refused(tiny_codec, photo, tmp_path):
    other = Codec.for_model(make_tiny_model(tmp_path / "other.safetensors", seed=2))
    tokens = other.tokenize(photo)
    with pytest.raises(hvq.HvqModelError, match=f"made with model {other.model.fingerprint_hex}"):
        tiny_codec.detokenize(tokens, 16)
    with pytest.raises(hvq.HvqModelError, match=f"made with model {other.model.fingerprint_hex}"):
        hvq.encode_tokens(tokens, tiny_codec.model)


def test_decode_tokens_of_a_truncated_file(tiny_codec, photo):
    data = tiny_codec.compress(photo)
    coarse = parse(data).level(16)
    cut = data[: coarse.offset + coarse.chunk_bytes]
    with pytest.raises(hvq.HvqTruncatedError, match="complete levels: 16"):
        hvq.decode_tokens(cut, model=tiny_codec.model)
    assert hvq.decode_tokens(cut, levels=16, model=tiny_codec.model).levels == (16,)
    with pytest.raises(hvq.HvqTruncatedError, match="level 8 is missing"):
        hvq.decode_tokens(cut, levels=(16, 8), model=tiny_codec.model)


def test_token_coding_does_not_import_torch():
    """encode_tokens / decode_tokens / strip are torch-free: the prior comes from the model file's tables."""
    script = (
        "import sys, hvq\n"
        f"data = open({str(DATA / 'shipped-v1.hvq')!r}, 'rb').read()\n"
        "tokens = hvq.decode_tokens(data)\n"
        "again = hvq.decode_tokens(hvq.encode_tokens(tokens))\n"
        "assert again == tokens, 'round trip'\n"
        "hvq.strip(hvq.encode_tokens(tokens), (4,))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print({f: g.shape for f, g in tokens.grids.items()})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{16: (6, 8), 8: (12, 16), 4: (24, 32)}"


# -- the registry: files pick the installed model they name ---------------------------------


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A models folder with two tiny models, the first the default for new files."""
    folder = tmp_path / "models"
    make_tiny_model(folder / registry.DEFAULT_FILE, seed=0, context=True)
    make_tiny_model(folder / "hvq-v2.safetensors", seed=5)
    (folder / "broken.safetensors").write_bytes(b"not a model")  # left out, blocks nothing
    monkeypatch.setattr(registry, "MODELS_DIR", folder)
    return folder


def test_the_registry_lists_installed_models_by_fingerprint(models_dir):
    found = registry.installed()
    assert [m.path.name for m in found] == [registry.DEFAULT_FILE, "hvq-v2.safetensors"]
    first = Codec.for_model(models_dir / registry.DEFAULT_FILE).model
    assert found[0].fingerprint == first.fingerprint
    assert found[0].prior_fingerprint == first.prior.context_fingerprint
    assert found[1].prior_fingerprint == bytes(16)
    assert registry.find_model(first.fingerprint) == models_dir / registry.DEFAULT_FILE
    assert registry.read_prior(found[0].path).prior.context_fingerprint == first.prior.context_fingerprint


def test_decompress_strip_and_the_plugin_pick_the_model_the_file_names(models_dir, photo, tmp_path):
    from hvq.codec.runtime.pillow_plugin import register_hvq_opener

    v2 = models_dir / "hvq-v2.safetensors"
    new = hvq.compress(photo)  # the default for new files
    old = hvq.compress(photo, model=v2)
    assert parse(new).header.model_fingerprint == registry.installed()[0].fingerprint
    for data, path in ((new, models_dir / registry.DEFAULT_FILE), (old, v2)):
        expected = Codec.for_model(path).decompress(data, 8)
        assert np.array_equal(np.asarray(hvq.decompress(data, 8)), np.asarray(expected))
        assert hvq.decode_tokens(data) == Codec.for_model(path).tokenize(photo)
        assert hvq.strip(data, (4,)) == Codec.for_model(path).compress(photo, (4,))
        file = tmp_path / "p.hvq"
        file.write_bytes(data)
        register_hvq_opener()
        with Image.open(file) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(hvq.decompress(data)))
    # an explicit model still overrides, and is checked
    with pytest.raises(hvq.HvqModelError, match="was made with model"):
        hvq.decompress(old, model=models_dir / registry.DEFAULT_FILE)


def test_an_unknown_fingerprint_is_refused_naming_it(models_dir, photo, tmp_path):
    stranger = Codec.for_model(make_tiny_model(tmp_path / "stranger.safetensors", seed=9))
    data = stranger.compress(photo)
    fp = stranger.model.fingerprint_hex
    for call in (lambda: hvq.decompress(data), lambda: hvq.decode_tokens(data), lambda: hvq.detokenize(stranger.tokenize(photo))):
        with pytest.raises(hvq.HvqModelError, match=f"made with model {fp}, which is not installed .*hvq-v2.safetensors"):
            call()
    source = tmp_path / "s.hvq"
    source.write_bytes(data)
    result = CliRunner().invoke(main, ["decompress", str(source), "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 1 and f"made with model {fp}, which is not installed" in result.output
    result = CliRunner().invoke(main, ["decompress", str(source), "-o", str(tmp_path / "s.png"),
                                       "--model", str(tmp_path / "stranger.safetensors")])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shipped-v1.hvq", "shipped-v2.hvq"])
def test_the_0_1_and_0_2_files_decode_to_their_golden_pixels_with_no_model(name, tmp_path):
    """hvq 0.1 wrote shipped-v1.hvq (format 1), hvq 0.2 shipped-v2.hvq (format 2, context prior), same image."""
    data = (DATA / name).read_bytes()
    assert parse(data).header.version == int(name[-5])
    assert hvq.decode_tokens(data) == hvq.decode_tokens(DATA / "shipped-v1.hvq")  # the same indices
    for f in (16, 8, 4):
        decoded = np.asarray(hvq.decompress(data, f)).astype(int)
        golden = np.asarray(Image.open(DATA / f"shipped-v1-level{f}.png")).astype(int)
        assert np.abs(decoded - golden).max() <= 1  # same indices (CRC-checked); float convs may round differently
    out = tmp_path / "out.png"
    result = CliRunner().invoke(main, ["decompress", str(DATA / name), "-o", str(out), "--level", "16"])
    assert result.exit_code == 0, result.output


# -- hvq tokens / hvq detokenize ------------------------------------------------------------


def test_cli_tokens_and_detokenize(tiny_codec, tiny_model_path, photo, tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    photo.save(folder / "a.png")
    photo.transpose(Image.FLIP_LEFT_RIGHT).save(folder / "sub" / "b.png")
    (folder / "c.hvq").write_bytes(tiny_codec.compress(photo.rotate(180)))
    (folder / "junk.png").write_bytes(b"not an image")
    out = tmp_path / "tokens"
    model = ["--model", str(tiny_model_path)]
    result = CliRunner().invoke(main, ["tokens", str(folder), "-o", str(out), "--levels", "16,8", "--shard-size", "2", *model])
    assert result.exit_code == 1  # the junk image fails; the rest are written
    assert "junk.png: not an image Pillow can read" in result.output and "1 of 4 files failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tokens-00000.safetensors", "tokens-00001.safetensors"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_fingerprint"] == tiny_codec.model.fingerprint_hex and manifest["codebook_size"] == 16
    assert [e["name"] for e in manifest["images"]] == ["a.png", "c.hvq", "sub/b.png"]
    assert manifest["images"][1]["levels"]["8"] == {"offset": 36, "shape": [6, 6]}
    read = dict(TokenDataset.open(out))
    assert read["a.png"] == tiny_codec.tokenize(photo, (16, 8))
    assert read["c.hvq"] == hvq.decode_tokens(folder / "c.hvq", (16, 8), model=tiny_codec.model)  # not re-encoded
    back = tmp_path / "back"
    result = CliRunner().invoke(main, ["detokenize", str(out), "-o", str(back), "--level", "8", *model])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(back / "a.png")), np.asarray(tiny_codec.detokenize(read["a.png"], 8)))
    assert (back / "sub" / "b.png").is_file() and (back / "c.png").is_file()
    result = CliRunner().invoke(main, ["detokenize", str(out), "-o", str(tmp_path / "b4"), "--level", "4", *model])
    assert result.exit_code == 1 and "level 4 is not in these tokens (levels: 16,8)" in result.output
    result = CliRunner().invoke(main, ["detokenize", str(out), "-o", str(back), "--level", "8", *model])
    assert result.exit_code == 1 and "exists (use --force" in result.output
    result = CliRunner().invoke(main, ["tokens", str(folder / "a.png"), "-o", str(out), *model])
    assert result.exit_code == 1 and "exists (use --force" in result.output


def test_cli_tokens_of_hvq_files_need_no_image_model(tiny_codec, tiny_model_path, photo, tmp_path):
    source = tmp_path / "x.hvq"
    source.write_bytes(tiny_codec.compress(photo))
    out = tmp_path / "t"
    result = CliRunner().invoke(main, ["tokens", str(source), "-o", str(out), "--model", str(tiny_model_path)])
    assert result.exit_code == 0, result.output
    assert dict(TokenDataset.open(out / "manifest.json"))["x.hvq"] == tiny_codec.tokenize(photo)


def test_the_flattened_sequence_example(tiny_codec, photo):
    """The README's transformer example: level 16 then level 8, raster order, one vocabulary."""
    tokens = tiny_codec.tokenize(photo, (16, 8))
    sequence = np.concatenate([tokens.grids[16].ravel(), tokens.grids[8].ravel()])
    assert sequence.shape == (9 + 36,) and sequence.max() < tokens.codebook_size
