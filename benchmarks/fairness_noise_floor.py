"""How small a worst-group drop the fairness experiment can show (benchmarks/fairness_experiment.py),
and what the issue's interval check then asks of the drop constraint, from the data.

    python benchmarks/fairness_noise_floor.py AUDIT.json [--budget SITES ...] > noise_floor.md

Per run whose test probabilities are still in its run directory (the audit's `dir`, next to its
teacher's), on the same test images as its teacher:
- the test-sampling standard deviation of each class's drop, from the paired disagreements
  (teacher right / run wrong and the reverse, q10 and q01 among the class's n images:
  var = (q10 + q01 − (q10 − q01)²) / n; the two models' errors are correlated, so this is
  below the independent-binomial √(σ_T² + σ_S²));
- the floor: the worst-class (and two-group) drop a run with zero true drop in every class
  would show from test sampling alone, mean and sd of max_c N(0, sd_c) (simulated, seeded).
Then, per budget, the interval arithmetic of the issue's check (Student's t over the seeds):
plain SNL's lower end L, the constraint's upper end, and how far the constraint's mean would
have to fall for its interval to lie below L at its own seed spread, or at the floor's.
"""
from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

import numpy as np

from relu_budget.fairness import mean_interval

MINORITY = [5, 6, 7, 8, 9]
DRAWS = 200_000


def class_drop_sd(teacher_hit: np.ndarray, run_hit: np.ndarray, y: np.ndarray) -> np.ndarray:
    sd = []
    for c in range(int(y.max()) + 1):
        t, r = teacher_hit[y == c], run_hit[y == c]
        q10, q01 = float((t & ~r).mean()), float((~t & r).mean())
        sd.append(math.sqrt((q10 + q01 - (q10 - q01) ** 2) / len(t)))
    return np.asarray(sd)


def floors(sd: np.ndarray, rng: np.random.Generator) -> dict:
    """Worst-class and two-group drop of a run whose true drop is 0 in every class: mean, sd."""
    z = rng.standard_normal((DRAWS, len(sd))) * sd
    maj = [c for c in range(len(sd)) if c not in MINORITY]
    two = np.maximum(z[:, maj].mean(1), z[:, MINORITY].mean(1))
    worst = z.max(1)
    return {"worst": (float(worst.mean()), float(worst.std())), "two": (float(two.mean()), float(two.std()))}


def two_group(run: dict, ref: dict) -> float:
    acc, racc = run["metrics"]["accuracy"]["by_group"], ref["metrics"]["accuracy"]["by_group"]
    d = {int(g): racc[g] - acc[g] for g in acc}
    return max(np.mean([d[c] for c in d if c not in MINORITY]), np.mean([d[c] for c in MINORITY]))


