"""Datasets for training and evaluating ReLU-budgeted models.

Fashion-MNIST is read from its IDX `.gz` files (Debian's `dataset-fashion-mnist` package puts
them under /usr/share/datasets/fashion-mnist); scikit-learn ships the small `digits` set; a
synthetic set makes tests fast and self-contained. Nothing is downloaded.

Splits are deterministic: the validation split is carved out of the official training set
with a fixed seed, so model selection never looks at the test set.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

# Local imports: scikit-learn (slow to import) is loaded only for the digits dataset.

DATA_DIR_ENV = "PI_FASHION_MNIST_DIR"
DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Per-channel statistics of the Fashion-MNIST training images (pixel values in [0, 1]).
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
# How a dataset's images become model inputs, (intensity in [0, 1] − mean) / std, and its class
# names: what a compiled bundle carries so that a client can send its own images.
IMAGE_INPUTS = {
    "fashion-mnist": {"mean": [FASHION_MEAN], "std": [FASHION_STD], "classes": list(FASHION_CLASSES)},
    "digits": {"mean": [0.5], "std": [0.5], "classes": [str(i) for i in range(10)]},
}


def image_inputs(dataset: str | None) -> dict | None:
    """{"mean", "std", "classes"} of a dataset's inputs (None: not an image dataset we know)."""
    name = (dataset or "").removesuffix("-imbalanced")
    return IMAGE_INPUTS.get(name)
DATASETS = ("fashion-mnist", "digits", "synthetic")


class DatasetUnavailable(FileNotFoundError):
    """The files of a dataset are missing; the message says how to get them."""


@dataclass
class Splits:
    """Normalized float32 images (N, C, H, W) and int64 labels for train/val/test."""

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def loader(self, split: str, batch_size: int = 128, shuffle: bool | None = None,
               seed: int = 0) -> DataLoader:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        x, y = getattr(self, split)
        shuffle = (split == "train") if shuffle is None else shuffle
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                          generator=gen if shuffle else None)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic {data[:4].hex()})")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {arr.size} elements")
    return arr.reshape(shape)


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory with the Fashion-MNIST IDX files: argument, then $PI_FASHION_MNIST_DIR,
    then Debian's location. Raises DatasetUnavailable naming the package if files are missing."""
    d = Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_FASHION_DIR)
    missing = [f for f in FASHION_FILES.values() if not (d / f).is_file()]
    if missing:
        raise DatasetUnavailable(
            f"Fashion-MNIST files {missing} not found in {d}. Install Debian's package "
            f"(`sudo apt-get install dataset-fashion-mnist`), or point --data-dir / "
            f"${DATA_DIR_ENV} at a directory holding the four IDX .gz files.")
    return d


def load_fashion_mnist_raw(data_dir=None) -> dict[str, np.ndarray]:
    d = fashion_mnist_dir(data_dir)
    return {key: read_idx(d / name) for key, name in FASHION_FILES.items()}


def normalize_fashion(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) → normalized float32 (N, 1, 28, 28), as every model here expects."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8, dtype=np.float32) / 255.0)
    return ((x - FASHION_MEAN) / FASHION_STD).unsqueeze(1)


def _split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


def _as_tensors(x: torch.Tensor, y: np.ndarray, idx: np.ndarray):
    return x[torch.from_numpy(idx)], torch.from_numpy(y[idx].astype(np.int64))


def fashion_mnist(data_dir=None, val_fraction: float = 1 / 12, seed: int = 0) -> Splits:
    """Fashion-MNIST: 55 000 train / 5 000 validation (from the official training set) / 10 000 test."""
    raw = load_fashion_mnist_raw(data_dir)
    x_train = normalize_fashion(raw["train_images"])
    tr, va = _split_train_val(len(x_train), val_fraction, seed)
    x_test = normalize_fashion(raw["test_images"])
    all_test = np.arange(len(x_test))
    return Splits("fashion-mnist", _as_tensors(x_train, raw["train_labels"], tr),
                  _as_tensors(x_train, raw["train_labels"], va),
                  _as_tensors(x_test, raw["test_labels"], all_test), FASHION_CLASSES)


def digits(val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """scikit-learn's 8×8 digits (1 797 images), normalized to zero mean and unit std."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images.astype(np.float32) / 16.0 - 0.5) / 0.5).unsqueeze(1)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    n_val = int(round(len(y) * val_fraction))
    te, va, tr = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    return Splits("digits", _as_tensors(x, y, tr), _as_tensors(x, y, va), _as_tensors(x, y, te),
                  tuple(str(i) for i in range(10)))


def synthetic(n_train: int = 512, n_val: int = 128, n_test: int = 128, num_classes: int = 4,
              shape: tuple[int, int, int] = (1, 12, 12), seed: int = 0) -> Splits:
    """A small learnable image task: each class is a fixed random template plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(num_classes, *shape)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        x = templates[y] + 0.5 * rng.normal(size=(n, *shape)).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    return Splits("synthetic", draw(n_train), draw(n_val), draw(n_test),
                  tuple(f"class{i}" for i in range(num_classes)))


def group_imbalanced(splits: Splits, minority_classes=(5, 6, 7, 8, 9), keep_fraction: float = 0.1,
                     seed: int = 0) -> Splits:
    """Keeps only `keep_fraction` of the training samples of `minority_classes` (validation and
    test stay balanced, so per-group accuracy is measured fairly), as in the fairness study."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    bad = [c for c in minority_classes if not 0 <= c < splits.num_classes]
    if bad:
        raise ValueError(f"minority classes {bad} outside 0..{splits.num_classes - 1}")
    x, y = splits.train
    rng = np.random.default_rng(seed)
    keep = np.ones(len(y), dtype=bool)
    for c in minority_classes:
        idx = np.flatnonzero(y.numpy() == c)
        drop = rng.permutation(idx)[int(round(len(idx) * keep_fraction)):]
        keep[drop] = False
    keep_t = torch.from_numpy(keep)
    name = f"{splits.name}-imbalanced"
    return Splits(name, (x[keep_t], y[keep_t]), splits.val, splits.test, splits.classes)


def load(name: str, data_dir=None, seed: int = 0, imbalanced: bool = False) -> Splits:
    """Loads a dataset by name ("fashion-mnist", "digits", "synthetic"), optionally the
    group-imbalanced variant (classes 5–9 at 10% of their training samples)."""
    if name == "fashion-mnist":
        splits = fashion_mnist(data_dir, seed=seed)
    elif name == "digits":
        splits = digits(seed=seed)
    elif name == "synthetic":
        splits = synthetic(seed=seed)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return group_imbalanced(splits, seed=seed) if imbalanced else splits
