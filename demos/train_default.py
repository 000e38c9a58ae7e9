"""Trains the embedded default model and writes it, with 32 test samples, to demos/assets/.

    python demos/train_default.py            # about 10 minutes on 2 CPU cores

The model is `resnet-small` from relu_budget.models (a ResNet with a stride-2 stem and three
one-block stages, about 14.6 K ReLU sites on a 28×28 input), trained on Fashion-MNIST with
SGD + cosine schedule; the weights with the best validation accuracy are kept and their
test accuracy is recorded next to them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from relu_budget import data, models, train

ASSETS = Path(__file__).resolve().parent / "assets"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--out", type=Path, default=ASSETS)
    args = p.parse_args(argv)

    torch.set_num_threads(2)
    splits = data.load("fashion-mnist", data_dir=args.data_dir, seed=args.seed)
    model = models.build("resnet-small")
    cfg = train.TrainConfig(epochs=args.epochs, lr=0.05, batch_size=128, seed=args.seed)
    t0 = time.time()
    result = train.fit(model, splits, cfg)
    test = train.evaluate(model, splits.loader("test", 1000))
    elapsed = time.time() - t0

    # 32 fixed test images (the first 32 of the official test set), stored raw (uint8) so a
    # client can be shown real inputs; the normalization is part of the demo's preprocessing.
    raw = data.load_fashion_mnist_raw(args.data_dir)
    images, labels = raw["test_images"][:32], raw["test_labels"][:32].astype(np.int64)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = train.training_record(
        model, result, test, arch="resnet-small", dataset="fashion-mnist", epochs=args.epochs, seed=args.seed,
        seconds=elapsed, command="python demos/train_default.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    train.save_checkpoint(args.out / "default_model.pt", model, meta)
    np.savez_compressed(args.out / "samples.npz", images=images, labels=labels)
    (args.out / "default_model.json").write_text(json.dumps({**meta, "history": result["history"]}, indent=2) + "\n")
    print(f"test accuracy {100 * test['accuracy']:.2f}% ({meta['relu_sites']} ReLU sites, "
          f"{meta['parameters']} parameters, {elapsed / 60:.1f} min); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
