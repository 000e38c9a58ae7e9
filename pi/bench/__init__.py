"""`pi bench`: measured costs of our protocols, each target in its own module.

A benchmark module exposes `NAME`, `HELP`, `configure(parser)` and `run(args) -> int`;
listing it in `TARGETS` makes it a subcommand (`pi bench NAME ...`).
"""
from __future__ import annotations

import argparse
import importlib

TARGETS = ["gemm", "native", "relu", "model", "gc", "he"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks (results as a table and optional JSON)")
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name in TARGETS:
        module = importlib.import_module(f"pi.bench.{name}")
        p = targets.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(func=module.run)
