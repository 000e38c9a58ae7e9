"""`relu-budget`: optimize a network under a ReLU budget, evaluate the result, compare methods.

    relu-budget optimize --method snl --arch resnet18 --dataset fashion-mnist --budget 0.05 --out runs/snl-5
    relu-budget eval runs/snl-5
    relu-budget pareto runs/* --plot pareto.png
    relu-budget methods
    relu-budget audit runs/snl-* --out audit/        # per-group metrics vs the all-ReLU model

`optimize` writes into --out: `policy/` (the ReLU policy for `pi.compile(..., policy=DIR/policy)`),
`model.pt` (weights + kind maps), `metrics.json` (budget, counts, validation/test metrics,
history, frontier, predicted cost, command), `teacher.pt` (the all-ReLU model it trained, unless
--teacher was given) and `state/` (checkpoints; `--resume` continues from them).

Launched under `torchrun`, training runs as DistributedDataParallel over the gloo backend
(one process per rank; rank 0 writes the files); otherwise a single process.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

from relu_budget import pareto
from relu_budget.cli_parser import OneLineParser

# The run format is library code (relu_budget.runs); `pi` reads runs through it too.
from relu_budget.runs import (
    RunError,
    collect_runs,
    json_default,
    load_run,
    run_metrics,
    save_run,
)

# relu_budget.models.ARCHITECTURES' names, here so that parsing imports no torch (a test keeps
# the two in sync).
ARCH_NAMES = ("resnet18", "resnet18-full", "resnet-small", "smallcnn")


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------------------------

DEFAULT_BENCH_MODEL = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bench_model.json"
_BYTE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


def parse_budget(text: str, objective: str = "relus") -> int | float:
    """'5000' → 5000 sites; '0.05' or '5%' → a fraction of the sites; with objective latency
    '0.8', '0.8s' or '800ms' → seconds; with bytes '2e8', '200MB', '1.5GiB' → bytes."""
    t = str(text).strip().lower().replace("_", "")
    try:
        if objective == "relus":
            if t.endswith("%"):
                v = float(t[:-1]) / 100
                if not 0 < v <= 1:
                    raise ValueError
                return v
            if re.fullmatch(r"\d+", t):
                return int(t)
            v = float(t)
            if not 0 < v <= 1:
                raise CliError(f"--budget {text}: a fractional ReLU budget must be in (0, 1] (or give a whole "
                               "number of sites, or a percentage like 5%)")
            return v
        if objective == "latency":
            if t.endswith("ms"):
                return float(t[:-2]) / 1e3
            return float(t[:-1]) if t.endswith("s") else float(t)
        if objective == "bytes":
            m = re.fullmatch(r"([0-9.e+]+)\s*([kmg]i?b|b)?", t)
            if not m:
                raise ValueError
            return float(m.group(1)) * _BYTE_UNITS[m.group(2) or "b"]
    except ValueError:
        pass
    raise CliError(f"--budget {text!r} is not a valid {objective} budget (examples: relus 5000, 0.05, 5%; "
                   "latency 0.8s, 800ms; bytes 200MB)")


def parse_value(text: str):
    """A --set value: JSON (numbers, true/false, null, lists), a comma list, or a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(p) for p in text.split(",") if p != ""]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() in ("none", "null"):
        return None
    return text


