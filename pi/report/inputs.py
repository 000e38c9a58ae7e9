"""What a report reads: relu-budget runs, fairness audits and benchmark result files.
"""
from __future__ import annotations

import json
from pathlib import Path

from pi.report.document import ReportError

ROOT = Path(__file__).resolve().parents[2]


DEFAULT_RESULTS = ROOT / "benchmarks" / "results"


BENCH_KINDS = {"native": "FSS gates of pi_native", "gemm": "ring GEMM", "relu": "pi bench relu",
               "model": "pi bench model"}


INPUT_SHAPES = {"fashion-mnist": (1, 28, 28), "digits": (1, 8, 8), "synthetic": (1, 12, 12)}


def read_json(path: Path) -> dict | None:
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
            m = read_json(f)
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
        doc = read_json(f)
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


def load_run_model(run: dict):
    """(model with policy applied, policy dir) if the run still has its weights, else None."""
    d = Path(run["_dir"])
    if not (d / "model.pt").is_file() or not (d / "policy" / "policy.yaml").is_file():
        return None
    from relu_budget.policy import load_policy
    from relu_budget.train import load_checkpoint
    model, _ = load_checkpoint(d / "model.pt")
    load_policy(d / "policy").apply(model)
    return model, d / "policy"
