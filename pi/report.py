"""`pi report`: one self-contained HTML page (plus Markdown and JSON) from the project's results.

    pi report --out benchmarks/results/report/report.html

Inputs (each optional; a missing one gives a section that says what to run):

- optimizer run directories (`relu-budget optimize` output: metrics.json, policy/, model.pt),
  by default every `metrics.json` of a relu-budget run under benchmarks/results/;
- fairness audits (`relu-budget audit --out DIR`: audit.json), by default every audit under
  benchmarks/results/;
- benchmark result files in benchmarks/results/ (`pi bench native|gemm|relu|model`: JSON files
  with a `rows` list), recognized by their `benchmark` field;
- measurements the report takes itself, in seconds, unless --no-measure: the embedded default
  model compiled and run once in process (`pi.compile(...).run`, per-layer cost meter), the
  runs that still have their weights likewise, Circa's fault rate on the native gates, and the
  plaintext-simulated accuracy of the default model with every ReLU a Circa site.

Sections (HTML ids): overview, pareto, fairness, circa, layers, network, machine, reproduce.
Plots are matplotlib (Agg) PNGs, embedded as base64 in the HTML and written next to the
Markdown. The JSON holds every number shown. Nothing in a section is invented: measured,
predicted (cost model) and simulated numbers are labelled as such.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

NAME = "report"
HELP = "an HTML/Markdown/JSON report of optimizer runs, fairness audits and benchmarks"
REPORT_FORMAT = "pi-report"
REPORT_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = (("overview", "Overview"), ("pareto", "Accuracy vs cost (Pareto)"),
            ("fairness", "Per-group accuracy vs budget (fairness audit)"),
            ("circa", "Circa: fault rate vs k and its accuracy effect"),
            ("layers", "Per-layer cost breakdown (default model)"), ("network", "LAN / WAN estimates"),
            ("machine", "Machine"), ("reproduce", "Commands that reproduce every number"))
BENCH_KINDS = {"native": "FSS gates of pi_native", "gemm": "ring GEMM", "relu": "pi bench relu",
               "model": "pi bench model"}
CIRCA_KS = (12, 14, 16, 18, 20, 22, 24)
INPUT_SHAPES = {"fashion-mnist": (1, 28, 28), "digits": (1, 8, 8), "synthetic": (1, 12, 12)}
GATE_OPS = {"relu", "circa", "poly", "trunc", "select", "compare", "argmax", "mul"}


class ReportError(ValueError):
    """Bad report input (unreadable file, wrong format); the message names the file."""


# ---------------------------------------------------------------------------------------------
# Sections: plain data plus figures
# ---------------------------------------------------------------------------------------------

@dataclass
class Table:
    title: str
    columns: list[tuple[str, str, str]]      # (key, header, format spec)
    rows: list[dict]

    def to_dict(self) -> dict:
        return {"title": self.title, "columns": [c[1] for c in self.columns],
                "keys": [c[0] for c in self.columns], "rows": self.rows}


@dataclass
class Section:
    id: str
    title: str
    status: str = "ok"                       # "ok", "partial" or "missing"
    notes: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)     # commands to run for what is missing
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str, bytes]] = field(default_factory=list)   # (name, caption, png)
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "status": self.status, "notes": self.notes, "todo": self.todo,
                "tables": [t.to_dict() for t in self.tables], "figures": [f[0] for f in self.figures],
                "data": self.data}


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _log_x(ax) -> None:
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


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _pct(v):
    return None if v is None else 100 * v


def _rel(p) -> str:
    p = Path(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not readable JSON ({exc})") from exc


def find_runs(paths: list[str] | None, results_dir: Path) -> list[dict]:
    """metrics.json of relu-budget runs under the given directories (default: results_dir)."""
    from relu_budget.runs import RUN_FORMAT
    roots = [Path(p) for p in paths] if paths else [results_dir]
    runs = []
    for root in roots:
        if not root.exists():
            if paths:
                raise ReportError(f"--runs {root}: no such directory")
            continue
        files = [root / "metrics.json"] if (root / "metrics.json").is_file() else sorted(root.rglob("metrics.json"))
        for f in files:
            m = _read_json(f)
            if isinstance(m, dict) and m.get("format") == RUN_FORMAT:
                m["_dir"] = str(f.parent)
                runs.append(m)
            elif paths and root / "metrics.json" == f:
                raise ReportError(f"{f} is not a relu-budget run")
    return runs


def find_audits(paths: list[str] | None, results_dir: Path) -> list[dict]:
    from relu_budget.fairness import AUDIT_FORMAT, AuditError, validate_audit
    files: list[Path] = []
    if paths:
        for p in map(Path, paths):
            files += [p / "audit.json"] if p.is_dir() else [p]
    elif results_dir.exists():
        files = sorted(results_dir.rglob("*.json"))
    audits = []
    for f in files:
        if not f.is_file():
            raise ReportError(f"--audits {f}: no such file")
        doc = _read_json(f)
        if isinstance(doc, dict) and doc.get("format") == AUDIT_FORMAT:
            try:
                validate_audit(doc, str(f))
            except AuditError as exc:
                raise ReportError(str(exc)) from exc
            doc["_path"] = str(f)
            audits.append(doc)
        elif paths:
            raise ReportError(f"{f} is not a relu-budget audit")
    return audits


def find_bench(results_dir: Path) -> dict[str, dict]:
    """The newest benchmark file of each kind (native, gemm, relu, model) in results_dir."""
    found: dict[str, dict] = {}
    if not results_dir.is_dir():
        return found
    for f in sorted(results_dir.glob("*.json")):
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
            continue
        name = str(doc.get("benchmark", ""))
        for kind, prefix in BENCH_KINDS.items():
            if name.startswith(prefix) and (kind not in found or doc.get("date", "") > found[kind].get("date", "")):
                doc["_path"] = str(f)
                found[kind] = doc
    return found


# ---------------------------------------------------------------------------------------------
# Measurements taken by the report (seconds each)
# ---------------------------------------------------------------------------------------------

def measure_secure(model, example, policy=None, repeats: int = 3) -> dict:
    """Compiles and runs a model in process (dealer, server and client threads): the median of
    `repeats` runs of online/offline seconds, bytes, rounds and the per-layer meter rows."""
    import statistics

    import pi
    sm = pi.compile(model, example, policy=policy)
    runs = []
    for _ in range(max(1, repeats)):
        sm.run(example)
        runs.append(sm.last_cost)
    best = runs[len(runs) // 2]
    return {"online_s": statistics.median(c.online_seconds for c in runs),
            "offline_s": statistics.median(c.offline_seconds for c in runs),
            "online_bytes": best.online_bytes, "offline_bytes": best.offline_bytes, "rounds": best.rounds,
            "material_bytes": best.material_bytes, "per_layer": best.per_layer, "repeats": len(runs),
            "layer_rows": sm.layer_rows(), "summary": sm.summary()}


def measure_circa_faults(ks=CIRCA_KS, sigma_log2: int = 24, n: int = 200_000, mode: str = "poszero") -> list[dict]:
    """Fault rate of the native Circa gates on x ~ N(0, σ²) ulps: the fraction of outputs that
    differ from ReLU(x) (the x = 0 'fault' is invisible and not counted)."""
    import numpy as np
    import pi_native
    rng = np.random.default_rng(12345)          # ML-style randomness for the test inputs only
    rows = []
    sigma = 2.0 ** sigma_log2
    for k in ks:
        x = np.round(rng.normal(0.0, sigma, n)).astype(np.int64)
        r_in = np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()
        r_out = np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()
        k0, k1 = pi_native.gen_circa(os.urandom(16), r_in, r_out, k=k, mode=mode)
        xhat = x.view(np.uint64) + r_in
        opened = pi_native.eval_circa_sign(0, k0, xhat) ^ pi_native.eval_circa_sign(1, k1, xhat)
        y = (pi_native.eval_circa_select(0, k0, xhat, opened) + pi_native.eval_circa_select(1, k1, xhat, opened)
             - r_out).view(np.int64)
        faults = int(np.sum(y != np.maximum(x, 0)))
        rows.append({"k": k, "sigma_log2": sigma_log2, "n": n, "mode": mode, "faults": faults,
                     "rate": faults / n, "law": circa_law(k, sigma), "gaussian": circa_gaussian_rate(k, sigma)})
    return rows


def circa_gaussian_rate(k: int, sigma_ulps: float) -> float:
    """The fault law averaged over x ~ N(0, σ²) without approximating the density (PosZero:
    ∫_0^t φ_σ(x)·(1 − x/t) dx with t = 2^k, = Φ(a) − 1/2 − (φ(0) − φ(a))/a, a = t/σ); it tends to
    the law 2^k/(σ√(8π)) for 2^k ≪ σ and is below it as 2^k nears σ."""
    a = 2.0 ** k / sigma_ulps
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return 0.5 * (1 + math.erf(a / math.sqrt(2))) - 0.5 - (pdf(0.0) - pdf(a)) / a


def circa_law(k: int, sigma_ulps: float) -> float:
    """PROTOCOLS.md / docs/fss.md: for Gaussian activations of std σ ulps the fault rate is
    about 2^k / (σ·√(8π)) (valid while 2^k ≪ σ)."""
    return 2.0 ** k / (sigma_ulps * math.sqrt(8 * math.pi))


def simulate_circa_accuracy(model, images, labels, ks=CIRCA_KS, seed: int = 0) -> list[dict]:
    """Plaintext accuracy of a model with every ReLU a Circa site (PosZero), faults drawn from
    the law at the engine's scale (relu_budget.circa_sim), one draw per k."""
    import copy

    import torch

    from relu_budget import circa_sim
    from relu_budget.models import CIRCA, relu_sites
    rows = []
    with torch.no_grad():
        plain = (model(images).argmax(1).numpy() == labels).mean()
        for k in ks:
            m = copy.deepcopy(model).eval()
            for _, site in relu_sites(m):
                site.set_kinds(CIRCA)
                site.circa = {"k": int(k), "mode": "poszero"}
            with circa_sim.simulated(m, seed=seed + k):
                acc = (m(images).argmax(1).numpy() == labels).mean()
            rows.append({"k": k, "accuracy": float(acc), "plain_accuracy": float(plain),
                         "drop": float(plain - acc), "images": len(labels)})
    return rows


