"""Per-group metrics with fairlearn's conventions (no fairlearn dependency): accuracy, log loss and
decision margins on (labels, predictions), and `MetricFrame`, which disaggregates any of them by a
group label."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np


class AuditError(ValueError):
    """Bad audit input (groups that do not fit the data, missing reference, ...)."""


# ---------------------------------------------------------------------------------------------
# Metrics on (labels, predictions); predictions are labels (1-D) or class probabilities (2-D)
# ---------------------------------------------------------------------------------------------

def _labels_of(y_pred: np.ndarray) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred


def accuracy_score(y_true, y_pred) -> float:
    """Fraction of correct predictions (y_pred: labels, or probabilities/logits per class)."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        raise AuditError("accuracy of an empty set of examples")
    return float(np.mean(_labels_of(y_pred) == y_true))


def log_loss_score(y_true, probs, eps: float = 1e-12) -> float:
    """Mean cross-entropy −log p(y) of class probabilities (rows summing to 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if probs.ndim != 2:
        raise AuditError(f"log loss needs class probabilities of shape (N, C), got {probs.shape}")
    return float(np.mean(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0))))


def decision_margins(probs) -> np.ndarray:
    """Per example: top-1 minus top-2 softmax probability (the distance to the decision
    boundary measured in probability, as in Das et al.)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise AuditError(f"margins need probabilities of shape (N, C ≥ 2), got {probs.shape}")
    top2 = np.partition(probs, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def margin_score(_y_true, probs) -> float:
    """Mean decision margin (labels are not used)."""
    return float(np.mean(decision_margins(probs)))


# ---------------------------------------------------------------------------------------------
# MetricFrame (fairlearn conventions, no fairlearn dependency)
# ---------------------------------------------------------------------------------------------

def as_scalar(x):
    return x.item() if isinstance(x, np.generic) else x


class MetricFrame:
    """Metrics computed overall and per group, with fairlearn.metrics.MetricFrame's conventions.

        mf = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=p, sensitive_features=g)
        mf.overall          # metric on all examples
        mf.by_group         # {group: metric on that group's examples}, groups sorted
        mf.group_min(), mf.group_max()
        mf.difference()     # max − min over groups ("between_groups", the default), or
        mf.difference(method="to_overall")   # max over groups of |group − overall|
        mf.ratio()          # min / max over groups, or with "to_overall":
                            # min over groups of min(group/overall, overall/group)

    `metrics` is a callable metric(y_true, y_pred, **params) or a dict name → callable; with a
    dict every result above is a dict keyed by metric name (fairlearn returns pandas objects;
    here they are plain dicts, e.g. by_group[name][group]). `sample_params` (name → {param:
    per-example array} for a dict of metrics, {param: array} for one metric) is sliced per group
    like fairlearn does. One sensitive feature (a 1-D array of group labels); groups with no
    example do not appear. A 0/0 ratio is nan; x/0 with x > 0 is inf, as numpy divides.
    """

    def __init__(self, *, metrics: Callable | Mapping[str, Callable], y_true, y_pred, sensitive_features,
                 sample_params: Mapping | None = None) -> None:
        self._single = callable(metrics)
        self._metrics = {"metric": metrics} if self._single else dict(metrics)
        if not self._metrics or not all(callable(f) for f in self._metrics.values()):
            raise AuditError("metrics must be a callable or a non-empty dict of callables")
        y_true = np.asarray(y_true)
        y_pred = np.asarray(y_pred)
        groups = np.asarray(sensitive_features)
        if groups.ndim != 1:
            raise AuditError(f"sensitive_features must be one label per example (1-D), got shape {groups.shape}")
        if not (len(y_true) == len(y_pred) == len(groups)):
            raise AuditError(f"y_true, y_pred and sensitive_features differ in length: {len(y_true)}, "
                             f"{len(y_pred)}, {len(groups)}")
        if len(groups) == 0:
            raise AuditError("MetricFrame of zero examples")
        params = {"metric": sample_params or {}} if self._single else dict(sample_params or {})
        unknown = sorted(set(params) - set(self._metrics))
        if unknown:
            raise AuditError(f"sample_params for unknown metrics {unknown}")
        for name, p in params.items():
            for k, v in p.items():
                if len(v) != len(groups):
                    raise AuditError(f"sample_params[{name!r}][{k!r}] has {len(v)} entries, expected {len(groups)}")
        self._groups = [as_scalar(g) for g in np.unique(groups)]
        self._counts = {g: int(np.sum(groups == g)) for g in self._groups}

        def compute(mask):
            out = {}
            for name, fn in self._metrics.items():
                kw = {k: np.asarray(v)[mask] for k, v in params.get(name, {}).items()}
                out[name] = float(fn(y_true[mask], y_pred[mask], **kw))
            return out

        self._overall = compute(np.ones(len(groups), dtype=bool))
        per = {g: compute(groups == g) for g in self._groups}
        self._by_group = {name: {g: per[g][name] for g in self._groups} for name in self._metrics}

    # -- fairlearn's surface ------------------------------------------------------------------
    def _out(self, d: dict):
        return d["metric"] if self._single else d

    @property
    def overall(self):
        return self._out(self._overall)

    @property
    def by_group(self):
        return self._out({n: dict(v) for n, v in self._by_group.items()})

    @property
    def group_counts(self) -> dict:
        return dict(self._counts)

    def group_min(self):
        return self._out({n: min(v.values()) for n, v in self._by_group.items()})

    def group_max(self):
        return self._out({n: max(v.values()) for n, v in self._by_group.items()})

    def argmin(self):
        """The group reaching group_min() (first in sorted order on ties)."""
        return self._out({n: min(v, key=v.get) for n, v in self._by_group.items()})

    def argmax(self):
        return self._out({n: max(v, key=v.get) for n, v in self._by_group.items()})

    def difference(self, method: str = "between_groups"):
        if method == "between_groups":
            return self._out({n: max(v.values()) - min(v.values()) for n, v in self._by_group.items()})
        if method == "to_overall":
            return self._out({n: max(abs(x - self._overall[n]) for x in v.values())
                              for n, v in self._by_group.items()})
        raise AuditError(f"method must be 'between_groups' or 'to_overall', got {method!r}")

    def ratio(self, method: str = "between_groups"):
        def div(a, b):
            with np.errstate(divide="ignore", invalid="ignore"):
                return float(np.float64(a) / np.float64(b))
        if method == "between_groups":
            return self._out({n: div(min(v.values()), max(v.values())) for n, v in self._by_group.items()})
        if method == "to_overall":
            out = {}
            for n, v in self._by_group.items():
                rs = [div(x, self._overall[n]) for x in v.values()]
                out[n] = float(min(r if r <= 1 or math.isnan(r) else 1.0 / r for r in rs))
            return self._out(out)
        raise AuditError(f"method must be 'between_groups' or 'to_overall', got {method!r}")

    def to_dict(self, group_key: Callable = str) -> dict:
        """Plain data (JSON-ready: group keys as strings) for one metric or per metric."""
        def one(n):
            return {"overall": self._overall[n], "by_group": {group_key(g): x for g, x in self._by_group[n].items()},
                    "group_min": min(self._by_group[n].values()), "group_max": max(self._by_group[n].values()),
                    "argmin": group_key(min(self._by_group[n], key=self._by_group[n].get)),
                    "argmax": group_key(max(self._by_group[n], key=self._by_group[n].get)),
                    "difference": self.difference()[n] if not self._single else self.difference(),
                    "difference_to_overall": (self.difference("to_overall") if self._single
                                              else self.difference("to_overall")[n]),
                    "ratio": self.ratio() if self._single else self.ratio()[n],
                    "ratio_to_overall": self.ratio("to_overall") if self._single else self.ratio("to_overall")[n]}
        return one("metric") if self._single else {n: one(n) for n in self._metrics}
