"""`pi demo`: placeholder until the secure engine lands (filled in by the foundation work)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the demo on the embedded default model")
    p.set_defaults(func=lambda args: 0)
