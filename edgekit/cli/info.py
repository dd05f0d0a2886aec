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
from ..report import human, mega, table, to_json
from ._args import add_json_arg, add_model_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser)
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    result = info(args.name, alpha=args.alpha, res=args.res)
    if args.json:
        print(to_json(result))
        return 0
    print(f"{result.name}  alpha {result.alpha:g}  res {result.res}  input {list(result.input_shape)}")
    print(f"params {human(result.params)} ({result.params:,})   MACs {human(result.macs)} ({result.macs:,})\n")
    rows = [
        [s.name, mega(s.params), mega(s.macs), f"{100 * s.macs / max(result.macs, 1):.1f}%", "x".join(map(str, s.out_shape[1:]))]
        for s in result.stages
    ]
    print(table(rows, ["stage", "params(M)", "MACs(M)", "MACs%", "output CxHxW"], align="lrrrl"))
    print(f"\nsource: {result.source}")
    return 0
