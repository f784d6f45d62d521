"""From a training checkpoint to a deployable model: fit the prior, freeze it, write safetensors.

The prior is fitted on the index grids of whole training images, encoded
with the weights as shipped: the static tables by counting, then (unless
asked not to) the context prior by ``hvq.codec.fit.context_prior``, and,
for a model with refinement depths, the depth prior beside it (every depth
of the fitting images, ``net.encode_depths``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hvq.bitstream.coder import encode_indices_in_context
from hvq.bitstream.container import CODER_CONTEXT, CODER_CONTEXT_PARENT, CODER_RANGE_STATIC
from hvq.bitstream.errors import HvqDataError
from hvq.bitstream.levels import encode_level
from hvq.bitstream.prior_tables import PriorTables
from hvq.codec.model.config import ModelConfig
from hvq.codec.fit.context_prior import ContextFitConfig, fit_context_prior, fit_depth_prior
from hvq.codec.runtime.image_files import list_images, read_image
from hvq.codec.runtime.imageio import pad_to_multiple, to_tensor
from hvq.codec.model.vqvae import HierarchicalVQVAE
from hvq.codec.model.prior import FrequencyPrior
from hvq.codec.train.loop import load_training_state
from hvq.codec.train.validation import CodebookUsage, codebook_usage
from hvq.codec.runtime.weights import LoadedModel, load_model, save_model


def load_checkpoint(path: str | Path) -> HierarchicalVQVAE:
    """The network of a training checkpoint (``checkpoint.pt`` of a run), in eval mode."""
    state = load_training_state(path)
    net = HierarchicalVQVAE(ModelConfig.from_json(state["model_config"]))
    net.load_state_dict(state["model"])
    return net.eval()


def encode_grids(net: HierarchicalVQVAE, files: list[Path], progress: bool = False) -> list[dict[int, np.ndarray]]:
    """Every level's index grid of each whole image: [{factor: (H/f, W/f) int64}]."""
    return [{f: stack[0] for f, stack in image.items()} for image in encode_stacks(net, files, progress, depths=False)]


def encode_stacks(net: HierarchicalVQVAE, files: list[Path], progress: bool = False, depths: bool = True) -> list[dict]:
    """Every depth of every level of each whole image: [{factor: (D_f, H/f, W/f) int64}], depth 1 first."""
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc="encode fitting images", unit="image")
    stacks = []
    for path in files:
        x = pad_to_multiple(to_tensor(read_image(path)), net.config.max_factor)
        if depths and net.config.depths:
            stacks.append({f: g[0].numpy() for f, g in net.encode_depths(x).items()})
        else:
            stacks.append({f: g[0].numpy()[None] for f, g in net.encode(x).items()})
    return stacks


def fit_priors(stacks: list[dict], static: dict, depths: dict, context: ContextFitConfig, progress: bool):
    """(context prior, depth prior) fitted on per-image depth stacks; the depth prior is empty without depths."""
    grids = [{f: stack[0] for f, stack in image.items()} for image in stacks]
    models = fit_context_prior(grids, static, context, progress)
    depth_models = fit_depth_prior(stacks, static, depths, context, progress) if depths else {}
    return models, depth_models


def count_grids(grids: list[dict[int, np.ndarray]], factors, codebook_size: int) -> dict[int, np.ndarray]:
    """How often each codeword is chosen at each level."""
    counts = {f: np.zeros(codebook_size, dtype=np.int64) for f in factors}
    for image in grids:
        for factor in factors:
            counts[factor] += np.bincount(image[factor].reshape(-1), minlength=codebook_size)
    return counts


@dataclass(frozen=True)
class ExportReport:
    """What ``export_checkpoint`` wrote, and how the model uses its codebook on the fitting images."""

    fingerprint: bytes
    images: int
    usage: CodebookUsage


def export_checkpoint(
    checkpoint: str | Path,
    data_dirs: list[str],
    output: str | Path,
    progress: bool = False,
    context: ContextFitConfig | None = ContextFitConfig(),
) -> ExportReport:
    """Fit the prior on the images in ``data_dirs`` and write the model (no context prior if ``context`` is None)."""
    net = load_checkpoint(checkpoint)
    # Fit on the weights as shipped (float16-rounded), so the tables match what users' encoders choose.
    for p in net.parameters():
        p.data = p.data.half().float()
    files = list_images(data_dirs)
    with torch.no_grad():
        stacks = encode_stacks(net, files, progress)
    grids = [{f: stack[0] for f, stack in image.items()} for image in stacks]
    counts = count_grids(grids, net.config.factors, net.config.codebook_size)
    static = FrequencyPrior.from_counts(counts)
    models, depth_models = (None, None) if context is None else fit_priors(
        stacks, static.tables, dict(net.config.depths), context, progress)
    fingerprint = save_model(net, static, output, models, depth_models)
    return ExportReport(fingerprint, len(files), codebook_usage(counts))


