"""Sections on accuracy against cost: the Pareto fronts of the runs, the fairness audits, and
Circa's fault rate with its accuracy effect.
"""
from __future__ import annotations

from pi.report.document import SECTIONS, Section, Table, pct, rel
from pi.report.measure import circa_gaussian_rate, circa_law
from pi.report.plots import PANELS, combined_front, fig_png, front_cost, pareto_figure, pyplot

# Local imports: relu_budget.fairness imports torch: it is imported where used, since `pi --help` imports
# pi.report.


def series_name(run: dict) -> str:
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
        table.append({"run": rel(r["_dir"]), "method": series_name(r), "arch": r.get("arch"),
                      "dataset": r.get("dataset"), "relus": r.get("relus"), "total_sites": r.get("total_sites"),
                      "budget_sites": r.get("budget_sites"), "budget_arg": r.get("budget_arg"),
                      "val_accuracy": (r.get("val") or {}).get("accuracy"),
                      "test_accuracy": (r.get("test") or {}).get("accuracy"),
                      "val_accuracy_pct": pct((r.get("val") or {}).get("accuracy")),
                      "test_accuracy_pct": pct((r.get("test") or {}).get("accuracy")),
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
                               ("relus", "kept ReLUs", ",d"),
                               ("test_accuracy", "test acc", "%"), ("val_accuracy", "val acc", "%"),
                               ("predicted_online_s", "pred. online time (LAN)", "ms"),
                               ("measured_online_s", "meas. online time", "ms"),
                               ("predicted_bytes", "pred. bytes", "B"), ("measured_bytes", "meas. bytes", "B")],
                              table))
    if model_rows:
        s.tables.append(Table(f"`pi bench model` (deployed: 3 processes, TLS on loopback; from "
                              f"{rel(bench['model']['_path'])})",
                              [("workload", "workload", "s"), ("policy", "policy", "s"),
                               ("gate_relus_per_image", "gate ReLUs", ",d"), ("accuracy", "secure acc", "%"),
                               ("eval_images", "images", "d"), ("online_s", "online time", "ms"),
                               ("online_bytes", "online bytes", "B"), ("offline_bytes", "offline bytes", "B")],
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
        if rows:
            note_fronts(s, rows, f"{arch} / {dataset}")
        s.figures.append((name, (f"{title}: test accuracy vs online latency, bytes and kept ReLUs. Lines: Pareto "
                                 "fronts per method; thick grey: the combined front of all methods, in the cost the "
                                 "legend names (measured only when every run was measured; the notes say why); "
                                 "o measured, x predicted by the cost model; dashed: the all-ReLU "
                                 "model; black diamonds: `pi bench model` rows of this network (secure accuracy on the "
                                 "benchmark's first test images, deployed latency)."),
                          pareto_figure(rows, bench_rows, title, teacher)))
    if s.data.get("fronts"):
        s.tables.append(Table("Combined front over all methods, per network, in online latency and in bytes (the "
                              "runs no other run of that network beats in that cost and test accuracy)",
                              [("network", "network / data", "s"), ("axis", "cost", "s"), ("source", "in", "s"),
                               ("run", "run", "s"), ("method", "method", "s"), ("relus", "kept ReLUs", ",d"),
                               ("cost_s", "online time", "ms"), ("cost_bytes", "bytes", "B"),
                               ("test_accuracy", "test acc", "%")],
                              [{"network": f["network"], "axis": f["axis"], "source": f["source"], **p}
                               for f in s.data["fronts"] if f["axis"] != "relus" for p in f["front"]]))
    if not measured_runs and runs:
        s.notes.append("No run had its weights (model.pt) here, so no latency was measured for the runs: the "
                       "latency and bytes panels show the cost model's predictions only.")
        s.status = "partial"
    if not model_rows:
        s.todo.append("pi bench model --policy DIR/policy ... --json benchmarks/results/bench_model.json   "
                      "# deployed latency (3 processes, TLS)")
    return s


def note_fronts(s: Section, rows: list[dict], network: str) -> None:
    """The combined fronts of one network's runs (section data, for the table) and a note saying
    which runs they cover, in which cost, and why."""
    scored = [t for t in rows if t.get("test_accuracy") is not None]
    measured = sum(t.get("measured_online_s") is not None for t in scored)
    covered = {}
    for panel in PANELS:
        key, source = front_cost(rows, panel)
        cover = [t for t in scored if t.get(key)]
        covered[panel] = (source, len(cover))
        front = [{"run": t["run"], "method": t["method"], "relus": t["relus"], "test_accuracy": t["test_accuracy"],
                  "cost": t[key], "cost_s": t[key] if panel == "latency" else None,
                  "cost_bytes": t[key] if panel == "bytes" else None} for t in combined_front(rows, key)]
        s.data.setdefault("fronts", []).append({"network": network, "axis": panel, "source": source, "key": key,
                                                "runs_covered": len(cover), "runs": len(scored), "front": front})
    source = covered["latency"][0]
    why = ("every run was measured here" if source == "measured" else
           f"only {measured} of them had their weights here to be measured in process: a front over those alone "
           "would leave the others out, and one mixing measured and predicted costs would compare unlike numbers"
           if measured else "no run had its weights here to be measured")
    over = ", ".join(f"{panel} over {n}" for panel, (_src, n) in covered.items())
    s.notes.append(f"{network}: {len(scored)} run{'s' * (len(scored) != 1)}; the combined fronts in latency and bytes are in "
                   f"{'measured' if source == 'measured' else 'predicted (cost model)'} costs ({why}); "
                   f"they cover: {over} (a run without that cost, or with none kept, is left out).")


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
            rows.append({"audit": rel(a["_path"]), "run": r.get("label"), "series": r.get("series"),
                         "relus": r.get("relus"), "accuracy_pct": 100 * acc["overall"],
                         "worst_group_accuracy_pct": 100 * acc["group_min"], "worst_group": names.get(acc["argmin"]),
                         "worst_drop_pts": 100 * d["worst"], "worst_drop_group": names.get(d["worst_group"]),
                         "mean_drop_pts": 100 * d["mean"], "overall_drop_pts": 100 * d["overall"],
                         "accuracy_difference_pts": 100 * acc["difference"],
                         "min_group_margin": r["metrics"]["margin"]["group_min"]})
        s.data.setdefault("audits", []).append({"path": rel(a["_path"]), "command": a.get("command"),
                                                "dataset": a.get("dataset"), "split": a.get("split"),
                                                "groups": a["groups"], "summary": rows,
                                                "references": [{"label": ref.get("label"),
                                                                "accuracy": ref["metrics"]["accuracy"]}
                                                               for ref in a["references"]]})
        ref = a["references"][0]["metrics"]["accuracy"]
        s.tables.append(Table(f"{rel(a['_path'])}: {a.get('split', '?')} split of {a.get('dataset', '?')}, "
                              f"groups = {a['groups']['source']}; all-ReLU reference accuracy "
                              f"{100 * ref['overall']:.2f}%, worst group {100 * ref['group_min']:.2f}% "
                              f"({names.get(ref['argmin'])}). Drops in points vs the reference.",
                              [("series", "series", "s"), ("relus", "kept ReLUs", ",d"),
                               ("accuracy_pct", "acc %", ".2f"), ("worst_group_accuracy_pct", "worst-group acc %", ".2f"),
                               ("worst_group", "group", "s"), ("worst_drop_pts", "worst drop (pts)", ".2f"),
                               ("worst_drop_group", "of group", "s"), ("mean_drop_pts", "mean drop", ".2f"),
                               ("overall_drop_pts", "overall drop", ".2f"),
                               ("accuracy_difference_pts", "acc max−min (pts)", ".2f"),
                               ("min_group_margin", "min group margin", ".3f")], rows))
        fig = plot_audit(a)
        s.figures.append((f"fairness-{len(s.figures)}", (f"{rel(a['_path'])}: per-group accuracy, accuracy drop "
                          "(worst group and overall) and per-group decision margin vs kept ReLUs."), fig_png(fig)))
        section_fairness_curves(s, a)
    return s


def section_fairness_curves(s: Section, a: dict) -> None:
    """The audit's worst-group drop vs budget across seeds (mean, 95 % interval), when some
    point has more than one seed."""
    from relu_budget.fairness import curves, plot_drop_curve
    cv = a.get("curves") or curves(a["runs"])
    if not any(len(p["seeds"]) > 1 for pts in cv.values() for p in pts):
        return
    rows = [{"series": series, "budget": p["budget_sites"], "seeds": len(p["seeds"]),
             **{f"{k}_pts": 100 * p[k]["mean"] for k in ("worst_drop", "overall_drop", "accuracy", "gap")},
             **{f"{k}_ci": 100 * (p[k]["half"] or 0.0) for k in ("worst_drop", "overall_drop", "accuracy")}}
            for series, pts in cv.items() for p in pts]
    s.data.setdefault("curves", []).append({"path": rel(a["_path"]), "rows": rows})
    s.tables.append(Table(f"{rel(a['_path'])}: worst-group drop vs budget across seeds (mean and 95 % interval "
                          "half-width, points).",
                          [("series", "series", "s"), ("budget", "kept ReLUs", ",d"), ("seeds", "seeds", "d"),
                           ("worst_drop_pts", "worst drop", ".2f"), ("worst_drop_ci", "±", ".2f"),
                           ("overall_drop_pts", "overall drop", ".2f"), ("overall_drop_ci", "±", ".2f"),
                           ("accuracy_pts", "acc %", ".2f"), ("accuracy_ci", "±", ".2f"),
                           ("gap_pts", "acc max−min", ".2f")], rows))
    s.figures.append((f"fairness-{len(s.figures)}", (f"{rel(a['_path'])}: worst-group and overall accuracy drop vs "
                                                      "budget, mean and 95 % interval over seeds."),
                      fig_png(plot_drop_curve(a))))


def section_circa(bench: dict, faults: list[dict] | None, sim: list[dict] | None, runs: list[dict]) -> Section:
    s = Section("circa", dict(SECTIONS)["circa"])
    sigmas = (20, 22, 24, 26)
    law_rows = [{"k": k, **{f"sigma_2^{sl}": min(1.0, circa_law(k, 2.0 ** sl)) for sl in sigmas}}
                for k in range(8, 27, 2)]
    s.data["law"] = law_rows
    s.notes.append("Law (docs/fss.md): for activations ~ N(0, σ²) in ulps, the fault rate is about "
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
    s.data["circa_runs"] = [{"run": rel(r["_dir"]), "relus": r.get("relus"),
                             "test_accuracy": (r.get("test") or {}).get("accuracy"),
                             "without_faults": (r.get("test") or {}).get("accuracy_without_faults")}
                            for r in circa_runs]
    plt = pyplot()
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
        if r.get("accuracy") is not None:     # one legend entry (and marker) per workload, not per point
            label = f"measured secure ({r['workload']})"
            workloads = list(dict.fromkeys(x["workload"] for x in model_circa))
            axes[1].plot([k], [100 * r["accuracy"]], "Dsov^"[workloads.index(r["workload"]) % 5], color="black",
                         label=None if label in axes[1].get_legend_handles_labels()[1] else label)
    axes[1].set_xlabel("k")
    axes[1].set_ylabel("test accuracy (%)")
    axes[1].set_title("accuracy with every ReLU a Circa site (PosZero)")
    axes[1].grid(True, alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    s.figures.append(("circa", ("Left: fault rate per ReLU vs k, the analytic law for several σ and the "
                      "measured rates. Right: accuracy effect."), fig_png(fig)))
    if faults:
        s.tables.append(Table("Measured on the native gates (pi_native.gen_circa / eval_circa_*), PosZero, "
                              "x ~ N(0, σ²) ulps; a fault is an output ≠ ReLU(x)",
                              [("k", "k", "d"), ("sigma_log2", "log2 σ", "d"), ("n", "elements", "d"),
                               ("faults", "faults", ",d"), ("rate", "measured rate", ".3e"),
                               ("law", "law 2^k/(σ√(8π))", ".3e"), ("gaussian", "exact Gaussian mean", ".3e")],
                              faults))
    if measured_bench:
        s.tables.append(Table(f"`pi bench relu` Circa rows ({rel(bench['relu']['_path'])}): fraction of outputs off by "
                              "more than 2^-11 on N(0, 1) inputs at 24 fractional bits (faults smaller than that are "
                              "not counted, so small k reads 0)",
                              [("k", "k", "d"), ("n", "elements", "d"), ("err_frac", "err_frac", ".3e"),
                               ("law_sigma_2^24", "law, σ = 2^24", ".3e")], measured_bench))
    if sim:
        s.tables.append(Table("Accuracy of the default model with all ReLUs Circa (plaintext simulation of the "
                              "fault law, relu_budget.circa_sim, one draw per k)",
                              [("k", "k", "d"), ("accuracy", "accuracy", "%"), ("plain_accuracy", "exact", "%"),
                               ("drop", "drop", "%"), ("images", "images", "d")], sim))
    if s.data["circa_runs"]:
        s.tables.append(Table("Circa-aware optimizer runs (faults simulated in evaluation)",
                              [("run", "run", "s"), ("relus", "kept", ",d"), ("test_accuracy", "test acc", "%"),
                               ("without_faults", "without faults", "%")], s.data["circa_runs"]))
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
