"""Training and evaluation loops, distillation, seeds and checkpoints.

Checkpoints hold only tensors and plain data (architecture name and config, metrics), so
they load with `torch.load(weights_only=True)`: opening one never runs code.
"""
from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from relu_budget.models import count_relu_sites, from_config, model_config

CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and torch RNGs (for ML only; never used for cryptography)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, temperature: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """(1 − α)·CE(student, labels) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))."""
    ce = F.cross_entropy(student_logits, labels)
    t = temperature
    kd = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.softmax(teacher_logits / t, dim=1),
                  reduction="batchmean") * (t * t)
    return (1 - alpha) * ce + alpha * kd


@dataclass
class TrainConfig:
    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    optimizer: str = "sgd"          # "sgd" or "adam"
    temperature: float = 4.0        # distillation temperature (used when a teacher is given)
    distill_alpha: float = 0.5
    seed: int = 0
    progress: bool = True


@torch.no_grad()
def evaluate(model: nn.Module, loader, progress: bool = False, desc: str = "eval") -> dict:
    """Top-1 accuracy and mean cross-entropy of a model over a loader.

    An example whose logits are not all finite (an escaping polynomial network overflows)
    counts as wrong and is left out of the loss; `non_finite` says how many there were."""
    model.eval()
    correct, total, loss, bad = 0, 0, 0.0, 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        logits = model(x)
        ok = torch.isfinite(logits).all(1)
        bad += int((~ok).sum())
        if bool(ok.any()):
            loss += F.cross_entropy(logits[ok], y[ok], reduction="sum").item()
        correct += int(((logits.argmax(1) == y) & ok).sum())
        total += len(y)
    if total == 0:
        raise ValueError("cannot evaluate on an empty loader")
    return {"accuracy": correct / total, "loss": loss / max(total - bad, 1), "n": total, "non_finite": bad}


def make_optimizer(model: nn.Module, cfg: TrainConfig, params=None) -> torch.optim.Optimizer:
    params = list(model.parameters()) if params is None else params
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")


def train_epoch(net: nn.Module, loader, opt: torch.optim.Optimizer, sched, *, teacher: nn.Module | None = None,
                temperature: float = 4.0, distill_alpha: float = 0.5, extra_loss=None, model: nn.Module | None = None,
                desc: str = "train", show: bool = True, after_step=None, step: int = 0) -> tuple[float, int]:
    """One pass over `loader`: CE (or distillation from `teacher`) plus `extra_loss`, one
    optimizer and scheduler step per batch. `net` may wrap `model` (e.g. in DDP); hooks get the
    bare model. Returns (mean training loss, global step count)."""
    model = net if model is None else model
    model.train()
    bar = tqdm(loader, desc=desc, leave=False, disable=not show)
    run_loss, seen = 0.0, 0
    for x, y in bar:
        logits = net(x)
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(x)
            loss = distillation_loss(logits, t_logits, y, temperature, distill_alpha)
        else:
            loss = F.cross_entropy(logits, y)
        if extra_loss is not None:   # hooks with `uses_batch` also get the batch's logits and labels
            loss = loss + (extra_loss(model, logits, y) if getattr(extra_loss, "uses_batch", False)
                           else extra_loss(model))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()}; lower the learning rate, "
                                     "or for polynomial sites scale down c2 / clamp their inputs")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if after_step is not None:
            after_step(model, step)
        run_loss += loss.item() * len(y)
        seen += len(y)
        bar.set_postfix(loss=f"{run_loss / seen:.4f}")
    return run_loss / max(seen, 1), step


