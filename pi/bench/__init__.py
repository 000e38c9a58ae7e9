"""`pi bench`: measured costs of our protocols, each target in its own module.

A benchmark module exposes `NAME`, `HELP`, `configure(parser)` and `run(args) -> int`;
listing it in `TARGETS` makes it a subcommand (`pi bench NAME ...`).
"""
from __future__ import annotations

import argparse
import importlib

TARGETS = ["gemm", "native", "relu", "model", "gc", "he"]


def add_parser(sub: argparse._SubParsersAction, targets: list[str] | None = None) -> None:
    """targets: the target modules to load (default all; `pi --help` loads none, they import torch)."""
    parser = sub.add_parser("bench", help="benchmarks (results as a table and optional JSON)")
    subs = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name in TARGETS if targets is None else targets:
        module = importlib.import_module(f"pi.bench.{name}")
        p = subs.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(func=module.run)
