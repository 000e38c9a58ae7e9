"""Circa-aware fine-tuning (beyond the papers): turn the kept ReLUs into Circa stochastic ReLUs
with a per-layer k chosen under an accuracy tolerance, then fine-tune with the faults
simulated in the forward pass (relu_budget.circa_sim has the fault law).

1. Base policy: SNL linearizes the network to exactly B kept sites (`base="snl"`), or the
   given model's kind maps are used as they are (`base="given"`, e.g. an SNL result).
2. Sensitivity: on a fixed validation subset (`k_search_samples`), for every layer with kept
   sites and every option (k, mode) from `k_choices` × modes, only that layer's kept sites
   become Circa(k, mode); the accuracy drop with simulated faults (averaged over
   `sim_repeats` seeded draws, paired on the same examples) is recorded. Larger k for a layer
   are skipped once its drop exceeds 4 × accuracy_tolerance.
3. Per-layer k: a multiple-choice knapsack (`allocation.allocate`) picks one option per layer
   (exact ReLU is always an option) maximizing the predicted saving in `saving_objective`
   units (cost model: kept sites × (cost of a ReLU − cost of Circa(k))) subject to Σ drops ≤
   accuracy_tolerance. Drops are not exactly additive: the combined network is measured, and
   the tolerance is halved and the allocation redone (up to `tolerance_retries` times) while the
   combined drop exceeds it.
4. Circa-aware fine-tuning: the faults are drawn in every training forward pass; model
   selection uses the validation accuracy with (seeded) faults. With `fairness_penalty` or
   `drop_constraint` this fine-tuning (like SNL's before it) adds that mitigation, and selects
   epochs by its validation criterion (with faults).

The final metrics are with simulated faults (averaged over `sim_repeats` draws) and also
report `accuracy_without_faults`. Kept sites (ReLU + Circa) equal the budget of the base.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from relu_budget import circa_sim
from relu_budget.fairness import finetune_hooks
from relu_budget.allocation import allocate
from relu_budget.models import CIRCA, RELU, relu_sites
from relu_budget.optimizers import snl
from relu_budget.optimizers.common import (
    BudgetError,
    OptimizeResult,
    begin,
    cost_model_for,
    evaluate_split,
    finish,
    site_totals,
)
from relu_budget.optimizers.training import load_model_state, site_meta, train_phase
from relu_budget.train import evaluate

NAME = "circa"
DROP_UNIT = 1e-4      # accuracy drops are discretized to 0.01 % for the knapsack


@dataclass
class CircaConfig(snl.SNLConfig):
    base: str = "snl"                    # "snl" or "given"
    k_choices: tuple = (8, 12, 16, 18, 20, 22)
    mode: str = "poszero"                # "poszero", "negpass" or "auto" (both, per layer)
    accuracy_tolerance: float = 0.005    # allowed validation accuracy drop from the faults
    tolerance_retries: int = 4
    frac_bits: int = 12
    scale_bits: int | None = None        # scale of the gate input (default 2·frac_bits)
    k_search_samples: int = 2000
    sim_repeats: int = 2
    saving_objective: str = "bytes"      # "bytes" or "latency"
    circa_epochs: int | None = None      # fault-aware fine-tuning epochs (default finetune_epochs)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base not in ("snl", "given"):
            raise ValueError(f"base must be 'snl' or 'given', got {self.base!r}")
        if self.mode not in ("poszero", "negpass", "auto"):
            raise ValueError(f"mode must be 'poszero', 'negpass' or 'auto', got {self.mode!r}")
        if not self.k_choices or any(not isinstance(k, int) or not 1 <= k <= 62 for k in self.k_choices):
            raise ValueError(f"k_choices must be integers in 1..62, got {self.k_choices}")
        if self.saving_objective not in ("bytes", "latency"):
            raise ValueError(f"saving_objective must be 'bytes' or 'latency', got {self.saving_objective!r}")


def _subset_loader(splits, config: CircaConfig) -> DataLoader:
    x, y = splits.val
    n = min(len(y), config.k_search_samples)
    return DataLoader(TensorDataset(x[:n], y[:n]), batch_size=config.eval_batch_size, shuffle=False)


def _accuracy(model, loader, config: CircaConfig) -> float:
    if not circa_sim.has_circa(model):
        return evaluate(model, loader)["accuracy"]
    accs = []
    for r in range(max(1, config.sim_repeats)):
        with circa_sim.simulated(model, config.frac_bits, config.scale_bits, seed=config.seed * 7919 + r):
            accs.append(evaluate(model, loader)["accuracy"])
    return float(np.mean(accs))


def _set_layer(site, option) -> tuple:
    """Makes the site's kept ReLUs Circa(k, mode) (option None: exact). Returns the old state."""
    old = (site.kind_map.clone() if site.kind_map is not None else None, site.circa)
    if option is None:
        return old
    k, mode = option
    kinds = site.kind_map if site.kind_map is not None else torch.zeros((), dtype=torch.int8)
    kinds = torch.where(kinds == RELU, torch.tensor(CIRCA, dtype=torch.int8), kinds)
    site.set_kinds(kinds)
    site.circa = {"k": int(k), "mode": mode}
    return old


def _restore(site, old) -> None:
    site.kind_map, site.circa = old


