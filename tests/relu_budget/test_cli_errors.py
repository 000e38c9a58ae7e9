"""`relu-budget` as a user runs it: the installed entry point in a subprocess; a mismatched
--teacher says the fix in one line; --arch lists the architectures."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relu_budget import cli, models
from relu_budget.train import save_checkpoint

BIN = Path(sys.executable).parent
RB = [str(BIN / "relu-budget")] if (BIN / "relu-budget").is_file() else [sys.executable, "-m", "relu_budget.cli"]


def run(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(RB + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_teacher_mismatch_says_the_fix_in_one_line(tmp_path):
    """The README's command once stopped here with two config dumps and no fix."""
    small = dict(widths=(4, 8), blocks=(1, 1), strides=(1, 2), num_classes=4)
    teacher = models.build("resnet18", **small, stem_stride=2)
    save_checkpoint(tmp_path / "teacher.pt", teacher, {"dataset": "synthetic"})
    sets = ["--model-set", "widths=4,8", "--model-set", "blocks=1,1", "--model-set", "strides=1,2"]
    res = run("optimize", "--method", "snl", "--arch", "resnet18", *sets, "--dataset", "synthetic",
              "--budget", "50%", "--teacher", "teacher.pt", "--out", "run", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line == ("relu-budget: error: --teacher teacher.pt was built with stem_stride=2 (--arch resnet18 "
                    "builds 1); add --model-set stem_stride=2 to match it"), line
    assert not (tmp_path / "run").exists(), "a refused run must not leave an empty --out behind"
    # The fix it names makes the configurations equal.
    from relu_budget.data import synthetic
    fixed = cli.build_model("resnet18", synthetic(), {"widths": [4, 8], "blocks": [1, 1], "strides": [1, 2],
                                                      "stem_stride": 2})
    assert fixed.config == teacher.config


def test_arch_help_lists_the_architectures(tmp_path):
    assert set(cli.ARCH_NAMES) == set(models.ARCHITECTURES)
    res = run("optimize", "--help", cwd=tmp_path)
    assert res.returncode == 0
    for name in models.ARCHITECTURES:
        assert name in res.stdout
    res = run("optimize", "--method", "snl", "--arch", "resnet99", "--budget", "5", "--out", "x", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice: 'resnet99'" in res.stderr and "resnet-small" in res.stderr