# ---------------------------------------------------------------------------------------------
# Section builders
# ---------------------------------------------------------------------------------------------

def _series_name(run: dict) -> str:
    from relu_budget.fairness import series_of
    return series_of(run)


def bench_workload(arch: str | None, dataset: str | None) -> str | None:
    """The `pi bench model` workload that runs this network, if any."""
    if dataset != "fashion-mnist" or not arch:
        return None
    if arch == "resnet-small":
        return "default"
    if arch.startswith("resnet18") and "stem stride 2" in arch:
        return "resnet18"
    return None


def _pareto_figure(table: list[dict], model_rows: list[dict], title: str, teacher_acc: float | None) -> bytes:
    from relu_budget.allocation import pareto_front
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    xs_def = {"relus": ("relus", "relus", "kept ReLU sites per image"),
              "latency": ("measured_online_s", "predicted_online_s", "online latency (s), batch 1"),
              "bytes": ("measured_bytes", "predicted_bytes", "online + offline bytes per inference")}
    methods = sorted({t["method"] for t in table})
    for ax, (panel, (mkey, pkey, label)) in zip(axes, xs_def.items()):
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
                front = pareto_front(xy) if panel == "relus" or kind == "measured" else []
                ax.plot([p[0] for p in xy], [p[1] for p in xy], marker, color=color, alpha=0.5 if front else 0.8,
                        label=f"{meth}" + ("" if panel == "relus" else f" ({kind})"))
                if front:
                    fx = [xy[j] for j in sorted(front)]
                    ax.plot([p[0] for p in fx], [p[1] for p in fx], "-", color=color)
        if teacher_acc is not None:
            ax.axhline(100 * teacher_acc, color="gray", ls="--", lw=1, label="all-ReLU" if panel == "relus" else None)
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
        _log_x(ax)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    axes[0].set_title("accuracy vs ReLU count")
    axes[1].set_title("accuracy vs online latency")
    axes[2].set_title("accuracy vs bytes")
    fig.tight_layout()
    return _fig_png(fig)


