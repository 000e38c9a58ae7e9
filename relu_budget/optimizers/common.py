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
import time
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from relu_budget import circa_sim
from relu_budget.cost_model import OBJECTIVES, CostModel
from relu_budget.models import IDENTITY, RELU, SITE_KINDS, count_relu_sites, relu_sites
from relu_budget.optimizers.training import PhaseStore
from relu_budget.policy import ReluPolicy, from_model
from relu_budget.train import evaluate, seed_everything


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


# A search whose own count ends above this multiple of the budget did not reach it: the final
# cut to the budget then removes sites the search still considered alive.
FAR_FROM_BUDGET = 1.5


def budget_gap(method: str, search_kept: int | None, budget: int) -> dict | None:
    """How far a search ended from its budget (search_kept: the sites its own criterion kept
    at the end, before the cut to the budget), with a warning when it is far; None when the
    method reports no search count."""
    if search_kept is None:
        return None
    ratio = search_kept / max(budget, 1)
    gap = {"search_kept": int(search_kept), "budget": int(budget), "ratio": round(ratio, 3),
           "far": ratio > FAR_FROM_BUDGET}
    if gap["far"]:
        warnings.warn(f"{method}: the search ended with {search_kept} sites alive, {ratio:.1f}x the budget of "
                      f"{budget}; the cut to the budget dropped sites it still needed (train longer or raise the "
                      "penalty's growth)", stacklevel=3)
    return gap


# A run whose predicted cost ends above its latency or bytes budget by more than this (float
# noise aside) broke it: the site budget was converted at prices its sites do not pay.
COST_OVER_BUDGET = 1.01


def cost_gap(method: str, objective: str, cost: dict, budget: float | None) -> dict | None:
    """The final predicted cost against a latency (s) or bytes budget, with a warning when it
    is over; None for a site budget or without a cost."""
    if budget is None or objective == "relus" or "error" in cost:
        return None
    value = cost["online_seconds"] if objective == "latency" else cost["online_bytes"] + cost["offline_bytes"]
    ratio = value / budget
    gap = {"objective": objective, "budget": budget, "predicted": value, "ratio": round(ratio, 3),
           "over": ratio > COST_OVER_BUDGET}
    if gap["over"]:
        warnings.warn(f"{method}: the predicted {objective} ({value:.4g}) is {ratio:.2f}x the budget of {budget:.4g}; "
                      "its sites cost more than the prices the budget was converted at", stacklevel=3)
    return gap


def finish(method: str, model: nn.Module, splits, budget: int, config: OptimizeConfig, history: list[dict],
           *, frontier=None, extra=None, t0: float | None = None, circa_repeats: int = 1,
           cost_budget: float | None = None) -> OptimizeResult:
    """Checks the budget, evaluates on validation and test, builds the policy and the cost.
    extra["search_kept"] (if the method reports it) is checked against the budget: a far gap
    warns and is recorded as extra["budget_gap"] (in the run's metrics); so is a predicted cost
    over `cost_budget` (the latency or bytes budget), as extra["cost_gap"]."""
    extra = dict(extra or {})
    gap = budget_gap(method, extra.get("search_kept"), budget)
    if gap is not None:
        extra["budget_gap"] = gap
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
    over = cost_gap(method, config.objective, cost, cost_budget)
    if over is not None:
        extra["cost_gap"] = over
    return OptimizeResult(method, model, policy, int(budget), counts, val, test, history, frontier,
                          extra, cost, time.time() - t0 if t0 else 0.0)


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


@dataclass
class Preamble:
    """What every optimizer starts from (see `begin`)."""
    config: OptimizeConfig
    student: nn.Module           # the copy the method trains and linearizes
    teacher: nn.Module | None    # frozen, for distillation (None without config.distill)
    budget: int                  # kept sites
    store: PhaseStore            # phase checkpoints under config.checkpoint_dir (resume)
    input_shape: tuple
    t0: float
    cost_budget: float | None = None   # the budget in seconds or bytes (objective latency / bytes)


def begin(model: nn.Module, splits, budget, config, config_cls, teacher: nn.Module | None = None, *,
          kept_kind: str = "relu", other_kind: str = "identity") -> Preamble:
    """The start every `optimize` shares: the typed config, the seed, the student and teacher
    copies, the budget in kept sites (checked before any training) and the checkpoint store."""
    t0 = time.time()
    config = require_config(config, config_cls)
    seed_everything(config.seed)
    student, teacher = prepare_student(model, teacher, config)
    b = resolve_budget(budget, student, splits.input_shape, config, kept_kind=kept_kind, other_kind=other_kind)
    return Preamble(config, student, teacher, b, PhaseStore(config.checkpoint_dir), tuple(splits.input_shape), t0,
                    None if config.objective == "relus" else float(budget))
