"""A `relu-budget optimize` run on disk: its directory layout and its metrics.json format.

A run directory holds `policy/` (the ReLU policy), `model.pt` (weights + kind maps) and
`metrics.json` (format RUN_FORMAT: budget, counts, validation/test metrics, history, predicted
cost, command), written last and atomically, so a directory with metrics.json is complete.
`relu-budget eval/pareto/audit`, `pi demo --policy`, `pi bench model --policy` and `pi report`
read runs through this module.
"""
from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path

# Local imports: the torch-backed modules (policy, train, optimizers) are imported where used: `relu-budget
# --help` and `pi`'s error handling import this module.

RUN_FORMAT = "relu-budget-run"
RUN_VERSION = 1


class RunError(ValueError):
    """A directory is not a (complete) relu-budget run; the message names what is missing."""


def run_metrics(result, splits, config, original_model, *, command: str, method: str, arch: str,
                budget_arg, teacher: dict, seconds: float, data_dir: str | None = None, **extra) -> dict:
    """The metrics.json document of one run (the format `eval` and `pareto` read)."""
    from relu_budget.optimizers.common import site_totals
    counts = site_totals(result.model, splits.input_shape)
    out = {
        "format": RUN_FORMAT, "version": RUN_VERSION, "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": method, "arch": arch, "dataset": splits.name, "data_dir": data_dir,
        "budget_arg": budget_arg, "objective": config.objective, "profile": config.profile,
        "budget_sites": result.budget, "total_sites": site_totals(original_model, splits.input_shape)["total"],
        "relus": counts["kept"], "counts": counts, "val": result.val, "test": result.test,
        "teacher": teacher, "seed": config.seed, "config": config.to_dict(), "seconds": seconds,
    }
    out.update(extra)
    out.update({k: v for k, v in result.to_json().items() if k in ("history", "frontier", "extra", "cost")})
    # How far the search ended from its budget (optimizers.common.budget_gap), and the predicted
    # cost against a latency or bytes budget (cost_gap), at the top level.
    out["budget_gap"] = (out.get("extra") or {}).get("budget_gap")
    out["cost_gap"] = (out.get("extra") or {}).get("cost_gap")
    return out


def save_run(out: str | Path, result, metrics: dict) -> Path:
    """Writes policy/, model.pt and (last, atomically) metrics.json into `out`."""
    from relu_budget import policy as policy_mod
    from relu_budget.optimizers.training import site_meta
    from relu_budget.train import save_checkpoint
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policy_mod.save_policy(result.policy, out / "policy")
    save_checkpoint(out / "model.pt", result.model, {"method": metrics["method"], "site_meta": site_meta(result.model),
                                                     "dataset": metrics["dataset"]})
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1, default=json_default))
    os.replace(tmp, out / "metrics.json")
    return out


def json_default(x):
    try:
        import numpy as np
        if isinstance(x, (np.integer,)):
            return int(x)
        if isinstance(x, (np.floating,)):
            return float(x)
    except ImportError:
        pass
    if isinstance(x, (tuple, set)):
        return list(x)
    if isinstance(x, float) and math.isinf(x):
        return None
    return str(x)


def load_run(directory: str | Path):
    """(model with the policy applied, policy, metrics) of an `optimize` output directory."""
    from relu_budget.policy import PolicyError, load_policy
    from relu_budget.train import load_checkpoint
    d = Path(directory)
    for name in ("model.pt", "policy/policy.yaml", "metrics.json"):
        if not (d / name).is_file():
            raise RunError(f"{d} is not a relu-budget run directory: {name} is missing")
    metrics = json.loads((d / "metrics.json").read_text())
    if metrics.get("format") != RUN_FORMAT:
        raise RunError(f"{d}/metrics.json is not a relu-budget run (format {metrics.get('format')!r})")
    model, _meta = load_checkpoint(d / "model.pt")
    try:
        pol = load_policy(d / "policy")
        pol.apply(model)
    except PolicyError as exc:
        raise RunError(f"{d}/policy does not fit {d}/model.pt: {exc}") from exc
    return model, pol, metrics


def load_run_or_policy(directory: str | Path):
    """A policy argument of `pi demo` / `pi bench model`: a run directory (its policy and its own
    fine-tuned model, which the policy was trained for) or a bare policy directory (applied to
    the caller's weights). Returns (policy, model or None)."""
    from relu_budget.policy import load_policy
    d = Path(directory)
    if (d / "metrics.json").is_file() and (d / "policy").is_dir():
        if not (d / "model.pt").is_file():
            raise RunError(f"{d}: a relu-budget run without its weights (model.pt); its policy was trained "
                           "for them, so it cannot be run on other weights")
        model, pol, _metrics = load_run(d)
        return pol, model.eval()
    return load_policy(d), None


def collect_runs(dirs: list[str]) -> list[dict]:
    runs = []
    for d in dirs:
        p = Path(d)
        found = [p / "metrics.json"] if (p / "metrics.json").is_file() else sorted(p.glob("*/metrics.json"))
        if not found:
            raise RunError(f"{d}: no metrics.json there or in its subdirectories")
        for f in found:
            m = json.loads(f.read_text())
            if m.get("format") != RUN_FORMAT:
                raise RunError(f"{f} is not a relu-budget run")
            m["_dir"] = str(f.parent)
            runs.append(m)
    return runs


def x_value(run: dict, x: str) -> float:
    if x == "relus":
        return float(run["relus"])
    cost = run.get("cost") or {}
    if x == "latency":
        return float(cost.get("online_seconds", float("nan")))
    if x == "bytes":
        return float(cost.get("online_bytes", 0) + cost.get("offline_bytes", 0))
    raise RunError(f"--x must be relus, latency or bytes, got {x!r}")