def holdout_split(files: list[Path], percent: int) -> tuple[list[Path], list[Path]]:
    """(fitting, held-out) files: an image is held out when CRC-32 of its file name mod 100 < ``percent``.

    A property of the name alone, so the split is the same on every machine
    and does not move when images are added to the folder.
    """
    is_held = [zlib.crc32(p.name.encode()) % 100 < percent for p in files]
    return [p for p, h in zip(files, is_held) if not h], [p for p, h in zip(files, is_held) if h]


@dataclass(frozen=True)
class PriorFitReport:
    """What ``fit_context_prior_for_model`` wrote, and the bits per index it measured on held-out images."""

    fingerprint: bytes  # unchanged: the weights and static tables are kept
    prior_fingerprint: bytes
    fitting_images: int
    heldout_images: int
    heldout_bits: dict  # {coder name: {factor (or "4:2", a depth): bits per index}} on the held-out images (empty if none)


def heldout_bits(grids: list[dict[int, np.ndarray]], prior: PriorTables, stacks: list[dict] | None = None) -> dict:
    """Bits per index of each coder on index grids, by coding them (the real payload sizes).

    With ``stacks`` (every depth of each image, ``encode_stacks``), also
    each refinement depth's, coded given the depth before it (coder 4, as
    "depth+previous" under keys "F:D").
    """
    coders = {"static": CODER_RANGE_STATIC, "context": CODER_CONTEXT, "context+parent": CODER_CONTEXT_PARENT}
    bits: dict = {}
    for name, coder in coders.items():
        for factor in sorted(prior.static, reverse=True):
            model = prior.context.get(factor)
            if coder != CODER_RANGE_STATIC and model is None or coder == CODER_CONTEXT_PARENT and not model.has_parent:
                continue
            total = sum(8 * len(encode_level(image[factor], factor, coder, image, prior)) for image in grids)
            bits.setdefault(name, {})[factor] = total / sum(image[factor].size for image in grids)
    for (factor, depth), model in sorted(prior.depth.items(), key=lambda item: (-item[0][0], item[0][1])):
        images = [image[factor] for image in stacks or () if image[factor].shape[0] >= depth]
        if images:
            total = sum(8 * len(encode_indices_in_context(s[depth - 1], model, s[depth - 2], previous=True)) for s in images)
            bits.setdefault("depth+previous", {})[f"{factor}:{depth}"] = total / sum(s[depth - 1].size for s in images)
    return bits


def fit_context_prior_for_model(
    model: LoadedModel,
    data_dirs: list[str],
    output: str | Path,
    holdout_percent: int = 0,
    config: ContextFitConfig = ContextFitConfig(),
    progress: bool = False,
) -> PriorFitReport:
    """Fit (or refit) a deployable model's context prior, keeping its weights and static tables.

    The model fingerprint does not cover the context prior, so files the
    model wrote before stay readable; the new prior gets its own fingerprint.
    """
    fitting, held = holdout_split(list_images(data_dirs), holdout_percent)
    if not fitting:
        raise HvqDataError(f"no image under {', '.join(map(str, data_dirs))} is left to fit on "
                         f"after holding out {holdout_percent}%")
    with torch.no_grad():
        stacks = encode_stacks(model.net, fitting, progress)
        held_stacks = encode_stacks(model.net, held, progress) if held else []
        held_grids = [{f: stack[0] for f, stack in image.items()} for image in held_stacks]
    context, depth_models = fit_priors(stacks, model.prior.static, dict(model.config.depths), config, progress)
    fingerprint = save_model(model.net, FrequencyPrior(model.prior.static), output, context, depth_models)
    if fingerprint != model.fingerprint:  # a bug, not an input: no HvqError
        raise RuntimeError("re-saving changed the model fingerprint; the weights did not round-trip")
    written = load_model(output)
    report_bits = heldout_bits(held_grids, written.prior, held_stacks) if held_grids else {}
    return PriorFitReport(fingerprint, written.prior.context_fingerprint, len(fitting), len(held), report_bits)