def fit(model: nn.Module, splits, cfg: TrainConfig, teacher: nn.Module | None = None,
        extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None,
        checkpoint: str | os.PathLike | None = None) -> dict:
    """Trains with a cosine schedule, keeps the weights with the best validation accuracy.

    With a `teacher`, the loss is the distillation loss; `extra_loss(model)` is added to it
    (e.g. a sparsity penalty; a hook with `uses_batch = True` is called as `extra_loss(model,
    logits, labels)`, e.g. relu_budget.fairness.GroupLossPenalty). Returns the history and the
    best validation metrics; the model ends with the best weights loaded. `checkpoint` saves
    the best model there as it improves.
    """
    seed_everything(cfg.seed)
    train_loader = splits.loader("train", cfg.batch_size, seed=cfg.seed)
    val_loader = splits.loader("val", 512)
    opt = make_optimizer(model, cfg)
    steps = max(1, cfg.epochs * len(train_loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    if teacher is not None:
        teacher.eval()
    best = {"val_accuracy": -1.0, "epoch": -1}
    best_state = None
    history = []
    for epoch in range(cfg.epochs):
        train_loss, _ = train_epoch(model, train_loader, opt, sched, teacher=teacher, temperature=cfg.temperature,
                                    distill_alpha=cfg.distill_alpha, extra_loss=extra_loss,
                                    desc=f"epoch {epoch + 1}/{cfg.epochs}", show=cfg.progress)
        val = evaluate(model, val_loader)
        row = {"epoch": epoch + 1, "train_loss": train_loss,
               "val_accuracy": val["accuracy"], "val_loss": val["loss"]}
        history.append(row)
        if cfg.progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f}, "
                       f"val acc {100 * val['accuracy']:.2f}%")
        if val["accuracy"] > best["val_accuracy"]:
            best = {"val_accuracy": val["accuracy"], "epoch": epoch + 1}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, {"best": best, "history": history})
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"history": history, "best": best}


def training_record(model: nn.Module, fit_result: dict, test: dict, *, arch: str, dataset: str, epochs: int,
                    seed: int, seconds: float, command: str, input_shape=(1, 28, 28)) -> dict:
    """The metadata a trained checkpoint carries (and its .json twin shows, with the history)."""
    return {"arch": arch, "dataset": dataset, "test_accuracy": test["accuracy"],
            "best_val_accuracy": fit_result["best"]["val_accuracy"], "best_epoch": fit_result["best"]["epoch"],
            "epochs": epochs, "seed": seed,
            "relu_sites": sum(r["sites"] for r in count_relu_sites(model, input_shape)),
            "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": round(seconds, 1),
            "command": command}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict | None = None) -> Path:
    """Writes weights + architecture config + metadata (plain data only) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "class": type(model).__name__, "config": model_config(model),
            "state_dict": model.state_dict(), "meta": meta or {}}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


class CheckpointError(ValueError):
    """A file that is not a checkpoint save_checkpoint wrote; the message says what it is instead."""


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuilds the model from a checkpoint (safe: weights_only loading). Returns (model, meta)."""
    path = Path(path)
    if path.is_dir():
        run = " (a relu-budget run: its checkpoint is model.pt inside it)" if (path / "model.pt").is_file() else ""
        raise CheckpointError(f"{path} is a directory, not a checkpoint file{run}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted, empty, or not a torch file at all
        why = "empty or truncated" if isinstance(exc, EOFError) else str(exc).strip() or type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({why})") from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        what = "a plain state_dict (weights without the architecture)" if isinstance(blob, dict) else \
            f"a saved {type(blob).__name__}"
        raise CheckpointError(f"{path} is {what}, not a checkpoint written by relu_budget.train.save_checkpoint "
                              "(weights + architecture config)")
    model = from_config(blob["class"], blob["config"])
    state = blob["state_dict"]
    # Kind maps and polynomial coefficients are optional buffers: materialize them first.
    for name, module in model.named_modules():
        for buf in ("kind_map", "poly_coeffs"):
            key = f"{name}.{buf}" if name else buf
            if key in state and hasattr(module, buf):
                setattr(module, buf, torch.empty_like(state[key]))
    model.load_state_dict(state)
    model.eval()
    return model, blob["meta"]
