"""Every error of the two command lines is one line of the form `NAME: error: what to do`
(NAME = pi or relu-budget): argparse's usage errors, and the commands' own checks (pi soak,
pi bench he, pi report used to print `error: ...`, `pi report: error: ...` or usage blocks)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PI = [str(BIN / "pi")] if (BIN / "pi").is_file() else [sys.executable, "-m", "pi"]
RB = [str(BIN / "relu-budget")] if (BIN / "relu-budget").is_file() else [sys.executable, "-m", "relu_budget.cli"]
ENV = {**{k: v for k, v in os.environ.items() if k != "PI_DEBUG"}, "PYTHONWARNINGS": "ignore"}


def assert_one_line(code: int, err: str, name: str, *needles: str) -> str:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{name}: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def pi_main(capsys, *argv) -> tuple[int, str]:
    """pi.cli.main in this process: argparse errors exit (SystemExit), command errors return 2."""
    from pi.cli import main
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,needles", [
    (["soak", "--clients", "0"], ["--clients and --batch must be >= 1"]),
    (["soak", "--clients", "x"], ["argument --clients", "pi soak --help"]),
    (["bench", "he", "--workloads", "nosuch"], ["unknown workload 'nosuch'"]),
    (["bench", "he", "--ring-bits", "99"], ["--ring-bits must be"]),
    (["report", "--out", "r.html", "--committed", "--results-dir", "."], ["give one"]),
    (["compile"], ["the following arguments are required", "pi compile --help"]),
    (["nosuch"], ["invalid choice", "pi --help"]),
    ([], ["required: COMMAND"]),
])
def test_pi_errors_are_one_line(capsys, argv, needles):
    assert_one_line(*pi_main(capsys, *argv), "pi", *needles)


def test_relu_budget_errors_are_one_line(capsys):
    from relu_budget.cli import main
    for argv, needles in ((["optimize"], ["required: --method", "relu-budget optimize --help"]),
                          (["optimize", "--method", "snl", "--budget", "5%", "--out", "o", "--arch", "x"],
                           ["argument --arch"]),
                          (["eval", "/nonexistent/run"], ["/nonexistent/run"])):
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        assert_one_line(code, capsys.readouterr().err, "relu-budget", *needles)


def test_relu_budget_bad_checkpoints_are_one_line(tmp_path):
    """An empty checkpoint, a plain state_dict and a run directory given as --teacher were
    tracebacks (a ValueError relu-budget did not catch); the run directory names its model.pt."""
    import torch
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    (tmp_path / "run").mkdir()
    torch.save({"w": torch.zeros(2)}, tmp_path / "run" / "model.pt")
    base = ["optimize", "--method", "snl", "--arch", "smallcnn", "--dataset", "synthetic", "--budget", "5%",
            "--out", "o"]
    for argv, needles in ((base + ["--teacher", "empty.pt"], ["empty.pt is not a readable checkpoint (empty or"]),
                          (base + ["--teacher", "weights.pt"], ["plain state_dict", "save_checkpoint"]),
                          (base + ["--teacher", "run"], ["run is a directory", "model.pt inside it"])):
        res = subprocess.run(RB + argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert_one_line(res.returncode, res.stderr, "relu-budget", *needles)


def test_the_entry_points_print_one_line(tmp_path):
    """The installed commands, as a user runs them (one argparse error and one command error each)."""
    for cmd, name, argv in ((PI, "pi", ["soak", "--seconds", "0"]), (PI, "pi", ["infer"]),
                            (RB, "relu-budget", ["pareto"]), (RB, "relu-budget", ["eval", "missing-run"])):
        res = subprocess.run(cmd + argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert_one_line(res.returncode, res.stderr, name)
