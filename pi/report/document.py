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


SECTIONS = (("overview", "Overview"), ("pareto", "Accuracy vs cost (Pareto)"),
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


def fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def pct(v):
    return None if v is None else 100 * v


def rel(p) -> str:
    p = Path(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
