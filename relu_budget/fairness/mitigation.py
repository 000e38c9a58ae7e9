"""The fairness mitigations, as fine-tuning loss hooks with dual ascent on per-group multipliers,
and the config fields that turn them on:

- `GroupLossPenalty`: Σ_g γ_g·|L_g − L|, the group loss-*gap* penalty (Das et al.): equalizes
  the groups' losses, if need be by raising the easy groups' losses (levelling down).
- `GroupDropConstraint`: the constraint L_g(student) − L_g(teacher) ≤ τ for every group g, by its
  Lagrangian Σ_g λ_g·(L_g − L_g^teacher − τ): bounds each group's loss *increase* against the
  all-ReLU teacher; its gradient is a non-negative re-weighting of the groups' losses, so it
  never pushes any group's loss up.
"""
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


@dataclass
class FairnessSettings:
    """Config fields of the fine-tuning mitigations (mixed into SNLConfig and AutoRePConfig; Circa
    inherits them from SNLConfig). At most one of the two may be on."""

    fairness_penalty: bool = False   # fine-tuning loss += Σ_g γ_g·|L_g − L| (groups: the classes)
    drop_constraint: bool = False    # fine-tuning s.t. L_g(student) − L_g(teacher) ≤ tolerance, per class
    dual_lr: float = 0.1             # μ of the dual ascent on γ or λ, per epoch
    tolerance: float = 0.0           # penalty: loss gap tolerated; constraint: τ, loss increase tolerated
    dual_steps: int = 4              # constraint only: dual steps per epoch from epoch 2 on, μ/dual_steps each

    def __post_init__(self) -> None:
        check_settings(self)


# ---------------------------------------------------------------------------------------------
# What both mitigations share: groups, multipliers in plain-data state, the epoch-end dual step
# ---------------------------------------------------------------------------------------------

