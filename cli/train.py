"""``hvq train`` and ``hvq export``: from a folder of images to a deployable model.

Every option of ``hvq train`` is a field of ``hvq.codec.train.loop.TrainConfig``
(its default is the dataclass's), so a run folder's ``train_config.json``
can be replayed with ``--config`` and any option given on the command line
overrides it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields, replace
from pathlib import Path

import click
from click.core import ParameterSource

from hvq.bitstream.container import MAX_CODEBOOK_SIZE
from hvq.bitstream.errors import HvqError
from hvq.cli.options import EXIT_CODES, LevelList, data_option, force_option, model_option, output_option
from hvq.cli.output import check_run_folder, check_writable
from hvq.codec.model.config import RESIDUAL_KINDS, ModelConfig
from hvq.codec.train.config import CONFIG, FREEZABLE, TrainConfig


class DepthList(click.ParamType):
    """Refinement depths per level, ``FACTOR:DEPTHS`` pairs separated by commas, e.g. 4:4 or 4:4,8:2."""

    name = "F:D,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            pairs = tuple(tuple(int(n) for n in part.split(":")) for part in str(value).split(",") if part.strip())
        except ValueError:
            pairs = ((),)
        if not pairs or any(len(p) != 2 for p in pairs):
            self.fail(f"{value!r} is not a list of FACTOR:DEPTHS pairs such as 4:4", param, ctx)
        return pairs


class PartList(click.ParamType):
    """Parts of the model to hold still, comma-separated: encoder, codebook."""

    name = "PARTS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = tuple(p.strip() for p in str(value).split(",") if p.strip())
        if not parts or any(p not in FREEZABLE for p in parts):
            self.fail(f"{value!r}: give a comma-separated list of {', '.join(FREEZABLE)}", param, ctx)
        return parts

# option name -> (TrainConfig field, click type, help)
_RECIPE = {
    "steps": ("steps", click.IntRange(1), "Optimiser steps (the cosine schedule ends here)."),
    "crop": ("crop", click.IntRange(16), "Side of the random square crops, a multiple of the coarsest factor."),
    "batch_size": ("batch_size", click.IntRange(1), "Crops per step (per process under torchrun)."),
    "lr": ("lr", click.FloatRange(0, min_open=True), "Peak learning rate (Adam)."),
    "warmup_steps": ("warmup_steps", click.IntRange(0), "Linear warm-up steps."),
    "final_lr_fraction": ("final_lr_fraction", click.FloatRange(0, 1), "Cosine decay ends at lr x this."),
    "grad_clip": ("grad_clip", click.FloatRange(0), "Clip each update's gradient norm to this (0: off)."),
    "divergence_ratio": ("divergence_ratio", click.FloatRange(0),
                         "Roll back to the last checkpoint at half the learning rate when a step's loss "
                         "exceeds this x its running mean, or is not finite (0: only then)."),
    "mse": ("mse_weight", click.FloatRange(0), "Weight of the per-level MSE."),
    "l1": ("l1_weight", click.FloatRange(0), "Weight of the per-level L1 distance."),
    "ms_ssim": ("ms_ssim_weight", click.FloatRange(0), "Weight of the per-level 1 - MS-SSIM (pytorch-msssim)."),
    "usage_weight": ("usage_weight", click.FloatRange(0), "Weight of the codebook-usage term (0: off)."),
    "usage_temperature": ("usage_temperature", click.FloatRange(0, min_open=True),
                          "Softness of the usage term's assignments, in codeword spacings."),
    "seed": ("seed", int, "Seed of crops, flips, k-means and restarts."),
    "init_from": ("init_from", click.Path(exists=True, dir_okay=False),
                  "Start from this checkpoint's weights (its depths may differ: fine-tuning depths onto it)."),
    "freeze": ("freeze", PartList(), "Hold these still, e.g. encoder,codebook (needs --init-from)."),
    "val_data": ("val_data", click.Path(exists=True, file_okay=False), "Held-out images to validate on (Kodak)."),
    "val_every": ("val_every", click.IntRange(1), "Steps between validation passes."),
    "val_images": ("val_images", click.IntRange(0), "Validate on the first N images only (0: all)."),
}
# Settings of the machine, not of the recipe: they may change when a run resumes.
_HARDWARE = {
    "threads": ("threads", click.IntRange(1), "Torch threads per process."),
    "workers": ("workers", click.IntRange(0), "Data-loading processes (0: load in the training process)."),
    "device": ("device", click.Choice(["auto", "cpu", "cuda"]), "Where to train (auto: the GPU if any)."),
    "log_every": ("log_every", click.IntRange(1), "Steps between lines of metrics.jsonl."),
    "checkpoint_every": ("checkpoint_every", click.IntRange(1), "Steps between checkpoints."),
}
_RESUMABLE = set(_HARDWARE) | {"steps", "val_every"}


def _config_options(func):
    """Declare one option per TrainConfig field, with the dataclass's default in the help.

    The options default to None, so that only those given on the command line
    override a --config file (or a resumed run's config).
    """
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name, (field_name, kind, text) in reversed(list({**_RECIPE, **_HARDWARE}.items())):
        shown = defaults[field_name]
        flag = "--" + name.replace("_", "-")
        suffix = "" if shown is None or shown == () else f"  [default: {shown}]"
        func = click.option(flag, name, type=kind, default=None, help=text + suffix)(func)
    return func


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def _read_config(path, parse, kind: str):
    """A JSON config file parsed by ``parse`` (which raises ``HvqConfigError``); a fault is one line naming the file."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read this {kind} ({getattr(exc, 'strerror', None) or exc})")
    try:
        return parse(text)
    except HvqError as exc:
        raise click.ClickException(f"{path}: {exc}")


