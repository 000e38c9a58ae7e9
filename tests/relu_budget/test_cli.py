"""`relu-budget` CLI on synthetic data: optimize → eval → pareto --plot, resume, errors;
the sweep script on its tiny config; a two-process torchrun (DDP, gloo) run."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pi
from relu_budget import cli, pareto, runs
from relu_budget.models import count_relu_sites
from relu_budget.policy import load_policy
from relu_budget.train import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--arch", "resnet18", "--model-set", "widths=4,8", "--model-set", "blocks=1,1", "--model-set", "strides=1,2",
        "--dataset", "synthetic", "--pretrain-epochs", "2", "--epochs", "2", "--finetune-epochs", "1",
        "--batch-size", "32", "--no-progress", "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_parse_budget():
    assert cli.parse_budget("5000") == 5000
    assert cli.parse_budget("0.05") == 0.05
    assert cli.parse_budget("5%") == pytest.approx(0.05)
    assert cli.parse_budget("800ms", "latency") == pytest.approx(0.8)
    assert cli.parse_budget("1.5s", "latency") == 1.5
    assert cli.parse_budget("200MB", "bytes") == 200e6
    assert cli.parse_budget("1GiB", "bytes") == 2 ** 30
    for bad, obj in [("1.5", "relus"), ("lots", "relus"), ("fast", "latency"), ("12 parsecs", "bytes"), ("0%", "relus")]:
        with pytest.raises(cli.CliError, match="budget"):
            cli.parse_budget(bad, obj)


def test_optimize_eval_pareto(tmp_path, capsys):
    out = tmp_path / "snl"
    argv = ["optimize", "--method", "snl", "--budget", "10%", "--out", str(out), *TINY,
            "--set", "alpha_lr=0.05", "--set", "lam=1e-3", "--set", "lam_warmup_epochs=1"]
    assert cli.main(argv) == 0
    for f in ("policy/policy.yaml", "policy/policy.npz", "model.pt", "metrics.json", "teacher.pt"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "snl" and m["budget_sites"] == 230 and m["relus"] == 230 and m["total_sites"] == 2304
    assert m["command"].startswith("relu-budget optimize --method snl")
    assert m["config"]["alpha_lr"] == 0.05 and m["cost"]["relus"] == 230
    # The policy loads, fits the saved model, and pi.compile accepts it.
    model, _pol, _ = runs.load_run(out)
    assert sum(r["relu"] for r in count_relu_sites(model, (1, 12, 12))) == 230 == load_policy(out / "policy").counts()["relu"]
    pi.compile(model, torch.zeros(1, 1, 12, 12), policy=str(out / "policy"))

    capsys.readouterr()
    assert cli.main(["eval", str(out), "--splits", "val", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["counts"]["kept"] == 230
    assert res["test"]["accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert res["val"]["accuracy"] == pytest.approx(m["val"]["accuracy"])

    # A second method reusing the teacher, then the Pareto table and plot over both runs. The run
    # records the network under the teacher's own name for it (as the sweep's runs do).
    teacher, meta = load_checkpoint(out / "teacher.pt")
    save_checkpoint(tmp_path / "teacher.pt", teacher, {**meta, "arch": "tiny net (its teacher's name)"})
    out2 = tmp_path / "dr"
    assert cli.main(["optimize", "--method", "deepreduce", "--budget", "700", "--out", str(out2), *TINY,
                     "--teacher", str(tmp_path / "teacher.pt"), "--set", "criticality_epochs=1"]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["arch"] == "tiny net (its teacher's name)"
    assert m2["relus"] <= 700 and m2["frontier"] and not (out2 / "teacher.pt").exists()
    plot = tmp_path / "pareto.png"
    table_json = tmp_path / "table.json"
    assert cli.main(["pareto", str(tmp_path), "--plot", str(plot), "--candidates", "--json", str(table_json)]) == 0
    assert plot.is_file() and plot.stat().st_size > 1000
    table = json.loads(table_json.read_text())
    assert set(table) == {"snl", "deepreduce"}
    assert all(row["front"] for rows in table.values() for row in rows)   # one point per method
    # By default the axis is online latency: predicted here (no `pi bench model` row measures these
    # runs), with the front over both methods and the all-ReLU accuracy (the teacher's) for its line.
    by_dir = {Path(d).resolve(): json.loads((d / "metrics.json").read_text()) for d in (out, out2)}
    rows = [row for rows in table.values() for row in rows]
    assert all(row["source"] == "predicted" and row["x"] == by_dir[Path(row["dir"]).resolve()]["cost"]["online_seconds"]
               for row in rows)
    best = max(rows, key=lambda row: row["test_accuracy"])
    cheapest = min(rows, key=lambda row: row["x"])
    assert best["all_front"] and cheapest["all_front"]
    assert [row["all_front"] for row in rows].count(True) == (1 if best is cheapest else 2)
    assert pareto.all_relu_accuracy(runs.collect_runs([str(tmp_path)]), "test") == m["teacher"]["test_accuracy"]
    capsys.readouterr()
    assert cli.main(["pareto", str(tmp_path), "--x", "relus"]) == 0        # kept sites: the option
    assert "x: kept ReLU sites" in capsys.readouterr().out


def test_resume_and_errors(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["optimize", "--method", "autorep", "--budget", "300", "--out", str(out), *TINY, "--set", "alpha_lr=0.05"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(argv) == 2                                   # finished: needs --resume
    assert "already holds a finished run" in capsys.readouterr().err
    assert cli.main([*argv, "--resume"]) == 0                    # nothing to do
    # An interrupted run: state/ exists but no metrics.json.
    (out / "metrics.json").unlink()
    assert cli.main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*argv, "--resume"]) == 0                   # every phase is loaded, not retrained
    assert (out / "metrics.json").is_file()

    bad = [(["optimize", "--method", "magic", "--budget", "5", "--out", str(tmp_path / "x"), *TINY], "unknown --method"),
           (["optimize", "--method", "snl", "--budget", "2.5", "--out", str(tmp_path / "x"), *TINY], "fractional"),
           (["optimize", "--method", "snl", "--budget", "99999", "--out", str(tmp_path / "x"), *TINY], "exceeds"),
           (["optimize", "--method", "snl", "--budget", "5", "--out", str(tmp_path / "x"), *TINY, "--set", "nope=1"],
            "unknown fields"),
           (["eval", str(tmp_path / "missing")], "not a relu-budget run directory"),
           (["pareto", str(tmp_path / "missing")], "no metrics.json")]
    for argv, msg in bad:
        assert cli.main(argv) == 2, argv
        assert msg in capsys.readouterr().err, argv


def _sweep_script():
    spec = importlib.util.spec_from_file_location("optimizers_sweep", ROOT / "benchmarks" / "optimizers_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    return sweep


def test_sweep_script_goes_on_past_a_budget_a_method_cannot_meet(tmp_path):
    """AutoReP's network with no kept ReLU still pays for its polynomial sites: on the tiny net
    80 % of the all-ReLU latency is below that floor (SNL's, with identities, is lower). The
    sweep says so in its results and runs the other methods instead of stopping."""
    sweep = _sweep_script()
    doc = sweep.main(["--tiny", "--out", str(tmp_path), "--methods", "autorep,snl", "--objective", "latency",
                      "--budgets", "0.8", "--no-progress"])
    assert [r["method"] for r in doc["rows"]] == ["snl"]
    assert [(r["method"], r["budget_fraction"]) for r in doc["not_run"]] == [("autorep", 0.8)]
    assert "poly sites" in doc["not_run"][0]["reason"]
    assert "- autorep at 80%: a latency budget of" in (tmp_path / "results.md").read_text()


def test_sweep_script_tiny(tmp_path):
    sweep = _sweep_script()
    doc = sweep.main(["--tiny", "--out", str(tmp_path), "--methods", "snl,circa,deepreduce", "--budgets", "0.1",
                      "--no-progress"])
    assert {r["method"] for r in doc["rows"]} == {"snl", "circa", "deepreduce"}
    for r in doc["rows"]:
        assert r["relus"] <= r["budget_sites"] == 230
    for f in ("results.json", "results.md", "pareto.png", "runs/snl-10/metrics.json", "runs/circa-10/policy/policy.yaml"):
        assert (tmp_path / f).is_file(), f
    # Each front is not dominated in its cost and validation accuracy, among all runs.
    for key, front in doc["frontier"].items():
        pts = [(r[key], r["val_accuracy"]) for r in doc["rows"]]
        assert front and all(not any(x <= f["x"] and v >= f["val_accuracy"] and (x, v) != (f["x"], f["val_accuracy"])
                                     for x, v in pts) for f in front), key
    assert json.loads((tmp_path / "results.json").read_text())["command"].startswith("python benchmarks/optimizers_sweep.py")
    # Finished runs are skipped on a second invocation.
    again = sweep.main(["--tiny", "--out", str(tmp_path), "--methods", "snl", "--budgets", "0.1", "--no-progress"])
    assert again["rows"][0]["test_accuracy"] == doc["rows"][0]["test_accuracy"]
    # --reprice: a stale predicted cost (here forged) is recomputed, nothing is trained.
    metrics = tmp_path / "runs/snl-10/metrics.json"
    m = json.loads(metrics.read_text())
    fresh = m["cost"]["online_seconds"]
    m["cost"]["online_seconds"] = 999.0
    metrics.write_text(json.dumps(m))
    res = json.loads((tmp_path / "results.json").read_text())
    res["rows"][0]["online_seconds"] = 999.0
    (tmp_path / "results.json").write_text(json.dumps(res))
    priced = sweep.main(["--tiny", "--out", str(tmp_path), "--reprice"])
    assert priced["rows"][0]["online_seconds"] == pytest.approx(fresh)
    assert json.loads(metrics.read_text())["cost"]["online_seconds"] == pytest.approx(fresh)
    assert priced["rows"][0]["test_accuracy"] == doc["rows"][0]["test_accuracy"] and priced["repriced"]["date"]
    assert "re-priced" in (tmp_path / "results.md").read_text()


def test_sweep_script_cost_objective(tmp_path):
    """--objective latency: the budget is a fraction of the all-ReLU network's predicted latency,
    and the run it gives is predicted within it."""
    sweep = _sweep_script()
    doc = sweep.main(["--tiny", "--out", str(tmp_path), "--methods", "snl", "--budgets", "0.9", "--objective", "latency",
                      "--no-progress"])
    (row,) = doc["rows"]
    assert row["objective"] == "latency" and row["dir"] == "runs/snl-latency-90"
    assert row["budget"] == pytest.approx(0.9 * doc["all_relu_cost"])
    assert 0 < row["online_seconds"] <= row["budget"]
    assert row["relus"] < doc["total_sites"]
    md = (tmp_path / "results.md").read_text()
    assert "Budgets limit the predicted latency" in md
    # The run's predicted cost against its budget, in its metrics and in the table.
    gap = json.loads((tmp_path / row["dir"] / "metrics.json").read_text())["cost_gap"]
    assert gap["budget"] == pytest.approx(row["budget"]) and not gap["over"] and gap["ratio"] == row["cost_ratio"] <= 1
    assert f"| {row['cost_ratio']:.2f} | runs/snl-latency-90 |" in md
    # The fronts: in predicted latency and bytes first, kept sites last (one run: on all three).
    assert list(doc["frontier"]) == ["online_seconds", "total_bytes", "relus"]
    assert [f["x"] for f in doc["frontier"]["online_seconds"]] == [row["online_seconds"]]
    assert [f["x"] for f in doc["frontier"]["total_bytes"]] == [row["total_bytes"]]
    assert md.index("frontier over all methods in predicted online s") < md.index("frontier over all methods in kept")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
@pytest.mark.parametrize("run", ["deepreshape-10", "deepreduce-10"])
def test_reprice_rebuilds_a_reshaped_run_without_weights(tmp_path, run):
    """The committed DeepReShape / DeepReDuce runs changed the widths (DeepReDuce-10 also the stem
    stride) and their weights are not committed: they are priced on the architecture their metrics
    record, rebuilt from the teacher, which must give the ReLU and MAC counts recorded in training."""
    from relu_budget.train import load_checkpoint
    sweep = _sweep_script()
    teacher = load_checkpoint(ROOT / "benchmarks" / "resnet18_fmnist.pt")[0]
    run_dir = tmp_path / run
    for f in ("metrics.json", "policy/policy.yaml", "policy/policy.npz"):
        (run_dir / f).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / f).write_bytes((ROOT / "benchmarks/results/optimizers/runs" / run / f).read_bytes())
    m = json.loads((run_dir / "metrics.json").read_text())
    recorded = m["cost"]
    m["cost"] = {**recorded, "online_seconds": 999.0}            # a stale price, forged
    priced = sweep.refresh_cost(run_dir, m, (1, 28, 28), teacher)
    assert priced is not None and priced["cost"]["online_seconds"] != 999.0
    assert (priced["cost"]["relus"], priced["cost"]["macs"]) == (m["relus"], recorded["macs"])
    assert json.loads((run_dir / "metrics.json").read_text())["cost"] == priced["cost"]
    # On the teacher's own architecture the policy does not give this run's counts: not priced.
    assert sweep.refresh_cost(run_dir, {**m, "method": "snl"}, (1, 28, 28), teacher) is None


def test_torchrun_ddp_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "relu_budget.cli", "optimize", "--method", "snl", "--budget", "0.1", "--out", str(out), *TINY,
           "--set", "alpha_lr=0.05", "--set", "lam=1e-3", "--set", "lam_warmup_epochs=1"]
    # Own session: on a timeout the launcher and its workers are killed together.
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["distributed"] is True and m["world_size"] == 2 and m["relus"] == 230
