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
`train.fit(extra_loss=...)` and `optimizers.common.train_phase(extra_loss=...)`, which call
`hook(model, logits, targets)` when the hook has `uses_batch = True`; its `on_epoch_end` does
the dual step. SNL and AutoReP use it in fine-tuning when their config has
`fairness_penalty=True` (`relu-budget optimize --fairness-penalty --dual-lr --tolerance`).
"""
from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

AUDIT_FORMAT = "relu-budget-audit"
AUDIT_VERSION = 1
AUDIT_METRICS = ("accuracy", "loss", "margin")


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

def _scalar(x):
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
        self._groups = [_scalar(g) for g in np.unique(groups)]
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


# ---------------------------------------------------------------------------------------------
# Audit of models
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 512, seed: int = 0) -> np.ndarray:
    """Softmax probabilities (float64, N×C) in eval mode; Circa sites fault as in the secure
    engine (plaintext simulation of the fault law, seeded)."""
    from relu_budget import circa_sim
    if len(x) == 0:
        raise AuditError("no examples to audit")
    was = model.training
    model.eval()
    try:
        def run():
            return torch.cat([model(x[i:i + batch_size]).double() for i in range(0, len(x), batch_size)])
        if circa_sim.has_circa(model):
            with circa_sim.simulated(model, seed=seed):
                logits = run()
        else:
            logits = run()
    finally:
        model.train(was)
    if not torch.isfinite(logits).all():
        raise AuditError("the model produced non-finite logits")
    return torch.softmax(logits, dim=1).numpy()


def group_metrics(y_true, probs, groups) -> dict:
    """Accuracy, loss and margin per group (MetricFrame.to_dict per metric) and the counts."""
    mf = MetricFrame(metrics={"accuracy": accuracy_score, "loss": log_loss_score, "margin": margin_score},
                     y_true=y_true, y_pred=probs, sensitive_features=groups)
    out = mf.to_dict()
    out["n"] = {str(g): c for g, c in mf.group_counts.items()}
    return out


def accuracy_drop(run: dict, reference: dict) -> dict:
    """Reference minus run accuracy per group (positive: the run lost accuracy there), the
    worst group's drop and which group, the mean over groups and the overall drop; margin
    drops likewise."""
    ra, rr = run["accuracy"]["by_group"], reference["accuracy"]["by_group"]
    if set(ra) != set(rr):
        raise AuditError(f"groups differ between the run {sorted(ra)} and the reference {sorted(rr)}")
    drop = {g: rr[g] - ra[g] for g in rr}
    worst = max(drop, key=drop.get)
    mdrop = {g: reference["margin"]["by_group"][g] - run["margin"]["by_group"][g] for g in rr}
    return {"by_group": drop, "worst": drop[worst], "worst_group": worst,
            "mean": float(np.mean(list(drop.values()))),
            "overall": reference["accuracy"]["overall"] - run["accuracy"]["overall"],
            "margin_by_group": mdrop, "margin_worst": max(mdrop.values())}


def resolve_groups(y: np.ndarray, groups: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                   group_names: Sequence[str] | None = None) -> tuple[np.ndarray, dict, str]:
    """(group label per example, {group key: display name}, source). Default: the classes."""
    y = np.asarray(y)
    if groups is None:
        names = {str(c): (class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c))
                 for c in np.unique(y).tolist()}
        return y.astype(np.int64), names, "classes"
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != len(y):
        raise AuditError(f"the group labels have shape {groups.shape}; expected one label per example of the "
                         f"audited split ({len(y)},). Save them with numpy.save in the split's order")
    if groups.dtype.kind not in "iub":
        if groups.dtype.kind in "U":
            pass
        elif groups.dtype.kind == "f" and np.all(np.isfinite(groups)) and np.all(groups == np.round(groups)):
            groups = groups.astype(np.int64)
        else:
            raise AuditError(f"group labels must be integers or strings, got dtype {groups.dtype}")
    keys = [str(_scalar(g)) for g in np.unique(groups)]
    if group_names is not None:
        if len(group_names) != len(keys):
            raise AuditError(f"{len(group_names)} group names for {len(keys)} groups ({', '.join(keys)})")
        names = dict(zip(keys, group_names))
    else:
        names = {k: k for k in keys}
    return groups, names, "file"


def audit(entries: Sequence[dict], references: Mapping[str, dict], x: torch.Tensor, y, groups=None, *,
          group_names: Mapping[str, str] | None = None, batch_size: int = 512, seed: int = 0,
          meta: dict | None = None) -> dict:
    """Audits models against their all-ReLU references on (x, y) with group labels.

    references: id → {"model": nn.Module, **info}; entries: [{"model": nn.Module, "reference":
    id, "label": str, "series": str, "relus": int | None, **info}]. Group labels default to the
    classes. Returns the audit document (plain data; see docs/fairness.md for its fields)."""
    y = np.asarray(y)
    g, default_names, source = resolve_groups(y, groups)
    names = dict(group_names or default_names)
    if not references:
        raise AuditError("an audit needs at least one all-ReLU reference model")
    ref_docs = {}
    for rid, ref in references.items():
        probs = predict_proba(ref["model"], x, batch_size, seed)
        ref_docs[rid] = {"id": rid, **{k: v for k, v in ref.items() if k != "model"},
                         "metrics": group_metrics(y, probs, g)}
    runs = []
    for e in entries:
        if e.get("reference") not in ref_docs:
            raise AuditError(f"{e.get('label')}: unknown reference {e.get('reference')!r} "
                             f"(known: {', '.join(ref_docs)})")
        probs = predict_proba(e["model"], x, batch_size, seed)
        m = group_metrics(y, probs, g)
        doc = {k: v for k, v in e.items() if k != "model"}
        doc.update({"metrics": m, "drop": accuracy_drop(m, ref_docs[e["reference"]]["metrics"])})
        runs.append(doc)
    runs.sort(key=lambda r: (r.get("series", ""), -(r.get("relus") or 0)))
    counts = {k: int(v) for k, v in zip(*np.unique(np.asarray([str(_scalar(v)) for v in g]), return_counts=True))}
    return {"format": AUDIT_FORMAT, "version": AUDIT_VERSION,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(meta or {}), "n": len(y),
            "groups": {"source": source, "names": names, "counts": counts},
            "references": list(ref_docs.values()), "runs": runs}


def validate_audit(doc: dict, where: str = "audit") -> dict:
    if not isinstance(doc, dict) or doc.get("format") != AUDIT_FORMAT:
        raise AuditError(f"{where} is not a relu-budget audit (format must be {AUDIT_FORMAT!r})")
    if doc.get("version") != AUDIT_VERSION:
        raise AuditError(f"{where}: audit version {doc.get('version')} is not supported (expected {AUDIT_VERSION})")
    for key in ("groups", "references", "runs"):
        if key not in doc:
            raise AuditError(f"{where}: missing {key!r}")
    return doc


def _group_order(doc: dict) -> list[str]:
    keys = list(doc["groups"]["names"])
    try:
        return sorted(keys, key=lambda k: float(k))
    except ValueError:
        return sorted(keys)


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def audit_markdown(doc: dict) -> str:
    """The audit as Markdown: a summary table per model, then per-group accuracy and margins."""
    validate_audit(doc)
    order = _group_order(doc)
    names = doc["groups"]["names"]
    lines = []
    if doc.get("command"):
        lines.append(f"Command: `{doc['command']}`  ")
    lines.append(f"Split: {doc.get('split', '?')} of {doc.get('dataset', '?')} ({doc['n']} examples); groups: "
                 f"{doc['groups']['source']} ({len(order)} groups: "
                 + ", ".join(f"{k} = {names[k]} (n={doc['groups']['counts'].get(k, 0)})" for k in order) + ")")
    lines += ["", "### Summary (accuracy in %, drop = all-ReLU reference − model, in points)", "",
              ("| model | series | kept ReLUs | accuracy | worst-group acc (group) | acc max−min | acc min/max | "
              "worst-group drop (group) | mean drop | overall drop | min group margin |"),
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ref in doc["references"]:
        a = ref["metrics"]["accuracy"]
        lines.append(f"| {ref.get('label', ref['id'])} (reference) | all-ReLU | {ref.get('relus', '-')} | "
                     f"{_pct(a['overall'])} | {_pct(a['group_min'])} ({names.get(a['argmin'], a['argmin'])}) | "
                     f"{_pct(a['difference'])} | {a['ratio']:.3f} | - | - | - | "
                     f"{ref['metrics']['margin']['group_min']:.3f} |")
    for r in doc["runs"]:
        a, d = r["metrics"]["accuracy"], r["drop"]
        lines.append(f"| {r.get('label', '?')} | {r.get('series', '')} | {r.get('relus', '-')} | {_pct(a['overall'])} | "
                     f"{_pct(a['group_min'])} ({names.get(a['argmin'], a['argmin'])}) | {_pct(a['difference'])} | "
                     f"{a['ratio']:.3f} | {_pct(d['worst'])} ({names.get(d['worst_group'], d['worst_group'])}) | "
                     f"{_pct(d['mean'])} | {_pct(d['overall'])} | {r['metrics']['margin']['group_min']:.3f} |")
    for metric, title, fmt in (("accuracy", "Per-group accuracy (%)", _pct),
                               ("margin", "Per-group mean decision margin (top-1 − top-2 probability)",
                                lambda v: f"{v:.3f}")):
        lines += ["", f"### {title}", "", "| model | kept ReLUs | " + " | ".join(names[k] for k in order) + " |",
                  "|---|---:|" + "---:|" * len(order)]
        for ref in doc["references"]:
            bg = ref["metrics"][metric]["by_group"]
            lines.append(f"| {ref.get('label', ref['id'])} (reference) | {ref.get('relus', '-')} | "
                         + " | ".join(fmt(bg[k]) for k in order) + " |")
        for r in doc["runs"]:
            bg = r["metrics"][metric]["by_group"]
            lines.append(f"| {r.get('label', '?')} | {r.get('relus', '-')} | " + " | ".join(fmt(bg[k]) for k in order) + " |")
    return "\n".join(lines) + "\n"


def plot_audit(doc: dict, path=None, *, figsize=(13, 4.2)):
    """Three panels: per-group accuracy vs kept ReLUs, worst-group / overall accuracy drop vs
    kept ReLUs, per-group margin vs kept ReLUs. Saves to `path` (if given); returns the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    validate_audit(doc)
    order = _group_order(doc)
    names = doc["groups"]["names"]
    series: dict[str, list[dict]] = {}
    for r in doc["runs"]:
        series.setdefault(r.get("series", "runs"), []).append(r)
    for rs in series.values():
        rs.sort(key=lambda r: r.get("relus") or 0)
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v"]
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    fig, axes = plt.subplots(1, 3, figsize=figsize)
    ref_relus = max([ref.get("relus") or 0 for ref in doc["references"]] + [0])
    for si, (sname, rs) in enumerate(sorted(series.items())):
        xs = [r.get("relus") or 0 for r in rs]
        for gi, k in enumerate(order):
            axes[0].plot(xs, [100 * r["metrics"]["accuracy"]["by_group"][k] for r in rs], styles[si % 4],
                         marker=markers[si % 5], color=cmap(gi % cmap.N), ms=4,
                         label=names[k] if si == 0 else None)
            axes[2].plot(xs, [r["metrics"]["margin"]["by_group"][k] for r in rs], styles[si % 4],
                         marker=markers[si % 5], color=cmap(gi % cmap.N), ms=4)
        axes[1].plot(xs, [100 * r["drop"]["worst"] for r in rs], styles[si % 4], marker=markers[si % 5],
                     color="C3", label=f"worst group, {sname}")
        axes[1].plot(xs, [100 * r["drop"]["overall"] for r in rs], styles[si % 4], marker=markers[si % 5],
                     color="C0", label=f"overall, {sname}")
    if ref_relus:
        ref = doc["references"][0]["metrics"]
        for gi, k in enumerate(order):
            axes[0].plot([ref_relus], [100 * ref["accuracy"]["by_group"][k]], "*", color=cmap(gi % cmap.N), ms=9)
            axes[2].plot([ref_relus], [ref["margin"]["by_group"][k]], "*", color=cmap(gi % cmap.N), ms=9)
    axes[0].set_title("per-group accuracy (★ all-ReLU)")
    axes[0].set_ylabel("accuracy (%)")
    axes[1].set_title("accuracy drop vs all-ReLU")
    axes[1].set_ylabel("drop (points)")
    axes[2].set_title("per-group mean margin (top-1 − top-2)")
    from matplotlib.ticker import FuncFormatter
    for ax in axes:
        ax.set_xlabel("kept ReLU sites")
        ax.grid(True, alpha=0.3)
        if all((r.get("relus") or 0) > 0 for r in doc["runs"]) and doc["runs"]:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7)
    if len(series) > 1:
        axes[2].text(0.02, 0.02, "  ".join(f"{styles[i % 4]} {s}" for i, s in enumerate(sorted(series))),
                     transform=axes[2].transAxes, fontsize=7)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------
