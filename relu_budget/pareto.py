"""Accuracy against cost over optimizer runs: the Pareto table of `relu-budget pareto` and its plot.

Cost is measured (a `pi bench model` result file with a row per run) or predicted by the cost
model, or the count of kept sites; one axis never mixes measured and predicted costs.
"""
from __future__ import annotations

import json
from pathlib import Path

from relu_budget.allocation import pareto_front
from relu_budget.runs import RunError, x_value

# Local imports: matplotlib (about a second to import) is loaded only to draw the plot.

X_LABELS = {"latency": "online latency (s), batch 1", "bytes": "online + offline bytes per inference",
            "relus": "kept ReLU sites"}


def pareto_table(runs: list[dict], x: str, metric: str, measured: dict[str, dict]) -> dict[str, list[dict]]:
    """Per method, one row per run sorted by cost, with `front` (no run of the same method beats
    it in both cost and `metric` accuracy) and `all_front` (no run of any method does). Cost:
    measured online latency or bytes when `measured` has a row for the run (`pi bench model`,
    batch 1), else the cost model's prediction (`source` says which); or kept sites (x relus)."""
    by_method: dict[str, list[dict]] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    table = {}
    for method, rs in sorted(by_method.items()):
        table[method] = []
        for r in rs:
            cost, source = pareto_x(r, x, measured)
            table[method].append({"dir": r["_dir"], "x": cost, "source": source, "relus": r["relus"],
                                  "val_accuracy": r["val"]["accuracy"], "test_accuracy": r["test"]["accuracy"]})
        table[method].sort(key=lambda row: row["x"])
        front = set(pareto_front([(row["x"], row[f"{metric}_accuracy"]) for row in table[method]]))
        for i, row in enumerate(table[method]):
            row["front"] = i in front
    every = [row for rows in table.values() for row in rows]
    combined = set(pareto_front([(row["x"], row[f"{metric}_accuracy"]) for row in every])) if every else set()
    for i, row in enumerate(every):
        row["all_front"] = i in combined
    return table


def measured_costs(path: str | None) -> dict[str, dict]:
    """Run directory (resolved) → measured costs at batch 1 from a `pi bench model` result file
    (its rows' `policy_dir`); {} when there is no such file."""
    if not path or not Path(path).is_file():
        return {}
    try:
        rows = json.loads(Path(path).read_text()).get("rows") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise RunError(f"--measured {path}: not a `pi bench model` result file ({exc})") from exc
    return {Path(r["policy_dir"]).resolve(): r for r in rows if isinstance(r, dict) and r.get("system") == "pi"
            and r.get("batch") == 1 and r.get("policy_dir")}


def pareto_x(run: dict, x: str, measured: dict[str, dict]) -> tuple[float, str]:
    """(cost, "measured" | "predicted" | "count") of one run on the x axis."""
    row = measured.get(Path(run["_dir"]).resolve())
    if row is not None and x == "latency":
        return float(row["online_s"]), "measured"
    if row is not None and x == "bytes":
        return float(row["online_bytes"] + (row.get("offline_bytes") or 0)), "measured"
    return x_value(run, x), "count" if x == "relus" else "predicted"


def all_relu_accuracy(runs: list[dict], split: str) -> float | None:
    """The all-ReLU network's accuracy (the runs' teacher), when the runs record it."""
    accs = {(r.get("teacher") or {}).get(f"{split}_accuracy") for r in runs} - {None}
    return max(accs) if accs else None


def plot_pareto(table: dict, path: str, x: str, metric: str, runs_with_candidates=None,
                all_relu: float | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in sorted(table.items()):
        xs = [r["x"] for r in rows]
        ys = [100 * r[f"{metric}_accuracy"] for r in rows]
        line = ax.plot(xs, ys, "o", alpha=0.35)[0]
        fx = [r["x"] for r in rows if r["front"]]
        fy = [100 * r[f"{metric}_accuracy"] for r in rows if r["front"]]
        ax.plot(fx, fy, "-o", color=line.get_color(), label=method)
    best = sorted((r["x"], 100 * r[f"{metric}_accuracy"]) for rows in table.values() for r in rows if r["all_front"])
    if best:
        ax.plot([p[0] for p in best], [p[1] for p in best], "-", color="black", lw=2, alpha=0.6,
                label="combined front", zorder=0)
    if all_relu is not None:
        ax.axhline(100 * all_relu, color="gray", ls="--", lw=1, label="all-ReLU")
    if runs_with_candidates:
        for r in runs_with_candidates:
            cands = [c for c in (r.get("frontier") or []) if c.get("trained") and c.get(f"{metric}_accuracy")]
            if cands and x == "relus":
                ax.plot([c["relus"] for c in cands], [100 * c[f"{metric}_accuracy"] for c in cands], "x",
                        color="gray", alpha=0.5)
    sources = {r["source"] for rows in table.values() for r in rows}
    label = X_LABELS[x] + ("" if x == "relus" else f" ({' / '.join(sorted(sources))})")
    ax.set_xlabel(label)
    if all(r["x"] > 0 for rows in table.values() for r in rows):
        ax.set_xscale("log")
    ax.set_ylabel(f"{metric} accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
