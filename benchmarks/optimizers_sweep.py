"""Sweep of the ReLU-budget optimizers: every method at 50/20/10/5/2/1 % of the ReLU sites.

    python benchmarks/optimizers_sweep.py                      # the committed experiment
    python benchmarks/optimizers_sweep.py --tiny --out /tmp/s  # seconds: synthetic data, tiny net

Same start and training budget for every method: one all-ReLU teacher (by default the
committed `benchmarks/resnet18_fmnist.pt`, the very network `pi bench model` runs as its
`resnet18` workload, so that the optimized policies can be measured end to end beside its
all-exact and all-Circa rows), then per method and budget `--epochs` of search / candidate
training plus `--finetune-epochs` of fine-tuning, all on the same fixed `--train-subset` of
the training set, distillation from the teacher, model selection on the validation split,
test accuracy reported once. Per-method notes (docs/optimizers.md has the details):
- deepreduce: criticality (one variant per stage, `--criticality-epochs` each) is computed
  once and shared with deepreshape; each trained candidate gets epochs + finetune-epochs;
  candidates are shared across budgets (the frontier does not depend on the budget).
- deepreshape: the reshaped network is trained from scratch for `--pretrain-epochs`
  (shared by the budgets that allocate the same widths), then SNL (epochs + finetune-epochs).
- circa: starts from the SNL result at the same budget, picks k per layer under a 0.5 %
  tolerance, then `--finetune-epochs` of fault-aware fine-tuning (so SNL's budget plus that).

Every run is a `relu-budget` run directory under OUT/runs/<method>-<percent> (so
`relu-budget pareto OUT/runs --plot ...` and `relu-budget eval` work on them). The sweep is
resumable: finished runs are skipped, unfinished phases continue from their checkpoints.
Results: OUT/results.json, OUT/results.md and OUT/pareto.png.

Cost on 2 shared CPU cores (measured: ≈ 0.16 s per batch of 128 for the stride-2-stem
ResNet-18 with distillation, one thread, i.e. ≈ 25 s per epoch of 20 000 images): the
defaults, `--train-subset 20000 --pretrain-epochs 10 --epochs 3 --finetune-epochs 3
--criticality-epochs 1`, are ≈ 280 subset-epochs (criticality 5, SNL 6×6, AutoReP 6×6,
DeepReShape ≈ 4 width allocations × 10 + 6×6, DeepReDuce ≈ 12 candidates × 6, Circa 6×3
plus its k search on 500 images) plus ≈ 45 evaluations: ≈ 2 h in one process, ≈ 1 h as two
processes split with `--methods` (finished runs are skipped; circa needs snl's runs).
`--teacher none` trains a teacher of `--arch` on the subset first (`--pretrain-epochs`).
Learning rates, the same for every method: `--lr 1e-4` (Adam, weights, main phase: a
trained network loses 3 points of validation accuracy in one epoch at Adam's usual 1e-3) and
`--finetune-lr 0.01` (SGD, cosine: 1e-3 does not recover a linearized network in 3 epochs).
Measured on SNL at 5 %: 88.93 % test with 1e-3 / 1e-3, 90.09 % with 1e-4 / 0.01.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_BUDGETS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
DEFAULT_METHODS = ("snl", "autorep", "deepreduce", "deepreshape", "circa")   # circa needs snl first


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--teacher", default=str(ROOT / "benchmarks" / "resnet18_fmnist.pt"),
                   help="all-ReLU checkpoint every method starts from and distills from ('none': train one)")
    p.add_argument("--arch", default="resnet18", help="architecture of the teacher trained with --teacher none")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--budgets", default=",".join(str(b) for b in DEFAULT_BUDGETS),
                   help="fractions of the network's ReLU sites, or with --objective of the all-ReLU network's cost")
    p.add_argument("--objective", default="relus", choices=("relus", "latency", "bytes"),
                   help="what a budget limits: kept sites, or the predicted online latency (LAN) or online + "
                        "offline bytes (each budget: that fraction of the all-ReLU network's); runs go to "
                        "OUT/runs/<method>-<objective>-<percent> for latency and bytes")
    p.add_argument("--train-subset", type=int, default=20000)
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--criticality-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4,
                   help="main phase (mask search / candidate training), Adam, weights")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="fine-tuning, SGD with momentum, cosine")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "optimizers"))
    p.add_argument("--tiny", action="store_true", help="synthetic data and a tiny net: a smoke test in seconds")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--reprice", action="store_true",
                   help="no training: re-price the runs of OUT/results.json with today's cost model (refresh_cost) "
                        "and rewrite OUT's results; the rest of the document (accuracies, settings) is kept")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.tiny:
        args.dataset, args.train_subset, args.teacher = "synthetic", None, "none"
        args.pretrain_epochs, args.epochs, args.finetune_epochs, args.criticality_epochs = 2, 2, 1, 1
        args.batch_size = 32
    return args


def method_settings(method: str, args, shared_state: Path, criticality: dict | None) -> dict:
    """Per-method settings beyond the shared training budget (documented in docs/optimizers.md)."""
    s: dict = {}
    if method in ("snl", "deepreshape", "circa"):
        # Masks must be able to close within `epochs`: α moves ≈ lr per Adam step (≈ 160 steps
        # per epoch here); λ follows the budget's pace ("track"): at 5 % the 3-epoch search ends
        # at 8 841 alive sites instead of 13 424 with the paper's ×1.1-on-stall rule (test
        # accuracy after fine-tuning: 89.92 % vs 90.09 %, within noise).
        s.update(alpha_lr=0.02 if not args.tiny else 0.05, lam=1e-4, lam_warmup_epochs=1, lam_schedule="track")
    if method == "autorep":
        s.update(alpha_lr=0.01 if not args.tiny else 0.05)
    if method == "deepreduce":
        s.update(criticality=criticality, max_candidates=2, checkpoint_dir=str(shared_state))
    if method == "deepreshape":
        s.update(criticality=criticality, pretrain_epochs=args.pretrain_epochs, pretrain_dir=str(shared_state))
    if method == "circa":
        s.update(base="given", k_choices=(12, 16, 18, 20, 22), accuracy_tolerance=0.005,
                 k_search_samples=500 if not args.tiny else 64, sim_repeats=1)
    return s


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from relu_budget import data, models, runs
    from relu_budget.cost_model import CostModelError
    from relu_budget.optimizers import config_class, deepreduce, get_method
    from relu_budget.optimizers.common import OptimizeConfig, cost_model_for, site_totals
    from relu_budget.optimizers.training import PhaseStore, train_phase
    from relu_budget.train import evaluate, load_checkpoint, save_checkpoint, seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reprice:
        return reprice(Path(args.out), args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    budgets = [float(b) for b in args.budgets.split(",")]
    if "circa" in methods and "snl" not in methods and not args.tiny:
        print("note: circa starts from the snl runs; they must exist under OUT/runs", file=sys.stderr)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    shared = out / "shared_state"
    progress = not args.no_progress
    t_start = time.time()

    seed_everything(args.seed)
    splits = data.load(args.dataset, data_dir=args.data_dir, seed=args.seed if args.tiny else 0)
    overrides = {"in_channels": splits.input_shape[0], "num_classes": splits.num_classes}
    if args.tiny:
        overrides.update(widths=(4, 8), blocks=(1, 1), strides=(1, 2))
    model = models.build(args.arch, **overrides)
    base = OptimizeConfig(epochs=args.epochs, finetune_epochs=args.finetune_epochs, batch_size=args.batch_size,
                          seed=args.seed, train_subset=args.train_subset, lr=args.lr, finetune_lr=args.finetune_lr,
                          objective=args.objective)

    # 1. The shared all-ReLU teacher.
    teacher_path = out / "teacher.pt" if args.teacher == "none" else Path(args.teacher)
    if teacher_path.is_file():
        model, meta = load_checkpoint(teacher_path)
        args.arch = meta.get("arch", args.arch)
    elif args.teacher != "none":
        raise SystemExit(f"--teacher {args.teacher}: no such checkpoint")
    else:
        t = train_phase(model, splits, base, name="teacher", epochs=args.pretrain_epochs, optimizer="sgd", lr=0.05,
                        store=PhaseStore(shared), progress=progress)
        save_checkpoint(teacher_path, model, {"best": t["best"], "history": t["history"], "role": "teacher"})
    teacher = model.eval()
    t_val = evaluate(teacher, splits.loader("val", 512))["accuracy"]
    t_test = evaluate(teacher, splits.loader("test", 512))["accuracy"]
    total = site_totals(teacher, splits.input_shape)["total"]
    print(f"teacher: val {100 * t_val:.2f}%, test {100 * t_test:.2f}%, {total} ReLU sites")
    # A cost budget is a fraction of the all-ReLU network's predicted cost in that unit.
    full_cost = None if args.objective == "relus" else \
        cost_model_for(base).estimate(teacher, splits.input_shape).value(args.objective)

    # 2. Stage criticality, once, shared by DeepReDuce and DeepReShape.
    criticality = None
    if {"deepreduce", "deepreshape"} & set(methods):
        crit_cfg = deepreduce.DeepReDuceConfig(**{**base.to_dict(), "criticality_epochs": args.criticality_epochs})
        criticality = deepreduce.criticality(teacher, splits, crit_cfg, teacher, PhaseStore(shared), progress)
        print(f"stage criticality (val accuracy with ReLUs in one stage only): {criticality}")

    # 3. Every method at every budget.
    teacher_info = {"path": _shown(teacher_path), "val_accuracy": t_val, "test_accuracy": t_test}
    rows, infeasible = [], []
    for method in methods:
        cls = config_class(method)
        for frac in budgets:
            run_dir = out / "runs" / run_name(method, args.objective, frac)
            budget = frac if full_cost is None else frac * full_cost
            if (run_dir / "metrics.json").is_file():
                m = json.loads((run_dir / "metrics.json").read_text())
                if (run_dir / "model.pt").is_file():
                    m = refresh_cost(run_dir, m, splits.input_shape)
            else:
                settings = {**base.to_dict(), "checkpoint_dir": str(run_dir / "state"),
                            **method_settings(method, args, shared, criticality)}
                config = cls(**{k: v for k, v in settings.items() if k in cls.field_names()})
                start_model = teacher
                if method == "circa":
                    snl_dir = out / "runs" / run_name("snl", args.objective, frac)
                    if not (snl_dir / "model.pt").is_file():
                        raise SystemExit(f"circa at {frac:g} needs the snl run {snl_dir} first")
                    start_model, _pol, _m = runs.load_run(snl_dir)
                t0 = time.time()
                print(f"== {method} at {100 * frac:g}% " + (f"({int(frac * total)} sites)" if full_cost is None
                                                             else f"of the all-ReLU {args.objective} ({budget:.4g})"))
                try:
                    result = get_method(method).optimize(start_model, splits, budget, config=config, teacher=teacher,
                                                         progress=progress)
                except CostModelError as exc:
                    # A cost budget below what the method's network costs with no kept sites (AutoReP's
                    # polynomial sites are not free): no run, said in the results, the sweep goes on.
                    print(f"   {method} {100 * frac:g}%: not run: {exc}")
                    infeasible.append({"method": method, "budget_fraction": frac, "budget": budget,
                                       "reason": str(exc)})
                    continue
                cmd = "python benchmarks/optimizers_sweep.py " + " ".join(args.argv)
                m = runs.run_metrics(result, splits, config, teacher, command=cmd, method=method, arch=args.arch,
                                    budget_arg=frac, teacher=teacher_info, seconds=time.time() - t0,
                                    data_dir=args.data_dir)
                runs.save_run(run_dir, result, m)
            if full_cost is not None:
                m = note_cost_gap(run_dir, m, method, args.objective, budget)
            rows.append({"method": method, "budget_fraction": frac, "objective": args.objective, "budget": budget,
                         "budget_sites": m["budget_sites"],
                         "relus": m["relus"], "val_accuracy": m["val"]["accuracy"],
                         "test_accuracy": m["test"]["accuracy"],
                         "test_accuracy_without_faults": m["test"].get("accuracy_without_faults"),
                         "online_seconds": (m.get("cost") or {}).get("online_seconds"),
                         "total_bytes": (m.get("cost") or {}).get("online_bytes", 0)
                         + (m.get("cost") or {}).get("offline_bytes", 0),
                         "cost_ratio": (m.get("cost_gap") or {}).get("ratio"),
                         "seconds": m["seconds"], "dir": str(run_dir.relative_to(out))})
            print(f"   {method} {100 * frac:g}%: {rows[-1]['relus']} sites, val {100 * rows[-1]['val_accuracy']:.2f}%, "
                  f"test {100 * rows[-1]['test_accuracy']:.2f}%")

    # 4. Results: JSON, Markdown, plot.
    doc = {
        "benchmark": "ReLU-budget optimizers (same network, data and training budget)",
        "command": "python benchmarks/optimizers_sweep.py " + " ".join(args.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "settings": {k: _shown(Path(v)) if k in ("teacher", "out") and v != "none" else v
                     for k, v in vars(args).items() if k != "argv"},
        "run_seconds": sum(r["seconds"] for r in rows),
        "dataset": splits.name, "arch": args.arch, "total_sites": total, "objective": args.objective,
        "all_relu_cost": full_cost,
        "teacher": teacher_info, "criticality": criticality, "rows": rows, "not_run": infeasible,
        "frontier": frontiers(rows),
        "wall_seconds": time.time() - t_start,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    write_markdown(out / "results.md", doc)
    plot(out / "pareto.png", doc)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}, {out / 'pareto.png'}")
    return doc


def run_name(method: str, objective: str, frac: float) -> str:
    return f"{method}-{100 * frac:g}" if objective == "relus" else f"{method}-{objective}-{100 * frac:g}"


def reprice(out: Path, args) -> dict:
    """The finished sweep in OUT, its predicted costs recomputed (no training, no evaluation)."""
    from relu_budget import data
    from relu_budget.train import load_checkpoint
    path = out / "results.json"
    if not path.is_file():
        raise SystemExit(f"--reprice: no {path}; run the sweep first")
    doc = json.loads(path.read_text())
    input_shape = data.load(doc["dataset"], data_dir=args.data_dir, seed=0).input_shape
    # Runs whose weights are not kept are priced on their architecture, rebuilt from the teacher,
    # with their policy (the cost depends on the architecture and the sites' kinds, not on the weights).
    teacher = Path(args.teacher)
    base = load_checkpoint(teacher)[0] if teacher.is_file() else None
    stale = []
    for r in doc["rows"]:
        run_dir = out / r["dir"]
        m = refresh_cost(run_dir, json.loads((run_dir / "metrics.json").read_text()), input_shape, base)
        if m is None:
            stale.append(r["dir"])
            continue
        cost = m.get("cost") or {}
        r["online_seconds"] = cost.get("online_seconds")
        r["total_bytes"] = cost.get("online_bytes", 0) + cost.get("offline_bytes", 0)
        if doc.get("objective", "relus") != "relus":
            m = note_cost_gap(run_dir, m, r["method"], doc["objective"], r["budget"])
            r["cost_ratio"] = m["cost_gap"]["ratio"] if m.get("cost_gap") else None
    doc["frontier"] = frontiers(doc["rows"])       # the costs, hence the fronts, may have moved
    doc["repriced"] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "command": "python benchmarks/optimizers_sweep.py " + " ".join(args.argv), "not_repriced": stale}
    if stale:
        print(f"not re-priced (no weights, and their architecture rebuilt from the teacher with their policy does not give their ReLU and MAC counts): {stale}")
    path.write_text(json.dumps(doc, indent=1))
    write_markdown(out / "results.md", doc)
    plot(out / "pareto.png", doc)
    print(f"re-priced {len(doc['rows']) - len(stale)} of {len(doc['rows'])} runs: {path}, {out / 'results.md'}, {out / 'pareto.png'}")
    return doc


def _shown(path: Path) -> str:
    """A path as committed results show it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def refresh_cost(run_dir: Path, m: dict, input_shape, base=None) -> dict | None:
    """A run's predicted cost is derived, not measured: recompute it with today's cost model
    (the gate costs it is fed may have been re-measured, or its pricing fixed, since the run)
    and write it back with the date when it changed. A run without its weights is priced on its
    architecture rebuilt from the teacher `base` (trained_architecture) with its policy; None when
    that is not possible."""
    from relu_budget import runs
    from relu_budget.cost_model import CostModel
    from relu_budget.policy import PolicyError, load_policy
    if (run_dir / "model.pt").is_file():
        model, _policy, _ = runs.load_run(run_dir)
    elif base is None:
        return None
    else:
        try:
            model = trained_architecture(base, m)
            load_policy(run_dir / "policy").apply(model)
        except (PolicyError, KeyError, StopIteration, ValueError):
            return None
    cfg = m.get("config") or {}
    try:
        cost = CostModel.load(cfg.get("results_dir"), profile=cfg.get("profile", "lan")).estimate(model, input_shape)
    except RuntimeError:          # the policy's sites do not fit the base's layers
        return None
    cost = cost.to_dict()
    cost.pop("per_layer", None)
    old = m.get("cost") or {}
    if not (run_dir / "model.pt").is_file() and \
            (cost["relus"], cost["macs"]) != (m.get("relus"), old.get("macs", cost["macs"])):
        return None               # another architecture (e.g. DeepReShape's widths): not this run's cost
    if cost != m.get("cost"):
        m["cost"] = cost
        m["cost_updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write_metrics(run_dir, m)
    return m


def trained_architecture(base, m: dict):
    """The untrained network a run was trained as, from the teacher `base` and the run's metrics:
    the cost depends on the layers' shapes and the sites' kinds, not on the weights, so a run
    whose weights are not committed is priced on this with its policy. DeepReShape and
    DeepReDuce change the widths (and DeepReDuce the stem stride); their metrics record how."""
    import copy

    from relu_budget.optimizers import deepreduce, deepreshape
    extra = m.get("extra") or {}
    if m.get("method") == "deepreshape":
        return deepreshape.reshape(base, extra["allocation"]["multipliers"])
    if m.get("method") == "deepreduce":
        return deepreduce.build_candidate(base, next(c for c in m["frontier"] if c["name"] == extra["chosen"]))
    return copy.deepcopy(base)


def note_cost_gap(run_dir: Path, m: dict, method: str, objective: str, budget: float) -> dict:
    """The run's predicted cost against its latency or bytes budget (optimizers.common.cost_gap:
    warns when over), written into its metrics: runs from before the check, or re-priced, lack it."""
    from relu_budget.optimizers.common import cost_gap
    gap = cost_gap(method, objective, m.get("cost") or {"error": "no predicted cost"}, budget)
    if gap != m.get("cost_gap"):
        m["cost_gap"] = gap
        write_metrics(run_dir, m)
    return m


def write_metrics(run_dir: Path, m: dict) -> None:
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(m, indent=1))
    tmp.replace(run_dir / "metrics.json")


