"""From a training checkpoint to a deployable model: fit the prior, freeze it, write safetensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvq.codec.config import ModelConfig
from hvq.codec.data import list_images
from hvq.codec.imageio import load_image, pad_to_multiple, to_tensor
from hvq.codec.model import HierarchicalVQVAE
from hvq.codec.prior import FrequencyPrior
from hvq.codec.training import load_training_state
from hvq.codec.validation import CodebookUsage, codebook_usage
from hvq.codec.weights import save_model


def load_checkpoint(path: str | Path) -> HierarchicalVQVAE:
    """The network of a training checkpoint (``checkpoint.pt`` of a run), in eval mode."""
    state = load_training_state(path)
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


@dataclass(frozen=True)
class ExportReport:
    """What ``export_checkpoint`` wrote, and how the model uses its codebook on the fitting images."""

    fingerprint: bytes
    images: int
    usage: CodebookUsage


def export_checkpoint(
    checkpoint: str | Path, data_dirs: list[str], output: str | Path, progress: bool = False
) -> ExportReport:
    """Fit per-level frequency tables on the images in ``data_dirs`` and write the model."""
    net = load_checkpoint(checkpoint)
    # Fit on the weights as shipped (float16-rounded), so the tables match what users' encoders choose.
    for p in net.parameters():
        p.data = p.data.half().float()
    files = list_images(data_dirs)
    counts = count_indices(net, files, progress)
    fingerprint = save_model(net, FrequencyPrior.from_counts(counts), output)
    return ExportReport(fingerprint, len(files), codebook_usage(counts))
