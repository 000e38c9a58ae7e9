"""Shared plumbing of the benchmarks: timing, the machine description, tables, result files."""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy
import pi_native


def time_runs(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    """Runs fn warmup + repeats times; returns median/min/max seconds of the timed runs."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats}


def add_run_flags(p) -> None:
    """The flags of the end-to-end benchmarks (`pi bench model`, `pi bench relu`): threads, the
    wait for a quiet machine, the result file."""
    p.add_argument("--threads", type=int, default=1, help="kernel threads per party process (both systems)")
    p.add_argument("--max-load", type=float, default=None,
                   help="first wait (up to --max-wait s) until the 1-minute load average is below this")
    p.add_argument("--max-wait", type=float, default=600)
    p.add_argument("--json", metavar="PATH", help="write rows (and a .md twin) here")


def versus_crypten(rows: list[dict], keys: Sequence[str], ratios: dict[str, str]) -> list[dict]:
    """Each of our rows against the CrypTen row with the same `keys` (e.g. workload and batch):
    for every `name: metric` of `ratios`, ours / CrypTen's."""
    out = []
    for r in rows:
        if r["system"] != "pi":
            continue
        base = next((c for c in rows if c["system"] == "crypten" and all(c[k] == r[k] for k in keys)), None)
        if base is None:
            continue
        out.append({**{k: r[k] for k in keys}, "policy": r["policy"],
                    **({"provider": r["provider"]} if "provider" in r else {}),
                    **{name: r[metric] / base[metric] for name, metric in ratios.items()}})
    return out


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": pi_native.get_num_threads(),
            "aesni": pi_native.has_aesni(), "python": platform.python_version(),
            "platform": platform.platform(), "numpy": numpy.__version__}
    return info


def command_line() -> str:
    """The command as a user would retype it."""
    prog = Path(sys.argv[0]).name
    if prog == "__main__.py":               # `python -m pi ...` is the `pi` command
        prog = Path(sys.argv[0]).parent.name
    return " ".join(shlex.quote(a) for a in [prog, *sys.argv[1:]])


def target_value_text(t: dict) -> str:
    """A target's measured value in the unit its text states (bench model's targets(); result
    files store the raw value: agreement as a fraction, seconds, ratios)."""
    v, what = t.get("value"), t["target"]
    if v is None:
        return "-"
    if "agreement" in what:
        return f"{100 * v:.1f} %"
    if "of CrypTen" in what:
        return f"1/{1 / v:.3g}" if v > 0 else "0"
    if "points" in what:
        return f"{v:+.2f} points"
    if re.search(r"\dx (smaller|lower|below)", what):
        return f"{v:.2f}x"
    if what.endswith(" ms"):
        return f"{1e3 * v:.1f} ms"
    if "per ReLU" in what:
        return f"{v:.0f} B"
    return f"{v:.4g}"


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """columns: (key, header with unit, format spec). None prints as '-'."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append(["-" if row.get(k) is None else format(row[k], f) for k, _, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_results(path: str | os.PathLike, name: str, rows: list[dict], extra: dict | None = None,
                  markdown: str | None = None) -> Path:
    """Writes {benchmark, command, machine, date, rows} as JSON, and a Markdown twin if given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "command": command_line(), "date": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "machine": machine(), **(extra or {}), "rows": rows}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    if markdown is not None:
        m = doc["machine"]
        header = (f"# {name}\n\nCommand: `{doc['command']}`  \nDate: {doc['date']}  \n"
                  f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} kernel threads, "
                  f"AES-NI {'yes' if m['aesni'] else 'no'}\n\n")
        path.with_suffix(".md").write_text(header + markdown + "\n")
    return path


def load_line(load: dict) -> str:
    """The machine load over a run (`load_1min_at_start`, `load_1min_at_end`, `cores`), one sentence."""
    return (f"Machine load (1-min load average) {load['load_1min_at_start']:.2f} at start, "
            f"{load['load_1min_at_end']:.2f} at end, on {load['cores']} cores shared with other jobs.")


def write_with_notes(path, name: str, rows: list[dict], columns, notes: list[str], load: dict, targets: dict) -> None:
    """A result file with the load and the targets' verdicts (`targets["lines"]`, the rest is
    stored); its Markdown twin is the table, then the notes, the load and the verdicts."""
    lines = [*notes, load_line(load), *targets["lines"]]
    write_results(path, name, rows, extra={"load": load, "targets": {k: v for k, v in targets.items() if k != "lines"}},
                  markdown=markdown_table(rows, columns) + "\n\n" + "\n".join(f"- {x}" for x in lines))
    print(f"wrote {path}")


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---:" for _ in columns) + "|"
    body = ["| " + " | ".join("-" if r.get(k) is None else format(r[k], f) for k, _, f in columns) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])
