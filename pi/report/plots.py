"""matplotlib (Agg) helpers of the report's figures, and the Pareto figure.
"""
from __future__ import annotations

import io

# Local imports: matplotlib is imported inside the plots (about a second): `pi --help` imports pi.report.


def fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def log_x(ax) -> None:
    """Log x axis with plain tick labels when the data span more than a factor 4, else linear."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    xs = [x for line in ax.get_lines() for x in line.get_xdata() if x and x > 0]
    if xs and max(xs) / min(xs) > 4:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))


PANELS = {"latency": ("measured_online_s", "predicted_online_s", "online latency (s), batch 1"),
          "bytes": ("measured_bytes", "predicted_bytes", "online + offline bytes per inference"),
          "relus": ("relus", "relus", "kept ReLU sites per image")}


def front_cost(table: list[dict], panel: str) -> tuple[str, str]:
    """(key, "measured" | "predicted" | "count"): the cost a panel's fronts are drawn in. Measured
    only when every run with a test accuracy was measured; else the cost model's prediction for
    all, since a front over the measured runs alone leaves the others out and one mixing the two
    compares in-process timings under load with the model's figures."""
    mkey, pkey, _label = PANELS[panel]
    if panel == "relus":
        return "relus", "count"
    scored = [t for t in table if t.get("test_accuracy") is not None]
    if scored and all(t.get(mkey) for t in scored):
        return mkey, "measured"
    return pkey, "predicted"


def combined_front(table: list[dict], key: str) -> list[dict]:
    """The runs of all methods together that no other run beats in (key, test accuracy), by cost."""
    from relu_budget.allocation import pareto_front
    rows = [t for t in table if t.get(key) and t.get("test_accuracy") is not None]
    xy = [(t[key], 100 * t["test_accuracy"]) for t in rows]
    return sorted((rows[j] for j in pareto_front(xy)), key=lambda t: (t[key], -t["test_accuracy"])) if xy else []


def pareto_figure(table: list[dict], model_rows: list[dict], title: str, teacher_acc: float | None) -> bytes:
    """Accuracy against online latency, bytes (measured and predicted points) and, last, kept ReLU
    sites; per method its front and over all methods one combined front, both in the cost
    `front_cost` picks, and the all-ReLU accuracy."""
    from relu_budget.allocation import pareto_front
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    methods = sorted({t["method"] for t in table})
    for ax, (panel, (mkey, pkey, label)) in zip(axes, PANELS.items()):
        front_key, source = front_cost(table, panel)
        for i, meth in enumerate(methods):
            pts = [t for t in table if t["method"] == meth and t["test_accuracy"] is not None]
            color = f"C{i % 10}"
            for kind, key, marker in (("measured", mkey, "o"), ("predicted", pkey, "x")):
                if panel == "relus" and kind == "predicted":
                    continue
                xy = [(t[key], 100 * t["test_accuracy"]) for t in pts if t.get(key)]
                if not xy:
                    continue
                xy.sort()
                front = pareto_front(xy) if key == front_key else []
                ax.plot([p[0] for p in xy], [p[1] for p in xy], marker, color=color, alpha=0.5 if front else 0.8,
                        label=f"{meth}" + ("" if panel == "relus" else f" ({kind})"))
                if front:
                    fx = [xy[j] for j in sorted(front)]
                    ax.plot([p[0] for p in fx], [p[1] for p in fx], "-", color=color)
        best = [(t[front_key], 100 * t["test_accuracy"]) for t in combined_front(table, front_key)]
        if len(best) > 1:
            ax.plot([p[0] for p in best], [p[1] for p in best], "-", color="black", lw=2, alpha=0.5, zorder=0,
                    label="combined front" + ("" if panel == "relus" else f" ({source})"))
        if teacher_acc is not None:
            ax.axhline(100 * teacher_acc, color="gray", ls="--", lw=1, label="all-ReLU")
        if panel != "relus":
            for r in model_rows:
                x = r.get("online_s") if panel == "latency" else (r.get("online_bytes") or 0) + (
                    r.get("offline_bytes") or 0)
                if x and r.get("accuracy") is not None:
                    ax.plot([x], [100 * r["accuracy"]], "D", color="black", ms=5)
                    ax.annotate(r["policy"], (x, 100 * r["accuracy"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        log_x(ax)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    axes[0].set_title("accuracy vs online latency")
    axes[1].set_title("accuracy vs bytes")
    axes[2].set_title("accuracy vs ReLU count")
    fig.tight_layout()
    return fig_png(fig)