# `relu-budget audit` (the CLI glue in relu_budget/cli.py calls this)
# ---------------------------------------------------------------------------------------------

def series_of(metrics: dict) -> str:
    """How runs are grouped into curves: the method, plus '+fairness (μ=…, tol=…)' with the
    penalty (runs with other penalty settings are other curves)."""
    cfg = metrics.get("config") or {}
    if not cfg.get("fairness_penalty"):
        return metrics.get("method", "?")
    tol = f", tol={cfg['tolerance']:g}" if cfg.get("tolerance") else ""
    return f"{metrics.get('method', '?')} +fairness (μ={cfg.get('dual_lr', 0.1):g}{tol})"


def run_audit_command(args, load_run, load_splits) -> dict:
    """Loads the runs (and their teachers), audits them and writes JSON/Markdown/plot."""
    import json

    from relu_budget.optimizers.common import site_totals
    from relu_budget.train import load_checkpoint
    runs = []
    for d in args.runs:
        p = Path(d)
        found = [p] if (p / "metrics.json").is_file() else sorted(q.parent for q in p.glob("*/metrics.json"))
        if not found:
            raise AuditError(f"{d}: no metrics.json there or in its subdirectories")
        runs += found
    loaded = [(r, *load_run(r)) for r in runs]
    dataset = args.dataset or loaded[0][3]["dataset"].replace("-imbalanced", "")
    splits = load_splits(dataset, args.data_dir or loaded[0][3].get("data_dir"), loaded[0][3].get("seed", 0))
    x, y = getattr(splits, args.split)
    groups = None
    if args.groups:
        try:
            groups = np.load(args.groups, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise AuditError(f"--groups {args.groups}: not a readable .npy array ({exc})") from exc
    gnames = [s.strip() for s in args.group_names.split(",")] if args.group_names else None
    _, names, _ = resolve_groups(y.numpy(), groups, splits.classes, gnames)

    references, entries = {}, []
    for rdir, model, _pol, m in loaded:
        if args.reference:
            tpath = Path(args.reference)
        else:
            t = Path((m.get("teacher") or {}).get("path") or rdir / "teacher.pt")
            tpath = next((c for c in (t, rdir / t.name, rdir / "teacher.pt") if c.is_file()), t)
        if not tpath.is_file():
            raise AuditError(f"{rdir}: its all-ReLU reference {tpath} is missing; pass --reference CHECKPOINT")
        rid = str(tpath.resolve())
        if rid not in references:
            ref_model, _ = load_checkpoint(tpath)
            tot = site_totals(ref_model, splits.input_shape)
            references[rid] = {"model": ref_model, "label": f"all-ReLU ({tpath})", "path": str(tpath),
                               "relus": tot["kept"]}
        cfg = m.get("config") or {}
        entries.append({"model": model, "reference": rid, "label": str(rdir), "dir": str(rdir),
                        "series": series_of(m), "method": m.get("method"), "relus": m.get("relus"),
                        "total_sites": m.get("total_sites"), "budget_sites": m.get("budget_sites"),
                        "train_dataset": m.get("dataset"),
                        "fairness": {k: cfg.get(k) for k in ("fairness_penalty", "dual_lr", "tolerance")},
                        "optimize_command": m.get("command")})
    meta = {"command": "relu-budget " + " ".join(args.argv), "dataset": dataset, "split": args.split}
    doc = audit(entries, references, x, y.numpy(), groups, group_names=names, batch_size=args.batch_size,
                seed=args.seed, meta=meta)
    md = audit_markdown(doc)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "audit.json").write_text(json.dumps(doc, indent=1) + "\n")
        (out / "audit.md").write_text("# Fairness audit\n\n" + md)
        plot_audit(doc, out / "audit.png")
        print(md)
        print(f"wrote {out}/audit.json, audit.md, audit.png")
    else:
        print(md)
    return doc


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


__all__ = [
    "AuditError",
    "FairnessSettings",
    "GroupLossPenalty",
    "MetricFrame",
    "accuracy_drop",
    "accuracy_score",
    "audit",
    "audit_markdown",
    "decision_margins",
    "finetune_hooks",
    "group_metrics",
    "log_loss_score",
    "margin_score",
    "plot_audit",
    "predict_proba",
    "validate_audit",
]
