"""Fairness of ReLU linearization: a per-group audit along a budget sweep, and a mitigation.

Das, Romanelli and Fioretto (ICML 2024) found that removing ReLUs costs minority groups more
accuracy than majority groups. This module measures that and counteracts it.

**Audit.** `MetricFrame` disaggregates any metric by a group label with fairlearn's
conventions (`overall`, `by_group`, `group_min()`, `group_max()`, `difference()`, `ratio()`)
without depending on fairlearn. `audit(...)` evaluates models (the all-ReLU reference and the
linearized models of a sweep) on one split and reports, per group: accuracy, mean
cross-entropy, mean decision margin (top-1 minus top-2 softmax probability) and the accuracy
drop against the reference; per model: the worst-group drop. `audit_markdown` and `plot_audit`
render it; `relu-budget audit RUN...` is the command (see docs/fairness.md).

**Mitigation.** `GroupLossPenalty` adds Σ_g γ_g·|L_g − L| to the training loss (L_g: the mean
cross-entropy of group g's examples in the batch, L: the batch mean) and raises the multipliers
by dual ascent after every epoch: γ_g ← max(0, γ_g + μ·(|L̄_g − L̄| − tolerance)), with L̄ the
epoch means over the training data. The penalty is computed from the logits with their graph,
so its gradient reaches the weights (the published code detaches it, which makes it a no-op
for the weights; the tests check that ours is not). It is a batch-aware loss hook for
`train.fit(extra_loss=...)` and `optimizers.training.train_phase(extra_loss=...)`, which call
`hook(model, logits, targets)` when the hook has `uses_batch = True`; its `on_epoch_end` does
the dual step. `GroupDropConstraint` instead bounds every group's loss increase against the
all-ReLU teacher, L_g(student) − L_g(teacher) ≤ τ, by its Lagrangian Σ_g λ_g·(L_g − ref_g − τ)
with dual ascent on λ: it re-weights the groups' losses and never raises one (the penalty can
level down). SNL, AutoReP and Circa use one of them in fine-tuning when their config has
`fairness_penalty=True` or `drop_constraint=True` (`relu-budget optimize --fairness-penalty |
--drop-constraint [--dual-lr --tolerance]`).
"""
from __future__ import annotations

# auditing.py and metrics.py measure, mitigation.py counteracts; the names below are the API.
from relu_budget.fairness.auditing import (
    AUDIT_FORMAT,
    AUDIT_METRICS,
    AUDIT_VERSION,
    AuditError,
    accuracy_drop,
    audit,
    audit_markdown,
    curves,
    curves_markdown,
    group_metrics,
    mean_interval,
    plot_drop_curve,
    plot_audit,
    predict_proba,
    resolve_groups,
    run_audit_command,
    series_of,
    validate_audit,
)
from relu_budget.fairness.metrics import (
    MetricFrame,
    accuracy_score,
    decision_margins,
    log_loss_score,
    margin_score,
)
from relu_budget.fairness.mitigation import (
    FairnessSettings,
    GroupDropConstraint,
    GroupLossPenalty,
    check_settings,
    finetune_hooks,
    reference_group_losses,
)

__all__ = ["AUDIT_FORMAT", "AUDIT_METRICS", "AUDIT_VERSION", "AuditError", "FairnessSettings", "GroupDropConstraint",
           "GroupLossPenalty", "MetricFrame", "accuracy_drop", "accuracy_score", "audit", "audit_markdown",
           "check_settings", "curves", "curves_markdown", "decision_margins", "finetune_hooks", "group_metrics",
           "log_loss_score", "margin_score", "mean_interval", "plot_audit", "plot_drop_curve", "predict_proba",
           "reference_group_losses", "resolve_groups", "run_audit_command", "series_of", "validate_audit"]
