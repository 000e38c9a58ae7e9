"""The report as data: sections of notes, tables and figures, and how values are written.

Every section builder returns a `Section`; the renderers (render.py) turn them into HTML and
Markdown, and `Section.to_dict()` into the JSON that holds every number shown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

REPORT_FORMAT = "pi-report"
REPORT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (("summary", "Summary"), ("overview", "Overview"), ("pareto", "Accuracy vs cost (Pareto)"),
            ("fairness", "Per-group accuracy vs budget (fairness audit)"),
            ("circa", "Circa: fault rate vs k and its accuracy effect"),
            ("layers", "Per-layer cost breakdown (default model)"), ("network", "LAN / WAN estimates"),
            ("machine", "Machine"), ("reproduce", "Commands that reproduce every number"))


class ReportError(ValueError):
    """Bad report input (unreadable file, wrong format); the message names the file."""


@dataclass
class Table:
    title: str
    columns: list[tuple[str, str, str]]      # (key, header, format spec)
    rows: list[dict]

    def to_dict(self) -> dict:
        return {"title": self.title, "columns": [c[1] for c in self.columns],
                "keys": [c[0] for c in self.columns], "rows": self.rows}


@dataclass
class Section:
    id: str
    title: str
    status: str = "ok"                       # "ok", "partial" or "missing"
    notes: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)     # commands to run for what is missing
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str, bytes]] = field(default_factory=list)   # (name, caption, png)
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "status": self.status, "notes": self.notes, "todo": self.todo,
                "tables": [t.to_dict() for t in self.tables], "figures": [f[0] for f in self.figures],
                "data": self.data}


# Format specs of table columns, besides Python's: values are stored raw (bytes, seconds,
# fractions) in the JSON and written for people here.
UNIT_SPECS = {"B": "bytes, shown in B / KB / MB / GB", "%": "a fraction, shown as a percentage",
              "ms": "seconds, shown in ms", "x": "a ratio, shown as 0.25× or 1/40"}


def human_bytes(n) -> str:
    n = float(n)
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}" if abs(n) < 100 * size else f"{n / size:.0f} {unit}"
    return f"{n:.0f} B"


def human_ratio(r) -> str:
    """A ratio of ours to a baseline: '1/23' or '1/4.6' below 1, else '1.3×'."""
    r = float(r)
    if 0 < r < 1:
        inv = 1 / r
        return f"1/{inv:.0f}" if inv >= 10 else f"1/{inv:.2g}"
    return f"{r:.2g}×"


def fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    try:
        if spec == "B":
            return human_bytes(v)
        if spec == "%":
            return f"{100 * float(v):.2f} %"
        if spec == "ms":
            ms = 1e3 * float(v)
            return f"{ms:.3g} ms" if ms < 100 else f"{ms:,.0f} ms"
        if spec == "x":
            return human_ratio(v)
        if spec.endswith("e") and v == 0:       # rates: 0.000e+00 reads worse than 0
            return "0"
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def pct(v):
    return None if v is None else 100 * v


def rel(p) -> str:
    """A path for people: relative to the working directory when it is below it, else relative
    to the repository when it is in it, else as given (home as ~)."""
    p = Path(p).resolve()
    for base in (Path.cwd().resolve(), REPO_ROOT):
        try:
            return str(p.relative_to(base)) or "."
        except ValueError:
            pass
    home = Path.home().resolve()
    try:
        return "~/" + str(p.relative_to(home))
    except ValueError:
        return str(p)