def report(doc: dict, budgets: list[int] | None, y: np.ndarray) -> str:
    refs = {r["id"]: r for r in doc["references"]}
    names = doc["groups"]["names"]
    rng = np.random.default_rng(0)
    lines = [(f"Test split: {len(y)} images, {len(y) // (int(y.max()) + 1)} per class. Drops in points "
             "against each seed's teacher; sd: test-sampling standard deviation (paired); floor: a run "
             f"with zero true drop in every class, test sampling only (mean ± sd of {DRAWS} draws); "
              "'-': the run's test probabilities are not on this machine (its run directory was not kept)."), ""]
    rows: dict[tuple, list[dict]] = {}
    for r in doc["runs"]:
        if "+fairness" in r["series"] or (budgets and r["budget_sites"] not in budgets):
            continue
        method = "drop constraint" if "+drop-constraint" in r["series"] else "plain SNL"
        ref = refs[r["reference"]]
        row = {"seed": r["seed"], "worst": 100 * r["drop"]["worst"], "class": names.get(r["drop"]["worst_group"], r["drop"]["worst_group"]),
               "two": 100 * two_group(r, ref), "sd": None}
        rp, tp = Path(r["dir"]) / "test_probs.npy", Path(r["reference"]).parent / "test_probs.npy"
        if rp.is_file() and tp.is_file():
            sd = class_drop_sd(np.load(tp).argmax(1) == y, np.load(rp).argmax(1) == y, y)
            row.update(sd=100 * sd, floor={k: (100 * a, 100 * b) for k, (a, b) in floors(sd, rng).items()})
        rows.setdefault((r["budget_sites"], method), []).append(row)
    for b in sorted({b for b, _ in rows}, reverse=True):
        lines += [f"## {b} kept sites", "",
                  ("| method | seed | worst-class drop (class) | class-drop sd min–max | worst-class floor | "
                  "two-group drop | two-group floor |"), "|---|---:|---:|---:|---:|---:|---:|"]
        for m in ("plain SNL", "drop constraint"):
            for row in sorted(rows.get((b, m), []), key=lambda r: r["seed"]):
                have = row["sd"] is not None
                lines.append(
                    f"| {m} | {row['seed']} | {row['worst']:.1f} ({row['class']}) | "
                    + (f"{row['sd'].min():.2f}–{row['sd'].max():.2f} | {row['floor']['worst'][0]:.2f} ± "
                       f"{row['floor']['worst'][1]:.2f} | {row['two']:.2f} | {row['floor']['two'][0]:.2f} ± "
                       f"{row['floor']['two'][1]:.2f} |" if have else f"- | - | {row['two']:.2f} | - |"))
        plain, drop = rows.get((b, "plain SNL")), rows.get((b, "drop constraint"))
        if not plain or not drop or len(plain) < 2:
            continue
        lines.append("")
        for key, what in (("worst", "worst class"), ("two", "two groups")):
            p = mean_interval([r[key] for r in plain])
            d = mean_interval([r[key] for r in drop])
            s_d = float(np.std(d["values"], ddof=1))
            tf = d["half"] / s_d            # t(0.975, n − 1) / √n
            need = p["lo"] - tf * s_d
            fl = [r["floor"][key] for r in drop if r["sd"] is not None]
            text = (f"- {what}: plain SNL {p['mean']:.2f} [{p['lo']:.2f}, {p['hi']:.2f}] (n = {p['n']}); "
                    f"the constraint {d['mean']:.2f} [{d['lo']:.2f}, {d['hi']:.2f}], seed sd {s_d:.2f}. "
                    f"Apart only if the constraint's mean + t·s/√n ({tf:.3f}·s) < {p['lo']:.2f}: at its "
                    f"own seed sd the mean must be < {need:.2f} ("
                    + (f"a cut ≥ {100 * (1 - need / p['mean']):.0f} %" if need > 0 else
                       "below 0: more than the whole drop removed")
                    + f"; measured {100 * (1 - d['mean'] / p['mean']):.0f} %)")
            if fl:
                f_mean = float(np.mean([f[0] for f in fl]))
                f_sd = float(np.mean([f[1] for f in fl]))
                text += (f". A constraint at the floor in every seed ({f_mean:.2f} ± {f_sd:.2f}) would reach "
                         f"≈ {f_mean + tf * f_sd:.2f} at its upper end "
                         f"({'below' if f_mean + tf * f_sd < p['lo'] else 'not below'} {p['lo']:.2f}), a cut of "
                         f"≈ {100 * (1 - f_mean / p['mean']):.0f} %")
            lines.append(text + ".")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    budgets = None
    if "--budget" in args:
        i = args.index("--budget")
        budgets = [int(a) for a in args[i + 1:]]
        args = args[:i]
    if len(args) != 1 or budgets == []:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    from relu_budget import cli
    doc = json.loads(Path(args[0]).read_text())
    y = cli.load_splits(doc["dataset"], None, 0).test[1].numpy()
    print(f"# How small a drop the test split shows: {Path(args[0]).parent.name}\n\n"
          f"`python benchmarks/fairness_noise_floor.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
          f"({datetime.date.today()}; from the audit and the runs' saved test probabilities, no training)\n")
    print(report(doc, budgets, y))
    return 0


if __name__ == "__main__":
    sys.exit(main())
