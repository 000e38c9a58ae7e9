"""SNL: Selective Network Linearization (Cho et al., ICML 2022), re-implemented.

Phase 1 (mask search): every ReLU layer gets a mask α (per pixel, C×H×W, or per channel,
C×1×1), initialized to 1; the layer computes α·ReLU(x) + (1 − α)·x. Weights and masks are
trained jointly with Adam on CE + KD + λ·‖α‖₁ (a per-channel entry counts for its H·W
sites). After every epoch the sites with α > threshold (0.01) are counted; when the count
did not fall below its previous minimum and the epoch is ≥ `lam_warmup_epochs` (5), λ is
multiplied by `lam_growth` (1.1). The phase stops as soon as the count is ≤ the budget (or
after `epochs`). With `lam_schedule="track"` (for short schedules) λ is also doubled after
every epoch that ends above a geometric pace from all sites to the budget (`next_lambda`).

Binarization: the sites with the B highest α are kept (exact ReLU), the rest become identity.
This is "α > 0.01" fixed to exactly B sites: it drops the lowest surviving α when too many
survive and, with `fill_to_budget`, re-admits the highest sub-threshold α when too few do.
Per-channel masks keep whole channels (largest α first, skipping channels that no longer
fit), so the count is ≤ B there.

Phase 2: the policy is fixed; fine-tune with CE + KD (SGD, lr 1e-3, momentum 0.9, wd 5e-4,
cosine), keeping the epoch with the best validation accuracy (never test). With
`fairness_penalty` or `drop_constraint` the fine-tuning adds that mitigation
(relu_budget/fairness/mitigation.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from relu_budget.fairness import FairnessSettings
from relu_budget.models import IDENTITY, RELU, relu_sites
from relu_budget.optimizers.common import (
    OptimizeConfig,
    OptimizeResult,
    begin,
    clear_replacements,
    finish,
    site_rows,
    top_k_mask,
)
from relu_budget.optimizers.training import PhaseStore, finetune, train_phase

NAME = "snl"


@dataclass
class SNLConfig(FairnessSettings, OptimizeConfig):   # FairnessSettings: fine-tuning mitigations (fairness/mitigation.py)
    lam: float = 1e-5               # L1 weight on Σα (per site); short schedules: 1e-4 (docs)
    lam_growth: float = 1.1
    lam_warmup_epochs: int = 5      # λ may grow only from this epoch on
    lam_schedule: str = "stall"     # "stall": the paper's rule; "track": also keep pace with the budget
    lam_track_growth: float = 2.0   # "track": λ factor for an epoch that ends behind the pace
    alpha_lr: float = 1e-3          # Adam learning rate of the masks
    threshold: float = 0.01         # a site is alive while α > threshold
    granularity: str = "pixel"      # "pixel" (C×H×W masks) or "channel" (C×1×1)
    fill_to_budget: bool = True     # binarize to exactly B sites (pixel granularity)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam_schedule not in ("stall", "track"):
            raise ValueError(f"lam_schedule must be 'stall' or 'track', got {self.lam_schedule!r}")
        if self.granularity not in ("pixel", "channel"):
            raise ValueError(f"granularity must be 'pixel' or 'channel', got {self.granularity!r}")
        if self.lam < 0 or self.lam_growth < 1:
            raise ValueError(f"need lam >= 0 and lam_growth >= 1, got {self.lam}, {self.lam_growth}")


class SNLMask(nn.Module):
    """α·ReLU(x) + (1 − α)·x with a learnable α over the site shape (or per channel)."""

    def __init__(self, shape: tuple[int, ...], granularity: str = "pixel") -> None:
        super().__init__()
        self.shape = tuple(shape)
        mshape = self.shape if granularity == "pixel" else (shape[0],) + (1,) * (len(shape) - 1)
        self.alpha = nn.Parameter(torch.ones(mshape))
        self.multiplicity = 1 if granularity == "pixel" else int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha
        return a * F.relu(x) + (1 - a) * x

    def l1(self) -> torch.Tensor:
        return self.alpha.abs().sum() * self.multiplicity

    def alive(self, threshold: float) -> int:
        return int((self.alpha.detach() > threshold).sum()) * self.multiplicity


def attach_masks(model: nn.Module, input_shape, granularity: str) -> dict[str, SNLMask]:
    shapes = {r["name"]: r["shape"] for r in site_rows(model, input_shape)}
    masks = {}
    for name, site in relu_sites(model):
        if site.kind_map is not None and bool((site.kind_map != RELU).any()):
            raise ValueError(f"SNL starts from an all-ReLU model; layer {name!r} already has linearized sites")
        site.kind_map = None
        masks[name] = SNLMask(shapes[name], granularity)
        site.replacement = masks[name]
    return masks


def binarize(model: nn.Module, masks: dict[str, SNLMask], budget: int, config: SNLConfig) -> dict:
    """Kind maps from the masks, with exactly `budget` kept sites (≤ for channel masks)."""
    names = list(masks)
    if config.granularity == "pixel":
        scores = [masks[n].alpha.detach() for n in names]
        alive = sum(int((s > config.threshold).sum()) for s in scores)
        k = budget if config.fill_to_budget else min(budget, alive)
        keep = top_k_mask(scores, k)
    else:
        entries = []
        for li, n in enumerate(names):
            a = masks[n].alpha.detach().reshape(-1)
            for c in range(a.numel()):
                if config.fill_to_budget or a[c] > config.threshold:
                    entries.append((-float(a[c]), li, c))
        entries.sort()
        keep = [torch.zeros(masks[n].alpha.shape, dtype=torch.bool) for n in names]
        left = budget
        for _neg, li, c in entries:
            m = masks[names[li]].multiplicity
            if m <= left:
                keep[li].view(-1)[c] = True
                left -= m
        alive = sum(masks[n].alive(config.threshold) for n in names)
    sites = dict(relu_sites(model))
    for n, kp in zip(names, keep):
        shape = masks[n].shape
        kinds = torch.where(kp, torch.tensor(RELU, dtype=torch.int8), torch.tensor(IDENTITY, dtype=torch.int8))
        sites[n].replacement = None
        sites[n].set_kinds(kinds.expand(shape).clone())
    return {"alive_at_threshold": alive}


def next_lambda(lam: float, count: int, min_count: int, epoch: int, total: int, budget: int,
                config: SNLConfig) -> float:
    """λ for the next search epoch. "stall" (the paper): ×lam_growth when the alive count did
    not fall below its minimum (from lam_warmup_epochs on). "track" (short schedules, where
    ×1.1 per stalled epoch never gets near a small budget): also ×lam_track_growth when the
    count is above the geometric pace total·(budget/total)^(epoch/epochs) that reaches the
    budget at the last search epoch."""
    if count >= min_count and epoch >= config.lam_warmup_epochs:
        lam *= config.lam_growth
    if config.lam_schedule == "track" and config.epochs > 0:
        pace = total * (max(budget, 1) / total) ** (min(epoch, config.epochs) / config.epochs)
        if count > pace:
            lam *= config.lam_track_growth
    return lam


def search_and_binarize(student: nn.Module, splits, budget: int, config: SNLConfig, teacher, store: PhaseStore,
                        progress: bool, prefix: str = "") -> tuple[list[dict], dict]:
    """Phase 1 and binarization on `student` (in place). Returns (history, info)."""
    shape = splits.input_shape
    done = store.load(f"{prefix}snl_binarized")
    if done is not None:
        from relu_budget.optimizers.training import load_model_state
        clear_replacements(student)
        load_model_state(student, done["model"], done.get("site_meta"))
        return done["history"], done["info"]
    masks = attach_masks(student, shape, config.granularity)
    alphas = [m.alpha for m in masks.values()]
    alpha_ids = {id(a) for a in alphas}
    weights = [p for p in student.parameters() if id(p) not in alpha_ids and p.requires_grad]
    groups = [{"params": weights, "lr": config.lr}, {"params": alphas, "lr": config.alpha_lr}]
    total = sum(m.alpha.numel() * m.multiplicity for m in masks.values())
    state = {"lam": config.lam, "min_count": total, "reached": False}

    def penalty(_model):
        return state["lam"] * sum(m.l1() for m in masks.values())

    def on_epoch_end(epoch, row, st):
        count = sum(m.alive(config.threshold) for m in masks.values())
        row["alive"], row["lam"] = count, st["lam"]
        if count <= budget:
            st["reached"] = True
            return True
        st["lam"] = next_lambda(st["lam"], count, st["min_count"], epoch, total, budget, config)
        st["min_count"] = min(st["min_count"], count)
        return False

    out = train_phase(student, splits, config, name=f"{prefix}snl_search", epochs=config.epochs,
                      optimizer=config.optimizer, lr=config.lr, teacher=teacher, param_groups=groups,
                      extra_loss=penalty, on_epoch_end=on_epoch_end, state=state, select_best=False,
                      store=store, progress=progress, schedule="constant")
    info = binarize(student, masks, budget, config)
    alive = [row["alive"] for row in out["history"] if "alive" in row]
    info.update({"reached_budget_in_search": bool(out["state"].get("reached")), "final_lam": out["state"]["lam"],
                 "search_epochs": out["epochs_run"], "search_kept": alive[-1] if alive else None})
    from relu_budget.optimizers.training import site_meta
    store.save(f"{prefix}snl_binarized", {"model": student.state_dict(), "history": out["history"], "info": info,
                                          "site_meta": site_meta(student)})
    return out["history"], info


def run(student: nn.Module, splits, budget: int, config: SNLConfig, teacher, store: PhaseStore, progress: bool,
        prefix: str = "") -> tuple[list[dict], dict]:
    """SNL on `student` in place (search, binarize, fine-tune): (history, info)."""
    history, info = search_and_binarize(student, splits, budget, config, teacher, store, progress, prefix)
    ft = finetune(student, splits, config, teacher, store, progress, name=f"{prefix}snl_finetune")
    info["finetune_best"] = ft["best"]
    return history + ft["history"], info


def optimize(model: nn.Module, splits, budget, config: SNLConfig | dict | None = None,
             teacher: nn.Module | None = None, progress: bool = True) -> OptimizeResult:
    p = begin(model, splits, budget, config, SNLConfig, teacher)
    history, info = run(p.student, splits, p.budget, p.config, p.teacher, p.store, progress)
    return finish(NAME, p.student, splits, p.budget, p.config, history, extra=info, t0=p.t0,
                  cost_budget=p.cost_budget)