def parse_assignments(items: list[str] | None, what: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CliError(f"{what} {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v.strip())
    return out


def _coerce(cls, values: dict, what: str) -> dict:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CliError(f"{what}: unknown fields {unknown}; known: {', '.join(sorted(known))}")
    out = {}
    for k, v in values.items():
        default = known[k].default
        if isinstance(default, tuple) and isinstance(v, (list, int, float)):
            v = tuple(v) if isinstance(v, list) else (v,)
        elif isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# optimize
# ---------------------------------------------------------------------------------------------

def build_model(arch: str, splits, overrides: dict):
    from relu_budget import models
    if arch not in models.ARCHITECTURES:
        raise CliError(f"unknown --arch {arch!r}; choose one of {', '.join(models.ARCHITECTURES)}")
    cls, _ = models.ARCHITECTURES[arch]
    cfg_cls = models.ResNetConfig if cls is models.ResNet else models.SmallCNNConfig
    base = {"in_channels": splits.input_shape[0], "num_classes": splits.num_classes}
    if cfg_cls is models.SmallCNNConfig:
        base["image_size"] = splits.input_shape[1]
    try:
        return models.build(arch, **{**base, **_coerce(cfg_cls, overrides, "--model-set")})
    except (TypeError, ValueError) as exc:
        raise CliError(f"cannot build {arch} with {overrides}: {exc}") from exc


def load_splits(dataset: str, data_dir: str | None, seed: int):
    from relu_budget import data
    imbalanced = dataset.endswith("-imbalanced")   # e.g. fashion-mnist-imbalanced (the fairness set-up)
    base = dataset[:-len("-imbalanced")] if imbalanced else dataset
    try:
        return data.load(base, data_dir=data_dir, seed=0 if base != "synthetic" else seed, imbalanced=imbalanced)
    except data.DatasetUnavailable as exc:
        raise CliError(str(exc)) from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def make_config(method: str, args) -> object:
    from relu_budget.optimizers import config_class
    cls = config_class(method)
    values = {"seed": args.seed, "objective": args.objective, "profile": args.profile, "results_dir": args.results_dir}
    for name in ("epochs", "finetune_epochs", "lr", "finetune_lr", "batch_size", "train_subset"):
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    fair = {k: getattr(args, k, None) for k in ("fairness_penalty", "drop_constraint", "dual_lr", "tolerance",
                                                "dual_steps")}
    if any(v is not None for v in fair.values()):     # fine-tuning mitigations (relu_budget/fairness/mitigation.py)
        if "fairness_penalty" not in {f.name for f in dataclasses.fields(cls)}:
            raise CliError(f"--fairness-penalty/--drop-constraint/--dual-lr/--tolerance apply to SNL, AutoReP and "
                           f"Circa fine-tuning (methods snl, autorep, circa, and deepreshape through SNL), not {method}")
        if fair["fairness_penalty"] and fair["drop_constraint"]:
            raise CliError("--fairness-penalty and --drop-constraint are two mitigations: choose one")
        if not (fair["fairness_penalty"] or fair["drop_constraint"]):
            raise CliError("--dual-lr and --tolerance need --fairness-penalty or --drop-constraint")
        if fair["dual_steps"] is not None and not fair["drop_constraint"]:
            raise CliError("--dual-steps needs --drop-constraint")
        values.update({k: v for k, v in fair.items() if v is not None})
    values.update(parse_assignments(args.set, "--set"))
    try:
        return cls(**_coerce(cls, values, f"--set (method {method})"))
    except (TypeError, ValueError) as exc:
        raise CliError(f"invalid settings for {method}: {exc}") from exc


def train_teacher(model, splits, args, out: Path):
    """Trains the all-ReLU network (resumable) and saves it as out/teacher.pt."""
    from relu_budget.optimizers.common import OptimizeConfig
    from relu_budget.optimizers.training import PhaseStore, is_main_process, train_phase
    from relu_budget.train import save_checkpoint
    cfg = OptimizeConfig(seed=args.seed, batch_size=args.batch_size or 128, train_subset=args.train_subset)
    out_t = train_phase(model, splits, cfg, name="teacher", epochs=args.pretrain_epochs, optimizer="sgd",
                        lr=args.pretrain_lr, store=PhaseStore(out / "state"), progress=not args.no_progress)
    if is_main_process():
        save_checkpoint(out / "teacher.pt", model, {"best": out_t["best"], "history": out_t["history"],
                                                  "dataset": splits.name, "role": "teacher"})
    return out_t


def teacher_mismatch(path, teacher, arch: str, model) -> str:
    """One line: how the --teacher checkpoint differs from what --arch builds, and the fix."""
    if type(teacher) is not type(model):
        return (f"--teacher {path} is a {type(teacher).__name__}, but --arch {arch} builds a "
                f"{type(model).__name__}; pass the --arch the teacher was trained as")
    theirs, ours = dataclasses.asdict(teacher.config), dataclasses.asdict(model.config)
    diff = {k: v for k, v in theirs.items() if ours.get(k) != v}
    fix = " ".join(f"--model-set {k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                   for k, v in diff.items())
    shown = ", ".join(f"{k}={theirs[k]} (--arch {arch} builds {ours.get(k)})" for k in diff)
    return f"--teacher {path} was built with {shown}; add {fix} to match it"


def run_optimize(args) -> dict:
    from relu_budget.optimizers import METHODS, get_method
    from relu_budget.optimizers.common import resolve_budget
    from relu_budget.optimizers.training import dist_info, init_distributed_from_env, is_main_process
    from relu_budget.train import evaluate, load_checkpoint, seed_everything

    if args.method not in METHODS:
        raise CliError(f"unknown --method {args.method!r}; choose one of {', '.join(METHODS)}")
    out = Path(args.out)
    if (out / "metrics.json").is_file():
        if args.resume:
            print(f"{out} already holds a finished run (metrics.json); nothing to do")
            return json.loads((out / "metrics.json").read_text())
        raise CliError(f"{out} already holds a finished run; pass another --out, or --resume to keep it")
    if (out / "state").is_dir() and any((out / "state").iterdir()) and not args.resume:
        raise CliError(f"{out}/state has checkpoints of an unfinished run: pass --resume to continue it, "
                       "or choose another --out")
    budget = parse_budget(args.budget, args.objective)
    distributed = init_distributed_from_env()
    _rank, world = dist_info()
    t0 = time.time()
    seed_everything(args.seed)
    splits = load_splits(args.dataset, args.data_dir, args.seed)
    model = build_model(args.arch, splits, parse_assignments(args.model_set, "--model-set"))
    config = make_config(args.method, args)
    config.checkpoint_dir = str(out / "state")
    resolve_budget(budget, model, splits.input_shape, config)     # fail early, before any training
    if args.teacher:    # checked before --out exists, so a refused run leaves nothing behind
        teacher, meta = load_checkpoint(args.teacher)
        if type(teacher) is not type(model) or teacher.config != model.config:
            raise CliError(teacher_mismatch(args.teacher, teacher, args.arch, model))
        model.load_state_dict(teacher.state_dict())
        teacher_info = {"path": str(args.teacher), "arch": meta.get("arch")}
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    if not args.teacher:
        t = train_teacher(model, splits, args, out)
        teacher_info = {"path": str(out / "teacher.pt"), "best": t["best"]}
    teacher = model
    val_t = evaluate(teacher, splits.loader("val", 512))
    test_t = evaluate(teacher, splits.loader("test", 512))
    teacher_info.update({"val_accuracy": val_t["accuracy"], "test_accuracy": test_t["accuracy"]})

    method = get_method(args.method)
    result = method.optimize(model, splits, budget, config=config, teacher=teacher, progress=not args.no_progress)
    metrics = run_metrics(result, splits, config, model, command="relu-budget " + " ".join(args.argv),
                          method=args.method, arch=teacher_info.get("arch") or args.arch,
                          data_dir=args.data_dir, budget_arg=args.budget, teacher=teacher_info,
                          seconds=time.time() - t0, world_size=world, distributed=distributed)
    if is_main_process():
        save_run(out, result, metrics)
        print(f"{args.method}: {metrics['relus']} kept sites of {metrics['total_sites']} (budget {result.budget}); "
              f"val {100 * result.val['accuracy']:.2f}%, test {100 * result.test['accuracy']:.2f}% "
              f"(teacher test {100 * test_t['accuracy']:.2f}%) -> {out}")
    if distributed:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return metrics


# ---------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------

def run_eval(args) -> dict:
    from relu_budget.cost_model import CostModel
    from relu_budget.optimizers.common import OptimizeConfig, evaluate_split, site_totals
    model, pol, metrics = load_run(args.dir)
    dataset = args.dataset or metrics["dataset"].replace("-imbalanced", "")
    splits = load_splits(dataset, args.data_dir or metrics.get("data_dir"), metrics.get("seed", 0))
    counts = site_totals(model, splits.input_shape)
    pcounts = pol.counts()
    if pcounts["relu"] + pcounts["circa"] != counts["kept"]:
        raise CliError(f"policy counts {pcounts} disagree with the model's {counts}")
    cfg = OptimizeConfig(seed=metrics.get("seed", 0))
    res = {"dir": str(args.dir), "method": metrics["method"], "dataset": dataset, "counts": counts}
    for split in args.splits:
        res[split] = evaluate_split(model, splits, split, cfg, args.circa_repeats)
    cm = CostModel.load(args.results_dir, profile=args.profile)
    cost = cm.estimate(model, splits.input_shape).to_dict()
    cost.pop("per_layer")
    res["cost"] = cost
    res["profile"] = args.profile
    if args.json:
        print(json.dumps(res, indent=1, default=json_default))
    else:
        print(f"{args.dir}: {metrics['method']} on {dataset}")
        print(f"  sites: {counts['kept']} kept of {counts['total']} (relu {counts['relu']}, circa {counts['circa']}, "
              f"poly {counts['poly']}, identity {counts['identity']})")
        for split in args.splits:
            m = res[split]
            extra = f" (without Circa faults {100 * m['accuracy_without_faults']:.2f}%)" if \
                "accuracy_without_faults" in m else ""
            print(f"  {split} accuracy: {100 * m['accuracy']:.2f}% on {m['n']} examples{extra}")
        print(f"  predicted cost ({args.profile}): online {cost['online_bytes'] / 1e6:.2f} MB, "
              f"{cost['online_seconds']:.3f} s, {cost['rounds']} rounds; offline {cost['offline_bytes'] / 1e6:.2f} MB")
    return res


# ---------------------------------------------------------------------------------------------
# pareto
# ---------------------------------------------------------------------------------------------

def run_pareto(args) -> dict:
    """Prints the Pareto table of the runs (relu_budget.pareto) and writes its plot and JSON."""
    runs = collect_runs(args.dirs)
    measured = pareto.measured_costs(args.measured) if args.x != "relus" else {}
    if measured and not all(Path(r["_dir"]).resolve() in measured for r in runs):
        missing = sum(Path(r["_dir"]).resolve() not in measured for r in runs)
        print(f"{missing} of {len(runs)} runs have no measured row in {args.measured}: the cost model's predictions "
              "are used for all (measure them with `pi bench model --policy DIR ...`)")
        measured = {}
    key = args.metric
    table = pareto.pareto_table(runs, args.x, key, measured)
    teacher = pareto.all_relu_accuracy(runs, key)
    unit = {"latency": "s", "bytes": "B", "relus": "sites"}[args.x]
    print(f"x: {pareto.X_LABELS[args.x]}"
          + (f"; all-ReLU {key} accuracy {100 * teacher:.2f}%" if teacher is not None else ""))
    print(f"{'method':<12} {'x (' + unit + ')':>12} {'source':<9} {'relus':>9} {'val %':>7} {'test %':>7}  front  all  dir")
    for method, rows in table.items():
        for row in rows:
            print(f"{method:<12} {row['x']:>12.5g} {row['source']:<9} {row['relus']:>9} {100 * row['val_accuracy']:>7.2f} "
                  f"{100 * row['test_accuracy']:>7.2f}  {'*' if row['front'] else ' ':^5}  {'*' if row['all_front'] else ' ':^3}"
                  f"  {row['dir']}")
    if args.plot:
        pareto.plot_pareto(table, args.plot, args.x, args.metric, runs if args.candidates else None, teacher)
        print(f"plot written to {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return table


# ---------------------------------------------------------------------------------------------
# audit (relu_budget/fairness/mitigation.py)
# ---------------------------------------------------------------------------------------------

def run_audit(args) -> dict:
    from relu_budget import fairness
    try:
        return fairness.run_audit_command(args, load_run=load_run, load_splits=load_splits)
    except fairness.AuditError as exc:
        raise CliError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------

def run_methods(_args) -> None:
    from relu_budget.optimizers import METHODS, config_class, get_method
    for m in METHODS:
        mod = get_method(m)
        first = (mod.__doc__ or "").strip().splitlines()[0]
        print(f"{m}: {first}")
        cls = config_class(m)
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls)
                           if f.default is not dataclasses.MISSING)
        print(f"  settings (--set key=value): {fields}\n")


# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="relu-budget", description="Optimize networks under a ReLU budget.")
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("optimize", help="linearize a network to a budget and write its policy")
    o.add_argument("--method", required=True, help="deepreduce, snl, autorep, deepreshape or circa")
    o.add_argument("--arch", default="resnet18", choices=ARCH_NAMES,
                   help=f"architecture: {', '.join(ARCH_NAMES)} (default resnet18; relu_budget/models.py)")
    o.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist, digits or synthetic; NAME-imbalanced: classes 5-9 at 10%% of their training data")
    o.add_argument("--data-dir", default=None)
    o.add_argument("--budget", required=True,
                   help="kept sites (5000), fraction (0.05 or 5%%); seconds/bytes with --objective")
    o.add_argument("--objective", default="relus", choices=("relus", "latency", "bytes"))
    o.add_argument("--profile", default="lan", choices=("lan", "wan"), help="network profile of the cost model")
    o.add_argument("--results-dir", default=None, help="measured costs (default benchmarks/results)")
    o.add_argument("--out", required=True, help="output directory")
    o.add_argument("--epochs", type=int, default=None, help="main phase epochs (search / candidates)")
    o.add_argument("--finetune-epochs", type=int, default=None)
    o.add_argument("--pretrain-epochs", type=int, default=10, help="epochs of the all-ReLU teacher")
    o.add_argument("--pretrain-lr", type=float, default=0.05)
    o.add_argument("--lr", type=float, default=None)
    o.add_argument("--finetune-lr", type=float, default=None)
    o.add_argument("--batch-size", type=int, default=None)
    o.add_argument("--train-subset", type=int, default=None, help="train on this many examples only")
    o.add_argument("--teacher", default=None, help="checkpoint of a trained all-ReLU model (skips pretraining)")
    o.add_argument("--model-set", action="append", metavar="KEY=VALUE", help="architecture override, e.g. widths=8,16")
    o.add_argument("--set", action="append", metavar="KEY=VALUE", help="method setting (see `relu-budget methods`)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    o.add_argument("--no-progress", action="store_true")
    o.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    o.add_argument("--fairness-penalty", action="store_true", default=None,
                   help="fine-tuning adds the group loss-gap penalty Σ_g γ_g|L_g − L| (groups: classes), dual ascent")
    o.add_argument("--drop-constraint", action="store_true", default=None,
                   help="fine-tuning constrains every class's loss increase against the all-ReLU teacher, "
                        "L_g(student) − L_g(teacher) ≤ tolerance (Lagrangian, dual ascent)")
    o.add_argument("--dual-lr", type=float, default=None,
                   help="dual ascent step μ of the penalty or the constraint (default 0.1)")
    o.add_argument("--tolerance", type=float, default=None,
                   help="penalty: loss gap tolerated per group; constraint: loss increase τ tolerated (default 0)")
    o.add_argument("--dual-steps", type=int, default=None, help="constraint: dual steps/epoch, μ/K each (default 4)")

    e = sub.add_parser("eval", help="evaluate an optimize output directory")
    e.add_argument("dir")
    e.add_argument("--dataset", default=None)
    e.add_argument("--data-dir", default=None)
    e.add_argument("--splits", nargs="+", default=["test"], choices=("val", "test"))
    e.add_argument("--circa-repeats", type=int, default=3, help="fault draws averaged for Circa sites")
    e.add_argument("--profile", default="lan", choices=("lan", "wan"))
    e.add_argument("--results-dir", default=None)
    e.add_argument("--json", action="store_true")
    e.add_argument("--threads", type=int, default=None)

    q = sub.add_parser("pareto", help="table and plot of (cost, accuracy) over runs")
    q.add_argument("dirs", nargs="+", help="run directories (or directories of run directories)")
    q.add_argument("--plot", default=None, help="write a PNG/PDF/SVG plot here")
    q.add_argument("--metric", default="test", choices=("val", "test"))
    q.add_argument("--x", default="latency", choices=("latency", "bytes", "relus"),
                   help="cost axis: online latency (default) or online + offline bytes, measured where --measured "
                        "has the run, else predicted by the cost model; or kept ReLU sites")
    q.add_argument("--measured", default=str(DEFAULT_BENCH_MODEL),
                   help="a `pi bench model --json` result file whose budget:<run name> rows (batch 1) give measured "
                        "costs (default: the committed one)")
    q.add_argument("--candidates", action="store_true", help="also plot DeepReDuce's trained candidates")
    q.add_argument("--json", default=None, help="write the table as JSON here")

    sub.add_parser("methods", help="list the methods and their settings")

    # audit: per-group metrics along a budget sweep; the logic is in relu_budget/fairness/auditing.py
    a = sub.add_parser("audit", help="per-group accuracy, loss and margins of runs vs the all-ReLU model")
    a.add_argument("runs", nargs="+", help="run directories (or directories of run directories)")
    a.add_argument("--reference", default=None, help="all-ReLU checkpoint (default: each run's teacher)")
    a.add_argument("--groups", default=None, metavar="FILE.npy",
                   help="one group label per example of --split, in its order (default: the classes)")
    a.add_argument("--group-names", default=None, help="comma-separated names of the sorted group labels")
    a.add_argument("--split", default="test", choices=("val", "test"))
    a.add_argument("--dataset", default=None, help="default: the runs' dataset (its balanced val/test splits)")
    a.add_argument("--data-dir", default=None)
    a.add_argument("--out", default=None, help="write audit.json, audit.md and audit.png into this directory")
    a.add_argument("--batch-size", type=int, default=512)
    a.add_argument("--seed", type=int, default=0, help="seed of simulated Circa faults")
    a.add_argument("--threads", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)
    try:
        if args.command == "optimize":
            run_optimize(args)
        elif args.command == "eval":
            run_eval(args)
        elif args.command == "pareto":
            run_pareto(args)
        elif args.command == "audit":
            run_audit(args)
        else:
            run_methods(args)
    except (CliError, RunError) as exc:
        print(f"relu-budget: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        from relu_budget.optimizers.common import BudgetError
        from relu_budget.policy import PolicyError
        from relu_budget.train import CheckpointError
        if isinstance(exc, (BudgetError, PolicyError, CheckpointError, FileNotFoundError)):
            print(f"relu-budget: error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
