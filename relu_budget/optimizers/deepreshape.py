"""DeepReShape (Jha & Reagen, TMLR 2024), re-implemented as channel allocation + SNL.

1. Stage criticality (DeepReDuce's analysis, or given scores; the stem is not reshaped).
2. Channel allocation (HybReNet-style stage widths): every stage s picks a width multiplier
   m_s from `width_options` (× the base width) by a multiple-choice knapsack
   (`relu_budget.allocation.allocate`):
       maximize   Σ_s w_s · log2(m_s)                    (w_s: normalized criticality)
       subject to Σ_s ReLU_s(m_s) + β·MAC_s(m_s) ≤ capacity_factor · B
   ReLU_s is exact (a stage's ReLU count depends only on its own width); MAC_s is taken from
   the network with every stage scaled by m_s (the first conv of a stage also depends on the
   previous width, so this is an approximation; the reshaped net's real counts are
   reported). β (ReLU-equivalents per MAC) comes from the cost model: online seconds per MAC
   over online seconds per ReLU site, unless `flops_weight` is given. Critical stages gain
   width where ReLUs are cheap (deep stages, small feature maps) as long as FLOPs allow;
   when even the narrowest widths exceed the capacity (very low budgets) the narrowest
   are taken.
3. The reshaped network (stem width unchanged) is trained from scratch with distillation
   from the all-ReLU teacher for `pretrain_epochs` (cached under its widths in
   `pretrain_dir`, so budgets that allocate the same widths share it), then linearized to exactly B sites with
   SNL (search + fine-tuning, see snl.py). B is computed on the *original* network (a
   fraction refers to the original network's sites).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from relu_budget.allocation import InfeasibleBudget, allocate
from relu_budget.cost_model import linear_layers
from relu_budget.models import ResNet, ResNetConfig
from relu_budget.optimizers import deepreduce, snl
from relu_budget.optimizers.common import (
    OptimizeResult,
    begin,
    cost_model_for,
    finish,
    site_rows,
)
from relu_budget.optimizers.training import PhaseStore, train_phase
from relu_budget.train import seed_everything

NAME = "deepreshape"


@dataclass
class DeepReShapeConfig(snl.SNLConfig):
    width_options: tuple = (0.25, 0.5, 1.0, 2.0, 4.0)
    capacity_factor: float = 4.0       # the reshaped net may cost this many times B (ReLU-equivalents)
    flops_weight: float | None = None  # β; None: from the cost model
    criticality: dict | None = None    # {stage: score}; None: DeepReDuce's analysis
    criticality_epochs: int = 2
    pretrain_epochs: int = 5
    pretrain_lr: float = 0.05
    pretrain_optimizer: str = "sgd"
    pretrain_dir: str | None = None    # cache of pretrained reshaped nets, keyed by widths
                                       # (default: checkpoint_dir; share it across budgets)


def stage_tables(model: ResNet, input_shape, options) -> tuple[dict, dict]:
    """(relus[s][i], macs[s][i]) per stage s (1-based) and width option i."""
    cfg = model.config
    names = [r["name"] for r in site_rows(model, input_shape)]
    relus, macs = {}, {}
    for i, m in enumerate(options):
        net = reshape(model, [m] * len(cfg.widths))
        rows = {r["name"]: r["sites"] for r in site_rows(net, input_shape)}
        _, _, lin = linear_layers(net, input_shape)
        for s in range(1, len(cfg.widths) + 1):
            layer_names = [n for n in names if model.stage_of(n) == s]
            relus.setdefault(s, []).append(sum(rows[n] for n in layer_names))
            prefix = f"layers.{s - 1}."
            macs.setdefault(s, []).append(sum(r["macs"] for r in lin if r["name"].startswith(prefix)))
    return relus, macs


def reshape(model: ResNet, multipliers) -> ResNet:
    cfg = model.config
    if len(multipliers) != len(cfg.widths):
        raise ValueError(f"need one multiplier per stage ({len(cfg.widths)}), got {len(multipliers)}")
    new = ResNetConfig(**{**cfg.__dict__,
                          "widths": tuple(max(1, round(w * m)) for w, m in zip(cfg.widths, multipliers)),
                          "stem_channels": cfg.stem_channels or cfg.widths[0]})
    return ResNet(new)


def allocate_widths(model: ResNet, input_shape, budget: int, scores: dict[int, float], config: DeepReShapeConfig,
                    num_classes: int) -> dict:
    opts = list(config.width_options)
    if not opts or min(opts) <= 0:
        raise ValueError(f"width_options must be positive multipliers, got {opts}")
    relus, macs = stage_tables(model, input_shape, opts)
    if config.flops_weight is not None:
        beta = float(config.flops_weight)
    else:
        cm = cost_model_for(config)
        beta = cm.per_mac()["online_seconds"] / cm.per_site("relu")["online_seconds"]
    chance = 1.0 / max(num_classes, 1)
    stages = sorted(relus)
    raw = {s: max(float(scores.get(s, chance)) - chance, 0.0) + 0.05 for s in stages}
    norm = sum(raw.values())
    weights = {s: raw[s] / norm for s in stages}
    costs = [[relus[s][i] + beta * macs[s][i] for i in range(len(opts))] for s in stages]
    values = [[weights[s] * math.log2(opts[i]) for i in range(len(opts))] for s in stages]
    capacity = config.capacity_factor * budget
    try:
        choice = allocate(costs, values, capacity)
        feasible = True
    except InfeasibleBudget:
        choice = [min(range(len(opts)), key=lambda i: costs[k][i]) for k in range(len(stages))]
        feasible = False
    mults = [opts[i] for i in choice]
    return {"multipliers": mults, "feasible": feasible, "beta": beta, "capacity": capacity,
            "weights": {str(s): w for s, w in weights.items()},
            "stage_costs": {str(s): costs[k] for k, s in enumerate(stages)}}


def optimize(model: nn.Module, splits, budget, config: DeepReShapeConfig | dict | None = None,
             teacher: nn.Module | None = None, progress: bool = True) -> OptimizeResult:
    if not isinstance(model, ResNet):
        raise TypeError(f"deepreshape reshapes ResNet stage widths; got a {type(model).__name__} "
                         "(use arch resnet18, resnet-small or another ResNet)")
    p = begin(model, splits, budget, config, DeepReShapeConfig, teacher)
    config, student, teacher, b, store, shape, t0 = (p.config, p.student, p.teacher, p.budget, p.store,
                                                     p.input_shape, p.t0)

    if config.criticality is not None:
        scores = {int(k): float(v) for k, v in config.criticality.items()}
    else:
        crit_cfg = deepreduce.DeepReDuceConfig(**{f: getattr(config, f) for f in
                                                  deepreduce.OptimizeConfig.field_names()},
                                               criticality_epochs=config.criticality_epochs)
        scores = deepreduce.criticality(student, splits, crit_cfg, teacher, store, progress)
    alloc = allocate_widths(student, shape, b, scores, config, splits.num_classes)
    seed_everything(config.seed)
    net = reshape(student, alloc["multipliers"])
    alloc["widths"] = list(net.config.widths)
    alloc["relus_before_snl"] = sum(r["sites"] for r in site_rows(net, shape))
    alloc["macs"] = linear_layers(net, shape)[0]
    pre_store = PhaseStore(config.pretrain_dir) if config.pretrain_dir else store
    tag = "-".join(str(w) for w in net.config.widths)
    pre = train_phase(net, splits, config, name=f"deepreshape_pretrain_w{tag}_e{config.pretrain_epochs}",
                      epochs=config.pretrain_epochs, optimizer=config.pretrain_optimizer, lr=config.pretrain_lr,
                      teacher=teacher, store=pre_store, progress=progress)
    alloc["pretrain_best"] = pre["best"]
    total = alloc["relus_before_snl"]
    if b >= total:
        history, info = [], {"note": "the reshaped network fits the budget without linearization"}
    else:
        history, info = snl.run(net, splits, b, config, teacher, store, progress, prefix="deepreshape_")
    return finish(NAME, net, splits, b, config, pre["history"] + history, t0=t0, cost_budget=p.cost_budget,
                  extra={"allocation": alloc, "criticality": {str(k): v for k, v in scores.items()}, "snl": info})


__all__ = ["DeepReShapeConfig", "allocate_widths", "optimize", "reshape"]
