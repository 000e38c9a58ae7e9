"""Summary of a `relu-budget audit` of the fairness experiment (benchmarks/fairness_experiment.py):
per budget and method, mean and 95 % interval over seeds of the worst-class drop, the
majority (classes 0-4) / minority (5-9) drops and the overall accuracy, and the target check:
does the drop constraint cut the worst-group drop against the all-ReLU teacher by >= 30 %
relative to plain SNL, at <= 0.5 point of overall accuracy, with the 95 % intervals of the
worst-group drop not overlapping? Then the same check paired by seed (plain's drop minus the
constraint's, per seed).

    python benchmarks/fairness_summary.py [--note TEXT ...] [--seeds S ...] AUDIT.json [AUDIT.json ...] > summary.md

(--note: a line printed under each heading, e.g. how the seeds were run; --seeds: only these
seeds' teachers and runs, e.g. the first three of five.)

The two-group view is computed from the per-class test accuracies and margins: the test split
has 1 000 images per class, so a group's accuracy is the mean of its classes' accuracies.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from relu_budget.fairness import mean_interval

MINORITY = {"5", "6", "7", "8", "9"}
LABELS = {"snl": "plain SNL", "+fairness": "loss-gap penalty", "+drop-constraint": "drop constraint"}


def method_of(series: str) -> str:
    for key in ("+drop-constraint", "+fairness"):
        if key in series:
            return key
    return "snl"


def per_run(run: dict, ref: dict) -> dict:
    acc, racc = run["metrics"]["accuracy"]["by_group"], ref["metrics"]["accuracy"]["by_group"]
    maj = [g for g in acc if g not in MINORITY]
    mino = [g for g in acc if g in MINORITY]
    d_maj = np.mean([racc[g] for g in maj]) - np.mean([acc[g] for g in maj])
    d_min = np.mean([racc[g] for g in mino]) - np.mean([acc[g] for g in mino])
    return {"worst_class_drop": run["drop"]["worst"], "worst_class": run["drop"]["worst_group"],
            "two_group_worst_drop": max(d_maj, d_min), "majority_drop": d_maj, "minority_drop": d_min,
            "accuracy": run["metrics"]["accuracy"]["overall"], "overall_drop": run["drop"]["overall"],
            "gap": run["metrics"]["accuracy"]["difference"],
            "minority_margin_drop": np.mean([run["drop"]["margin_by_group"][g] for g in mino])}


def network_of(command: str) -> str:
    """'resnet18 (stem_stride=2)' from the driver's command line: --arch and its --model-set overrides."""
    words = command.split()
    arch = words[words.index("--arch") + 1] if "--arch" in words[:-1] else "?"
    sets = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--model-set"]
    return arch + (f" ({', '.join(sets)})" if sets else "")


def ci(m: dict, scale=100.0) -> str:
    return f"{scale * m['mean']:.2f}" + ("" if m["half"] is None else f" ± {scale * m['half']:.2f}")


def paired(plain: list[dict], other: list[dict], key: str) -> dict | None:
    """Plain SNL's value minus the method's, per seed that both ran: the two share the seed's
    training subset, teacher, mask search and test split, so the seed-to-seed spread that widens
    each method's own interval cancels in the difference. Returns the seeds, the 95 %
    t-interval of the differences and of the per-seed relative cut (difference / plain's value;
    None where plain's value is not positive in some seed), or None with fewer than two seeds."""
    by_seed = {r["seed"]: r for r in plain}
    pairs = [(by_seed[r["seed"]][key], r[key]) for r in other if r["seed"] in by_seed]
    if len(pairs) < 2:
        return None
    diff = mean_interval([p - m for p, m in pairs])
    cut = mean_interval([(p - m) / p for p, m in pairs]) if all(p > 0 for p, _ in pairs) else None
    return {"n": len(pairs), "diff": diff, "cut": cut}


