"""The optimizers' training machinery: a resumable training phase (single process or
DistributedDataParallel under torchrun, gloo), its checkpoints (`PhaseStore`), and the
fine-tuning phase every method ends with."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from relu_budget.models import relu_sites
from relu_budget.train import evaluate, seed_everything, train_epoch

if TYPE_CHECKING:
    from relu_budget.optimizers.common import OptimizeConfig

STATE_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Distributed helpers (torchrun: gloo backend; detected from the environment)
# ---------------------------------------------------------------------------------------------

def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) unless torch.distributed is initialized."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env() -> bool:
    """Initializes a gloo process group when launched by torchrun (WORLD_SIZE > 1)."""
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return True


def is_main_process() -> bool:
    return dist_info()[0] == 0


# ---------------------------------------------------------------------------------------------
# Checkpoints of phases (resume)
# ---------------------------------------------------------------------------------------------

class PhaseStore:
    """Phase and epoch checkpoints in one directory (None: nothing is stored). Files hold
    tensors and plain data only and load with weights_only=True."""

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.dir = None if directory is None else Path(directory)
        if self.dir is not None and is_main_process():
            self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, part: str) -> Path | None:
        return None if self.dir is None else self.dir / f"{name}.{part}.pt"

    def load(self, name: str, part: str = "done") -> dict | None:
        p = self.path(name, part)
        if p is None or not p.is_file():
            return None
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"checkpoint {p} is not readable ({exc}); delete it to start that phase over") from exc
        if not isinstance(blob, dict) or blob.get("format") != STATE_FORMAT:
            raise ValueError(f"checkpoint {p} has an unknown format; delete it to start that phase over")
        return blob

    def save(self, name: str, blob: dict, part: str = "done") -> None:
        p = self.path(name, part)
        if p is None or not is_main_process():
            return
        blob = {"format": STATE_FORMAT, **blob}
        tmp = p.with_suffix(".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, p)

    def drop(self, name: str, part: str) -> None:
        p = self.path(name, part)
        if p is not None and p.is_file() and is_main_process():
            p.unlink()


def site_meta(model: nn.Module) -> dict:
    return {name: (dict(s.circa) if s.circa else None) for name, s in relu_sites(model)}


def load_model_state(model: nn.Module, state: dict, meta: dict | None = None) -> None:
    """load_state_dict that first gives every ReluSite the optional buffers (kind map,
    polynomial coefficients) the state has, and drops those it lacks; `meta` restores the
    per-site Circa settings (not tensors, so not in the state dict)."""
    from relu_budget.models import ReluSite
    for name, module in model.named_modules():
        if not isinstance(module, ReluSite):
            continue
        for buf in ("kind_map", "poly_coeffs"):
            key = f"{name}.{buf}" if name else buf
            setattr(module, buf, torch.empty_like(state[key]) if key in state else None)
    model.load_state_dict(state)
    if meta:
        sites = dict(relu_sites(model))
        for name, c in meta.items():
            if name in sites:
                sites[name].circa = dict(c) if c else None


def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------

def train_loader(splits, config: OptimizeConfig, epoch_seed: int = 0):
    x, y = splits.train
    if config.train_subset is not None and config.train_subset < len(y):
        idx = torch.from_numpy(np.random.default_rng(config.seed).permutation(len(y))[:config.train_subset])
        x, y = x[idx], y[idx]
    ds = TensorDataset(x, y)
    rank, world = dist_info()
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
        return DataLoader(ds, batch_size=config.batch_size, sampler=sampler), sampler
    gen = torch.Generator().manual_seed(config.seed + epoch_seed)
    return DataLoader(ds, batch_size=config.batch_size, shuffle=True, generator=gen), None


def make_optimizer(params, kind: str, lr: float, config: OptimizeConfig) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {kind!r}")


def train_phase(model: nn.Module, splits, config: OptimizeConfig, *, name: str, epochs: int,
                optimizer: str, lr: float, teacher: nn.Module | None = None,
                param_groups: list[dict] | None = None, extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                after_step: Callable[[nn.Module, int], None] | None = None,
                on_epoch_end: Callable[[int, dict, dict], bool] | None = None,
                state: dict | None = None, select_best: bool = True, store: PhaseStore | None = None,
                progress: bool = True, schedule: str = "cosine", metric: Callable[[nn.Module], dict] | None = None) -> dict:
    """Trains `model` for up to `epochs`, resumable per epoch.

    loss = CE (or distillation when `teacher`) + extra_loss(model) (or extra_loss(model,
    logits, labels) for a hook with `uses_batch`). After every epoch the validation accuracy
    is measured (`metric(model)` if given; when it returns a `score`, epochs are selected by the
    score instead of the accuracy, and rows carry it as `val_score`; when it returns
    `selectable: False`, the epoch is kept only if no selectable epoch follows, and rows carry
    `val_selectable`); `on_epoch_end(epoch, row, state)` may change `state` (plain data, saved with
    the checkpoint) and return True to stop. With select_best the weights of the best validation
    epoch are restored at the end.
    Returns {"history", "best", "state", "epochs_run"}. A finished phase found in `store` is
    loaded instead of trained again."""
    store = store or PhaseStore(None)
    state = {} if state is None else state
    done = store.load(name, "done")
    if done is not None:
        load_model_state(model, done["model"], done.get("site_meta"))
        state.update(done.get("state", {}))
        return {"history": done["history"], "best": done["best"], "state": state, "epochs_run": done["epochs_run"],
                "resumed": True}
    if epochs <= 0:
        return {"history": [], "best": {"val_accuracy": None, "epoch": 0}, "state": state, "epochs_run": 0}
    seed_everything(config.seed)
    params = param_groups if param_groups is not None else [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = make_optimizer(params, optimizer, lr, config)
    loader, sampler = train_loader(splits, config)
    steps = max(1, epochs * len(loader))
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    val_loader = splits.loader("val", config.eval_batch_size)
    history, best, best_state, start = [], {"val_accuracy": -1.0, "epoch": 0}, None, 0
    best_key = (False, -math.inf)     # (selectable, score): any selectable epoch beats every other
    partial = store.load(name, "partial")
    if partial is not None:
        load_model_state(model, partial["model"], partial.get("site_meta"))
        opt.load_state_dict(partial["optimizer"])
        sched.load_state_dict(partial["scheduler"])
        history, best, start = partial["history"], partial["best"], partial["epoch"]
        best_state = partial.get("best_model")
        if best["epoch"] > 0:
            best_key = (best.get("selectable", True), best.get("score", best["val_accuracy"]))
        state.update(partial.get("state", {}))
        torch.set_rng_state(partial["rng"])
    rank, world = dist_info()
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, find_unused_parameters=False)
    if teacher is not None:
        teacher.eval()
    show = progress and rank == 0
    step = start * len(loader)
    epochs_run = start
    for epoch in range(start, epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        else:
            loader.generator.manual_seed(config.seed * 1000 + epoch)
        train_loss, step = train_epoch(net, loader, opt, sched, teacher=teacher, temperature=config.temperature,
                                       distill_alpha=config.distill_alpha, extra_loss=extra_loss, model=model,
                                       desc=f"{name} {epoch + 1}/{epochs}", show=show, after_step=after_step,
                                       step=step)
        val = metric(model) if metric is not None else evaluate(model, val_loader)
        row = {"phase": name, "epoch": epoch + 1, "train_loss": train_loss,
               "val_accuracy": val["accuracy"], "val_loss": val["loss"],
               "lr": opt.param_groups[0]["lr"]}
        if "score" in val:
            row["val_score"] = val["score"]
        if "selectable" in val:
            row["val_selectable"] = bool(val["selectable"])
        stop = bool(on_epoch_end(epoch + 1, row, state)) if on_epoch_end is not None else False
        history.append(row)
        if show:
            extra = " ".join(f"{k}={v}" for k, v in row.items() if k not in
                             ("phase", "epoch", "train_loss", "val_accuracy", "val_loss", "lr", "val_score",
                              "val_selectable"))
            tqdm.write(f"{name} epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f}, "
                       f"val acc {100 * row['val_accuracy']:.2f}% {extra}")
        key = (row.get("val_selectable", True), row.get("val_score", row["val_accuracy"]))
        if select_best and key > best_key:
            best = {"val_accuracy": row["val_accuracy"], "epoch": epoch + 1}
            if "val_score" in row:
                best["score"] = row["val_score"]
            if "val_selectable" in row:
                best["selectable"] = row["val_selectable"]
            best_key = key
            best_state = snapshot(model)
        epochs_run = epoch + 1
        store.save(name, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "epoch": epoch + 1, "history": history, "best": best, "best_model": best_state,
                          "state": state, "rng": torch.get_rng_state(), "site_meta": site_meta(model)}, "partial")
        if stop:
            break
    if select_best and best_state is not None:
        load_model_state(model, best_state, site_meta(model))
    if not select_best:
        best = {"val_accuracy": history[-1]["val_accuracy"] if history else None, "epoch": epochs_run}
    store.save(name, {"model": model.state_dict(), "history": history, "best": best, "state": state,
                      "epochs_run": epochs_run, "site_meta": site_meta(model)}, "done")
    store.drop(name, "partial")
    return {"history": history, "best": best, "state": state, "epochs_run": epochs_run}


def finetune(model: nn.Module, splits, config: OptimizeConfig, teacher, store: PhaseStore, progress: bool,
             name: str = "finetune", metric=None, epochs: int | None = None) -> dict:
    """Phase 2 of every method: the policy is fixed, weights are fine-tuned with CE + KD,
    the best validation epoch is kept. With `config.fairness_penalty`, the group loss-gap
    penalty with dual ascent is added and the epoch with the best worst-group validation
    accuracy is kept; with `config.drop_constraint`, the per-group drop constraint against
    `teacher` and the epoch with the smallest worst-group validation accuracy drop; either
    among the epochs trained after the first dual step (relu_budget/fairness/mitigation.py)."""
    from relu_budget.fairness import finetune_hooks
    return train_phase(model, splits, config, name=name, epochs=config.finetune_epochs if epochs is None else epochs,
                       optimizer=config.finetune_optimizer, lr=config.finetune_lr, teacher=teacher,
                       store=store, progress=progress, **finetune_hooks(config, splits, metric, teacher))
