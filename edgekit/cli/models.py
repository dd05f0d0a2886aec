"""List the model zoo: names, aliases, default resolution, params and multiply-adds at alpha 1.0, source.

example:
  edgekit models
  edgekit models --json
"""

from __future__ import annotations

import argparse

from ._args import add_json_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    from ..complexity import zoo
    from ..report import to_json

    result = zoo()
    print(to_json(result.to_dict()) if args.json else result.to_text())
    return 0
