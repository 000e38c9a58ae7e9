"""The argument parser of both command lines (`relu-budget`, `pi`): a usage error is one line.

argparse prints the usage (several lines) and then `PROG SUB: error: ...`; here every error of
a command line, from argparse or from the command itself, has the one form `NAME: error: what
to do`, NAME being the program (`pi`, `relu-budget`), with the subcommand's `--help` named.
"""
from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (and its subparsers' errors) are one line on stderr, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see `{self.prog} --help`)\n")