def select_k(model: nn.Module, splits, config: CircaConfig, shape) -> dict:
    """Per-layer (k, mode) or exact, under the tolerance. Applies the choice to `model`."""
    from relu_budget.models import count_relu_sites
    loader = _subset_loader(splits, config)
    acc0 = _accuracy(model, loader, config)
    rows = {r["name"]: r for r in count_relu_sites(model, shape)}
    sites = dict(relu_sites(model))
    layers = [n for n in sites if rows[n]["relu"] > 0]
    modes = ("poszero", "negpass") if config.mode == "auto" else (config.mode,)
    ks = sorted(set(config.k_choices))
    cm = cost_model_for(config)
    relu_cost = cm.site_value("relu", config.saving_objective)
    table = {}
    for n in layers:
        opts = [{"option": None, "drop": 0.0}]
        for mode in modes:
            for k in ks:
                old = _set_layer(sites[n], (k, mode))
                acc = _accuracy(model, loader, config)
                _restore(sites[n], old)
                drop = max(0.0, acc0 - acc)
                opts.append({"option": (k, mode), "drop": drop})
                if drop > 4 * config.accuracy_tolerance:
                    break
        table[n] = opts
    costs = [[math.ceil(o["drop"] / DROP_UNIT - 1e-9) for o in table[n]] for n in layers]
    values = [[0.0 if o["option"] is None else
               rows[n]["relu"] * (relu_cost - cm.site_value("circa", config.saving_objective, o["option"][0]))
               for o in table[n]] for n in layers]
    tol = config.accuracy_tolerance
    attempts = []
    choice = [0] * len(layers)
    for attempt in range(config.tolerance_retries + 1):
        choice = allocate(costs, values, math.floor(tol / DROP_UNIT + 1e-9))
        olds = {n: _set_layer(sites[n], table[n][c]["option"]) for n, c in zip(layers, choice)}
        combined = acc0 - _accuracy(model, loader, config)
        attempts.append({"tolerance": tol, "combined_drop": combined,
                         "choice": {n: table[n][c]["option"] for n, c in zip(layers, choice)}})
        if combined <= config.accuracy_tolerance or attempt == config.tolerance_retries:
            break
        for n, old in olds.items():
            _restore(sites[n], old)
        tol /= 2
    return {"acc0": acc0, "layers": {n: {"options": [{"k": None if o["option"] is None else o["option"][0],
                                                      "mode": None if o["option"] is None else o["option"][1],
                                                      "drop": o["drop"]} for o in table[n]],
                                         "chosen": table[n][c]["option"]} for n, c in zip(layers, choice)},
            "attempts": attempts}


def optimize(model: nn.Module, splits, budget, config: CircaConfig | dict | None = None,
             teacher: nn.Module | None = None, progress: bool = True) -> OptimizeResult:
    # Cost budgets are converted with exact-ReLU prices. Circa sites are cheaper in bytes but not in
    # latency (2 rounds per layer instead of 1): finish's cost_gap records a budget so broken.
    p = begin(model, splits, budget, config, CircaConfig, teacher)
    config, student, teacher, b, store, shape, t0 = (p.config, p.student, p.teacher, p.budget, p.store,
                                                     p.input_shape, p.t0)
    history, info = [], {}
    if config.base == "snl":
        history, info["snl"] = snl.run(student, splits, b, config, teacher, store, progress, prefix="circa_")
    else:
        kept = site_totals(student, shape)["kept"]
        if kept > b:
            raise BudgetError(f"circa with base='given': the model keeps {kept} sites, above the budget of {b}; "
                              "linearize it first (base='snl')")

    sel = store.load("circa_selection")
    if sel is not None:
        load_model_state(student, sel["model"], sel["site_meta"])
        info["selection"] = sel["info"]
    else:
        info["selection"] = select_k(student, splits, config, shape)
        store.save("circa_selection", {"model": student.state_dict(), "site_meta": site_meta(student),
                                       "info": info["selection"]})

    # Fault-aware fine-tuning, with the fairness mitigation if configured (its loss hook sees the
    # faulty training forwards; its validation metric simulates faults itself).
    hooks = finetune_hooks(config, splits, lambda m: evaluate_split(m, splits, "val", config, config.sim_repeats),
                           teacher)
    inner = hooks["metric"]

    def metric(m):   # validation simulates faults with its own seed: the training simulation steps aside
        circa_sim.detach(m)
        try:
            return inner(m)
        finally:
            circa_sim.attach(m, config.frac_bits, config.scale_bits)
    hooks["metric"] = metric

    circa_sim.attach(student, config.frac_bits, config.scale_bits)     # faults in training forwards
    try:
        ft = train_phase(student, splits, config, name="circa_finetune",
                         epochs=config.finetune_epochs if config.circa_epochs is None else config.circa_epochs,
                         optimizer=config.finetune_optimizer, lr=config.finetune_lr, teacher=teacher, store=store,
                         progress=progress, **hooks)
    finally:
        circa_sim.detach(student)
    info["finetune_best"] = ft["best"]
    return finish(NAME, student, splits, b, config, history + ft["history"], extra=info, t0=t0,
                  circa_repeats=config.sim_repeats, cost_budget=p.cost_budget)


__all__ = ["CircaConfig", "optimize", "select_k"]
