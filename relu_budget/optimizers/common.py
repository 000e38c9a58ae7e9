"""What every ReLU-budget optimizer shares: the config, the result, budgets, site bookkeeping,
a resumable training loop (single process or DistributedDataParallel) and final metrics.

Conventions (one place, used by every method):

- A *kept* site is an exact ReLU or a Circa site (both need a comparison); identity and
  polynomial sites are linearized. Budgets count kept sites per example, counted from the
  model itself with `count_relu_sites` (the stem ReLU is counted like every other).
- `optimize(model, splits, budget, config, teacher, progress)` takes a trained all-ReLU
  model (it is copied, never modified) and, by default, distills from a frozen copy of it.
- Model selection looks at the validation split only; the test split is evaluated once,
  at the end, and reported.
"""
from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from relu_budget import circa_sim
from relu_budget.cost_model import OBJECTIVES, CostModel
from relu_budget.models import IDENTITY, RELU, SITE_KINDS, count_relu_sites, relu_sites
from relu_budget.policy import ReluPolicy, from_model
from relu_budget.train import evaluate, seed_everything, train_epoch

STATE_FORMAT = 1


class BudgetError(ValueError):
    """A budget cannot be met or is malformed; the message says which value and why."""


@dataclass
class OptimizeConfig:
    """Settings shared by every method; each method's config extends this one."""

    epochs: int = 10                 # main phase: mask search / candidate training
    finetune_epochs: int = 5         # fine-tuning with the policy fixed
    lr: float = 1e-3                 # main phase (weights)
    optimizer: str = "adam"          # main phase: "adam" or "sgd"
    finetune_lr: float = 1e-3
    finetune_optimizer: str = "sgd"  # SGD, momentum 0.9, wd 5e-4, cosine (SNL's phase 2)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    eval_batch_size: int = 512
    distill: bool = True             # distill from the all-ReLU teacher
    temperature: float = 4.0
    distill_alpha: float = 0.5       # loss = (1 − a)·CE + a·T²·KL
    seed: int = 0
    objective: str = "relus"         # what the budget is measured in: relus | latency | bytes
    profile: str = "lan"             # network profile for latency/bytes budgets
    results_dir: str | None = None   # measured costs (default: benchmarks/results)
    checkpoint_dir: str | None = None  # phase/epoch checkpoints for resuming
    train_subset: int | None = None  # use only this many training examples (fixed, seeded)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OptimizeResult:
    method: str
    model: nn.Module                 # final model, kind maps set, no training replacements
    policy: ReluPolicy
    budget: int                      # kept-site budget this run was held to
    counts: dict                     # totals per kind, plus kept and total
    val: dict                        # validation metrics (Circa faults simulated if any)
    test: dict
    history: list[dict] = field(default_factory=list)
    frontier: list[dict] | None = None
    extra: dict = field(default_factory=dict)
    cost: dict | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"method": self.method, "budget": self.budget, "counts": self.counts, "val": self.val,
                "test": self.test, "history": self.history, "frontier": self.frontier,
                "extra": _plain(self.extra), "cost": self.cost, "seconds": self.seconds}


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return x


# ---------------------------------------------------------------------------------------------
# Budgets and sites
# ---------------------------------------------------------------------------------------------

def site_rows(model: nn.Module, input_shape) -> list[dict]:
    return count_relu_sites(model, input_shape)


def site_totals(model: nn.Module, input_shape) -> dict:
    rows = site_rows(model, input_shape)
    tot = {k: sum(r[k] for r in rows) for k in SITE_KINDS}
    tot["total"] = sum(r["sites"] for r in rows)
    tot["kept"] = tot["relu"] + tot["circa"]
    return tot


def kept_sites(model: nn.Module, input_shape) -> int:
    return site_totals(model, input_shape)["kept"]


