"""Params and multiply-adds of a model at a width multiplier and resolution, with a per-stage breakdown.

MACs are multiply-adds of convolutions (incl. grouped, depthwise, SE) and fully-connected layers, counted with
torch.utils.flop_counter (FLOPs / 2): the papers' convention.

example:
  edgekit info mobilenet_v3 --alpha 0.75 --res 224
  edgekit info efficientnet_b0 --json
"""

from __future__ import annotations

import argparse

from ..complexity import info
from ..report import to_json
from ._args import add_json_arg, add_model_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser)
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    result = info(args.name, alpha=args.alpha, res=args.res)
    print(to_json(result) if args.json else result.to_text())
    return 0
