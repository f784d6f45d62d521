"""Refinement depths in the model and in training (issue 14): residual quantisation with the shared codebook."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import TINY
from hvq.bitstream.errors import HvqConfigError, HvqModelError
from hvq.codec.model.config import ModelConfig
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.train.config import TrainConfig
from hvq.codec.train.loop import load_training_state, train
from hvq.codec.train.records import StepRecord, ValidationRecord

DEPTHS = ModelConfig(**TINY, depths=((4, 4),))


def _trained(config: ModelConfig, steps: int = 4, seed: int = 0) -> HierarchicalVQVAE:
    """A tiny model after a few EMA steps on one random batch (codebook and scales fitted), in eval."""
    torch.manual_seed(seed)
    net = HierarchicalVQVAE(config)
    x = torch.rand(4, 3, 32, 32)
    for _ in range(steps):
        net(x)
    return net.eval()


def _run(folder, steps, model=DEPTHS, **changes):
    settings = dict(crop=32, batch_size=4, warmup_steps=2, log_every=1, checkpoint_every=2, threads=1, workers=0)
    return TrainConfig(data=(str(folder),), model=model, steps=steps, **{**settings, **changes})


def test_config_validates_depths_and_leaves_the_defaults_out_of_its_json():
    plain = ModelConfig(**TINY)
    assert "depths" not in plain.to_json() and "residual_quantiser" not in plain.to_json()
    assert replace(plain, depths=(), residual_quantiser="rq").to_json() == plain.to_json()
    config = ModelConfig(**TINY, depths=[[4, 4]], residual_quantiser="rsq")
    assert config.depths == ((4, 4),) and config.depth_of(4) == 4 and config.depth_of(8) == 1
    assert ModelConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["depths"] == [[4, 4]]
    for bad, message in [
        (dict(depths=((32, 4),)), "not one of the factors"),
        (dict(depths=((4, 1),)), r"in \[2, 16\]"),
        (dict(depths=((4, 17),)), r"in \[2, 16\]"),
        (dict(depths=((4, 2), (4, 3))), "twice"),
        (dict(depths=((4,),)), "pairs"),
        (dict(residual_quantiser="sq"), "residual_quantiser"),
    ]:
        with pytest.raises(HvqConfigError, match=message):
            ModelConfig(**TINY, **bad)
    with pytest.raises(HvqConfigError, match="pairs"):
        ModelConfig.from_json(json.dumps({"depths": 4}))


def test_a_model_without_depths_has_the_same_weights_and_outputs_as_before():
    torch.manual_seed(0)
    plain = HierarchicalVQVAE(ModelConfig(**TINY))
    torch.manual_seed(0)
    deep = HierarchicalVQVAE(DEPTHS)
    extra = set(deep.state_dict()) - set(plain.state_dict())
    assert extra == {"residuals.4.scales", "residuals.4.gains", "residuals.4.initialised"}
    assert not any(k.startswith("residuals") for k in plain.state_dict())
    plain.eval()
    x = torch.rand(1, 3, 32, 32)
    indices = plain.encode(x)
    for f in (4, 8, 16):
        same = plain.decode(indices[f], f)
        assert torch.equal(plain.decode(indices[f], f, refinements=None), same)
        assert torch.equal(plain.decode(indices[f], f, refinements=indices[f][:, :0]), same)
    with pytest.raises(ValueError, match="no refinement depths"):
        plain.decode(indices[4], 4, refinements=indices[4][:, None])


def test_depth_one_of_encode_depths_is_encode_and_decodes_as_before():
    net = _trained(DEPTHS)
    x = torch.rand(2, 3, 32, 32)
    depth1, every = net.encode(x), net.encode_depths(x)
    assert every[4].shape == (2, 4, 8, 8) and every[4].dtype == torch.int64
    assert every[8].shape == (2, 1, 4, 4) and every[16].shape == (2, 1, 2, 2)
    for f in (4, 8, 16):
        assert torch.equal(every[f][:, 0], depth1[f])
    assert net.depth_of(4) == 4 and net.depth_of(8) == 1
    base = net.decode(depth1[4], 4)
    assert torch.equal(net.decode(depth1[4], 4, refinements=every[4][:, 1:1]), base)
    refined = net.decode(depth1[4], 4, refinements=every[4][:, 1:])
    assert refined.shape == base.shape and not torch.equal(refined, base)
    assert float(refined.min()) >= 0 and float(refined.max()) <= 1
    with pytest.raises(ValueError, match="4 refinements given; this level has 3"):
        net.decode(depth1[4], 4, refinements=torch.cat([every[4][:, 1:], every[4][:, 1:2]], 1))


@pytest.mark.parametrize("lookup", ["euclidean", "cosine"])
def test_more_depths_leave_less_of_the_latent_on_average(lookup):
    errors = []
    for seed in range(3):
        net = _trained(replace(DEPTHS, depths=((4, 6),), lookup=lookup), seed=seed)
        x = torch.rand(4, 3, 32, 32)
        z = net._latents(x)[0]
        grids = net.encode_depths(x)[4]
        codebook, depths = net.codebook, net.residuals["4"]
        errors.append([
            float((z.detach() - codebook.lookup(grids[:, 0]) - (depths.refinement(codebook, grids[:, 1:d]) if d > 1 else 0))
                  .pow(2).mean())
            for d in range(1, 7)
        ])
    mean = np.mean(errors, 0)
    assert all(np.diff(mean) < 0), mean
    assert mean[-1] < 0.95 * mean[0]  # a random encoder's latents are low-rank: refinements fit them badly


def test_the_scales_are_saved_with_the_weights_and_frozen_in_eval():
    net = _trained(DEPTHS)
    scales = net.residuals["4"].scales.clone()
    assert scales[0] == 1 and bool((scales[1:] < 1).all()) and bool((scales[1:] > 0).all())
    net(torch.rand(2, 3, 32, 32))  # eval: no EMA step
    assert torch.equal(net.residuals["4"].scales, scales)
    again = HierarchicalVQVAE(DEPTHS)
    again.load_state_dict(net.state_dict())
    again.eval()
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(again.encode_depths(x)[4], net.encode_depths(x)[4])


def test_rsq_draws_indices_in_training_only():
    rsq = _trained(replace(DEPTHS, residual_quantiser="rsq"))
    x = torch.rand(2, 3, 32, 32)
    first, second = rsq.encode_depths(x)[4], rsq.encode_depths(x)[4]
    assert torch.equal(first, second)  # eval: nearest codeword
    codes = [rsq.residuals["4"].quantize(rsq.codebook, rsq._latents(x)[0]).indices for _ in range(2)]
    assert torch.equal(codes[0], codes[1]) and torch.equal(codes[0], first)
    rsq.residuals.train()
    rsq.codebook.train()
    torch.manual_seed(1)
    drawn = [rsq._quantize_depths(4, rsq._latents(x)[0]).indices for _ in range(2)]
    assert not torch.equal(drawn[0], drawn[1])  # training: drawn at every depth


def test_training_draws_depths_per_crop_and_trains_the_decoder_on_the_drawn_sum():
    torch.manual_seed(0)
    net = HierarchicalVQVAE(DEPTHS)
    x = torch.rand(8, 3, 32, 32)
    out = net(x)
    level = out.levels[0]
    assert level.depth_indices.shape == (8, 4, 8, 8)
    assert level.drawn.shape == (8,) and set(level.drawn.tolist()) <= {1, 2, 3, 4}
    assert len(set(level.drawn.tolist())) > 1
    assert all(lv.drawn is None for lv in out.levels[1:])
    sum(lv.x_hat.mean() for lv in out.levels).backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.decoders["4"].parameters())


def test_quantiser_dropout_training_logs_each_depth_and_resumes_exactly(noise_folder, tmp_path):
    whole = train(_run(noise_folder, 4), tmp_path / "whole")
    train(_run(noise_folder, 2), tmp_path / "split")  # as if killed after its checkpoint
    # validation reads the model and changes nothing, so only the resumed half runs it
    resumed = train(_run(noise_folder, 4, val_data=str(noise_folder), val_every=4), tmp_path / "split", resume=True)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    record = StepRecord.from_json(lines[-1])
    assert record.factors == (4, 8, 16)
    assert [(d.factor, d.depth) for d in record.depths] == [(4, 1), (4, 2), (4, 3), (4, 4)]
    assert abs(sum(d.share for d in record.depths) - 1) < 1e-6
    assert all(d.perplexity >= 1 for d in record.depths)
    assert StepRecord.from_json(record.to_json()) .to_json() == record.to_json()
    assert "perplexity_4_d2" in json.loads(lines[-1])
    scores = ValidationRecord.from_json((tmp_path / "split" / "validation.jsonl").read_text().splitlines()[-1])
    assert [d.depth for d in scores.depths] == [1, 2, 3, 4]
    assert scores.depths[0].psnr == scores.level(4).psnr
    assert all(0 < d.usage <= 1 and d.psnr > 0 for d in scores.depths)


def test_depths_fine_tune_onto_a_trained_model_with_encoder_and_codebook_frozen(noise_folder, tmp_path):
    base = train(_run(noise_folder, 2, model=ModelConfig(**TINY)), tmp_path / "base")
    checkpoint = str(tmp_path / "base" / "checkpoint.pt")
    with pytest.raises(HvqConfigError, match="needs init_from"):
        _run(noise_folder, 2, freeze=("encoder",))
    with pytest.raises(HvqConfigError, match="freeze takes"):
        _run(noise_folder, 2, init_from=checkpoint, freeze=("decoder",))
    tuned = train(_run(noise_folder, 3, init_from=checkpoint, freeze=("encoder", "codebook")), tmp_path / "tuned")
    before, after = base.state_dict(), tuned.state_dict()
    for name in before:
        if name.startswith(("encoder.", "codebook.")):
            assert torch.equal(before[name], after[name]), name
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoders.4."))
    assert bool((after["residuals.4.scales"][1:] < 1).all())
    x = torch.rand(1, 3, 32, 32)
    base.eval(), tuned.eval()
    assert all(torch.equal(base.encode(x)[f], tuned.encode(x)[f]) for f in (4, 8, 16))  # depth-1 codes kept
    with pytest.raises(HvqModelError, match="differs"):
        train(_run(noise_folder, 1, model=replace(DEPTHS, code_dim=4), init_from=checkpoint), tmp_path / "other")
    state = load_training_state(tmp_path / "tuned" / "checkpoint.pt")
    assert json.loads(state["train_config"])["freeze"] == ["codebook", "encoder"]


def test_hvq_train_sets_depths_and_freezing_from_the_command_line(noise_folder, tmp_path):
    from hvq.cli.main import main as cli

    runner = CliRunner()
    common = ["--data", str(noise_folder), "--crop", "32", "--batch-size", "2", "--steps", "1", "--threads", "1",
              "--workers", "0", "--codebook-size", "16", "--code-dim", "8"]
    model = tmp_path / "model.json"
    model.write_text(ModelConfig(**TINY).to_json())
    result = runner.invoke(cli, ["train", "-o", str(tmp_path / "run"), *common, "--model-config", str(model),
                                 "--depths", "4:3", "--residual-quantiser", "rsq"])
    assert result.exit_code == 0, result.output
    saved = TrainConfig.from_json((tmp_path / "run" / "train_config.json").read_text())
    assert saved.model.depths == ((4, 3),) and saved.model.residual_quantiser == "rsq"
    result = runner.invoke(cli, ["train", "-o", str(tmp_path / "run"), "--resume", "--depths", "4:4"])
    assert result.exit_code == 2 and "depths" in result.output
    result = runner.invoke(cli, ["train", "-o", str(tmp_path / "bad"), *common, "--depths", "4"])
    assert result.exit_code == 2 and "FACTOR:DEPTHS" in result.output
    result = runner.invoke(cli, ["train", "-o", str(tmp_path / "bad"), *common, "--depths", "2:4"])
    assert result.exit_code == 1 and "Error: depths names level 2" in result.output
    result = runner.invoke(cli, ["train", "-o", str(tmp_path / "bad"), *common, "--freeze", "encoder"])
    assert result.exit_code == 1 and "needs init_from" in result.output
    result = runner.invoke(cli, ["train", "-o", str(tmp_path / "tuned"), *common, "--model-config", str(model),
                                 "--depths", "4:2", "--init-from", str(tmp_path / "run" / "checkpoint.pt"),
                                 "--freeze", "encoder,codebook"])
    assert result.exit_code == 0, result.output


def test_the_depths_benchmark_scores_every_depth_and_renders(tmp_path):
    from hvq.benchmarks.depths import latent_errors, render, score

    folder = tmp_path / "kodak"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / "a.png")
    net = _trained(DEPTHS)
    scores = score(net, folder)
    rows = scores["depths"]["4"]
    assert [r["depth"] for r in rows] == [1, 2, 3, 4] and rows[0]["psnr"] == scores["levels"]["4"]
    assert all(b["entropy_bpp"] >= a["entropy_bpp"] for a, b in zip(rows, rows[1:]))
    errors = latent_errors(net, folder, 1)["4"]
    assert len(errors) == 4 and errors[-1] < errors[0]
    (tmp_path / "out" / "arms").mkdir(parents=True)
    (tmp_path / "out" / "arms" / "rq.json").write_text(json.dumps(
        {"label": "RQ", "steps": 2, "train_cpu_s": 1.0, "training_depths": {}, "gains": [1, 0.5, 0.2, 0.1],
         **scores}))
    text = render(tmp_path / "out", "cmd", {"images": 1, "arms": {"rq": {"4": errors}}})
    assert "| rq | 4 |" in text and "cmd" in text and (tmp_path / "out" / "depths.json").exists()


def test_a_model_file_keeps_the_depth_scales_and_gains_in_full_precision(tmp_path):
    """The depths' look-up scales and gains decide indices, like the codebook: float32 in the file, not float16."""
    from safetensors.numpy import load_file

    from conftest import make_tiny_model

    path = make_tiny_model(tmp_path / "m.safetensors", context=True, depths=((4, 3),))
    tensors = load_file(str(path))
    depth_buffers = [n for n in tensors if n.startswith("residuals.")]
    assert depth_buffers and all(tensors[n].dtype == np.float32 for n in depth_buffers if "initialised" not in n)
