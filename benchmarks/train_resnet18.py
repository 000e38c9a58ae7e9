"""Trains the ResNet-18-style Fashion-MNIST network of `pi bench model` (workload `resnet18`).

    python benchmarks/train_resnet18.py              # 5 epochs, about 10-20 minutes on 2 CPU cores

The network is relu_budget's `resnet18` layout (4 stages × 2 basic blocks, 17 ReLU layers,
widths 16/32/64/128: ResNet-18 at a quarter of the width) with a stride-2 3×3 stem, because
28×28 inputs at stride 1 would make every private inference 4x larger (108 K instead of
27 K ReLUs per image) without changing what the benchmark compares. Trained with SGD and a
cosine schedule (relu_budget.train.fit); the weights with the best validation accuracy are
kept. The checkpoint (about 2.8 MB) is committed as benchmarks/resnet18_fmnist.pt with its
metadata (test accuracy, epochs, command) in benchmarks/resnet18_fmnist.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from relu_budget import data, models, train

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--out", type=Path, default=HERE / "resnet18_fmnist.pt")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    splits = data.load("fashion-mnist", data_dir=args.data_dir, seed=args.seed)
    model = models.build("resnet18", stem_stride=2)
    cfg = train.TrainConfig(epochs=args.epochs, lr=0.05, batch_size=128, seed=args.seed)
    t0 = time.time()
    result = train.fit(model, splits, cfg)
    test = train.evaluate(model, splits.loader("test", 1000))
    elapsed = time.time() - t0
    meta = train.training_record(
        model, result, test, arch="resnet18 (quarter width, stem stride 2)", dataset="fashion-mnist",
        epochs=args.epochs, seed=args.seed, seconds=elapsed,
        command="python benchmarks/train_resnet18.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    train.save_checkpoint(args.out, model, meta)
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "history": result["history"]}, indent=2) + "\n")
    print(f"test accuracy {100 * test['accuracy']:.2f}% ({meta['relu_sites']} ReLU sites, "
          f"{meta['parameters']} parameters, {elapsed / 60:.1f} min); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