def section_pareto(runs: list[dict], bench: dict, measured_runs: dict, failures: list[str] = ()) -> Section:
    s = Section("pareto", dict(SECTIONS)["pareto"])
    for f in failures:
        s.notes.append(f"Not measured (the secure engine refused the run's plan): {f}")
    model_rows = [r for r in (bench.get("model") or {}).get("rows", []) if r.get("system") == "pi"
                  and r.get("batch") == 1]
    if not runs and not model_rows:
        s.status = "missing"
        s.notes.append("No optimizer runs and no `pi bench model` results were found.")
        s.todo += [("relu-budget optimize --method snl --arch resnet-small --budget 0.1 --out "
                   "benchmarks/results/runs/snl-10   # one run; or: python benchmarks/optimizers_sweep.py"),
                   "pi bench model --json benchmarks/results/bench_model.json",
                   "pi report --runs benchmarks/results/runs --out benchmarks/results/report/report.html"]
        return s
    table = []
    for r in runs:
        cost = r.get("cost") or {}
        meas = measured_runs.get(r["_dir"]) or {}
        table.append({"run": _rel(r["_dir"]), "method": _series_name(r), "arch": r.get("arch"),
                      "dataset": r.get("dataset"), "relus": r.get("relus"), "total_sites": r.get("total_sites"),
                      "val_accuracy": (r.get("val") or {}).get("accuracy"),
                      "test_accuracy": (r.get("test") or {}).get("accuracy"),
                      "val_accuracy_pct": _pct((r.get("val") or {}).get("accuracy")),
                      "test_accuracy_pct": _pct((r.get("test") or {}).get("accuracy")),
                      "predicted_online_s": cost.get("online_seconds"),
                      "predicted_bytes": (cost.get("online_bytes", 0) + cost.get("offline_bytes", 0)) if cost and
                      "online_bytes" in cost else None,
                      "measured_online_s": meas.get("online_s"),
                      "measured_bytes": (meas["online_bytes"] + meas["offline_bytes"]) if meas else None,
                      "measured_online_bytes": meas.get("online_bytes")})
    for t in table:
        t["network"] = f"{t['arch']} / {t['dataset']}"
    table.sort(key=lambda t: (t["network"], t["method"], -(t["relus"] or 0)))
    s.data["runs"] = table
    s.data["bench_model"] = [{k: r.get(k) for k in ("workload", "policy", "gate_relus_per_image", "accuracy",
                                                    "plain_accuracy", "eval_images", "online_s", "online_bytes",
                                                    "offline_bytes", "rounds", "lan_online_s", "wan_online_s")}
                             for r in model_rows]
    if table:
        s.tables.append(Table("Optimizer runs (test accuracy on the balanced test split; predicted = cost model "
                              "fed by the measured gate costs; measured = SecureModel.run in process, batch 1)",
                              [("run", "run", "s"), ("network", "network / data", "s"), ("method", "method", "s"),
                               ("relus", "kept ReLUs", "d"),
                               ("test_accuracy_pct", "test acc %", ".2f"), ("val_accuracy_pct", "val acc %", ".2f"),
                               ("predicted_online_s", "pred. online s (LAN)", ".4f"),
                               ("measured_online_s", "meas. online s", ".4f"),
                               ("predicted_bytes", "pred. bytes", ".3e"), ("measured_bytes", "meas. bytes", ".3e")],
                              table))
    if model_rows:
        s.tables.append(Table(f"`pi bench model` (deployed: 3 processes, TLS on loopback; from "
                              f"{_rel(bench['model']['_path'])})",
                              [("workload", "workload", "s"), ("policy", "policy", "s"),
                               ("gate_relus_per_image", "gate ReLUs", "d"), ("accuracy", "secure acc", ".4f"),
                               ("eval_images", "images", "d"), ("online_s", "online s", ".4f"),
                               ("online_bytes", "online B", ".3e"), ("offline_bytes", "offline B", ".3e")],
                              s.data["bench_model"]))
    groups = sorted({(t["arch"] or "?", t["dataset"] or "?") for t in table})
    if not groups:                      # bench rows only
        groups = [(None, None)]
    for arch, dataset in groups:
        rows = [t for t in table if (t["arch"] or "?", t["dataset"] or "?") == (arch, dataset)]
        workload = bench_workload(arch, dataset)
        bench_rows = [r for r in model_rows if arch is None or r.get("workload") == workload]
        teacher = next(((r.get("teacher") or {}).get("test_accuracy") for r in runs
                        if (r.get("teacher") or {}).get("test_accuracy") is not None
                        and (r.get("arch") or "?", r.get("dataset") or "?") == (arch, dataset)), None)
        title = "pi bench model" if arch is None else f"{arch} on {dataset}"
        name = "pareto" if len(groups) == 1 else f"pareto-{len(s.figures)}"
        s.figures.append((name, (f"{title}: test accuracy vs kept ReLUs, online latency and bytes. Lines: Pareto "
                                 "fronts per method; o measured, x predicted by the cost model; dashed: the all-ReLU "
                                 "model; black diamonds: `pi bench model` rows of this network (secure accuracy on the "
                                 "benchmark's first test images, deployed latency)."),
                          _pareto_figure(rows, bench_rows, title, teacher)))
    if not measured_runs and runs:
        s.notes.append("No run had its weights (model.pt) here, so no latency was measured for the runs: the "
                       "latency and bytes panels show the cost model's predictions only.")
        s.status = "partial"
    if not model_rows:
        s.todo.append("pi bench model --policy DIR/policy ... --json benchmarks/results/bench_model.json   "
                      "# deployed latency (3 processes, TLS)")
    return s


def section_fairness(audits: list[dict]) -> Section:
    s = Section("fairness", dict(SECTIONS)["fairness"])
    if not audits:
        s.status = "missing"
        s.notes.append("No fairness audit (relu-budget audit --out DIR) was found.")
        s.todo += ["relu-budget optimize --method snl --dataset fashion-mnist-imbalanced --budget 1000 --out runs/snl-1000",
                   "relu-budget audit runs/snl-* --out benchmarks/results/fairness/audit"]
        return s
    from relu_budget.fairness import plot_audit
    for a in audits:
        names = a["groups"]["names"]
        rows = []
        for r in a["runs"]:
            d = r["drop"]
            acc = r["metrics"]["accuracy"]
            rows.append({"audit": _rel(a["_path"]), "run": r.get("label"), "series": r.get("series"),
                         "relus": r.get("relus"), "accuracy_pct": 100 * acc["overall"],
                         "worst_group_accuracy_pct": 100 * acc["group_min"], "worst_group": names.get(acc["argmin"]),
                         "worst_drop_pts": 100 * d["worst"], "worst_drop_group": names.get(d["worst_group"]),
                         "mean_drop_pts": 100 * d["mean"], "overall_drop_pts": 100 * d["overall"],
                         "accuracy_difference_pts": 100 * acc["difference"],
                         "min_group_margin": r["metrics"]["margin"]["group_min"]})
        s.data.setdefault("audits", []).append({"path": _rel(a["_path"]), "command": a.get("command"),
                                                "dataset": a.get("dataset"), "split": a.get("split"),
                                                "groups": a["groups"], "summary": rows,
                                                "references": [{"label": ref.get("label"),
                                                                "accuracy": ref["metrics"]["accuracy"]}
                                                               for ref in a["references"]]})
        ref = a["references"][0]["metrics"]["accuracy"]
        s.tables.append(Table(f"{_rel(a['_path'])}: {a.get('split', '?')} split of {a.get('dataset', '?')}, "
                              f"groups = {a['groups']['source']}; all-ReLU reference accuracy "
                              f"{100 * ref['overall']:.2f}%, worst group {100 * ref['group_min']:.2f}% "
                              f"({names.get(ref['argmin'])}). Drops in points vs the reference.",
                              [("series", "series", "s"), ("relus", "kept ReLUs", "d"),
                               ("accuracy_pct", "acc %", ".2f"), ("worst_group_accuracy_pct", "worst-group acc %", ".2f"),
                               ("worst_group", "group", "s"), ("worst_drop_pts", "worst drop (pts)", ".2f"),
                               ("worst_drop_group", "of group", "s"), ("mean_drop_pts", "mean drop", ".2f"),
                               ("overall_drop_pts", "overall drop", ".2f"),
                               ("accuracy_difference_pts", "acc max−min (pts)", ".2f"),
                               ("min_group_margin", "min group margin", ".3f")], rows))
        fig = plot_audit(a)
        s.figures.append((f"fairness-{len(s.figures)}", (f"{_rel(a['_path'])}: per-group accuracy, accuracy drop "
                          "(worst group and overall) and per-group decision margin vs kept ReLUs."), _fig_png(fig)))
    return s


