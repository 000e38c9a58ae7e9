"""The fairness audit: models evaluated per group along a budget sweep against their all-ReLU
reference, its JSON format, Markdown and plot, and `relu-budget audit`'s work."""
from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from relu_budget.fairness.metrics import (
    AuditError,
    MetricFrame,
    accuracy_score,
    as_scalar,
    log_loss_score,
    margin_score,
)

AUDIT_FORMAT = "relu-budget-audit"
AUDIT_VERSION = 1
AUDIT_METRICS = ("accuracy", "loss", "margin")


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
    keys = [str(as_scalar(g)) for g in np.unique(groups)]
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
    id, "label": str, "series": str, "relus": int | None, **info}]; instead of "model", "probs"
    may give the model's class probabilities on (x, y) already computed (N × C). Group labels
    default to the classes. Returns the audit document (plain data; see docs/fairness.md for
    its fields)."""
    y = np.asarray(y)
    g, default_names, source = resolve_groups(y, groups)
    names = dict(group_names or default_names)
    if not references:
        raise AuditError("an audit needs at least one all-ReLU reference model")
    ref_docs = {}
    for rid, ref in references.items():
        probs = _probs_of(ref, x, batch_size, seed)
        ref_docs[rid] = {"id": rid, **{k: v for k, v in ref.items() if k not in ("model", "probs")},
                         "metrics": group_metrics(y, probs, g)}
    runs = []
    for e in entries:
        if e.get("reference") not in ref_docs:
            raise AuditError(f"{e.get('label')}: unknown reference {e.get('reference')!r} "
                             f"(known: {', '.join(ref_docs)})")
        probs = _probs_of(e, x, batch_size, seed)
        m = group_metrics(y, probs, g)
        doc = {k: v for k, v in e.items() if k not in ("model", "probs")}
        doc.update({"metrics": m, "drop": accuracy_drop(m, ref_docs[e["reference"]]["metrics"])})
        runs.append(doc)
    runs.sort(key=lambda r: (r.get("series", ""), -(r.get("relus") or 0)))
    counts = {k: int(v) for k, v in zip(*np.unique(np.asarray([str(as_scalar(v)) for v in g]), return_counts=True))}
    return {"format": AUDIT_FORMAT, "version": AUDIT_VERSION,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(meta or {}), "n": len(y),
            "groups": {"source": source, "names": names, "counts": counts},
            "references": list(ref_docs.values()), "runs": runs, "curves": curves(runs)}


def _probs_of(item: dict, x: torch.Tensor, batch_size: int, seed: int) -> np.ndarray:
    if item.get("probs") is None:
        return predict_proba(item["model"], x, batch_size, seed)
    probs = np.asarray(item["probs"], dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(x):
        raise AuditError(f"{item.get('label', '?')}: probabilities of shape {probs.shape} for {len(x)} examples")
    return probs


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
              ("| model | series | seed | kept ReLUs | accuracy | worst-group acc (group) | acc max−min | acc min/max | "
              "worst-group drop (group) | mean drop | overall drop | min group margin |"),
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ref in doc["references"]:
        a = ref["metrics"]["accuracy"]
        lines.append(f"| {ref.get('label', ref['id'])} (reference) | all-ReLU | - | {ref.get('relus', '-')} | "
                     f"{_pct(a['overall'])} | {_pct(a['group_min'])} ({names.get(a['argmin'], a['argmin'])}) | "
                     f"{_pct(a['difference'])} | {a['ratio']:.3f} | - | - | - | "
                     f"{ref['metrics']['margin']['group_min']:.3f} |")
    for r in doc["runs"]:
        a, d = r["metrics"]["accuracy"], r["drop"]
        lines.append(f"| {r.get('label', '?')} | {r.get('series', '')} | {r.get('seed', '-')} | {r.get('relus', '-')} | "
                     f"{_pct(a['overall'])} | "
                     f"{_pct(a['group_min'])} ({names.get(a['argmin'], a['argmin'])}) | {_pct(a['difference'])} | "
                     f"{a['ratio']:.3f} | {_pct(d['worst'])} ({names.get(d['worst_group'], d['worst_group'])}) | "
                     f"{_pct(d['mean'])} | {_pct(d['overall'])} | {r['metrics']['margin']['group_min']:.3f} |")
    if doc["runs"]:
        lines += ["", curves_markdown(doc).rstrip("\n")]
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
    return _finish(fig, path)



def _finish(fig, path):
    """Lays the figure out; saved to `path` (and closed) when one is given, else returned open."""
    import matplotlib.pyplot as plt      # loaded already, with its backend, by the plotting function
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
    loss-gap penalty or '+drop-constraint (μ=…, τ=…[, K=…])' with the drop constraint (K: dual
    steps per epoch, shown when > 1; runs with other settings are other curves; seeds are not
    part of the series)."""
    cfg = metrics.get("config") or {}
    method = metrics.get("method", "?")
    if cfg.get("drop_constraint"):
        k = f", K={cfg['dual_steps']}" if cfg.get("dual_steps", 1) > 1 else ""
        return f"{method} +drop-constraint (μ={cfg.get('dual_lr', 0.1):g}, τ={cfg.get('tolerance', 0.0):g}{k})"
    if not cfg.get("fairness_penalty"):
        return method
    tol = f", tol={cfg['tolerance']:g}" if cfg.get("tolerance") else ""
    return f"{method} +fairness (μ={cfg.get('dual_lr', 0.1):g}{tol})"


