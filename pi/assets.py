"""The embedded default model and its 32 Fashion-MNIST test samples (demos/assets/)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# Local imports: torch (through relu_budget) and matplotlib are imported by the loaders only: `pi --help`
# and the client side import this module without them.

if TYPE_CHECKING:       # the annotation only: loading the assets needs torch, importing this module does not
    import torch

ASSETS_ENV = "PI_ASSETS_DIR"


def assets_dir(path: str | os.PathLike | None = None) -> Path:
    """The assets directory: argument, then $PI_ASSETS_DIR, then demos/assets of this checkout."""
    d = Path(path or os.environ.get(ASSETS_ENV) or Path(__file__).resolve().parents[1] / "demos" / "assets")
    if not (d / "default_model.pt").is_file():
        raise FileNotFoundError(
            f"no default_model.pt in {d}: pass --assets DIR or set ${ASSETS_ENV}, or recreate it "
            "with `python demos/train_default.py`")
    return d


@dataclass
class Samples:
    images: np.ndarray      # uint8 (N, 28, 28), as stored
    labels: np.ndarray      # int64 (N,)
    inputs: torch.Tensor    # normalized float32 (N, 1, 28, 28), what the model takes


def load_default_model(path=None):
    """(the embedded default model, its checkpoint metadata)."""
    from relu_budget.train import load_checkpoint

    return load_checkpoint(assets_dir(path) / "default_model.pt")


def load_samples(path=None) -> Samples:
    from relu_budget.data import normalize_fashion

    with np.load(assets_dir(path) / "samples.npz") as f:
        images, labels = f["images"], f["labels"]
    return Samples(images, labels.astype(np.int64), normalize_fashion(images))


def save_sample_images(directory: str | os.PathLike, n: int = 4, path=None) -> list[Path]:
    """The first n embedded test samples as 8-bit grayscale PNGs, `{i}-{label}.png`, to try
    `pi infer` with (their labels in the names)."""
    import matplotlib.image as mpimg

    from relu_budget.data import FASHION_CLASSES
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(assets_dir(path) / "samples.npz") as f:
        images, labels = f["images"][:n], f["labels"][:n]
    files = []
    for i, (img, y) in enumerate(zip(images, labels)):
        name = FASHION_CLASSES[int(y)].lower().replace("/", "-").replace(" ", "-")
        files.append(out / f"{i}-{name}.png")
        mpimg.imsave(files[-1], img, cmap="gray", vmin=0, vmax=255)
    return files
