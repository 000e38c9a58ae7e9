"""Sections that say where the numbers come from: the overview, the machines, and the commands
that reproduce them.
"""
from __future__ import annotations

import datetime

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
    s.data["commands"] = rows
    s.tables.append(Table("Commands (run from the repository root)", [("what", "what", "s"),
                                                                     ("command", "command", "s")], rows))
    s.notes.append("The measurements the report takes itself (in-process runs, native Circa faults, simulated "
                   "Circa accuracy) are re-taken by re-running the report command.")
    return s


def section_overview(inputs: dict, sections: list[Section], report_cmd: str, seconds: float) -> Section:
    s = Section("overview", dict(SECTIONS)["overview"])
    s.data["inputs"] = inputs
    s.notes.append(f"Generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} by "
                   f"`{report_cmd}` in {seconds:.1f} s.")
    rows = [{"section": sec.title, "id": sec.id, "status": sec.status,
             "what to run": "; ".join(sec.todo) if sec.todo else ""} for sec in sections]
    s.tables.append(Table("Sections", [("section", "section", "s"), ("status", "status", "s"),
                                       ("what to run", "what to run for what is missing", "s")], rows))
    s.tables.append(Table("Inputs", [("kind", "input", "s"), ("found", "found", "s")],
                          [{"kind": k, "found": ", ".join(v) if v else "none"} for k, v in inputs.items()]))
    return s
