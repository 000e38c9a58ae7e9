"""The fairness mitigation: the group loss-gap penalty Σ_g γ_g·|L_g − L| with dual ascent on γ, as a
fine-tuning loss hook, and the config fields that turn it on."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from relu_budget.fairness.auditing import predict_proba
from relu_budget.fairness.metrics import MetricFrame, accuracy_score, log_loss_score

# ---------------------------------------------------------------------------------------------
# Mitigation: the group loss-gap penalty with dual ascent
# ---------------------------------------------------------------------------------------------

@dataclass
class FairnessSettings:
    """Config fields of the fine-tuning penalty (mixed into SNLConfig and AutoRePConfig)."""

    fairness_penalty: bool = False   # fine-tuning loss += Σ_g γ_g·|L_g − L| (groups: the classes)
    dual_lr: float = 0.1             # μ: γ_g ← max(0, γ_g + μ·(|L̄_g − L̄| − tolerance)) every epoch
    tolerance: float = 0.0           # loss gap tolerated without raising γ_g


class GroupLossPenalty:
    """Σ_g γ_g·|L_g − L| on a batch, with γ_g ≥ 0 raised by dual ascent once per epoch.

    Groups are the classes, or `group_of_class[c]` (e.g. majority/minority). As a loss hook
    it is called `hook(model, logits, targets)` by loops that honour `uses_batch` (train.fit,
    train_phase); `on_epoch_end(epoch, row, [state])` performs the dual step and writes γ and
    the measured gaps into the epoch's history row. `state` holds γ as plain data
    (`state["fairness_gamma"]`), so that a resumed phase continues with its multipliers.
    """

    uses_batch = True

    def __init__(self, num_groups: int, dual_lr: float = 0.1, tolerance: float = 0.0, *,
                 group_of_class: Sequence[int] | None = None, gamma_init: float = 0.0) -> None:
        if not isinstance(num_groups, (int, np.integer)) or num_groups < 2:
            raise ValueError(f"num_groups must be an integer ≥ 2, got {num_groups!r}")
        for name, v in (("dual_lr", dual_lr), ("tolerance", tolerance), ("gamma_init", gamma_init)):
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {v}")
        self.num_groups = int(num_groups)
        self.dual_lr, self.tolerance = float(dual_lr), float(tolerance)
        self.group_of_class = None
        if group_of_class is not None:
            m = torch.as_tensor(list(group_of_class), dtype=torch.long)
            if m.numel() and (int(m.min()) < 0 or int(m.max()) >= self.num_groups):
                raise ValueError(f"group_of_class must map classes to 0..{self.num_groups - 1}")
            self.group_of_class = m
        self.state: dict = {"fairness_gamma": [float(gamma_init)] * self.num_groups}
        self.history: list[dict] = []
        self.last_validation: dict | None = None    # set by validation_metric, moved into the history row
        self._reset()

    def _reset(self) -> None:
        self._sum = torch.zeros(self.num_groups, dtype=torch.float64)
        self._count = torch.zeros(self.num_groups, dtype=torch.float64)

    @property
    def gamma(self) -> torch.Tensor:
        return torch.tensor(self.state["fairness_gamma"], dtype=torch.float32)

    def groups_of(self, targets: torch.Tensor) -> torch.Tensor:
        if self.group_of_class is None:
            g = targets.long()
        else:
            if int(targets.max()) >= self.group_of_class.numel():
                raise ValueError(f"label {int(targets.max())} has no entry in group_of_class")
            g = self.group_of_class.to(targets.device)[targets.long()]
        if g.numel() and (int(g.min()) < 0 or int(g.max()) >= self.num_groups):
            raise ValueError(f"group ids must be in 0..{self.num_groups - 1}; got {int(g.min())}..{int(g.max())}")
        return g

    def penalty(self, logits: torch.Tensor, targets: torch.Tensor, record: bool = True) -> torch.Tensor:
        """Σ_g γ_g·|L_g − L| over the groups present in the batch, differentiable in `logits`."""
        if logits.dim() != 2 or len(logits) != len(targets):
            raise ValueError(f"need logits (N, C) and N targets, got {tuple(logits.shape)} and {tuple(targets.shape)}")
        losses = F.cross_entropy(logits, targets, reduction="none")
        g = self.groups_of(targets)
        mean = losses.mean()
        sums = torch.zeros(self.num_groups, dtype=losses.dtype, device=losses.device).index_add(0, g, losses)
        counts = torch.bincount(g, minlength=self.num_groups).to(losses.dtype)
        present = counts > 0
        group_mean = sums[present] / counts[present]
        gamma = self.gamma.to(losses)[present]
        if record:
            with torch.no_grad():
                self._sum += sums.detach().double().cpu()
                self._count += counts.detach().double().cpu()
        return (gamma * (group_mean - mean).abs()).sum()

    def __call__(self, model: nn.Module, logits: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        if logits is None or targets is None:
            raise TypeError("GroupLossPenalty needs the batch: use it with a loop that passes "
                            "(model, logits, targets) to hooks with uses_batch (train.fit, train_phase)")
        return self.penalty(logits, targets, record=model.training)

    def dual_step(self) -> dict:
        """γ_g ← max(0, γ_g + μ·(|L̄_g − L̄| − tolerance)) for the groups seen since the last
        step (L̄: epoch means); returns what it measured and the new γ."""
        seen = self._count > 0
        if not bool(seen.any()):
            raise RuntimeError("dual_step before any training batch went through the penalty")
        overall = float(self._sum.sum() / self._count.sum())
        group_loss = torch.where(seen, self._sum / self._count.clamp(min=1), torch.full_like(self._sum, float("nan")))
        gap = (group_loss - overall).abs()
        gamma = self.state["fairness_gamma"]
        new = [max(0.0, gamma[i] + self.dual_lr * (float(gap[i]) - self.tolerance)) if bool(seen[i]) else gamma[i]
               for i in range(self.num_groups)]
        self.state["fairness_gamma"] = new
        info = {"loss": overall, "group_loss": [None if not bool(seen[i]) else float(group_loss[i])
                                                for i in range(self.num_groups)],
                "gap": [None if not bool(seen[i]) else float(gap[i]) for i in range(self.num_groups)],
                "gamma": list(new)}
        self.history.append(info)
        self._reset()
        return info

    def on_epoch_end(self, epoch: int, row: dict, state: dict | None = None) -> bool:
        info = self.dual_step()
        gaps = [v for v in info["gap"] if v is not None]
        row["fair_gap_max"] = round(max(gaps), 5)
        row["fair_gamma_max"] = round(max(info["gamma"]), 5)
        row["fair_gamma"] = [round(v, 5) for v in info["gamma"]]
        row["fair_group_loss"] = [None if v is None else round(v, 5) for v in info["group_loss"]]
        if self.last_validation is not None:
            row.update(self.last_validation)
            self.last_validation = None
        return False

    def validation_metric(self, splits, batch_size: int = 512) -> Callable[[nn.Module], dict]:
        """A `train_phase(metric=...)` that selects epochs by the **worst-group** validation
        accuracy (the penalty's goal; selecting by overall accuracy would prefer the epochs
        before the multipliers grew). Returns {"accuracy": worst-group accuracy, "loss": overall
        loss}; the overall accuracy and the worst group go into the epoch's history row as
        `val_overall_accuracy` and `val_worst_group`. Circa sites fault as in predict_proba."""
        x, y = splits.val
        y = y.numpy()
        groups = y if self.group_of_class is None else self.group_of_class.numpy()[y]

        def metric(model: nn.Module) -> dict:
            mf = MetricFrame(metrics={"accuracy": accuracy_score, "loss": log_loss_score}, y_true=y,
                             y_pred=predict_proba(model, x, batch_size), sensitive_features=groups)
            self.last_validation = {"val_overall_accuracy": mf.overall["accuracy"],
                                    "val_worst_group": str(mf.argmin()["accuracy"])}
            return {"accuracy": mf.group_min()["accuracy"], "loss": mf.overall["loss"], "n": len(y)}
        return metric


def finetune_hooks(config, splits, metric: Callable | None = None) -> dict:
    """train_phase keyword arguments of a fine-tuning phase: `{"metric": metric}` normally; with
    `config.fairness_penalty` the penalty (groups: the classes), its dual step, its state, and
    epoch selection by the worst-group validation accuracy (`GroupLossPenalty.validation_metric`,
    which replaces `metric`: it simulates Circa faults itself)."""
    if not getattr(config, "fairness_penalty", False):
        return {"metric": metric}
    pen = GroupLossPenalty(splits.num_classes, config.dual_lr, config.tolerance)
    return {"extra_loss": pen, "on_epoch_end": pen.on_epoch_end, "state": pen.state,
            "metric": pen.validation_metric(splits, getattr(config, "eval_batch_size", 512))}