def resolve_budget(budget: float, model: nn.Module, input_shape, config: OptimizeConfig,
                   kept_kind: str = "relu", other_kind: str = "identity") -> int:
    """The kept-site budget. With objective "relus": an int is a number of sites, a float in
    (0, 1] a fraction of the model's sites (rounded down). With "latency" (seconds) or "bytes",
    the cost model converts the budget into the largest number of kept sites that fits."""
    if config.objective not in OBJECTIVES:
        raise BudgetError(f"objective must be one of {OBJECTIVES}, got {config.objective!r}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise BudgetError(f"budget must be a number, got {budget!r}")
    if not math.isfinite(budget) or budget < 0:
        raise BudgetError(f"budget must be a finite number >= 0, got {budget}")
    total = site_totals(model, input_shape)["total"]
    if config.objective == "relus":
        if isinstance(budget, (float, np.floating)):
            if not 0 < budget <= 1:
                raise BudgetError(f"a fractional ReLU budget must be in (0, 1], got {budget}; pass an int "
                                  "for a number of sites")
            return math.floor(budget * total + 1e-9)
        b = int(budget)
        if b > total:
            raise BudgetError(f"budget {b} exceeds the model's {total} ReLU sites")
        return b
    cm = cost_model_for(config)
    return cm.sites_for_budget(model, input_shape, float(budget), config.objective, kept_kind=kept_kind,
                               other_kind=other_kind)


def cost_model_for(config: OptimizeConfig) -> CostModel:
    return CostModel.load(config.results_dir, profile=config.profile)


def set_kinds(model: nn.Module, kinds: dict[str, torch.Tensor], poly: dict[str, torch.Tensor] | None = None) -> None:
    """Sets the kind map (and polynomial coefficients) of the named sites; others untouched."""
    sites = dict(relu_sites(model))
    for name, k in kinds.items():
        if name not in sites:
            raise KeyError(f"no ReLU site named {name!r}")
        sites[name].set_kinds(k, None if poly is None else poly.get(name))


def uniform_kinds(model: nn.Module, input_shape, keep: set[str]) -> dict[str, torch.Tensor]:
    """Kind maps making the named layers exact ReLU and every other layer identity."""
    shapes = {r["name"]: r["shape"] for r in site_rows(model, input_shape)}
    return {n: torch.full(shapes[n], RELU if n in keep else IDENTITY, dtype=torch.int8) for n in shapes}


def clear_replacements(model: nn.Module) -> None:
    for _, s in relu_sites(model):
        s.replacement = None


def prepare_student(model: nn.Module, teacher: nn.Module | None, config: OptimizeConfig):
    """(student copy, frozen teacher or None)."""
    student = copy.deepcopy(model)
    clear_replacements(student)
    if not config.distill:
        return student, None
    t = copy.deepcopy(teacher if teacher is not None else model)
    clear_replacements(t)
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return student, t


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
    is measured (`metric(model)` if given); `on_epoch_end(epoch, row,
    state)` may change `state` (plain data, saved with the checkpoint) and return True to stop.
    With select_best the weights of the best validation epoch are restored at the end.
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
    partial = store.load(name, "partial")
    if partial is not None:
        load_model_state(model, partial["model"], partial.get("site_meta"))
        opt.load_state_dict(partial["optimizer"])
        sched.load_state_dict(partial["scheduler"])
        history, best, start = partial["history"], partial["best"], partial["epoch"]
        best_state = partial.get("best_model")
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
        stop = bool(on_epoch_end(epoch + 1, row, state)) if on_epoch_end is not None else False
        history.append(row)
        if show:
            extra = " ".join(f"{k}={v}" for k, v in row.items() if k not in
                             ("phase", "epoch", "train_loss", "val_accuracy", "val_loss", "lr"))
            tqdm.write(f"{name} epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f}, "
                       f"val acc {100 * row['val_accuracy']:.2f}% {extra}")
        if select_best and row["val_accuracy"] > best["val_accuracy"]:
            best = {"val_accuracy": row["val_accuracy"], "epoch": epoch + 1}
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
    accuracy is kept (relu_budget/fairness/mitigation.py)."""
    from relu_budget.fairness import finetune_hooks
    return train_phase(model, splits, config, name=name, epochs=config.finetune_epochs if epochs is None else epochs,
                       optimizer=config.finetune_optimizer, lr=config.finetune_lr, teacher=teacher,
                       store=store, progress=progress, **finetune_hooks(config, splits, metric))


# ---------------------------------------------------------------------------------------------
# Final metrics
# ---------------------------------------------------------------------------------------------

def evaluate_split(model: nn.Module, splits, split: str, config: OptimizeConfig, circa_repeats: int = 1) -> dict:
    """Accuracy and loss; with Circa sites, averaged over `circa_repeats` fault draws (seeded)."""
    loader = splits.loader(split, config.eval_batch_size)
    if not circa_sim.has_circa(model):
        return evaluate(model, loader)
    accs, losses = [], []
    for r in range(max(1, circa_repeats)):
        with circa_sim.simulated(model, seed=config.seed * 7919 + r):
            m = evaluate(model, loader)
        accs.append(m["accuracy"])
        losses.append(m["loss"])
    plain = evaluate(model, loader)
    return {"accuracy": float(np.mean(accs)), "loss": float(np.mean(losses)), "n": plain["n"],
            "accuracy_without_faults": plain["accuracy"], "circa_repeats": len(accs)}


def finish(method: str, model: nn.Module, splits, budget: int, config: OptimizeConfig, history: list[dict],
           *, frontier=None, extra=None, t0: float | None = None, circa_repeats: int = 1) -> OptimizeResult:
    """Checks the budget, evaluates on validation and test, builds the policy and the cost."""
    clear_replacements(model)
    model.eval()
    shape = splits.input_shape
    counts = site_totals(model, shape)
    if counts["kept"] > budget:
        raise BudgetError(f"{method}: {counts['kept']} kept sites exceed the budget of {budget} (internal error)")
    val = evaluate_split(model, splits, "val", config, circa_repeats)
    test = evaluate_split(model, splits, "test", config, circa_repeats)
    meta = {"method": method, "budget": int(budget), "objective": config.objective, "seed": config.seed,
            "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"], "dataset": splits.name}
    policy = from_model(model, shape, meta=meta)
    try:
        cost = cost_model_for(config).estimate(model, shape).to_dict()
        cost.pop("per_layer", None)
    except (ValueError, RuntimeError) as exc:  # the cost is informative: never lose a result over it
        cost = {"error": str(exc)}
    return OptimizeResult(method, model, policy, int(budget), counts, val, test, history, frontier,
                          extra or {}, cost, time.time() - t0 if t0 else 0.0)


def top_k_mask(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Boolean masks keeping exactly the k highest scores over all tensors (ties: earlier
    layers and lower flat indices first)."""
    flat = torch.cat([s.detach().reshape(-1).float() for s in scores])
    if not 0 <= k <= flat.numel():
        raise BudgetError(f"cannot keep {k} of {flat.numel()} sites")
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.from_numpy(np.argsort(-flat.numpy(), kind="stable").copy())
        keep[order[:k]] = True
    out, i = [], 0
    for s in scores:
        n = s.numel()
        out.append(keep[i:i + n].reshape(s.shape))
        i += n
    return out


def require_config(config, cls):
    if config is None:
        return cls()
    if isinstance(config, dict):
        unknown = sorted(set(config) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {', '.join(cls.field_names())}")
        return cls(**config)
    if not isinstance(config, OptimizeConfig):
        raise TypeError(f"config must be a {cls.__name__} or a dict, got {type(config).__name__}")
    if not isinstance(config, cls):
        # A plain OptimizeConfig (or another method's): keep the shared fields, defaults for the rest.
        shared = {f: getattr(config, f) for f in OptimizeConfig.field_names()}
        return cls(**shared)
    return config