class _DualAscentHook:
    """A batch-aware loss hook (`uses_batch`: called `hook(model, logits, targets)` by train.fit
    and train_phase) with one multiplier ≥ 0 per group, kept as plain data in
    `state[f"fairness_{KEY}"]` (saved with train_phase's checkpoints, so a resumed phase continues
    with its multipliers) and updated by `dual_step` in `on_epoch_end`. Groups are the classes,
    or `group_of_class[c]` (e.g. majority/minority). Training batches' per-group loss sums are
    accumulated (without gradient) for the epoch means."""

    uses_batch = True
    KEY = "multiplier"
    # Each mitigation's history-row fields: (its largest violation's field, that value's key in
    # dual_step's info, the per-group values' field, their key); the multipliers' come from KEY.
    ROW: tuple[str, str, str, str]

    def __init__(self, num_groups: int, dual_lr: float, tolerance: float, *,
                 group_of_class: Sequence[int] | None = None, init: float = 0.0) -> None:
        if not isinstance(num_groups, (int, np.integer)) or num_groups < 2:
            raise ValueError(f"num_groups must be an integer ≥ 2, got {num_groups!r}")
        for name, v in (("dual_lr", dual_lr), ("tolerance", tolerance), (f"{self.KEY}_init", init)):
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
        # fairness_steps: dual steps taken so far (an epoch trained before the first one never
        # felt the multipliers when they start at 0: see `selectable`).
        self.state: dict = {f"fairness_{self.KEY}": [float(init)] * self.num_groups, "fairness_steps": 0}
        self.history: list[dict] = []
        self.last_validation: dict | None = None    # set by validation_metric, moved into the history row
        self._reset()

    def _reset(self) -> None:
        self._sum = torch.zeros(self.num_groups, dtype=torch.float64)
        self._count = torch.zeros(self.num_groups, dtype=torch.float64)

    @property
    def multipliers(self) -> torch.Tensor:
        return torch.tensor(self.state[f"fairness_{self.KEY}"], dtype=torch.float32)

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

    def batch_group_losses(self, logits: torch.Tensor, targets: torch.Tensor, record: bool):
        """(per-example CE, group means of the present groups, present mask), with graph."""
        if logits.dim() != 2 or len(logits) != len(targets):
            raise ValueError(f"need logits (N, C) and N targets, got {tuple(logits.shape)} and {tuple(targets.shape)}")
        losses = F.cross_entropy(logits, targets, reduction="none")
        g = self.groups_of(targets)
        sums = torch.zeros(self.num_groups, dtype=losses.dtype, device=losses.device).index_add(0, g, losses)
        counts = torch.bincount(g, minlength=self.num_groups).to(losses.dtype)
        present = counts > 0
        if record:
            with torch.no_grad():
                self._sum += sums.detach().double().cpu()
                self._count += counts.detach().double().cpu()
        return losses, sums[present] / counts[present], present

    def penalty(self, logits: torch.Tensor, targets: torch.Tensor, record: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, logits: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        if logits is None or targets is None:
            raise TypeError(f"{type(self).__name__} needs the batch: use it with a loop that passes "
                            "(model, logits, targets) to hooks with uses_batch (train.fit, train_phase)")
        return self.penalty(logits, targets, record=model.training)

    def epoch_group_losses(self) -> tuple[float, list[float | None]]:
        """(overall, per group) mean training loss since the last dual step; None: group unseen."""
        seen = self._count > 0
        if not bool(seen.any()):
            raise RuntimeError("dual_step before any training batch went through the penalty")
        overall = float(self._sum.sum() / self._count.sum())
        return overall, [float(self._sum[i] / self._count[i]) if bool(seen[i]) else None
                         for i in range(self.num_groups)]

    def _ascend(self, violation: list[float | None], lr: float | None = None) -> list[float]:
        """multiplier_g ← max(0, multiplier_g + μ·violation_g) (μ = `lr`, default dual_lr); None
        leaves it unchanged."""
        lr = self.dual_lr if lr is None else lr
        old = self.state[f"fairness_{self.KEY}"]
        new = [old[i] if v is None else max(0.0, old[i] + lr * v) for i, v in enumerate(violation)]
        self.state[f"fairness_{self.KEY}"] = new
        self.state["fairness_steps"] = self.state.get("fairness_steps", 0) + 1
        return new

    def selectable(self) -> bool:
        """Whether the epoch just trained may be kept by the mitigation's model selection: only
        once a dual step has set the multipliers it trained under. With the multipliers starting
        at 0, an epoch before the first step is plain fine-tuning; keeping it (because its
        validation worst group happened to look best) would report an unmitigated model as the
        mitigated one. With a single epoch nothing is selectable and train_phase keeps it anyway."""
        return self.state.get("fairness_steps", 0) > 0

    def row_fields(self, info: dict) -> dict:
        peak, measured, per_group, values = self.ROW
        return {peak: round(max(v for v in info[measured] if v is not None), 5),
                f"fair_{self.KEY}_max": round(max(info[self.KEY]), 5), f"fair_{self.KEY}": _rounded(info[self.KEY]),
                per_group: _rounded(info[values])}

    def _validation_frame(self, splits, batch_size: int) -> Callable[[nn.Module], MetricFrame]:
        """model ↦ the MetricFrame (accuracy, loss) of its validation predictions by group; Circa
        sites fault as in predict_proba."""
        x, y = splits.val
        y = y.numpy()
        groups = y if self.group_of_class is None else self.group_of_class.numpy()[y]
        return lambda model: MetricFrame(metrics={"accuracy": accuracy_score, "loss": log_loss_score}, y_true=y,
                                         y_pred=predict_proba(model, x, batch_size), sensitive_features=groups)

    def on_epoch_end(self, epoch: int, row: dict, state: dict | None = None) -> bool:
        row.update(self.row_fields(self.dual_step()))
        if self.last_validation is not None:
            row.update(self.last_validation)
            self.last_validation = None
        return False

    def dual_step(self) -> dict:
        raise NotImplementedError


def _rounded(values) -> list:
    return [None if v is None else round(v, 5) for v in values]


# ---------------------------------------------------------------------------------------------
# The group loss-gap penalty
# ---------------------------------------------------------------------------------------------

class GroupLossPenalty(_DualAscentHook):
    """Σ_g γ_g·|L_g − L| on a batch (L_g: group g's mean CE, L: the batch mean), with γ_g ≥ 0
    raised once per epoch by γ_g ← max(0, γ_g + μ·(|L̄_g − L̄| − tolerance)) (L̄: the epoch's
    training means). γ lives in `state["fairness_gamma"]`."""

    KEY = "gamma"
    ROW = ("fair_gap_max", "gap", "fair_group_loss", "group_loss")

    def __init__(self, num_groups: int, dual_lr: float = 0.1, tolerance: float = 0.0, *,
                 group_of_class: Sequence[int] | None = None, gamma_init: float = 0.0) -> None:
        super().__init__(num_groups, dual_lr, tolerance, group_of_class=group_of_class, init=gamma_init)

    @property
    def gamma(self) -> torch.Tensor:
        return self.multipliers

    def penalty(self, logits: torch.Tensor, targets: torch.Tensor, record: bool = True) -> torch.Tensor:
        """Σ_g γ_g·|L_g − L| over the groups present in the batch, differentiable in `logits`."""
        losses, group_mean, present = self.batch_group_losses(logits, targets, record)
        gamma = self.gamma.to(losses)[present]
        return (gamma * (group_mean - losses.mean()).abs()).sum()

    def dual_step(self) -> dict:
        """γ_g ← max(0, γ_g + μ·(|L̄_g − L̄| − tolerance)) for the groups seen since the last
        step (L̄: epoch means); returns what it measured and the new γ."""
        overall, group_loss = self.epoch_group_losses()
        gap = [None if v is None else abs(v - overall) for v in group_loss]
        new = self._ascend([None if d is None else d - self.tolerance for d in gap])
        info = {"loss": overall, "group_loss": group_loss, "gap": gap, "gamma": list(new)}
        self.history.append(info)
        self._reset()
        return info

    def validation_metric(self, splits, batch_size: int = 512) -> Callable[[nn.Module], dict]:
        """A `train_phase(metric=...)` that selects epochs by the **worst-group** validation
        accuracy (the penalty's goal; selecting by overall accuracy would prefer the epochs
        before the multipliers grew), among the epochs after the first dual step (`selectable`). Returns {"accuracy": worst-group accuracy, "loss": overall
        loss}; the overall accuracy and the worst group go into the epoch's history row as
        `val_overall_accuracy` and `val_worst_group`. Circa sites fault as in predict_proba."""
        frame, n = self._validation_frame(splits, batch_size), len(splits.val[1])

        def metric(model: nn.Module) -> dict:
            mf = frame(model)
            self.last_validation = {"val_overall_accuracy": mf.overall["accuracy"],
                                    "val_worst_group": str(mf.argmin()["accuracy"])}
            return {"accuracy": mf.group_min()["accuracy"], "loss": mf.overall["loss"], "n": n,
                    "selectable": self.selectable()}
        return metric


# ---------------------------------------------------------------------------------------------
# The per-group drop constraint against the all-ReLU teacher
# ---------------------------------------------------------------------------------------------

def reference_group_losses(teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, num_groups: int,
                           group_of_class: Sequence[int] | None = None, batch_size: int = 512) -> dict:
    """The reference model's per-group mean CE and accuracy on (x, y) (eval mode):
    {"loss": [...], "accuracy": [...]}, None for groups without examples."""
    probs = predict_proba(teacher, x, batch_size)
    y = y.numpy()
    g = y if group_of_class is None else np.asarray(group_of_class)[y]
    ce = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-300, None))
    hit = probs.argmax(1) == y
    return {"loss": [float(ce[g == i].mean()) if (g == i).any() else None for i in range(num_groups)],
            "accuracy": [float(hit[g == i].mean()) if (g == i).any() else None for i in range(num_groups)]}