# ---------------------------------------------------------------------------------------------
# Curves across seeds: mean and 95 % interval per series and budget
# ---------------------------------------------------------------------------------------------

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (normal beyond).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def mean_interval(values: Sequence[float]) -> dict:
    """Mean and 95 % t-interval of the mean over independent runs (seeds): {mean, half, lo, hi,
    n, values}; half is None for a single run."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise AuditError("no values to summarize")
    mean = float(v.mean())
    half = None
    if v.size > 1:
        t = _T975[v.size - 2] if v.size - 1 <= len(_T975) else 1.96
        half = float(t * v.std(ddof=1) / math.sqrt(v.size))
    return {"mean": mean, "half": half, "lo": None if half is None else mean - half,
            "hi": None if half is None else mean + half, "n": int(v.size), "values": [float(x) for x in v]}


CURVE_METRICS = {   # curve field → value of one audited run
    "worst_drop": lambda r: r["drop"]["worst"],
    "overall_drop": lambda r: r["drop"]["overall"],
    "accuracy": lambda r: r["metrics"]["accuracy"]["overall"],
    "gap": lambda r: r["metrics"]["accuracy"]["difference"],
    "worst_group_accuracy": lambda r: r["metrics"]["accuracy"]["group_min"],
    "min_group_margin": lambda r: r["metrics"]["margin"]["group_min"],
}


def curves(runs: Sequence[dict]) -> dict:
    """The audited runs grouped by series and budget (kept sites), across seeds: per point the
    seeds and, for every CURVE_METRICS field, `mean_interval` over the seeds. Ordered by budget."""
    points: dict[str, dict] = {}
    for r in runs:
        key = r.get("budget_sites") if r.get("budget_sites") is not None else r.get("relus")
        points.setdefault(r.get("series", "runs"), {}).setdefault(key, []).append(r)
    out = {}
    for series, by_budget in sorted(points.items()):
        rows = []
        for budget, rs in sorted(by_budget.items(), key=lambda kv: -(kv[0] or 0)):
            rows.append({"budget_sites": budget, "relus": rs[0].get("relus"), "seeds": [r.get("seed") for r in rs],
                         **{k: mean_interval([f(r) for r in rs]) for k, f in CURVE_METRICS.items()}})
        out[series] = rows
    return out


def _ci(m: dict, scale: float = 100.0, digits: int = 2) -> str:
    if m["half"] is None:
        return f"{scale * m['mean']:.{digits}f}"
    return f"{scale * m['mean']:.{digits}f} ± {scale * m['half']:.{digits}f}"


def curves_markdown(doc: dict) -> str:
    """The worst-group drop vs budget table across seeds (mean ± 95 % half-width)."""
    cv = doc.get("curves") or curves(doc["runs"])
    lines = ["### Worst-group drop vs budget across seeds (mean ± 95 % interval half-width, t over seeds)", "",
             ("| series | kept ReLUs | seeds | worst-group drop (pts) | overall drop (pts) | accuracy % | "
              "acc max−min (pts) | worst-group acc % | min group margin |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for series, rows in cv.items():
        for p in rows:
            lines.append(f"| {series} | {p['budget_sites']} | {len(p['seeds'])} | {_ci(p['worst_drop'])} | "
                         f"{_ci(p['overall_drop'])} | {_ci(p['accuracy'])} | {_ci(p['gap'])} | "
                         f"{_ci(p['worst_group_accuracy'])} | {_ci(p['min_group_margin'], 1.0, 3)} |")
    return "\n".join(lines) + "\n"


def plot_drop_curve(doc: dict, path=None, *, figsize=(6.5, 4.2)):
    """The worst-group accuracy drop (solid) and overall drop (dotted) vs kept ReLUs, one colour
    per series, mean over seeds with 95 % interval bars. Saves to `path`; returns the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cv = doc.get("curves") or curves(doc["runs"])
    fig, ax = plt.subplots(figsize=figsize)
    for i, (series, rows) in enumerate(cv.items()):
        rows = sorted(rows, key=lambda p: p["budget_sites"] or 0)
        xs = [(p["budget_sites"] or 0) * (1 + 0.03 * (i - (len(cv) - 1) / 2)) for p in rows]   # dodge the bars
        for field, style, label in (("worst_drop", "-o", f"{series}: worst group"),
                                    ("overall_drop", ":s", f"{series}: overall")):
            ys = [100 * p[field]["mean"] for p in rows]
            err = [100 * (p[field]["half"] or 0.0) for p in rows]
            ax.errorbar(xs, ys, yerr=err, fmt=style, color=f"C{i}", capsize=3, ms=4, label=label,
                        alpha=1.0 if field == "worst_drop" else 0.6)
    n = sorted({len(p["seeds"]) for rows in cv.values() for p in rows})
    ax.set_title(f"accuracy drop vs all-ReLU (mean, 95 % interval over {'/'.join(map(str, n))} seeds)", fontsize=9)
    ax.set_xlabel("kept ReLU sites (budget)")
    ax.set_ylabel("drop (points)")
    ax.axhline(0, color="gray", lw=0.8)
    if cv and all((p["budget_sites"] or 0) > 0 for rows in cv.values() for p in rows):
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6.5)
    return _finish(fig, path)


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
                        "seed": m.get("seed", cfg.get("seed")), "train_dataset": m.get("dataset"),
                        "fairness": {k: cfg.get(k) for k in ("fairness_penalty", "drop_constraint", "dual_lr",
                                                             "tolerance", "dual_steps")},
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
        plot_drop_curve(doc, out / "drop_curve.png")
        print(md)
        print(f"wrote {out}/audit.json, audit.md, audit.png, drop_curve.png")
    else:
        print(md)
    return doc
