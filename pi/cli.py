"""The `pi` command: serving, inference, benchmarks and reports.

Each subcommand lives in its own module and registers itself through `add_parser(sub)`;
this file only assembles them, so adding a command never touches the others. Modules import
torch inside the commands that need it, so `pi --help`, `pi keys` and `pi dealer` start fast.
"""
from __future__ import annotations

import argparse
import os
import sys

from pi.errors import error_line, user_errors
from relu_budget.cli_parser import OneLineParser

DEBUG_ENV = "PI_DEBUG"   # set to 1 to see the traceback behind a one-line error


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    from pi import bench, commands, demo, report, soak
    parser = OneLineParser(prog="pi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The benchmark targets import torch; they are loaded only when `pi bench` is asked for.
    wants_bench = argv is None or "bench" in argv
    for module in (demo, commands, report, soak):
        module.add_parser(sub)
    bench.add_parser(sub, targets=None if wants_bench else [])
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pi: warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    import warnings
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning       # a command's warnings, like its errors: one line each
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors() as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"pi: error: {error_line(exc)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
