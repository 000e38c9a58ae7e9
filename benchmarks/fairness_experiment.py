"""Fairness of SNL linearization, second round: plain vs the loss-gap penalty vs the per-group
drop constraint, several seeds and budgets, one network, in one process.

    python benchmarks/fairness_experiment.py --arch resnet-small --seeds 0 1 2 --work /tmp/fair2 \
        --results benchmarks/results/fairness2/resnet-small [--train-subset N] [epochs ...]

Per seed: one all-ReLU teacher trained on the group-imbalanced Fashion-MNIST (classes 5-9 at
10 %), one SNL mask search, and per budget one binarization shared by the three fine-tunings
(plain / +fairness / +drop-constraint), so that the methods differ only in fine-tuning. Every
run is a complete `relu-budget optimize` run directory (policy/, model.pt, metrics.json) under
WORK/<arch>/seed<S>/<method>-<budget>, readable by `relu-budget audit`; its metrics.json is
copied to RESULTS/runs/ as soon as it is finished, and finished runs are skipped on a restart
(the teacher and the search are checkpointed too). Budgets are given for the embedded network
(14 592 sites) and scaled to the network's site count.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

EMBEDDED_SITES = 14_592
METHODS = {"plain": {}, "fair": {"fairness_penalty": True}, "drop": {"drop_constraint": True}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet-small")
    p.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                   help="architecture override as in relu-budget optimize, e.g. stem_stride=2; the work and "
                        "run names get the label <arch>-<key><value>")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=int, nargs="+", default=[3000, 1000, 300],
                   help="kept sites for the embedded network (14 592 sites), scaled to --arch")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--teacher-epochs", type=int, default=10)
    p.add_argument("--search-epochs", type=int, default=6)
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--train-subset", type=int, default=None, help="train on this many examples (fixed per seed)")
    p.add_argument("--val-subset", type=int, default=None,
                   help="validate (selection, dual steps) on the first N validation images only")
    p.add_argument("--test-subset", type=int, default=None,
                   help="evaluate and audit on the first N test images only (the test split is shuffled)")
    p.add_argument("--audit-only", action="store_true", help="rebuild the audit from the finished runs only")
    p.add_argument("--keep-from", metavar="AUDIT.json",
                   help="an earlier audit of this experiment: its runs not re-run in --work are kept (their "
                        "teachers, where re-run, must give the same per-class test metrics)")
    p.add_argument("--penalty-dual-lr", type=float, default=0.1)
    p.add_argument("--drop-dual-lr", type=float, default=0.3)
    p.add_argument("--drop-tolerance", type=float, default=0.0)
    p.add_argument("--drop-dual-steps", type=int, default=4, help="the constraint's dual steps per epoch (K)")
    p.add_argument("--work", required=True, help="run directories (weights; not committed)")
    p.add_argument("--results", required=True, help="where the runs' metrics.json are copied")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from relu_budget import cli
    from relu_budget.optimizers import snl
    from relu_budget.optimizers.common import site_totals
    from relu_budget.optimizers.training import PhaseStore, train_phase
    from relu_budget.runs import run_metrics, save_run
    from relu_budget.fairness import predict_proba
    from relu_budget.train import evaluate, save_checkpoint, seed_everything

    command = "python benchmarks/fairness_experiment.py " + " ".join(sys.argv[1:] if argv is None else argv)
    splits = cli.load_splits("fashion-mnist-imbalanced", None, 0)
    if args.val_subset:
        splits = dataclasses.replace(splits, val=(splits.val[0][:args.val_subset], splits.val[1][:args.val_subset]))
    if args.test_subset:
        splits = dataclasses.replace(splits, test=(splits.test[0][:args.test_subset],
                                                   splits.test[1][:args.test_subset]))
    overrides = cli.parse_assignments(args.model_set, "--model-set")
    args.label = "-".join([args.arch] + [f"{k}{v}" for k, v in sorted(overrides.items())])
    total = site_totals(cli.build_model(args.arch, splits, overrides), splits.input_shape)["total"]
    budgets = [max(1, round(b * total / EMBEDDED_SITES)) for b in args.budgets]
    results = Path(args.results)
    (results / "runs").mkdir(parents=True, exist_ok=True)
    common = {"epochs": args.search_epochs, "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
              "lam": 1e-4, "alpha_lr": 0.02, "lam_warmup_epochs": 1, "train_subset": args.train_subset}
    method_cfg = {"plain": {}, "fair": {"fairness_penalty": True, "dual_lr": args.penalty_dual_lr},
                  "drop": {"drop_constraint": True, "dual_lr": args.drop_dual_lr, "tolerance": args.drop_tolerance,
                           "dual_steps": args.drop_dual_steps}}
    log = results / "progress.log"

    def note(msg):
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}"
        print(line, flush=True)
        with log.open("a") as f:
            f.write(line + "\n")

    if args.audit_only:
        write_audit(args, splits, results, command)
        return 0
    note(f"start: {command}; {args.label}: {total} sites, budgets {budgets}")
    for seed in args.seeds:
        wdir = Path(args.work) / args.label / f"seed{seed}"
        wdir.mkdir(parents=True, exist_ok=True)
        # The all-ReLU teacher of this seed (resumable), shared by every run of the seed.
        seed_everything(seed)
        teacher = cli.build_model(args.arch, splits, overrides)
        t0 = time.time()
        tcfg = snl.SNLConfig(seed=seed, train_subset=args.train_subset)
        tout = train_phase(teacher, splits, tcfg, name="teacher", epochs=args.teacher_epochs, optimizer="sgd",
                           lr=0.05, store=PhaseStore(wdir / "teacher_state"), progress=False)
        tpath = wdir / "teacher.pt"
        save_checkpoint(tpath, teacher, {"best": tout["best"], "history": tout["history"], "dataset": splits.name,
                                         "role": "teacher"})
        teacher.eval()
        tinfo = {"path": str(tpath), "best": tout["best"],
                 "val_accuracy": evaluate(teacher, splits.loader("val", 512))["accuracy"],
                 "test_accuracy": evaluate(teacher, splits.loader("test", 512))["accuracy"],
                 "train_seconds": round(time.time() - t0, 1), "epochs": args.teacher_epochs}
        if not (wdir / "test_probs.npy").is_file():
            np.save(wdir / "test_probs.npy", predict_proba(teacher, splits.test[0]).astype(np.float32))
        note(f"seed {seed}: teacher test {100 * tinfo['test_accuracy']:.2f}% ({tinfo['train_seconds']} s)")
        search_dir = wdir / "search_state"
        # Smallest budget first: its search never stops early, so larger budgets reuse a full search.
        for b_emb, budget in sorted(zip(args.budgets, budgets), key=lambda t: t[1]):
            for mname in args.methods:
                out = wdir / f"{mname}-{b_emb}"
                if (out / "metrics.json").is_file():
                    continue
                state = out / "state"
                state.mkdir(parents=True, exist_ok=True)
                # The search is the same for every budget (it runs its epochs; the budget only
                # decides the binarization): one search per seed, one binarization per budget.
                for src in (search_dir / "snl_search.done.pt", wdir / f"binarized-{b_emb}.pt"):
                    if src.is_file():
                        dst = state / ("snl_binarized.done.pt" if src.name.startswith("binarized") else src.name)
                        shutil.copy(src, dst)
                cfg = snl.SNLConfig(seed=seed, **common, **method_cfg[mname], checkpoint_dir=str(state))
                t0 = time.time()
                result = snl.optimize(teacher, splits, budget, config=cfg, teacher=teacher,
                                      progress=False)
                if not (search_dir / "snl_search.done.pt").is_file():
                    search_dir.mkdir(exist_ok=True)
                    shutil.copy(state / "snl_search.done.pt", search_dir / "snl_search.done.pt")
                if not (wdir / f"binarized-{b_emb}.pt").is_file():
                    shutil.copy(state / "snl_binarized.done.pt", wdir / f"binarized-{b_emb}.pt")
                run_cmd = f"{command}  # run: seed {seed}, {mname}, budget {b_emb} -> {budget} sites"
                metrics = run_metrics(result, splits, cfg, teacher, command=run_cmd, method="snl", arch=args.arch,
                                      budget_arg=str(budget), teacher=tinfo, seconds=time.time() - t0,
                                      experiment={"method": mname, "seed": seed, "budget_embedded": b_emb})
                np.save(out / "test_probs.npy", predict_proba(result.model, splits.test[0]).astype(np.float32))
                save_run(out, result, metrics)
                dest = results / "runs" / f"{args.label}-seed{seed}-{mname}-{b_emb}"
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(out / "metrics.json", dest / "metrics.json")
                note(f"seed {seed} {mname} {budget}: test {100 * result.test['accuracy']:.2f}% "
                     f"({metrics['seconds']:.0f} s)")
        write_audit(args, splits, results, command)     # after every seed: partial results are usable
        note(f"seed {seed}: audit written")
    note("done")
    return 0


def write_audit(args, splits, results: Path, command: str) -> None:
    """The `relu-budget audit` document of every finished run (test split, groups = classes),
    from the test probabilities saved with each run and teacher (the same numbers `relu-budget
    audit WORK/<arch>` computes, without evaluating every model again)."""
    from relu_budget.fairness import audit, audit_markdown, plot_audit, plot_drop_curve, series_of
    from relu_budget.runs import json_default
    entries, refs = [], {}
    for mpath in sorted((Path(args.work) / args.label).glob("seed*/*/metrics.json")):
        rdir = mpath.parent
        m = json.loads(mpath.read_text())
        tdir = Path(m["teacher"]["path"]).parent
        rid = str(tdir / "teacher.pt")
        if rid not in refs:
            refs[rid] = {"probs": np.load(tdir / "test_probs.npy"), "label": f"all-ReLU ({tdir.name})",
                         "path": rid, "relus": m["total_sites"], "seed": m["seed"]}
        entries.append({"probs": np.load(rdir / "test_probs.npy"), "reference": rid, "label": f"{tdir.name}/{rdir.name}",
                        "dir": str(rdir), "series": series_of(m), "method": m["method"], "relus": m["relus"],
                        "total_sites": m["total_sites"], "budget_sites": m["budget_sites"], "seed": m["seed"],
                        "train_dataset": m["dataset"],
                        "fairness": {k: m["config"].get(k) for k in ("fairness_penalty", "drop_constraint", "dual_lr",
                                                                     "tolerance", "dual_steps")},
                        "optimize_command": m["command"]})
    if not entries:
        return
    x, y = splits.test
    names = {str(i): c for i, c in enumerate(splits.classes)}
    doc = audit(entries, refs, x, y.numpy(), group_names=names,
                meta={"command": command + "  # audit of the finished runs", "dataset": "fashion-mnist",
                      "split": "test"})
    if args.keep_from:
        keep_earlier_runs(doc, json.loads(Path(args.keep_from).read_text()), args.keep_from)
    (results / "audit.json").write_text(json.dumps(doc, indent=1, default=json_default) + "\n")
    (results / "audit.md").write_text("# Fairness audit\n\n" + audit_markdown(doc))
    plot_audit(doc, results / "audit.png")
    plot_drop_curve(doc, results / "drop_curve.png")


def keep_earlier_runs(doc: dict, earlier: dict, path: str) -> None:
    """Adds to `doc` the runs of an earlier audit of the same experiment that `doc` lacks (by
    label: seed<S>/<method>-<budget>), with their references. Runs are deterministic given the
    seed, so a teacher trained again must reproduce the earlier one's per-class test metrics
    exactly; anything else means the two audits are not of the same experiment."""
    from relu_budget.fairness import curves
    refs = {r["id"]: r for r in doc["references"]}
    for r in earlier["references"]:
        if r["id"] not in refs:
            doc["references"].append(r)
        elif refs[r["id"]]["metrics"] != r["metrics"]:
            raise SystemExit(f"--keep-from {path}: teacher {r['id']} differs from the re-run one")
    have = {r["label"] for r in doc["runs"]}
    doc["runs"] += [r for r in earlier["runs"] if r["label"] not in have]
    doc["runs"].sort(key=lambda r: r["label"])
    doc["curves"] = curves(doc["runs"])
    doc["command"] += f"  # with the runs of {path} not re-run"


if __name__ == "__main__":
    sys.exit(main())