def section_circa(bench: dict, faults: list[dict] | None, sim: list[dict] | None, runs: list[dict]) -> Section:
    s = Section("circa", dict(SECTIONS)["circa"])
    sigmas = (20, 22, 24, 26)
    law_rows = [{"k": k, **{f"sigma_2^{sl}": min(1.0, circa_law(k, 2.0 ** sl)) for sl in sigmas}}
                for k in range(8, 27, 2)]
    s.data["law"] = law_rows
    s.notes.append("Law (docs/fss.md, PROTOCOLS.md): for activations ~ N(0, σ²) in ulps, the fault rate is about "
                   "2^k / (σ·√(8π)). Activations enter the gate at 2f = 24 fractional bits, so an activation "
                   "of standard deviation 1.0 has σ = 2^24 ulps.")
    relu_rows = [r for r in (bench.get("relu") or {}).get("rows", []) if r.get("system") == "pi"
                 and str(r.get("policy", "")).startswith("circa")]
    measured_bench = []
    for r in relu_rows:
        try:
            k = int(str(r["policy"]).split("k")[-1])
        except ValueError:
            continue
        measured_bench.append({"k": k, "n": r.get("n"), "err_frac": r.get("err_frac"),
                               "law_sigma_2^24": circa_law(k, 2.0 ** 24)})
    s.data["bench_relu"] = measured_bench
    s.data["native_faults"] = faults or []
    s.data["simulated_accuracy"] = sim or []
    model_circa = [r for r in (bench.get("model") or {}).get("rows", []) if r.get("system") == "pi"
                   and str(r.get("policy", "")).startswith("circa") and r.get("batch") == 1]
    s.data["bench_model"] = [{k: r.get(k) for k in ("workload", "policy", "accuracy", "plain_accuracy",
                                                    "agreement", "eval_images")} for r in model_circa]
    circa_runs = [r for r in runs if r.get("method") == "circa"]
    s.data["circa_runs"] = [{"run": _rel(r["_dir"]), "relus": r.get("relus"),
                             "test_accuracy": (r.get("test") or {}).get("accuracy"),
                             "without_faults": (r.get("test") or {}).get("accuracy_without_faults")}
                            for r in circa_runs]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    ks = [r["k"] for r in law_rows]
    for sl in sigmas:
        axes[0].plot(ks, [r[f"sigma_2^{sl}"] for r in law_rows], "-", label=f"law, σ = 2^{sl} ulps")
    if faults:
        sl = faults[0]["sigma_log2"]
        kk = [k / 4 for k in range(4 * 8, 4 * 26 + 1)]
        axes[0].plot(kk, [circa_gaussian_rate(k, 2.0 ** sl) for k in kk], ":", color="black",
                     label=f"law averaged exactly over N(0, σ²), σ = 2^{sl}")
        axes[0].plot([r["k"] for r in faults], [max(r["rate"], 1e-7) for r in faults], "o", color="black",
                     label=f"measured: native gates, σ = 2^{faults[0]['sigma_log2']}, n = {faults[0]['n']}")
    shown = [r for r in measured_bench if r["err_frac"]]     # zeros cannot sit on a log axis (see the table)
    if shown:
        axes[0].plot([r["k"] for r in shown], [r["err_frac"] for r in shown], "s", color="C3", mfc="none",
                     label="pi bench relu err_frac (|err| > 2^-11, σ = 2^24)")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("k (low bits dropped by the sign test)")
    axes[0].set_ylabel("fault rate per ReLU")
    axes[0].set_title("Circa fault rate vs k")
    axes[0].grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    if sim:
        axes[1].plot([r["k"] for r in sim], [100 * r["accuracy"] for r in sim], "o-",
                     label=f"simulated (fault law), default model, {sim[0]['images']} test images")
        axes[1].axhline(100 * sim[0]["plain_accuracy"], color="gray", ls="--", label="exact ReLU (plaintext)")
    for r in model_circa:
        try:
            k = int(str(r["policy"]).split("k")[-1])
        except ValueError:
            continue
        if r.get("accuracy") is not None:
            axes[1].plot([k], [100 * r["accuracy"]], "D", color="black", label=f"measured secure ({r['workload']})")
    axes[1].set_xlabel("k")
    axes[1].set_ylabel("test accuracy (%)")
    axes[1].set_title("accuracy with every ReLU a Circa site (PosZero)")
    axes[1].grid(True, alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    s.figures.append(("circa", ("Left: fault rate per ReLU vs k, the analytic law for several σ and the "
                      "measured rates. Right: accuracy effect."), _fig_png(fig)))
    if faults:
        s.tables.append(Table("Measured on the native gates (pi_native.gen_circa / eval_circa_*), PosZero, "
                              "x ~ N(0, σ²) ulps; a fault is an output ≠ ReLU(x)",
                              [("k", "k", "d"), ("sigma_log2", "log2 σ", "d"), ("n", "elements", "d"),
                               ("faults", "faults", "d"), ("rate", "measured rate", ".3e"),
                               ("law", "law 2^k/(σ√(8π))", ".3e"), ("gaussian", "exact Gaussian mean", ".3e")],
                              faults))
    if measured_bench:
        s.tables.append(Table(f"`pi bench relu` Circa rows ({_rel(bench['relu']['_path'])}): fraction of outputs off by "
                              "more than 2^-11 on N(0, 1) inputs at 24 fractional bits (faults smaller than that are "
                              "not counted, so small k reads 0)",
                              [("k", "k", "d"), ("n", "elements", "d"), ("err_frac", "err_frac", ".3e"),
                               ("law_sigma_2^24", "law, σ = 2^24", ".3e")], measured_bench))
    if sim:
        s.tables.append(Table("Accuracy of the default model with all ReLUs Circa (plaintext simulation of the "
                              "fault law, relu_budget.circa_sim, one draw per k)",
                              [("k", "k", "d"), ("accuracy", "accuracy", ".4f"), ("plain_accuracy", "exact", ".4f"),
                               ("drop", "drop", ".4f"), ("images", "images", "d")], sim))
    if s.data["circa_runs"]:
        s.tables.append(Table("Circa-aware optimizer runs (faults simulated in evaluation)",
                              [("run", "run", "s"), ("relus", "kept", "d"), ("test_accuracy", "test acc", ".4f"),
                               ("without_faults", "without faults", ".4f")], s.data["circa_runs"]))
    if not faults and not measured_bench:
        s.status = "partial"
        s.notes.append("No measured fault rate: the native gates were not measured (--no-measure) and no "
                       "`pi bench relu` result with Circa rows was found; the curves are the law only.")
        s.todo.append("pi bench relu --json benchmarks/results/bench_relu.json   # or drop --no-measure")
    if not sim and not model_circa:
        s.status = "partial"
        s.notes.append("No accuracy effect: the simulation needs Fashion-MNIST (dataset-fashion-mnist) and the "
                       "embedded model; or run `pi bench model --policies circa --circa-k 12,16,20`.")
    return s


def section_layers(measured: dict | None, bench: dict) -> Section:
    s = Section("layers", dict(SECTIONS)["layers"])
    if measured is None:
        s.status = "missing"
        s.notes.append("The default model was not compiled and run (--no-measure, or the embedded model is "
                       "missing).")
        s.todo.append("pi report --out benchmarks/results/report/report.html   # without --no-measure")
        return s
    pred = {r["layer"]: r for r in measured["layer_rows"]}
    agg: dict[str, dict] = {}
    for r in measured["per_layer"]:
        layer = r["layer"]
        a = agg.setdefault(layer, {"layer": layer, "ops": set(), "online_bytes": 0, "offline_bytes": 0,
                                   "online_s": 0.0, "offline_s": 0.0, "rounds": 0})
        a["ops"].add(r["op"])
        a[f"{r['phase']}_bytes"] += r["bytes_sent"]
        a[f"{r['phase']}_s"] += r["seconds"]
        if r["phase"] == "online":
            a["rounds"] += r["rounds"]
    key_bytes = {}
    for r in (bench.get("native") or {}).get("rows", []):
        if r.get("gate") == "relu" and r.get("n") == 64:
            key_bytes["relu"] = r.get("key_bytes")
    rows = []
    for layer, a in agg.items():
        p = pred.get(layer, {})
        kind = "relu" if GATE_OPS & a["ops"] else "linear" if {"linear", "pool"} & a["ops"] else "io/setup"
        row = {"layer": layer, "kind": kind, "op": p.get("op", "-"), "relu_sites": p.get("relu", 0) + p.get("circa", 0),
               "macs": p.get("macs", 0), "predicted_online_bytes": p.get("online_bytes"),
               "online_bytes": a["online_bytes"], "offline_bytes": a["offline_bytes"],
               "online_ms": 1e3 * a["online_s"], "offline_ms": 1e3 * a["offline_s"], "rounds": a["rounds"]}
        if key_bytes.get("relu") and row["relu_sites"]:
            row["predicted_key_bytes"] = 2 * key_bytes["relu"] * row["relu_sites"]
        rows.append(row)
    order = {r["layer"]: i for i, r in enumerate(measured["layer_rows"])}
    rows.sort(key=lambda r: order.get(r["layer"], len(order)))
    totals = {k: sum(r.get(k) or 0 for r in rows) for k in ("online_bytes", "offline_bytes", "online_ms", "offline_ms")}
    by_kind = {}
    for r in rows:
        b = by_kind.setdefault(r["kind"], {"kind": r["kind"], "online_bytes": 0, "offline_bytes": 0,
                                           "online_ms": 0.0, "offline_ms": 0.0})
        for k in ("online_bytes", "offline_bytes", "online_ms", "offline_ms"):
            b[k] += r[k]
    s.data.update({"rows": rows, "by_kind": list(by_kind.values()), "totals": totals,
                   "run": {k: measured[k] for k in ("online_s", "offline_s", "online_bytes", "offline_bytes",
                                                    "rounds", "material_bytes", "repeats")}})
    s.notes.append(f"Measured: `pi.compile(default model).run(x)` in one process (dealer, server and client threads "
                   f"over an in-process channel that meters like the TLS one), batch 1, median of "
                   f"{measured['repeats']} runs: online {1e3 * measured['online_s']:.1f} ms, "
                   f"{measured['online_bytes'] / 1e3:.1f} KB, {measured['rounds']} rounds; offline "
                   f"{1e3 * measured['offline_s']:.0f} ms, {measured['offline_bytes'] / 1e6:.2f} MB, of which dealer "
                   f"material {sum(measured['material_bytes'].values()) / 1e6:.2f} MB (not attributed to layers by "
                   "the meter; 'pred. key B' estimates it per ReLU layer from native.json's key size, both parties).")
    s.notes.append("Per-layer bytes and seconds are the cost meter's rows (both parties' sent bytes added, seconds "
                   "the maximum over parties); 'pred. online B' is `SecureModel.layer_rows()`'s prediction.")
    s.tables.append(Table("Per layer (measured unless marked predicted)",
                          [("layer", "layer", "s"), ("op", "op", "s"), ("kind", "cost class", "s"),
                           ("relu_sites", "ReLUs", "d"), ("macs", "MACs", "d"),
                           ("online_bytes", "online B", "d"), ("predicted_online_bytes", "pred. online B", "d"),
                           ("offline_bytes", "offline B", "d"), ("predicted_key_bytes", "pred. key B", ".3e"),
                           ("online_ms", "online ms", ".2f"), ("offline_ms", "offline ms", ".2f"),
                           ("rounds", "rounds", "d")], rows))
    s.tables.append(Table("By cost class", [("kind", "class", "s"), ("online_bytes", "online B", "d"),
                                            ("offline_bytes", "offline B", "d"), ("online_ms", "online ms", ".2f"),
                                            ("offline_ms", "offline ms", ".2f")], list(by_kind.values())))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
    names = [r["layer"] for r in rows]
    idx = list(range(len(rows)))
    colors = ["C3" if r["kind"] == "relu" else "C0" if r["kind"] == "linear" else "C7" for r in rows]
    axes[0].bar(idx, [r["online_bytes"] / 1e3 for r in rows], color=colors, label="online (measured)")
    axes[0].bar(idx, [r.get("predicted_key_bytes", 0) / 1e3 for r in rows], bottom=[r["online_bytes"] / 1e3 for r in rows],
                color=colors, alpha=0.35, hatch="//", label="dealer keys (predicted)")
    axes[0].set_yscale("symlog", linthresh=1)
    axes[0].set_ylabel("KB per inference")
    axes[0].set_title("bytes per layer (red: ReLU layers, blue: linear)")
    axes[1].bar([i - 0.2 for i in idx], [r["online_ms"] for r in rows], 0.4, color=colors, label="online")
    axes[1].bar([i + 0.2 for i in idx], [r["offline_ms"] for r in rows], 0.4, color=colors, alpha=0.4,
                label="offline")
    axes[1].set_ylabel("ms")
    axes[1].set_title("seconds per layer (solid online, light offline)")
    for ax in axes:
        ax.set_xticks(idx)
        ax.set_xticklabels(names, rotation=70, fontsize=7, ha="right")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    s.figures.append(("layers", "Per-layer cost of the default model (measured in process, batch 1).", _fig_png(fig)))
    return s


def section_network(measured: dict | None, measured_runs: dict, bench: dict) -> Section:
    from pi.bench import profiles
    s = Section("network", dict(SECTIONS)["network"])
    s.notes.append("estimate = measured seconds (loopback / in process) + bytes·8 / bandwidth + rounds·RTT "
                   f"(pi/bench/profiles.py; {profiles.describe_all()}). All traffic is counted on one pipe; "
                   "these compare configurations, they do not predict a deployment.")
    rows = []
    if measured is not None:
        rows.append({"what": "default model, all exact (in process)", **_estimates(measured)})
    for d, m in sorted(measured_runs.items()):
        rows.append({"what": f"{_rel(d)} (in process)", **_estimates(m)})
    for r in (bench.get("model") or {}).get("rows", []):
        rows.append({"what": f"pi bench model: {r.get('system')} {r.get('workload')}/{r.get('policy')} "
                             f"batch {r.get('batch')} (deployed)",
                     "online_s": r.get("online_s"), "online_bytes": r.get("online_bytes"), "rounds": r.get("rounds"),
                     "lan_online_s": r.get("lan_online_s"), "wan_online_s": r.get("wan_online_s"),
                     "offline_s": r.get("offline_s"), "offline_bytes": r.get("offline_bytes"),
                     "lan_offline_s": r.get("lan_offline_s"), "wan_offline_s": r.get("wan_offline_s")})
    relu_rows = [r for r in (bench.get("relu") or {}).get("rows", []) if r.get("lan_online_us_per_relu") is not None]
    s.data["rows"] = rows
    s.data["bench_relu"] = [{k: r.get(k) for k in ("system", "policy", "n", "online_us_per_relu",
                                                   "lan_online_us_per_relu", "wan_online_us_per_relu")}
                            for r in relu_rows]
    if not rows and not relu_rows:
        s.status = "missing"
        s.notes.append("Nothing measured: no in-process run (--no-measure) and no `pi bench model/relu` results.")
        s.todo += ["pi bench model --json benchmarks/results/bench_model.json",
                   "pi bench relu --json benchmarks/results/bench_relu.json"]
        return s
    if rows:
        s.tables.append(Table("Per inference", [("what", "what", "s"), ("online_s", "online s", ".4f"),
                                                ("online_bytes", "online B", ".3e"), ("rounds", "rounds", "d"),
                                                ("lan_online_s", "LAN online s", ".4f"),
                                                ("wan_online_s", "WAN online s", ".3f"),
                                                ("offline_s", "offline s", ".3f"),
                                                ("offline_bytes", "offline B", ".3e"),
                                                ("lan_offline_s", "LAN offline s", ".3f"),
                                                ("wan_offline_s", "WAN offline s", ".2f")], rows))
    if relu_rows:
        s.tables.append(Table("Per ReLU (pi bench relu)", [("system", "system", "s"), ("policy", "kind", "s"),
                                                           ("n", "n", "d"), ("online_us_per_relu", "µs/ReLU", ".3f"),
                                                           ("lan_online_us_per_relu", "LAN µs/ReLU", ".3f"),
                                                           ("wan_online_us_per_relu", "WAN µs/ReLU", ".3f")],
                              s.data["bench_relu"]))
    if not bench.get("model"):
        s.status = "partial"
        s.todo.append("pi bench model --json benchmarks/results/bench_model.json   # deployed (3 processes, TLS)")
    return s


def _estimates(m: dict) -> dict:
    from pi.bench import profiles
    out = {"online_s": m["online_s"], "online_bytes": m["online_bytes"], "rounds": m["rounds"],
           "offline_s": m["offline_s"], "offline_bytes": m["offline_bytes"]}
    for p in profiles.PROFILES:
        key = p.name.lower()
        out[f"{key}_online_s"] = p.estimate(m["online_s"], m["online_bytes"], m["rounds"], "pi")
        out[f"{key}_offline_s"] = p.estimate(m["offline_s"], m["offline_bytes"], 1, "pi")
    return out


def this_machine() -> dict:
    try:
        from pi.bench.results import machine
        info = machine()
    except Exception as exc:  # noqa: BLE001 - the machine description must never stop a report
        info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "error": str(exc)}
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        info["load_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def section_machine(bench: dict, runs: list[dict], audits: list[dict]) -> Section:
    s = Section("machine", dict(SECTIONS)["machine"])
    here = this_machine()
    s.data["report"] = here
    rows = [{"source": "this report (its own measurements)", **{k: here.get(k) for k in
                                                                ("cpu", "cores", "threads", "aesni", "python",
                                                                 "numpy", "torch", "load_1min")}}]
    for kind, doc in sorted(bench.items()):
        m = doc.get("machine") or {}
        rows.append({"source": f"{_rel(doc['_path'])} ({doc.get('date', '?')})",
                     **{k: m.get(k) for k in ("cpu", "cores", "threads", "aesni", "python", "numpy")}})
    s.data["sources"] = rows
    s.tables.append(Table("Machines the numbers were measured on", [("source", "source", "s"), ("cpu", "CPU", "s"),
                                                                   ("cores", "cores", "d"), ("threads", "threads", "d"),
                                                                   ("aesni", "AES-NI", "s"),
                                                                   ("python", "Python", "s"), ("torch", "torch", "s"),
                                                                   ("load_1min", "load (1 min)", ".2f")], rows))
    s.notes.append("Optimizer runs and audits record no machine; their commands are listed under Reproduce. "
                   "The machine is shared with other work, so timings carry that noise (load above).")
    return s


def section_reproduce(report_cmd: str, runs, audits, bench) -> Section:
    s = Section("reproduce", dict(SECTIONS)["reproduce"])
    rows = [{"what": "this report", "command": report_cmd}]
    for kind, doc in sorted(bench.items()):
        rows.append({"what": f"{_rel(doc['_path'])}", "command": doc.get("command", "?")})
    for r in sorted(runs, key=lambda r: r["_dir"]):
        rows.append({"what": f"run {_rel(r['_dir'])}", "command": r.get("command", "?")})
    for a in audits:
        rows.append({"what": f"audit {_rel(a['_path'])}", "command": a.get("command", "?")})
        for r in a["runs"]:
            if r.get("optimize_command") and not any(x["command"] == r["optimize_command"] for x in rows):
                rows.append({"what": f"audited run {r.get('label')}", "command": r["optimize_command"]})
    s.data["commands"] = rows
    s.tables.append(Table("Commands (run from the repository root)", [("what", "what", "s"),
                                                                     ("command", "command", "s")], rows))
    s.notes.append("The measurements the report takes itself (in-process runs, native Circa faults, simulated "
                   "Circa accuracy) are re-taken by re-running the report command.")
    return s


def section_overview(inputs: dict, sections: list[Section], report_cmd: str, seconds: float) -> Section:
    s = Section("overview", dict(SECTIONS)["overview"])
    s.data["inputs"] = inputs
    s.notes.append(f"Generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} by "
                   f"`{report_cmd}` in {seconds:.1f} s.")
    rows = [{"section": sec.title, "id": sec.id, "status": sec.status,
             "what to run": "; ".join(sec.todo) if sec.todo else ""} for sec in sections]
    s.tables.append(Table("Sections", [("section", "section", "s"), ("status", "status", "s"),
                                       ("what to run", "what to run for what is missing", "s")], rows))
    s.tables.append(Table("Inputs", [("kind", "input", "s"), ("found", "found", "s")],
                          [{"kind": k, "found": ", ".join(v) if v else "none"} for k, v in inputs.items()]))
    return s


# ---------------------------------------------------------------------------------------------
# Assembly and rendering
# ---------------------------------------------------------------------------------------------

@dataclass
class ReportOptions:
    runs: list[str] | None = None
    audits: list[str] | None = None
    results_dir: str | None = None
    measure: bool = True
    circa_images: int = 1000
    circa_elements: int = 200_000
    command: str | None = None


def _load_run_model(run: dict):
    """(model with policy applied, policy dir) if the run still has its weights, else None."""
    d = Path(run["_dir"])
    if not (d / "model.pt").is_file() or not (d / "policy" / "policy.yaml").is_file():
        return None
    from relu_budget.policy import load_policy
    from relu_budget.train import load_checkpoint
    model, _ = load_checkpoint(d / "model.pt")
    load_policy(d / "policy").apply(model)
    return model, d / "policy"


def build_report(opts: ReportOptions, log=print) -> tuple[dict, list[Section]]:
    t0 = time.time()
    results_dir = Path(opts.results_dir) if opts.results_dir else DEFAULT_RESULTS
    runs = find_runs(opts.runs, results_dir)
    audits = find_audits(opts.audits, results_dir)
    bench = find_bench(results_dir)
    cmd = opts.command or "pi report"
    measured, measured_runs, faults, sim, failures = None, {}, None, None, []
    if opts.measure:
        import torch
        try:
            from pi.assets import load_default_model, load_samples
            model, _meta = load_default_model()
            samples = load_samples()
            log("measuring the default model in process ...")
            measured = measure_secure(model, samples.inputs[:1])
        except FileNotFoundError as exc:
            log(f"default model not measured: {exc}")
            samples = None
        for r in runs:
            try:
                loaded = _load_run_model(r)
            except (ValueError, FileNotFoundError) as exc:
                log(f"{r['_dir']}: not measured ({exc})")
                continue
            if loaded is None:
                continue
            m, pol = loaded
            shape = INPUT_SHAPES.get(str(r.get("dataset", "")).replace("-imbalanced", ""))
            if shape is None:
                log(f"{r['_dir']}: not measured (unknown input shape of dataset {r.get('dataset')!r})")
                continue
            example = samples.inputs[:1] if samples is not None and tuple(samples.inputs.shape[1:]) == shape else \
                torch.zeros(1, *shape)
            log(f"measuring {r['_dir']} in process ...")
            try:
                meas = measure_secure(m, example, policy=str(pol))
            except (ValueError, RuntimeError) as exc:   # e.g. a plan the engine refuses
                log(f"{r['_dir']}: not measured ({exc})")
                failures.append(f"{_rel(r['_dir'])}: {exc}")
                continue
            meas.pop("summary")
            meas.pop("layer_rows")
            meas.pop("per_layer")
            measured_runs[r["_dir"]] = meas
        log("measuring Circa faults on the native gates ...")
        faults = measure_circa_faults(n=opts.circa_elements)
        if opts.circa_images > 0 and measured is not None:
            try:
                from relu_budget.data import load_fashion_mnist_raw, normalize_fashion
                raw = load_fashion_mnist_raw()
                images = normalize_fashion(raw["test_images"][:opts.circa_images])
                labels = raw["test_labels"][:opts.circa_images].astype("int64")
                log(f"simulating Circa accuracy on {len(labels)} test images ...")
                sim = simulate_circa_accuracy(model, images, labels)
            except FileNotFoundError as exc:
                log(f"Circa accuracy not simulated: {exc}")
    sections = [section_pareto(runs, bench, measured_runs, failures), section_fairness(audits),
                section_circa(bench, faults, sim, runs), section_layers(measured, bench),
                section_network(measured, measured_runs, bench), section_machine(bench, runs, audits),
                section_reproduce(cmd, runs, audits, bench)]
    inputs = {"runs": [_rel(r["_dir"]) for r in runs], "audits": [_rel(a["_path"]) for a in audits],
              "benchmarks": [f"{k}: {_rel(v['_path'])}" for k, v in sorted(bench.items())],
              "measured here": ([f"default model ({measured['repeats']} runs)"] if measured else [])
              + [f"{len(measured_runs)} run(s) with weights"] * bool(measured_runs)
              + (["native Circa faults"] if faults else []) + (["simulated Circa accuracy"] if sim else [])}
    sections.insert(0, section_overview(inputs, sections, cmd, time.time() - t0))
    doc = {"format": REPORT_FORMAT, "version": REPORT_VERSION,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "command": cmd,
           "sections": {s.id: s.to_dict() for s in sections}}
    return doc, sections


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #1d2430;
       background: #fbfbfd; }
header { background: #1f3b5a; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
nav { background: #e8edf3; padding: 8px 32px; position: sticky; top: 0; }
nav a { margin-right: 16px; color: #1f3b5a; text-decoration: none; font-size: 14px; }
main { padding: 8px 32px 40px 32px; max-width: 1500px; }
section { background: white; border: 1px solid #dde3ea; border-radius: 6px; margin: 18px 0; padding: 6px 20px 14px; }
h2 { border-bottom: 2px solid #1f3b5a; padding-bottom: 4px; }
.status { font-size: 12px; padding: 2px 8px; border-radius: 10px; margin-left: 8px; vertical-align: middle; }
.status-ok { background: #d8f0dc; } .status-partial { background: #fff1c2; } .status-missing { background: #f8d4d4; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d6dce3; padding: 3px 8px; text-align: right; }
th { background: #eef2f6; } td.text, th.text { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
pre, code { background: #f1f3f6; font-size: 12.5px; }
pre { padding: 8px; overflow-x: auto; }
figure { margin: 8px 0 18px; } figure img { max-width: 100%; border: 1px solid #e3e7ec; }
figcaption { font-size: 13px; color: #4a5563; }
.todo { background: #fff8e0; border-left: 4px solid #e0b000; padding: 6px 12px; }
"""


def _cell(v, spec):
    text = _fmt(v, spec)
    cls = ' class="text"' if spec == "s" else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def render_html(doc: dict, sections: list[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>pi report</title>", f"<style>{CSS}</style></head><body>",
             ('<header><h1>Private inference under a ReLU budget: report</h1>'
             f'<div>{html.escape(doc["date"])} · <code style="background:none;color:#dfe7f0">'
             f'{html.escape(doc["command"])}</code></div></header>'), "<nav>"]
    parts += [f'<a href="#{s.id}">{html.escape(s.title.split(" (")[0])}</a>' for s in sections]
    parts.append("</nav><main>")
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}'
                     f'<span class="status status-{s.status}">{s.status}</span></h2>')
        for n in s.notes:
            parts.append(f"<p>{_inline_code(n)}</p>")
        if s.todo:
            lead = "To fill this section, run:" if s.status == "missing" else "To add what is missing, run:"
            parts.append(f'<div class="todo"><p>{lead}</p><pre>'
                         + html.escape("\n".join(s.todo)) + "</pre></div>")
        for name, caption, png in s.figures:
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f'<figure id="fig-{name}"><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{_inline_code(caption)}</figcaption></figure>")
        for t in s.tables:
            heads = "".join((f'<th class="text">{html.escape(c[1])}</th>' if c[2] == "s" else
                             f"<th>{html.escape(c[1])}</th>") for c in t.columns)
            parts.append(f"<table><caption>{_inline_code(t.title)}</caption><thead><tr>{heads}</tr></thead><tbody>")
            for r in t.rows:
                parts.append("<tr>" + "".join(_cell(r.get(c[0]), c[2]) for c in t.columns) + "</tr>")
            parts.append("</tbody></table>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _inline_code(text: str) -> str:
    """Escapes text and turns `code` spans into <code>."""
    out, inside = [], False
    for i, chunk in enumerate(str(text).split("`")):
        if i:
            inside = not inside
        out.append(f"<code>{html.escape(chunk)}</code>" if inside else html.escape(chunk))
    return "".join(out)


def render_markdown(doc: dict, sections: list[Section], figure_names: dict[str, str]) -> str:
    lines = ["# Private inference under a ReLU budget: report", "", f"{doc['date']} · `{doc['command']}`", ""]
    for s in sections:
        lines += [f'<a id="{s.id}"></a>', f"## {s.title} ({s.status})", ""]
        for n in s.notes:
            lines += [n, ""]
        if s.todo:
            lead = "To fill this section, run:" if s.status == "missing" else "To add what is missing, run:"
            lines += [lead, "", "```sh", *s.todo, "```", ""]
        for name, caption, _png in s.figures:
            lines += [f"![{name}]({figure_names[name]})", "", f"*{caption}*", ""]
        for t in s.tables:
            lines += [f"**{t.title}**", "", "| " + " | ".join(c[1] for c in t.columns) + " |",
                      "|" + "|".join("---" if c[2] == "s" else "---:" for c in t.columns) + "|"]
            for r in t.rows:
                lines.append("| " + " | ".join(_fmt(r.get(c[0]), c[2]).replace("|", "\\|") for c in t.columns) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def output_paths(out: str | os.PathLike) -> tuple[Path, Path, Path]:
    p = Path(out)
    if p.suffix.lower() in (".html", ".htm"):
        return p, p.with_suffix(".md"), p.with_suffix(".json")
    if p.suffix:
        raise ReportError(f"--out {out}: give an .html path (the .md and .json twins go next to it) or a directory")
    return p / "report.html", p / "report.md", p / "report.json"


def write_report(doc: dict, sections: list[Section], out) -> tuple[Path, Path, Path]:
    html_path, md_path, json_path = output_paths(out)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    figure_names = {}
    for s in sections:
        for name, _caption, png in s.figures:
            fn = f"{html_path.stem}-{name}.png"
            (html_path.parent / fn).write_bytes(png)
            figure_names[name] = fn
    html_path.write_text(render_html(doc, sections))
    md_path.write_text(render_markdown(doc, sections, figure_names))
    json_path.write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    return html_path, md_path, json_path


def _json_default(x):
    if isinstance(x, set):
        return sorted(x)
    try:
        import numpy as np
        if isinstance(x, np.generic):
            return x.item()
    except ImportError:
        pass
    return str(x)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def add_parser(sub) -> None:
    p = sub.add_parser("report", help=HELP, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="report .html path (.md, .json and PNGs go next to it), or a directory")
    p.add_argument("--runs", nargs="+", default=None,
                   help="relu-budget run directories (or parents of them); default: those under --results-dir")
    p.add_argument("--audits", nargs="+", default=None,
                   help="audit.json files or audit directories; default: those under --results-dir")
    p.add_argument("--results-dir", default=None, help=f"benchmark results (default: {_rel(DEFAULT_RESULTS)})")
    p.add_argument("--no-measure", action="store_true",
                   help="take no measurements (default model run, run models, Circa faults and accuracy)")
    p.add_argument("--circa-images", type=int, default=1000,
                   help="test images for the simulated Circa accuracy (0: skip)")
    p.add_argument("--circa-elements", type=int, default=200_000, help="elements per k for the native fault rate")
    p.add_argument("--threads", type=int, default=1, help="torch and pi_native threads for the measurements")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    torch.set_num_threads(args.threads)
    try:
        import pi_native
        pi_native.set_num_threads(args.threads)
    except (ImportError, AttributeError):
        pass
    cmd = "pi " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("report"):]) if "report" in sys.argv \
        else "pi report --out " + shlex.quote(str(args.out))
    opts = ReportOptions(runs=args.runs, audits=args.audits, results_dir=args.results_dir,
                         measure=not args.no_measure, circa_images=args.circa_images,
                         circa_elements=args.circa_elements, command=cmd)
    try:
        doc, sections = build_report(opts)
        paths = write_report(doc, sections, args.out)
    except ReportError as exc:
        print(f"pi report: error: {exc}", file=sys.stderr)
        return 2
    for s in sections:
        print(f"  {s.id:<10} {s.status}" + (f"  (to fill: {s.todo[0]})" if s.todo else ""))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
