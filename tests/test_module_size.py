"""Modules stay small: a source file over 500 lines says at its top why it is one module.

The sentence must start "Over 500 lines" within the file's first 20 lines (its docstring or head
comment), so that a reader sees the reason before the length, and a file that grows past 500
lines without one fails here.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 500
SOURCES = ("*.py", "*.cpp", "*.hpp", "*.h", "*.sh")


def tracked_sources() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--", *SOURCES], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / p for p in out.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


def unexplained_long_files(files) -> list[str]:
    bad = []
    for f in files:
        lines = Path(f).read_text(errors="replace").splitlines()
        if len(lines) > LIMIT and not any("over 500 lines" in line.lower() for line in lines[:20]):
            bad.append(f"{Path(f).relative_to(ROOT) if Path(f).is_relative_to(ROOT) else f}: {len(lines)} lines")
    return bad


def test_the_check_sees_a_long_file_without_a_reason(tmp_path):
    long = tmp_path / "long.py"
    long.write_text('"""A module."""\n' + "x = 1\n" * LIMIT)
    explained = tmp_path / "explained.py"
    explained.write_text('"""A module.\n\nOver 500 lines on purpose: one table."""\n' + "x = 1\n" * LIMIT)
    short = tmp_path / "short.py"
    short.write_text("x = 1\n" * LIMIT)
    assert unexplained_long_files([long, explained, short]) == [f"{long}: {LIMIT + 1} lines"]


def test_every_long_module_says_why():
    bad = unexplained_long_files(tracked_sources())
    assert not bad, ("over 500 lines without a sentence 'Over 500 lines ...' at the top saying why "
                     "(or split the module by job):\n" + "\n".join(bad))
