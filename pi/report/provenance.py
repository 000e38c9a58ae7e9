"""Sections that say where the numbers come from: the overview, the machines, and the commands
that reproduce them.
"""
from __future__ import annotations

import datetime
import re
import shlex
import tempfile
from pathlib import Path

from pi.report.document import SECTIONS, Section, Table, rel
from pi.report.measure import this_machine


def section_machine(bench: dict, runs: list[dict], audits: list[dict]) -> Section:
    s = Section("machine", dict(SECTIONS)["machine"])
    here = this_machine()
    s.data["report"] = here
    rows = [{"source": "this report (its own measurements)", **{k: here.get(k) for k in
                                                                ("cpu", "cores", "threads", "aesni", "python",
                                                                 "numpy", "torch", "load_1min")}}]
    for kind, doc in sorted(bench.items()):
        m = doc.get("machine") or {}
        rows.append({"source": f"{rel(doc['_path'])} ({doc.get('date', '?')})",
                     **{k: m.get(k) for k in ("cpu", "cores", "threads", "aesni", "python", "numpy")}})
    s.data["sources"] = rows
    s.tables.append(Table("Machines the numbers were measured on", [("source", "source", "s"), ("cpu", "CPU", "s"),
                                                                   ("cores", "cores", "d"), ("threads", "threads", "d"),
                                                                   ("aesni", "AES-NI", "s"),
                                                                   ("python", "Python", "s"), ("torch", "torch", "s"),
                                                                   ("load_1min", "load (1 min)", ".2f")], rows))
    s.notes.append("Optimizer runs and audits record no machine; their commands are listed under Reproduce. "
                   "The machine is shared with other work, so timings carry that noise (load above).")
    return s


def portable_commands(commands: list[str], runs: list[dict]) -> tuple[list[str], bool]:
    """Commands rewritten to point where the runs are now: a run's recorded `--out` (often a
    temporary directory when it was made) becomes its present directory, in every command
    (teachers, audits). What is left under the temporary directory and gone becomes WORK/...
    Returns (commands, whether WORK was used)."""
    moved = {}
    for r in runs:
        argv = shlex.split(str(r.get("command") or ""))
        if "--out" in argv[:-1]:
            old = argv[argv.index("--out") + 1]
            if Path(old).resolve() != Path(r["_dir"]).resolve():
                moved[old.rstrip("/")] = rel(r["_dir"])
    tmp = tempfile.gettempdir().rstrip("/") + "/"
    work = False
    out = []
    for cmd in commands:
        for old in sorted(moved, key=len, reverse=True):
            cmd = re.sub(re.escape(old) + r"(?=/|\s|$)", moved[old], cmd)
        for token in set(re.findall(re.escape(tmp) + r"[^\s]+", cmd)):
            if not Path(token).exists():
                parts = Path(token).relative_to(tmp).parts
                cmd = cmd.replace(token, "/".join(("WORK",) + parts[1:]) if len(parts) > 1 else "WORK")
                work = True
        out.append(cmd)
    return out, work


def section_reproduce(report_cmd: str, runs, audits, bench) -> Section:
    s = Section("reproduce", dict(SECTIONS)["reproduce"])
    rows = [{"what": "this report", "command": report_cmd}]
    for kind, doc in sorted(bench.items()):
        rows.append({"what": f"{rel(doc['_path'])}", "command": doc.get("command", "?")})
    for r in sorted(runs, key=lambda r: r["_dir"]):
        rows.append({"what": f"run {rel(r['_dir'])}", "command": r.get("command", "?")})
    for a in audits:
        rows.append({"what": f"audit {rel(a['_path'])}", "command": a.get("command", "?")})
        for r in a["runs"]:
            if r.get("optimize_command") and not any(x["command"] == r["optimize_command"] for x in rows):
                rows.append({"what": f"audited run {r.get('label')}", "command": r["optimize_command"]})
    commands, work = portable_commands([r["command"] for r in rows], runs)
    whats, work_what = portable_commands([r["what"] for r in rows], runs)    # audited runs' recorded paths
    merged: dict[str, list[str]] = {}           # one row per command (a sweep makes many runs)
    for w, c in zip(whats, commands):
        merged.setdefault(c, []).append(w)
    rows = [{"what": w[0] + (f" and {len(w) - 1} more" if len(w) > 1 else ""), "command": c}
            for c, w in merged.items()]
    s.data["commands"] = rows
    s.tables.append(Table("Commands (run from the repository root)", [("what", "what", "s"),
                                                                     ("command", "command", "s")], rows))
    s.notes.append("The measurements the report takes itself (in-process runs, native Circa faults, simulated "
                   "Circa accuracy) are re-taken by re-running the report command.")
    s.notes.append("Paths in the runs' commands point where the runs are now, not where they were made.")
    if work or work_what:
        s.notes.append("WORK stands for a directory of your choice: those commands used a temporary directory "
                       "that no longer exists.")
    return s


def summarize_paths(paths: list[str]) -> str:
    """'12 in a/runs, 3 in b' for a list of paths (by parent directory)."""
    if not paths:
        return "none"
    by_parent: dict[str, int] = {}
    for p in paths:
        parent = str(Path(p).parent)
        by_parent[parent] = by_parent.get(parent, 0) + 1
    return ", ".join(f"{n} in {d}" for d, n in sorted(by_parent.items(), key=lambda kv: -kv[1]))


def section_overview(inputs: dict, sections: list[Section], report_cmd: str, seconds: float) -> Section:
    s = Section("overview", dict(SECTIONS)["overview"])
    s.data["inputs"] = inputs
    s.notes.append(f"Generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} by "
                   f"`{report_cmd}` in {seconds:.1f} s.")
    rows = [{"section": sec.title, "id": sec.id, "status": sec.status,
             "what to run": "; ".join(sec.todo) if sec.todo else ""} for sec in sections]
    s.tables.append(Table("Sections", [("section", "section", "s"), ("status", "status", "s"),
                                       ("what to run", "what to run for what is missing", "s")], rows))
    s.tables.append(Table("Inputs (every path is in the JSON)", [("kind", "input", "s"), ("found", "found", "s"),
                                                                ("origin", "from", "s")],
                          [{"kind": k, "found": summarize_paths(v["paths"]) if k != "measured here" else
                            (", ".join(v["paths"]) or "nothing"), "origin": v.get("origin", "")}
                           for k, v in inputs.items()]))
    return s
