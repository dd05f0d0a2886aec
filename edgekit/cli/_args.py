"""Argument helpers shared by the subcommands (kept as strings so edgekit, not argparse, names the problem)."""

from __future__ import annotations

import argparse


def add_model_args(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        parser.add_argument("name", metavar="NAME", help="model name or alias (see 'edgekit models')")
    parser.add_argument("--alpha", default="1.0", metavar="A", help="width multiplier (> 0; default 1.0)")
    parser.add_argument("--res", default=None, metavar="R", help="input resolution in pixels (default: the model's published one)")


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