def _model_config(base: ModelConfig, model_config, codebook_size, code_dim, levels, depths=None,
                  residual_quantiser=None) -> ModelConfig:
    """``base`` (or the --model-config file instead), with the sizes given on the command line."""
    if model_config:
        base = _read_config(model_config, ModelConfig.from_json, "model config")
    changes = {}
    if codebook_size is not None:
        changes["codebook_size"] = codebook_size
    if code_dim is not None:
        changes["code_dim"] = code_dim
    if levels is not None:
        changes["factors"] = tuple(sorted(levels))
    if depths is not None:
        changes["depths"] = depths
    if residual_quantiser is not None:
        changes["residual_quantiser"] = residual_quantiser
    return replace(base, **changes)


@click.command(epilog=EXIT_CODES)
@data_option("Folder of training images, searched recursively (repeatable). Never Kodak.")
@output_option("Run folder: train_config.json, checkpoint.pt, metrics.jsonl, validation.jsonl, curves.png.",
               folder=True, dest="run_dir", required=True)
@click.option("--resume", is_flag=True, help="Continue the run in the folder from its last checkpoint.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Start from a train_config.json; options given here override it.")
@click.option("--model-config", type=click.Path(exists=True, dir_okay=False),
              help="JSON of a ModelConfig (widths, levels, codebook); default: hvq's.")
@click.option("--codebook-size", type=click.IntRange(2, MAX_CODEBOOK_SIZE), default=None, help="Codewords K  [default: 512]")
@click.option("--code-dim", type=click.IntRange(1), default=None, help="Codeword dimension D  [default: 64]")
@click.option("--levels", type=LevelList(), default=None, help="Level factors, e.g. 4,8,16  [default: 4,8,16]")
@click.option("--depths", type=DepthList(), default=None,
              help="Refinement depths per level, e.g. 4:4 (level 4 at depths 1-4)  [default: none]")
@click.option("--residual-quantiser", type=click.Choice(RESIDUAL_KINDS), default=None,
              help="Depths in training: rq (nearest codeword) or rsq (drawn, RSQ-VAE)  [default: rq]")
