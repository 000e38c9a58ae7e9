"""The report's first section: the best run at each budget, the headline ratios against
CrypTen, what is missing, and where the inputs came from. Built last, from the other
sections' data, so that it says nothing they do not show in full."""
from __future__ import annotations

from pi.report.document import SECTIONS, Section, Table, human_ratio


def best_per_budget(runs: list[dict]) -> list[dict]:
    """For each network and ReLU budget, the run with the best test accuracy (and the
    runner-up): rows of the Pareto section's run table."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if r.get("test_accuracy") is None:
            continue
        budget = r.get("budget_sites") if r.get("budget_sites") is not None else r.get("relus")
        groups.setdefault((r.get("network") or "?", budget), []).append(r)
    rows = []
    for (network, budget), rs in groups.items():
        rs = sorted(rs, key=lambda r: -r["test_accuracy"])
        best = rs[0]
        measured = best.get("measured_online_s") is not None
        rows.append({"network": network, "budget": budget, "budget_arg": best.get("budget_arg"),
                     "budget_share": budget / best["total_sites"] if budget is not None and best.get("total_sites")
                     else None, "best": best["method"], "run": best["run"], "test_accuracy": best["test_accuracy"],
                     "online_s": best.get("measured_online_s") if measured else best.get("predicted_online_s"),
                     "bytes": best.get("measured_bytes") if measured else best.get("predicted_bytes"),
                     "cost_source": "measured" if measured else "predicted",
                     "runner_up": f"{rs[1]['method']} ({100 * rs[1]['test_accuracy']:.2f} %)" if len(rs) > 1 else "-",
                     "candidates": len(rs)})
    rows.sort(key=lambda r: (r["network"], -(r["budget"] or 0)))
    return rows


def headline_ratios(bench: dict) -> tuple[list[dict], list[str]]:
    """Rows of ours / CrypTen (pi bench model, batch 1) and the sentences of the headline."""
    lines, rows = [], []
    model = bench.get("model") or {}
    for c in model.get("comparisons") or []:
        if c.get("batch") == 1:
            rows.append({k: c.get(k) for k in ("workload", "policy", "online_bytes_ratio", "online_s_ratio",
                                               "rounds_ratio", "lan_ratio", "wan_ratio")}
                        | {"provider": c.get("provider", "dealer")})
    head = next((r for r in rows if r["workload"] == "default" and r["policy"] == "exact"
                 and r["provider"] == "dealer"), None)
    if head:
        lines.append(f"End to end (`pi bench model`, embedded model, every ReLU exact, batch 1), against CrypTen: "
                     f"online bytes {human_ratio(head['online_bytes_ratio'])}, online time "
                     f"{human_ratio(head['online_s_ratio'])}, rounds {human_ratio(head['rounds_ratio'])}; "
                     f"estimated on a LAN {human_ratio(head['lan_ratio'])}, on a WAN {human_ratio(head['wan_ratio'])}.")
    relu = [c for c in (bench.get("relu") or {}).get("comparisons") or [] if c.get("policy") == "exact"]
    if relu:
        t = [c["online_s_ratio"] for c in relu]
        b = [c["online_bytes_ratio"] for c in relu]
        def span(v):
            lo, hi = human_ratio(min(v)), human_ratio(max(v))
            return lo if lo == hi else f"{lo} to {hi}"
        lines.append(f"Per ReLU (`pi bench relu`, exact ReLU, {len(relu)} vector sizes): online time "
                     f"{span(t)} of CrypTen's, online bytes {span(b)}.")
    return rows, lines


def section_summary(sections: list[Section], origins: dict[str, str], fallback: list[str], bench: dict,
                    counts: dict[str, int] | None = None) -> Section:
    s = Section("summary", dict(SECTIONS)["summary"])
    by_id = {x.id: x for x in sections}
    counts = counts or {}
    what = {"runs": "run", "audits": "audit", "benchmarks": "benchmark file"}
    def counted(kind):
        n = counts.get(kind)
        if n is None:
            return kind
        return f"{n} {what[kind]}{'s' * (n != 1)}" + (" (the newest of each kind)" if kind == "benchmarks" else "")
    by_origin: dict[str, list[str]] = {}          # kinds from one place named once, with the place
    for kind, where in origins.items():
        by_origin.setdefault(where, []).append(counted(kind))
    s.notes.append("Inputs: " + "; ".join(f"{' and '.join(kinds)} from {where}" for where, kinds in by_origin.items())
                   + ".")
    if fallback:
        names = " or ".join(what[k] + "s" for k in fallback)
        s.notes.append(f"No {names} were given or found in the working directory outside the package's own "
                       "directories, so the package's committed ones are shown: pass `--runs DIR`, `--audits DIR` or "
                       "`--results-dir DIR` for yours, or `--committed` to ask for these on purpose.")
    best = best_per_budget((by_id.get("pareto") or Section("", "")).data.get("runs") or [])
    s.data["best_per_budget"] = best
    if best:
        s.tables.append(Table("Best run at each ReLU budget (test accuracy; cost of that run, measured in process "
                              "where its weights were there, else predicted by the cost model)",
                              [("network", "network / data", "s"), ("budget", "kept ReLUs", ",d"),
                               ("budget_share", "of all sites", "%"), ("best", "best method", "s"),
                               ("test_accuracy", "test acc", "%"), ("runner_up", "runner-up", "s"),
                               ("online_s", "online", "ms"), ("bytes", "bytes", "B"),
                               ("cost_source", "cost", "s"), ("run", "run", "s")], best))
    rows, lines = headline_ratios(bench)
    s.data["headline"] = {"sentences": lines, "vs_crypten": rows}
    s.notes += lines
    if rows:
        s.tables.append(Table("Ours / CrypTen, end to end, batch 1 (`pi bench model`; below 1 is better for us)",
                              [("provider", "provider", "s"), ("workload", "workload", "s"),
                               ("policy", "ReLU policy", "s"), ("online_bytes_ratio", "online bytes", "x"), ("online_s_ratio", "online time", "x"),
                               ("rounds_ratio", "rounds", "x"), ("lan_ratio", "LAN estimate", "x"),
                               ("wan_ratio", "WAN estimate", "x")], rows))
    missing = [{"section": x.title, "status": x.status,
                "why": x.notes[0] if x.status == "missing" and x.notes else
                next((n for n in x.notes if n.startswith(("No ", "Not "))), ""),
                "run": x.todo[0] if x.todo else ""}
               for x in sections if x.status != "ok" and x.id not in ("summary", "overview")]
    s.data["missing"] = missing
    if missing:
        s.status = "partial"
        s.tables.append(Table("What is missing, and the command that fills it",
                              [("section", "section", "s"), ("status", "status", "s"), ("why", "why", "s"),
                               ("run", "run", "s")], missing))
    else:
        s.notes.append("Nothing is missing: every section has its inputs.")
    if not best and not rows:
        s.status = "missing"
    return s
