"""`pi demo`: the embedded default model on its 32 Fashion-MNIST test samples.

Until the secure engine lands this runs PLAINTEXT inference only (no cryptography) and says
so; it will become the three-process (server, dealer, client) private inference over TLS.
"""
from __future__ import annotations

import torch

from pi.assets import load_default_model, load_samples


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the embedded default model on its 32 samples")
    p.add_argument("--assets", default=None, help="directory with default_model.pt and samples.npz")
    p.set_defaults(func=run)


def run(args) -> int:
    from relu_budget.data import FASHION_CLASSES

    model, meta = load_default_model(args.assets)
    samples = load_samples(args.assets)
    print("NOTE: the secure two-party engine is not built yet; this demo runs the model in "
          "PLAINTEXT on one machine. Nothing here is private.")
    print(f"model: {meta['arch']} trained on {meta['dataset']} "
          f"(test accuracy {100 * meta['test_accuracy']:.2f}%, {meta['relu_sites']} ReLU sites)\n")
    with torch.no_grad():
        preds = model(samples.inputs).argmax(1).numpy()
    print(f"{'#':>3}  {'label':<12} {'prediction':<12}")
    for i, (y, p) in enumerate(zip(samples.labels, preds)):
        mark = "" if y == p else "  ✗"
        print(f"{i:>3}  {FASHION_CLASSES[y]:<12} {FASHION_CLASSES[p]:<12}{mark}")
    correct = int((preds == samples.labels).sum())
    print(f"\n{correct}/{len(preds)} correct")
    return 0