@_config_options
@click.pass_context
def train(ctx, data_dirs, run_dir, resume, config_file, model_config, codebook_size, code_dim, levels, depths,
          residual_quantiser, **options):
    """Train a model on folders of images (resumable, DDP under torchrun).

    Crops are random and flipped; the metrics go to RUN/metrics.jsonl and,
    with --val-data, a validation pass every --val-every steps reports each
    level's PSNR, MS-SSIM, bits per index and codebook usage.  A killed run
    continues exactly with `hvq train -o RUN --resume`.  For several GPUs:
    `torchrun --nproc-per-node N -m hvq.cli.main train ...`.  Then
    `hvq export RUN/checkpoint.pt` makes the deployable model.
    """
    from hvq.codec.train.loop import train as run_training

    given = {name for name in options if _given(ctx, name)}
    changes = {_RECIPE.get(n, _HARDWARE.get(n))[0]: options[n] for n in given}
    config_path = run_dir / CONFIG
    try:
        if resume:
            if not config_path.exists():
                raise click.ClickException(f"{run_dir}: no {CONFIG} to resume")
            refused = sorted(given - _RESUMABLE) + [n for n in ("data", "config", "model_config", "codebook_size",
                                                                 "code_dim", "levels", "depths",
                                                                 "residual_quantiser") if _given(ctx, n)]
            if refused:
                raise click.UsageError(f"--resume keeps the run's recipe; it cannot change {', '.join(refused)}")
            config = replace(_read_config(config_path, TrainConfig.from_json, "training config"), **changes)
        else:
            if config_path.exists():
                raise click.ClickException(f"{run_dir}: holds a run already (use --resume)")
            base = _read_config(config_file, TrainConfig.from_json, "training config") if config_file else None
            data = tuple(data_dirs) or (base.data if base else ())
            if not data:
                raise click.BadParameter("give at least one --data folder", param_hint="--data")
            model = _model_config(base.model if base else ModelConfig(), model_config, codebook_size, code_dim, levels,
                                  depths, residual_quantiser)
            config = replace(base, data=data, model=model, **changes) if base else TrainConfig(
                data=data, model=model, **changes)
    except HvqError as exc:  # a setting refused by ModelConfig or TrainConfig
        raise click.ClickException(str(exc))
    check_run_folder(run_dir)  # a FIFO or link where the run folder goes
    check_writable(config_path)  # a folder that takes no file is refused now, not after loading the images

    bar = None
    factors = sorted(config.model.factors, reverse=True)

    def progress(kind, record):
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            # Starts at the first logged step, so a resumed run's rate is not inflated.
            bar = tqdm(total=config.steps, initial=record.step, desc="train", unit="step", file=sys.stderr,
                       dynamic_ncols=True)
        levels = "/".join(map(str, factors))

        def each(score: str, spec: str, scale: float = 1) -> str:  # one value per level, coarse to fine
            return "/".join(format(scale * getattr(record.level(f), score), spec) for f in factors)

        if kind == "train":
            bar.update(record.step - bar.n)
            bar.set_postfix_str(f"loss {record.loss:.4f} | levels {levels}: PSNR {each('psnr', '.1f')} dB, "
                                f"perplexity {each('perplexity', '.0f')}")
        else:
            bar.write(f"step {record.step} validation, levels {levels}: PSNR {each('psnr', '.2f')} dB, "
                      f"MS-SSIM {each('ms_ssim', '.3f')}, bits/index {each('bits_per_index', '.2f')}, "
                      f"usage {each('usage', '.0f', 100)}% (all levels {100 * record.usage_all:.0f}%)"
                      + "".join(f"; level {f} at depths 1-{n}: PSNR "
                                + "/".join(f"{d.psnr:.2f}" for d in record.depths if d.factor == f) + " dB"
                                for f, n in config.model.depths))

    try:
        run_training(config, run_dir, resume=resume, progress=progress)
    except HvqError as exc:  # a folder, an image or a setting, named in the message
        raise click.ClickException(str(exc))
    finally:
        if bar is not None:
            bar.close()
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"{run_dir}: {config.steps} steps; curves in {run_dir}/curves.png; "
                   f"`hvq export {run_dir}/checkpoint.pt --data ... -o MODEL.safetensors` makes a model")


graphs_option = click.option(
    "--graphs/--no-graphs", default=True, show_default=True,
    help="Also write the onnx decoder graphs beside the model (MODEL.graphs.json, MODEL.decoder-F.onnx, a few KB), "
         "so it decodes without torch; needs the onnx package (skipped with a note if the option is not given and "
         "onnx is missing).")


def graphs_wanted(ctx: click.Context, graphs: bool) -> bool:
    """Whether to write decoder graphs after the model: asked for and onnx missing is an error, before the long fit."""
    import importlib.util

    if not graphs or importlib.util.find_spec("onnx") is not None:
        return graphs
    if ctx.get_parameter_source("graphs") is not ParameterSource.DEFAULT:
        raise click.ClickException("--graphs needs the onnx package: pip install onnx")
    click.echo("onnx is not installed: no decoder graphs written (`hvq export-graphs MODEL` writes them later)",
               err=True)
    return False


@click.command(epilog=EXIT_CODES)
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_option("The model file to write (.safetensors).", required=True)
@data_option("Folders to fit the prior on (repeatable; default: the run's training data).")
@click.option("--prior", "prior_kind", type=click.Choice(["context", "static"]), default="context", show_default=True,
              help="context: the checkerboard context prior conditioned on the coarser level (FORMAT.md 8.4); "
                   "static: one frequency table per level only.")
@click.option("--prior-steps", type=click.IntRange(1), default=400, show_default=True,
              help="Adam steps of the context prior's fit, per level.")
