"""The `pi` command: serving, inference, benchmarks and reports.

Each subcommand lives in its own module and registers itself through `add_parser(sub)`;
this file only assembles them, so adding a command never touches the others.
"""
from __future__ import annotations

import argparse
import sys

from pi import bench, commands, demo, report, soak


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, commands, bench, report, soak):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from relu_budget.runs import RunError
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RunError as exc:       # a bad run / policy directory given to pi demo or pi bench
        print(f"pi: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