class GroupDropConstraint(_DualAscentHook):
    """The constraint L_g(student) − L_g(teacher) ≤ τ for every group g, by its Lagrangian.

    On a batch the hook adds Σ_g λ_g·(L_g − ref_g − τ) over the groups present (L_g: group g's
    mean CE in the batch, with graph; ref_g: the teacher's mean CE on group g), so the weights get
    Σ_g λ_g·∂L_g: a non-negative re-weighting of the groups' losses that never raises a group's
    loss to lower another's. Once per epoch (or K times with μ/K: `steps_per_epoch`), dual ascent
    on the measured violation:

        λ_g ← max(0, λ_g + μ·(D_g − τ)),   D_g = L̄_g(student) − ref_g

    so λ_g rises while group g's loss increase exceeds τ and falls back otherwise.
    `measured_on="val"` (what `finetune_hooks` uses): D_g from the held-out losses that
    `validation_metric` measures each epoch, against the teacher's on the same split;
    `measured_on="train"`: from the epoch's training batches, against `reference_loss` given on
    the training data. λ lives in `state["fairness_lambda"]`.

    λ starts at 0, so the first epoch is unconstrained: the freshly linearized model's losses
    (before any fine-tuning) are no guide to where the constraint binds (measured: up to ≈ 20
    above the teacher's at 300 sites, mostly recovered by plain fine-tuning), and a dual step
    taken there fixes large, arbitrary multipliers that the later small steps do not undo.

    `steps_per_epoch` = K > 1: from the second epoch on, K dual steps per epoch of μ/K each (at
    evenly spaced training batches, the last one at the epoch's end; epoch 1 ends with one step
    of μ/K), so λ moves at the same rate per epoch but follows the weights' response within the
    epoch. With one step per epoch a class whose loss is well above the teacher's gets its whole
    increase of λ at once and is over-corrected for a full epoch before the next measurement
    (measured on ResNet-18 in docs/fairness.md: Shirt 1.3 above the teacher's loss, then 1.5
    below, then back). Batches per epoch are counted in epoch 1 (kept in `state`).
    """

    KEY = "lambda"
    ROW = ("fair_loss_drop_max", "drop", "fair_loss_drop", "drop")

    def __init__(self, reference_loss: Sequence[float], dual_lr: float = 0.1, tolerance: float = 0.0, *,
                 group_of_class: Sequence[int] | None = None, lambda_init: float = 0.0,
                 measured_on: str = "train", reference_accuracy: Sequence[float] | None = None,
                 steps_per_epoch: int = 1) -> None:
        ref = [float("nan") if v is None else float(v) for v in reference_loss]
        super().__init__(len(ref), dual_lr, tolerance, group_of_class=group_of_class, init=lambda_init)
        if measured_on not in ("train", "val"):
            raise ValueError(f"measured_on must be 'train' or 'val', got {measured_on!r}")
        if not isinstance(steps_per_epoch, (int, np.integer)) or steps_per_epoch < 1:
            raise ValueError(f"dual_steps must be an integer ≥ 1, got {steps_per_epoch!r}")
        self.steps_per_epoch = int(steps_per_epoch)
        # fairness_batch: training batches seen in this epoch; fairness_epoch_batches: in a whole
        # epoch (counted in epoch 1, which takes no in-epoch step).
        self.state.update({"fairness_batch": 0, "fairness_epoch_batches": 0})
        self._val_frame: Callable[[nn.Module], MetricFrame] | None = None
        self.reference_loss = torch.tensor(ref, dtype=torch.float64)
        self.reference_accuracy = None if reference_accuracy is None else list(reference_accuracy)
        self.measured_on = measured_on
        self._val_group_loss: list[float | None] | None = None

    def penalty(self, logits: torch.Tensor, targets: torch.Tensor, record: bool = True) -> torch.Tensor:
        """Σ_g λ_g·(L_g − ref_g − τ) over the groups present in the batch, differentiable in `logits`."""
        losses, group_mean, present = self.batch_group_losses(logits, targets, record)
        if bool(torch.isnan(self.reference_loss[present.cpu()]).any()):
            raise ValueError("a group in the batch has no reference loss (the teacher saw no example of it)")
        lam = self.multipliers.to(losses)[present]
        ref = self.reference_loss.to(losses)[present]
        return (lam * (group_mean - ref - self.tolerance)).sum()

    def __call__(self, model: nn.Module, logits: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        if model.training and self.steps_per_epoch > 1:
            n = self.state["fairness_batch"] = self.state.get("fairness_batch", 0) + 1
            if n - 1 in self.in_epoch_batches():
                self.in_epoch_step(model)
        return super().__call__(model, logits, targets)

    def in_epoch_batches(self) -> list[int]:
        """After which training batches of an epoch an in-epoch step is taken (before the next
        batch's update): round(j·B/K), j = 1..K−1, B = batches per epoch, without 0 and B (fewer
        than K − 1 when B < K); empty in epoch 1, B being still uncounted."""
        total = self.state.get("fairness_epoch_batches", 0)
        return sorted({round(j * total / self.steps_per_epoch) for j in range(1, self.steps_per_epoch)} - {0, total})

    def step_lr(self) -> float:
        """μ / (steps per epoch actually taken), so λ moves at μ per epoch whatever K and B."""
        return self.dual_lr / (len(self.in_epoch_batches()) + 1 if self.state.get("fairness_epoch_batches")
                               else self.steps_per_epoch)

    def in_epoch_step(self, model: nn.Module) -> dict:
        """A dual step of μ/K inside the epoch on the current weights: validation losses when
        measured on "val" (the loop's training-mode forward is unaffected: eval mode, no graph)."""
        if self.measured_on == "val":
            if self._val_frame is None:
                raise RuntimeError("in-epoch dual steps on validation data need validation_metric in the loop")
            with torch.no_grad():
                mf = self._val_frame(model)
            return self.dual_step([mf.by_group["loss"].get(i) for i in range(self.num_groups)])
        return self.dual_step()

    def on_epoch_end(self, epoch: int, row: dict, state: dict | None = None) -> bool:
        if not self.state.get("fairness_epoch_batches"):
            self.state["fairness_epoch_batches"] = self.state.get("fairness_batch", 0)
        self.state["fairness_batch"] = 0
        super().on_epoch_end(epoch, row, state)
        row["fair_dual_steps"] = self.state["fairness_steps"]
        return False

    def dual_step(self, group_loss: Sequence[float | None] | None = None) -> dict:
        """λ_g ← max(0, λ_g + μ·(L̄_g − ref_g − τ)) with L̄_g from `group_loss` if given, else
        from the split the constraint is measured on; returns what it measured and the new λ."""
        if group_loss is None:
            if self.measured_on == "val":
                if self._val_group_loss is None:
                    raise RuntimeError("the drop constraint is measured on validation data: use its "
                                       "validation_metric in the loop (finetune_hooks does)")
                group_loss = self._val_group_loss
            else:
                group_loss = self.epoch_group_losses()[1]
        if len(group_loss) != self.num_groups:
            raise ValueError(f"need {self.num_groups} group losses, got {len(group_loss)}")
        drop = [None if v is None or math.isnan(self.reference_loss[i]) else float(v) - float(self.reference_loss[i])
                for i, v in enumerate(group_loss)]
        new = self._ascend([None if d is None else d - self.tolerance for d in drop], self.step_lr())
        info = {"group_loss": list(group_loss), "drop": drop, "lambda": list(new)}
        self.history.append(info)
        self._reset()
        self._val_group_loss = None
        return info

    def validation_metric(self, splits, batch_size: int = 512) -> Callable[[nn.Module], dict]:
        """A `train_phase(metric=...)` that measures the groups' validation losses (for the dual
        step when measured on "val") and selects epochs by the smallest **worst-group accuracy
        drop** against `reference_accuracy` (the teacher's, same split): it returns the overall
        accuracy and loss plus `score` = min_g(acc_g − ref_acc_g). `val_worst_drop` and
        `val_worst_group` go into the epoch's history row. Circa sites fault as in predict_proba."""
        if self.reference_accuracy is None:
            raise ValueError("validation_metric needs the teacher's per-group validation accuracy "
                             "(reference_accuracy)")
        frame, n = self._validation_frame(splits, batch_size), len(splits.val[1])
        self._val_frame = frame

        def metric(model: nn.Module) -> dict:
            mf = frame(model)
            self._val_group_loss = [mf.by_group["loss"].get(i) for i in range(self.num_groups)]
            drops = {g: self.reference_accuracy[int(g)] - a for g, a in mf.by_group["accuracy"].items()
                     if self.reference_accuracy[int(g)] is not None}
            worst = max(drops, key=drops.get)
            self.last_validation = {"val_worst_drop": round(drops[worst], 5), "val_worst_group": str(worst)}
            return {"accuracy": mf.overall["accuracy"], "loss": mf.overall["loss"], "n": n,
                    "score": -drops[worst], "selectable": self.selectable()}
        return metric


# ---------------------------------------------------------------------------------------------
# The optimizers' entry point
# ---------------------------------------------------------------------------------------------

def check_settings(config) -> None:
    """Fails early (before any training) on settings the fine-tuning hooks would reject."""
    if getattr(config, "fairness_penalty", False) and getattr(config, "drop_constraint", False):
        raise ValueError("fairness_penalty and drop_constraint are two mitigations: turn on one of them")
    for name in ("dual_lr", "tolerance"):
        v = getattr(config, name, 0.0)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number ≥ 0, got {v}")
    k = getattr(config, "dual_steps", 1)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"dual_steps must be an integer ≥ 1, got {k!r}")


