"""Params, multiply-adds and memory traffic of a model at a width multiplier and resolution, per stage.

MACs are multiply-adds of convolutions (incl. grouped, depthwise, SE) and fully-connected layers, counted with
torch.utils.flop_counter (FLOPs / 2): the papers' convention. Memory traffic (the ShuffleNetV2 paper's point: FLOPs
are not speed) is what each stage's layers read and write at batch 1 in fp32: weights (biases included, as after
Conv-BN folding), the conv/linear layers' input and output activations, and the other ops' tensors (activations,
adds, pooling, concatenations, the channel shuffle's copies). MAC/B is multiply-adds per byte: stages far below a
few MACs per byte are bound by memory, not arithmetic, on a CPU.

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
    from ..memory_cost import memory_cost

    result = info(args.name, alpha=args.alpha, res=args.res)
    cost = memory_cost(result.name, alpha=result.alpha, res=result.res, num_classes=result.num_classes)
    if args.json:
        print(to_json({**result.to_dict(), "memory": cost.to_dict()}))
        return 0
    print(result.to_text(memory=cost))
    return 0