@graphs_option
@force_option
@click.pass_context
def export(ctx, checkpoint, output, data_dirs, prior_kind, prior_steps, graphs, force):
    """Fit the prior on the training images and write a deployable model."""
    from hvq.cli.output import check_target
    from hvq.codec.fit.context_prior import ContextFitConfig
    from hvq.codec.fit.export import export_checkpoint
    from hvq.codec.train.loop import load_training_state

    check_target(output, [checkpoint], force)
    graphs = graphs_wanted(ctx, graphs)
    try:
        state = load_training_state(checkpoint)
    except HvqError as exc:  # its message names the file
        raise click.ClickException(str(exc))
    try:
        if not data_dirs:
            if "train_config" not in state:
                raise click.UsageError("this checkpoint does not name its training data: give --data")
            data_dirs = TrainConfig.from_json(state["train_config"]).data
        context = ContextFitConfig(steps=prior_steps) if prior_kind == "context" else None
        report = export_checkpoint(checkpoint, list(data_dirs), output, progress=True, context=context)
    except HvqError as exc:  # about the images or the checkpoint: the message names the folder or file
        raise click.ClickException(str(exc))
    usage = report.usage
    levels = ", ".join(f"{f}: {100 * u:.1f}%" for f, u in sorted(usage.levels.items(), reverse=True))
    click.echo(f"{output}: model {report.fingerprint.hex()}")
    click.echo(f"codebook usage on the {report.images} fitting images: {levels}, "
               f"all levels {100 * usage.all_levels:.1f}%, every level {100 * usage.every_level:.1f}%")
    if graphs:
        ctx.invoke(export_graphs, model=output)


@click.command("export-graphs", epilog=EXIT_CODES)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def export_graphs(model):
    """Write the onnx decoder graphs of a model file beside it, so it decodes without torch (HVQ_BACKEND=onnx).

    Structure only (the weights stay in the model file): MODEL.graphs.json
    names the model's fingerprint and each graph's tensors, and
    MODEL.decoder-F.onnx holds each level's decoder.  Needs torch and onnx.
    """
    from hvq.codec.runtime.onnx_graphs import write_graphs

    try:
        manifest = write_graphs(model)
    except HvqError as exc:  # its message names the file, or what to install
        raise click.ClickException(f"{model}: {exc}" if str(model) not in str(exc) else str(exc))
    files = [manifest, *sorted(manifest.parent.glob(f"{Path(model).stem}.decoder-*.onnx"))]
    click.echo(f"{manifest}: decoder graphs of {model.name} ({sum(p.stat().st_size for p in files) / 1024:.1f} KB "
               f"in {len(files)} files)")


@click.command("fit-prior", epilog=EXIT_CODES)
@click.argument("model_argument", metavar="[MODEL]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@model_option
@output_option("The model file to write (.safetensors).", required=True)
@data_option("Folders of images to fit on (repeatable).", required=True)
@click.option("--holdout", "holdout_percent", type=click.IntRange(0, 90), default=10, show_default=True,
              help="Percent of the images held out of the fit (by a hash of the file name) and reported.")
@click.option("--prior-steps", type=click.IntRange(1), default=400, show_default=True,
              help="Adam steps of the fit, per level.")
@graphs_option
@force_option
@click.pass_context
def fit_prior(ctx, model_argument, model_path, output, data_dirs, holdout_percent, prior_steps, graphs, force):
    """Fit a model's context prior on images, keeping its weights and static tables.

    The model fingerprint stays the same, so the files the model wrote
    before still decode; the new prior gets its own fingerprint.  The model
    is given with --model, like every command (a MODEL argument is still
    read, but deprecated).
    """
    from hvq.cli.output import check_target
    from hvq.codec.fit.context_prior import ContextFitConfig
    from hvq.codec.fit.export import fit_context_prior_for_model
    from hvq.codec.runtime.weights import load_model

    if model_argument is not None:
        if model_path is not None:
            raise click.UsageError("give the model once, with --model")
        click.echo("Warning: `hvq fit-prior MODEL` is deprecated; use `hvq fit-prior --model MODEL`", err=True)
        model_path = model_argument
    check_target(output, [], force)
    graphs = graphs_wanted(ctx, graphs)
    try:
        loaded = load_model(model_path)
    except HvqError as exc:  # its message names the file
        raise click.ClickException(str(exc))
    try:
        report = fit_context_prior_for_model(
            loaded, list(data_dirs), output, holdout_percent, ContextFitConfig(steps=prior_steps), progress=True
        )
    except HvqError as exc:  # about the images: the message names the folder or file
        raise click.ClickException(str(exc))
    click.echo(f"{output}: model {report.fingerprint.hex()}, context prior {report.prior_fingerprint.hex()}, "
               f"fitted on {report.fitting_images} images")
    if report.heldout_bits:
        click.echo(f"bits per index on the {report.heldout_images} held-out images:")
        for coder, levels in report.heldout_bits.items():
            click.echo(f"  {coder:<15}" + "  ".join(f"level {f}: {b:.3f}" for f, b in levels.items()))
    if graphs:  # the weights are the source model's, but graphs name the file they sit beside
        ctx.invoke(export_graphs, model=output)