def finetune_hooks(config, splits, metric: Callable | None = None, teacher: nn.Module | None = None) -> dict:
    """train_phase keyword arguments of a fine-tuning phase: `{"metric": metric}` normally.
    With `config.fairness_penalty`: the loss-gap penalty (groups: the classes), its dual step,
    its state, and epoch selection by the worst-group validation accuracy. With
    `config.drop_constraint`: the drop constraint against `teacher` (groups: the classes),
    measured on the validation split, and epoch selection by
    the smallest worst-group validation accuracy drop; both select among the epochs trained after
    the first dual step (`selectable`). The mitigations' metrics replace `metric` (they simulate
    Circa faults themselves)."""
    check_settings(config)
    batch = getattr(config, "eval_batch_size", 512)
    if getattr(config, "fairness_penalty", False):
        hook = GroupLossPenalty(splits.num_classes, config.dual_lr, config.tolerance)
    elif getattr(config, "drop_constraint", False):
        if teacher is None:
            raise ValueError("drop_constraint needs the all-ReLU teacher as reference (keep distill=True)")
        ref = reference_group_losses(teacher, *splits.val, splits.num_classes, batch_size=batch)
        hook = GroupDropConstraint(ref["loss"], config.dual_lr, config.tolerance, measured_on="val",
                                   reference_accuracy=ref["accuracy"], steps_per_epoch=config.dual_steps)
    else:
        return {"metric": metric}
    return {"extra_loss": hook, "on_epoch_end": hook.on_epoch_end, "state": hook.state,
            "metric": hook.validation_metric(splits, batch)}
