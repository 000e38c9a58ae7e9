"""What a report reads: relu-budget runs, fairness audits and benchmark result files.

Where each kind of input comes from (`gather`), in order: the paths given (`--runs`,
`--audits`); else `--results-dir DIR` (or `--committed`: the package's own results) for
everything; else what lies in the working directory (up to WALK_DEPTH levels down); else, as
a fallback that the report says it took, the package's committed results.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pi.report.document import REPO_ROOT, ReportError, rel
from relu_budget.runs import RUN_FORMAT

# Local imports: torch-backed readers (policies, checkpoints, audits) are imported where used: `pi --help`
# imports pi.report.

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results"
WALK_DEPTH = 4                  # directories below the working directory searched for inputs
WALK_MAX_FILES = 5000           # JSON files read at most there
SKIP_DIRS = {"node_modules", "__pycache__", "build", "dist", "site-packages"}
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
    return newest_bench(sorted(results_dir.glob("*.json")) if results_dir.is_dir() else [])


def newest_bench(files) -> dict[str, dict]:
    """Per kind, the newest file. `pi bench model` files with two-party rows are their own kind,
    `model_two_party` (the two-party table and targets): the headline comparisons stay with the
    newest dealer-only run."""
    found: dict[str, dict] = {}
    for f in files:
        try:
            doc = json.loads(Path(f).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
            continue
        name = str(doc.get("benchmark", ""))
        two_party = any(isinstance(r, dict) and r.get("provider") == "two-party" for r in doc["rows"])
        for kind, prefix in BENCH_KINDS.items():
            kind = "model_two_party" if kind == "model" and two_party else kind
            if name.startswith(prefix) and (kind not in found or doc.get("date", "") > found[kind].get("date", "")):
                doc["_path"] = str(f)
                found[kind] = doc
    return found


def json_files_below(root: Path, skip: set[Path] = frozenset()) -> list[Path]:
    """JSON files at most WALK_DEPTH directories below root (hidden and tool directories, and
    `skip`, left out), in a stable order, at most WALK_MAX_FILES."""
    root = Path(root).resolve()
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        deep = len(d.relative_to(root).parts) >= WALK_DEPTH
        dirnames[:] = [] if deep else sorted(n for n in dirnames if not n.startswith(".") and n not in SKIP_DIRS
                                             and (d / n).resolve() not in skip)
        out += [d / f for f in sorted(filenames) if f.endswith(".json")]
        if len(out) >= WALK_MAX_FILES:
            break
    return out[:WALK_MAX_FILES]


def _classify(files: list[Path]) -> tuple[list[dict], list[dict], dict[str, dict]]:
    """Runs, audits and benchmark files among JSON files found by searching (unreadable or
    foreign files are not inputs, so they are passed over)."""
    from relu_budget.fairness import AUDIT_FORMAT, AuditError, validate_audit
    runs, audits = [], []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        if doc.get("format") == RUN_FORMAT and f.name == "metrics.json":
            doc["_dir"] = str(f.parent)
            runs.append(doc)
        elif doc.get("format") == AUDIT_FORMAT:
            try:
                validate_audit(doc, str(f))
            except AuditError:
                continue
            doc["_path"] = str(f)
            audits.append(doc)
    return runs, audits, newest_bench(files)


@dataclass
class Inputs:
    runs: list[dict]
    audits: list[dict]
    bench: dict[str, dict]
    origins: dict[str, str] = field(default_factory=dict)     # kind -> where it came from, in words
    fallback: list[str] = field(default_factory=list)         # kinds taken from the committed results


def gather(runs: list[str] | None, audits: list[str] | None, results_dir: str | None = None,
           committed: bool = False, cwd: Path | None = None) -> Inputs:
    """The report's inputs and where each kind came from (module docstring)."""
    if results_dir or committed:
        base = Path(results_dir) if results_dir else DEFAULT_RESULTS
        where = f"{rel(base)} (--results-dir)" if results_dir else \
            f"the package's committed results in {rel(base)} (--committed)"
        out = Inputs(find_runs(runs, base), find_audits(audits, base), find_bench(base))
        out.origins = {"runs": "the paths given with --runs" if runs else where,
                       "audits": "the paths given with --audits" if audits else where, "benchmarks": where}
        return out
    cwd = Path(cwd or Path.cwd()).resolve()
    # The package's own results and demo assets are never "the user's" (they are the fallback).
    package = {(REPO_ROOT / d).resolve() for d in ("benchmarks", "demos", "tests")}
    here_runs, here_audits, here_bench = _classify(json_files_below(cwd, skip=package))
    out = Inputs(find_runs(runs, DEFAULT_RESULTS) if runs else here_runs,
                 find_audits(audits, DEFAULT_RESULTS) if audits else here_audits, here_bench)
    here = f"the working directory ({rel(cwd)}, searched {WALK_DEPTH} levels down)"
    out.origins = {"runs": "the paths given with --runs" if runs else here,
                   "audits": "the paths given with --audits" if audits else here, "benchmarks": here}
    # Said plainly, since the working directory may well be the repository, where the package's
    # own results lie but are not searched.
    fallback = (f"the package's committed results in {rel(DEFAULT_RESULTS)}: none given, and none found in the "
                "working directory outside the package's own benchmarks/, demos/ and tests/")
    if not out.runs and not runs:
        out.runs, out.origins["runs"] = find_runs(None, DEFAULT_RESULTS), fallback
        out.fallback.append("runs")
    if not out.audits and not audits:
        out.audits, out.origins["audits"] = find_audits(None, DEFAULT_RESULTS), fallback
        out.fallback.append("audits")
    if not out.bench:
        out.bench, out.origins["benchmarks"] = find_bench(DEFAULT_RESULTS), fallback
        out.fallback.append("benchmarks")
    return out


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
