"""`ruff check` with the project's configuration (pyproject.toml) finds nothing in the tree.

ruff's version is pinned in the dev dependencies: its default rule set changes between releases,
so an unpinned ruff could fail (or pass) this test on a tree nobody changed. A finding that is
not a fault gets a per-line `# noqa: RULE -- reason`, never a blanket ignore."""
from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ruff_is_the_pinned_version():
    pinned = re.search(r'"ruff==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml's dev dependencies must pin ruff (ruff==X.Y.Z)"
    assert version("ruff") == pinned.group(1), f"ruff {version('ruff')} is installed, {pinned.group(1)} is pinned: " \
                                               "run `make setup`"


def test_the_tree_has_no_ruff_findings():
    out = ruff(".")
    assert out.returncode == 0, f"ruff check . found:\n{out.stdout}{out.stderr}"


def test_the_project_config_flags_a_fault(tmp_path):
    """The check is live: the project's configuration reports an unused import in a new file."""
    (tmp_path / "bad.py").write_text("import os\n")
    out = ruff("--config", str(ROOT / "pyproject.toml"), str(tmp_path / "bad.py"))
    assert out.returncode == 1 and "F401" in out.stdout, out.stdout + out.stderr
