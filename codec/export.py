"""From a training checkpoint to a deployable model: fit the prior, freeze it, write safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hvq.codec.config import ModelConfig
from hvq.codec.data import list_images
from hvq.codec.imageio import load_image, pad_to_multiple, to_tensor
from hvq.codec.model import HierarchicalVQVAE
from hvq.codec.prior import FrequencyPrior
from hvq.codec.weights import save_model


def load_checkpoint(path: str | Path) -> HierarchicalVQVAE:
    """The network of a training checkpoint (``checkpoint.pt`` of a run), in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = HierarchicalVQVAE(ModelConfig.from_json(state["model_config"]))
    net.load_state_dict(state["model"])
    return net.eval()


def count_indices(net: HierarchicalVQVAE, files: list[Path], progress: bool = False) -> dict[int, np.ndarray]:
    """How often each codeword is chosen at each level over whole images."""
    counts = {f: np.zeros(net.config.codebook_size, dtype=np.int64) for f in net.config.factors}
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc="fit prior", unit="image")
    for path in files:
        x = pad_to_multiple(to_tensor(load_image(path)), net.config.max_factor)
        for factor, grid in net.encode(x).items():
            counts[factor] += np.bincount(grid.reshape(-1).numpy(), minlength=net.config.codebook_size)
    return counts


def export_checkpoint(checkpoint: str | Path, data_dirs: list[str], output: str | Path, progress: bool = False) -> bytes:
    """Fit per-level frequency tables on the images in ``data_dirs`` and write the model; returns its fingerprint."""
    net = load_checkpoint(checkpoint)
    # Fit on the weights as shipped (float16-rounded), so the tables match what users' encoders choose.
    for p in net.parameters():
        p.data = p.data.half().float()
    counts = count_indices(net, list_images(data_dirs), progress)
    return save_model(net, FrequencyPrior.from_counts(counts), output)
