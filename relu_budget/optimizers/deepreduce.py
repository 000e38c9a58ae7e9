"""DeepReDuce (Jha, Ghodsi, Garg, Reagen, ICML 2021), re-implemented at layer granularity.

1. Stage criticality: for every stage (the stem is stage 0; a ResNet stage is one `layers.i`;
   a model without `stage_of` has one stage per ReLU layer) a variant keeping ReLUs in that
   stage only is fine-tuned from the all-ReLU weights with distillation for
   `criticality_epochs`; stages are ranked by the validation accuracy they reach.
2. Culling: candidates keep the j most critical stages (j = 1..S): the least critical
   stages lose all their ReLUs first.
3. Thinning: each culled candidate also comes thinned — in every kept stage, every other
   ReLU layer (positions 1, 3, ...; in a basic block the ReLU after the residual add) is
   dropped.
4. Reshaping (when no candidate fits the budget, as at very low budgets): the network's
   widths are scaled by α ∈ {1/2, 1/4, ...} and/or the stem stride is doubled (ρ); such
   candidates are trained from scratch with distillation. Models other than ResNet cannot
   be reshaped; they fall back to the all-linear candidate.
5. Every candidate is trained with distillation from the all-ReLU teacher for
   `epochs + finetune_epochs` epochs (starting from the teacher's weights unless reshaped),
   keeping its best validation epoch. The frontier lists (ReLU count, validation and test
   accuracy) of all candidates; the chosen model is the best validation accuracy among the
   trained candidates within the budget.

By default only the `max_candidates` largest candidates that fit the budget are trained;
`train_all=True` trains every candidate (the full frontier). Trained candidates and the
criticality variants are stored in `checkpoint_dir` under names that do not depend on the
budget, so runs at several budgets sharing a directory reuse them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import nn

from relu_budget.allocation import pareto_front
from relu_budget.models import ResNet, ResNetConfig, relu_sites
from relu_budget.optimizers.common import (
    OptimizeConfig,
    OptimizeResult,
    begin,
    evaluate_split,
    finish,
    set_kinds,
    site_rows,
    uniform_kinds,
)
from relu_budget.optimizers.training import PhaseStore, train_phase
from relu_budget.train import evaluate, seed_everything

NAME = "deepreduce"


@dataclass
class DeepReDuceConfig(OptimizeConfig):
    criticality_epochs: int = 2
    criticality: dict | None = None      # precomputed {stage: score}; skips step 1
    thinning: bool = True
    reshape: bool = True
    width_multipliers: tuple = (0.5, 0.25, 0.125, 0.0625)
    train_all: bool = False
    max_candidates: int = 3
    stage_names: dict = field(default_factory=dict)   # optional {layer name: stage} override


def stages_of(model: nn.Module, names: list[str], override: dict | None = None) -> dict[int, list[str]]:
    """Stage → its ReLU layer names in forward order."""
    out: dict[int, list[str]] = {}
    for i, n in enumerate(names):
        if override and n in override:
            s = int(override[n])
        elif hasattr(model, "stage_of"):
            s = int(model.stage_of(n))
        else:
            s = i
        out.setdefault(s, []).append(n)
    return dict(sorted(out.items()))


def thin(layers: list[str]) -> list[str]:
    """Drops every other ReLU layer of a stage (keeps positions 0, 2, 4, ...)."""
    return layers[0::2]


def criticality(student_init: nn.Module, splits, config: DeepReDuceConfig, teacher, store: PhaseStore,
                progress: bool) -> dict[int, float]:
    """Validation accuracy of the variant keeping ReLUs in one stage only, per stage."""
    shape = splits.input_shape
    names = [r["name"] for r in site_rows(student_init, shape)]
    stages = stages_of(student_init, names, config.stage_names)
    scores = {}
    crit_cfg = copy.copy(config)
    for s, layers in stages.items():
        variant = copy.deepcopy(student_init)
        set_kinds(variant, uniform_kinds(variant, shape, set(layers)))
        out = train_phase(variant, splits, crit_cfg, name=f"deepreduce_crit_stage{s}",
                          epochs=config.criticality_epochs, optimizer=config.optimizer, lr=config.lr,
                          teacher=teacher, store=store, progress=progress)
        scores[s] = out["best"]["val_accuracy"] if out["best"]["val_accuracy"] is not None else \
            evaluate(variant, splits.loader("val", config.eval_batch_size))["accuracy"]
    return scores


def _reshaped(model: nn.Module, mult: float, stem_stride: int) -> nn.Module | None:
    if not isinstance(model, ResNet):
        return None
    cfg = model.config
    stem = cfg.stem_channels or cfg.widths[0]
    new = ResNetConfig(**{**cfg.__dict__, "widths": tuple(max(1, round(w * mult)) for w in cfg.widths),
                          "stem_channels": max(1, round(stem * mult)),
                          "stem_stride": cfg.stem_stride * stem_stride})
    return ResNet(new)


def candidates(model: nn.Module, input_shape, ranking: list[int], stages: dict[int, list[str]],
               config: DeepReDuceConfig) -> list[dict]:
    """All culled / thinned layer sets, most ReLUs first (plus the all-linear network)."""
    rows = {r["name"]: r["sites"] for r in site_rows(model, input_shape)}
    out, seen = [], set()
    for j in range(len(ranking), 0, -1):
        kept = ranking[:j]
        for thinned in ((False, True) if config.thinning else (False,)):
            layers = [n for s in kept for n in (thin(stages[s]) if thinned else stages[s])]
            key = tuple(sorted(layers))
            if key in seen:
                continue
            seen.add(key)
            tag = "stages" + "-".join(str(s) for s in sorted(kept)) + ("_thin" if thinned else "")
            out.append({"name": tag, "stages": sorted(kept), "thinned": thinned, "layers": layers,
                        "relus": sum(rows[n] for n in layers), "width_mult": 1.0, "stem_stride_mult": 1})
    out.append({"name": "linear", "stages": [], "thinned": False, "layers": [], "relus": 0,
                "width_mult": 1.0, "stem_stride_mult": 1})
    return out


def reshaped_candidates(model, input_shape, base: list[dict], budget: int, config: DeepReDuceConfig) -> list[dict]:
    """For every non-empty layer set, the largest width/stride reshaping that fits the budget."""
    out = []
    options = [(m, s) for s in (1, 2) for m in (1.0,) + tuple(config.width_multipliers) if (m, s) != (1.0, 1)]
    for cand in base:
        if not cand["layers"]:
            continue
        best = None
        for mult, stride in options:
            net = _reshaped(model, mult, stride)
            if net is None:
                return []
            try:
                rows = {r["name"]: r["sites"] for r in site_rows(net, input_shape)}
            except RuntimeError:     # too small a feature map for this stride
                continue
            relus = sum(rows[n] for n in cand["layers"])
            if relus <= budget and (best is None or relus > best["relus"]):
                best = {**cand, "name": f"{cand['name']}_w{mult:g}_s{stride}", "relus": relus,
                        "width_mult": mult, "stem_stride_mult": stride}
        if best is not None:
            out.append(best)
    return out


def build_candidate(model: nn.Module, cand: dict) -> nn.Module:
    """The (untrained) network of a candidate row: `model` itself, or reshaped by its width and stride."""
    if cand["width_mult"] == 1.0 and cand["stem_stride_mult"] == 1:
        net = copy.deepcopy(model)                      # fine-tune from the teacher's weights
    else:
        net = _reshaped(model, cand["width_mult"], cand["stem_stride_mult"])   # from scratch
    return net


def optimize(model: nn.Module, splits, budget, config: DeepReDuceConfig | dict | None = None,
             teacher: nn.Module | None = None, progress: bool = True) -> OptimizeResult:
    p = begin(model, splits, budget, config, DeepReDuceConfig, teacher)
    config, student, teacher, b, store, shape, t0 = (p.config, p.student, p.teacher, p.budget, p.store,
                                                     p.input_shape, p.t0)
    names = [r["name"] for r in site_rows(student, shape)]
    stages = stages_of(student, names, config.stage_names)

    if config.criticality is not None:
        scores = {int(k): float(v) for k, v in config.criticality.items()}
        missing = sorted(set(stages) - set(scores))
        if missing:
            raise ValueError(f"criticality scores lack stages {missing} (stages: {sorted(stages)})")
    else:
        scores = criticality(student, splits, config, teacher, store, progress)
    ranking = sorted(stages, key=lambda s: (-scores[s], s))

    cands = candidates(student, shape, ranking, stages, config)
    fitting = [c for c in cands if c["relus"] <= b]
    if config.reshape and all(c["relus"] == 0 for c in fitting):
        extra = reshaped_candidates(student, shape, cands, b, config)
        cands += extra
        fitting = [c for c in cands if c["relus"] <= b]
    fitting.sort(key=lambda c: -c["relus"])
    total = sum(r["sites"] for r in site_rows(student, shape))

    def is_full(c):
        return c["relus"] == total and c["width_mult"] == 1.0 and c["stem_stride_mult"] == 1

    to_train = cands if config.train_all else fitting[:max(1, config.max_candidates)]
    linear = next(c for c in cands if c["name"] == "linear")
    if linear not in to_train and linear["relus"] <= b and \
            all(c["width_mult"] != 1.0 or c["stem_stride_mult"] != 1 for c in to_train):
        to_train.append(linear)     # reshaped nets start from scratch: the linear net is the baseline

    frontier, history, trained = [], [], {}
    for c in cands:
        row = {k: c[k] for k in ("name", "stages", "thinned", "relus", "width_mult", "stem_stride_mult")}
        row.update({"fits": c["relus"] <= b, "trained": False, "val_accuracy": None, "test_accuracy": None})
        frontier.append(row)
    by_name = {r["name"]: r for r in frontier}
    for c in to_train:
        if is_full(c):          # the all-ReLU network itself: nothing to train
            net = copy.deepcopy(student)
            by_name[c["name"]]["note"] = "the all-ReLU network (not retrained)"
        else:
            seed_everything(config.seed)
            net = build_candidate(student, c)
            set_kinds(net, uniform_kinds(net, shape, set(c["layers"])))
            out = train_phase(net, splits, config, name=f"deepreduce_cand_{c['name']}",
                              epochs=config.epochs + config.finetune_epochs, optimizer=config.optimizer,
                              lr=config.lr, teacher=teacher, store=store, progress=progress)
            history += [{**h, "candidate": c["name"]} for h in out["history"]]
        relus = sum(r["relu"] for r in site_rows(net, shape))
        val = evaluate_split(net, splits, "val", config)
        test = evaluate_split(net, splits, "test", config)
        by_name[c["name"]].update({"trained": True, "relus": relus, "val_accuracy": val["accuracy"],
                                   "test_accuracy": test["accuracy"]})
        trained[c["name"]] = net
    done = [r for r in frontier if r["trained"] and r["val_accuracy"] is not None]
    for i in pareto_front([(r["relus"], r["val_accuracy"]) for r in done]):
        done[i]["pareto"] = True
    choices = [r for r in done if r["fits"] and r["name"] in trained]
    if not choices:
        raise RuntimeError(f"deepreduce: no trained candidate fits the budget of {b} sites")
    best = max(choices, key=lambda r: (r["val_accuracy"], r["relus"]))
    final = trained[best["name"]]
    for _, s in relu_sites(final):
        s.replacement = None
    info = {"criticality": {str(k): v for k, v in scores.items()}, "ranking": ranking, "chosen": best["name"],
            "stages": {str(k): v for k, v in stages.items()}}
    return finish(NAME, final, splits, b, config, history, frontier=frontier, extra=info, t0=t0,
                  cost_budget=p.cost_budget)


__all__ = ["DeepReDuceConfig", "build_candidate", "candidates", "criticality", "optimize", "stages_of", "thin"]