# The sweep's fronts: in predicted online latency and bytes first, kept sites last (row key, label).
FRONT_AXES = (("online_seconds", "predicted online s (LAN)"), ("total_bytes", "predicted bytes (online + offline)"),
              ("relus", "kept sites"))


def frontiers(rows: list[dict]) -> dict[str, list[dict]]:
    return {key: combined_frontier(rows, key) for key, _ in FRONT_AXES}


def combined_frontier(rows: list[dict], key: str = "online_seconds") -> list[dict]:
    """The runs of every method not dominated in (lower `key`, higher *validation* accuracy):
    model selection never looks at the test split; their test accuracy is reported."""
    from relu_budget.allocation import pareto_front
    rows = [r for r in rows if r.get(key) is not None]
    idx = pareto_front([(r[key], r["val_accuracy"]) for r in rows])
    return [{"method": rows[i]["method"], "budget_fraction": rows[i]["budget_fraction"], "relus": rows[i]["relus"],
             "x": rows[i][key], "val_accuracy": rows[i]["val_accuracy"], "test_accuracy": rows[i]["test_accuracy"],
             "dir": rows[i]["dir"]} for i in idx]


def write_markdown(path: Path, doc: dict) -> None:
    from relu_budget.optimizers.common import COST_OVER_BUDGET
    lines = [f"# {doc['benchmark']}", "", f"Command: `{doc['command']}`  ", f"Date: {doc['date']}  ",
             (f"{doc['arch']} on {doc['dataset']}, {doc['total_sites']} ReLU sites; teacher test accuracy "
              f"{100 * doc['teacher']['test_accuracy']:.2f}%; {doc.get('run_seconds', 0) / 3600:.2f} h of training "
              "and evaluation in all (one thread per run)"), ""]
    if doc.get("objective", "relus") != "relus":
        unit = "s online (LAN)" if doc["objective"] == "latency" else "bytes online + offline"
        lines += [(f"Budgets limit the predicted {doc['objective']}: each is a fraction of the all-ReLU network's "
                   f"{doc['all_relu_cost']:.4g} {unit}."), ""]
    if doc.get("repriced"):
        stale = doc["repriced"].get("not_repriced") or []
        lines += [f"Predicted costs re-priced {doc['repriced']['date']} with today's cost model: "
                  f"`{doc['repriced']['command']}`" + (f" (not re-priced: their weights are not kept, and their "
                                                       f"architecture rebuilt from the teacher does not give their "
                                                       f"recorded ReLU and MAC counts: {', '.join(stale)})"
                                                       if stale else ""), ""]
    cost_budget = doc.get("objective", "relus") != "relus"
    lines += ["| method | budget | kept sites | val % | test % | predicted online s (LAN) | predicted MB (online + offline) "
              + ("| predicted / budget " if cost_budget else "") + "| run |",
              "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if cost_budget else "") + "---|"]
    for r in doc["rows"]:
        cells = [r["method"], f"{100 * r['budget_fraction']:g}%", str(r["relus"]), f"{100 * r['val_accuracy']:.2f}",
                 f"{100 * r['test_accuracy']:.2f}", "" if r["online_seconds"] is None else f"{r['online_seconds']:.3f}",
                 "" if not r.get("total_bytes") else f"{r['total_bytes'] / 1e6:.1f}"]
        if cost_budget:
            ratio = r.get("cost_ratio")
            cells.append("" if ratio is None else f"{ratio:.2f}" + (" **over**" if ratio > COST_OVER_BUDGET else ""))
        lines.append("| " + " | ".join([*cells, r["dir"]]) + " |")
    if doc.get("not_run"):
        lines += ["", "Not run (no network of the method meets the budget):", ""]
        lines += [f"- {r['method']} at {100 * r['budget_fraction']:g}%: {r['reason']}" for r in doc["not_run"]]
    fronts = doc.get("frontier") or {}
    for key, label in FRONT_AXES:
        if not fronts.get(key):
            continue
        x = {"online_seconds": ".4f", "total_bytes": ",.0f"}.get(key)      # kept sites: their own column
        lines += ["", f"Combined frontier over all methods in {label} (not dominated in it and validation accuracy):",
                  "", ("" if x is None else f"| {label} ") + "| kept sites | method | budget | val % | test % | run |",
                  ("" if x is None else "|---:") + "|---:|---|---:|---:|---:|---|"]
        lines += [("" if x is None else f"| {format(f['x'], x)} ") + f"| {f['relus']} | {f['method']} | "
                  f"{100 * f['budget_fraction']:g}% | {100 * f['val_accuracy']:.2f} | {100 * f['test_accuracy']:.2f} | "
                  f"{f['dir']} |" for f in fronts[key]]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, doc: dict) -> None:
    """Test accuracy against predicted online latency, predicted bytes and kept sites: per method
    its runs, the combined frontier (selected on validation), the all-ReLU teacher's accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    fronts = doc.get("frontier") or {}
    methods = sorted({r["method"] for r in doc["rows"]})
    for ax, (key, label) in zip(axes, FRONT_AXES):
        for m in methods:
            rs = sorted((r for r in doc["rows"] if r["method"] == m and r.get(key) is not None), key=lambda r: r[key])
            ax.plot([max(r[key], 1) if key == "relus" else r[key] for r in rs],
                    [100 * r["test_accuracy"] for r in rs], "-o", label=m)
        fr = sorted(fronts.get(key) or [], key=lambda f: f["x"])
        if fr:
            ax.step([max(f["x"], 1) if key == "relus" else f["x"] for f in fr], [100 * f["test_accuracy"] for f in fr],
                    "k:", where="post", lw=1.2, label="combined frontier (selected on val)")
        ax.axhline(100 * doc["teacher"]["test_accuracy"], color="gray", ls="--", lw=1, label="all-ReLU teacher")
        xs = [max(r[key], 1) if key == "relus" else r[key] for r in doc["rows"] if r.get(key)]
        if xs and max(xs) >= 10 * min(xs):           # a log axis shorter than a decade has no labelled tick
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label + (" (runs with none: at 1)" if key == "relus" else ""))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{doc['arch']} on {doc['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