def summarize(doc: dict, notes: tuple[str, ...] = (), seeds: tuple | None = None) -> str:
    """The Markdown summary of one audit; `seeds`: only those seeds' teachers and runs."""
    keep = (lambda s: True) if seeds is None else (lambda s: str(s) in {str(x) for x in seeds})
    refs = {r["id"]: r for r in doc["references"] if keep(r.get("seed"))}
    names = doc["groups"]["names"]
    table: dict[tuple, list[dict]] = {}
    for r in doc["runs"]:
        if r["reference"] not in refs:
            continue
        table.setdefault((r["budget_sites"], method_of(r["series"])), []).append(
            {**per_run(r, refs[r["reference"]]), "seed": r.get("seed")})
    arch = {network_of(r.get("optimize_command", "")) for r in doc["runs"]}
    seeds = sorted({ref.get("seed") for ref in refs.values()}, key=str)
    lines = [f"## {', '.join(sorted(arch))}: {len(refs)} teachers (one per seed)", "",
             f"Seeds: {', '.join(map(str, seeds))} (n = {len(seeds)}).", *(f"{n}" for n in notes), ""]
    t_acc = mean_interval([ref["metrics"]["accuracy"]["overall"] for ref in refs.values()])
    t_min = mean_interval([ref["metrics"]["accuracy"]["group_min"] for ref in refs.values()])
    lines.append(f"All-ReLU teachers: test accuracy {ci(t_acc)} %, worst class {ci(t_min)} %.")
    lines += ["", "Mean ± 95 % interval half-width over seeds (t, n − 1 df); drops in points vs each seed's teacher.",
              "", ("| kept sites | method | seeds | worst-class drop | worst class (per seed) | two-group worst drop | "
                   "majority drop | minority drop | overall accuracy % | acc max−min |"),
              "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    budgets = sorted({b for b, _ in table}, reverse=True)
    verdicts, paired_rows = [], []
    for b in budgets:
        for m in ("snl", "+fairness", "+drop-constraint"):
            rs = table.get((b, m))
            if not rs:
                continue
            s = {k: mean_interval([r[k] for r in rs]) for k in ("worst_class_drop", "two_group_worst_drop",
                                                                  "majority_drop", "minority_drop", "accuracy", "gap")}
            lines.append(f"| {b} | {LABELS[m]} | {len(rs)} | {ci(s['worst_class_drop'])} | "
                         f"{', '.join(names.get(r['worst_class'], r['worst_class']) for r in rs)} | "
                         f"{ci(s['two_group_worst_drop'])} | {ci(s['majority_drop'])} | {ci(s['minority_drop'])} | "
                         f"{ci(s['accuracy'])} | {ci(s['gap'])} |")
        plain, drop = table.get((b, "snl")), table.get((b, "+drop-constraint"))
        if plain and drop:
            for key, what in (("worst_class_drop", "worst class"), ("two_group_worst_drop", "two groups")):
                p = mean_interval([r[key] for r in plain])
                d = mean_interval([r[key] for r in drop])
                pa = mean_interval([r["accuracy"] for r in plain])
                da = mean_interval([r["accuracy"] for r in drop])
                cut = 1 - d["mean"] / p["mean"] if p["mean"] > 0 else float("nan")
                apart = (p["lo"] is not None and d["hi"] is not None and d["hi"] < p["lo"])
                acc_cost = 100 * (pa["mean"] - da["mean"])
                ok = cut >= 0.30 and acc_cost <= 0.5 and apart
                verdicts.append(f"| {b} | {what} | {100 * p['mean']:.2f} [{_lo_hi(p)}] | {100 * d['mean']:.2f} "
                                f"[{_lo_hi(d)}] | {100 * cut:.0f} % | {acc_cost:+.2f} | "
                                f"{'yes' if apart else 'no'} | {'**met**' if ok else 'not met'} |")
                pd, pa_ = paired(plain, drop, key), paired(plain, drop, "accuracy")
                if pd is None:
                    continue
                above = pd["diff"]["lo"] > 0
                ok = cut >= 0.30 and acc_cost <= 0.5 and above
                rel = "-" if pd["cut"] is None else f"{100 * pd['cut']['mean']:.0f} % [{_lo_hi(pd['cut'], '{:.0f} %')}]"
                paired_rows.append(
                    f"| {b} | {what} | {pd['n']} | {100 * pd['diff']['mean']:.2f} [{_lo_hi(pd['diff'])}] | {rel} | "
                    f"{100 * pa_['diff']['mean']:+.2f} [{_lo_hi(pa_['diff'], '{:+.2f}')}] | "
                    f"{'yes' if above else 'no'} | {'**met**' if ok else 'not met'} |")
    if verdicts:
        lines += ["", ("Target: drop constraint vs plain SNL, worst-group drop cut ≥ 30 %, overall accuracy cost ≤ 0.5 "
                       "point, 95 % intervals of the worst-group drop not overlapping."), "",
                  ("| kept sites | groups | plain: worst drop [95 %] | constraint: worst drop [95 %] | cut | "
                   "accuracy cost (pts) | intervals apart | target |"), "|---:|---|---:|---:|---:|---:|---|---|", *verdicts]
    if paired_rows:
        lines += ["", ("Paired by seed (the right test when the methods share each seed's data, teacher and mask): "
                       "per seed, plain SNL's worst-group drop minus the constraint's, mean [95 % t-interval, n − 1 df] "
                       "of these differences; the relative cut per seed (difference / plain's drop) likewise; the "
                       "accuracy cost per seed (plain's accuracy minus the constraint's) likewise. Target, paired: "
                       "cut ≥ 30 % and accuracy cost ≤ 0.5 point (the means, as above), the interval of the "
                       "differences above 0. The table above is the issue's unpaired check (each method's own "
                       "interval over the seeds)."), "",
                  ("| kept sites | groups | seeds paired | plain − constraint [95 %] | relative cut per seed [95 %] | "
                   "accuracy cost (pts) [95 %] | difference > 0 | target (paired) |"),
                  "|---:|---|---:|---:|---:|---:|---|---|", *paired_rows]
    return "\n".join(lines) + "\n"


def _lo_hi(m: dict, fmt: str = "{:.2f}") -> str:
    return "-" if m["lo"] is None else f"{fmt.format(100 * m['lo'])}, {fmt.format(100 * m['hi'])}"


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    notes, paths, seeds = [], [], None
    while args:
        a = args.pop(0)
        if a == "--note":
            if not args:
                print("--note needs a text", file=sys.stderr)
                return 2
            notes.append(args.pop(0))
        elif a == "--seeds":
            seeds = []
            while args and not args[0].startswith("--") and not args[0].endswith(".json"):
                seeds.append(args.pop(0))
            if not seeds:
                print("--seeds needs one or more seeds", file=sys.stderr)
                return 2
        else:
            paths.append(a)
    if not paths:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    for p in paths:
        with open(p) as f:
            print(summarize(json.load(f), tuple(notes), None if seeds is None else tuple(seeds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
