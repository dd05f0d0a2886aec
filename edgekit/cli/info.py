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
from ..report import human, mega, table, to_json
from ._args import add_json_arg, add_model_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser)
    add_json_arg(parser)


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f}"


def run(args: argparse.Namespace) -> int:
    from ..memory_cost import memory_cost

    result = info(args.name, alpha=args.alpha, res=args.res)
    cost = memory_cost(result.name, alpha=result.alpha, res=result.res, num_classes=result.num_classes)
    if args.json:
        print(to_json({**result.to_dict(), "memory": cost.to_dict()}))
        return 0
    print(f"{result.name}  alpha {result.alpha:g}  res {result.res}  input {list(result.input_shape)}")
    print(f"params {human(result.params)} ({result.params:,})   MACs {human(result.macs)} ({result.macs:,})")
    print(f"memory traffic (fp32, batch 1) {human(cost.bytes, 'B')}: {cost.macs / max(cost.bytes, 1):.2f} MACs per "
          "byte\n")
    traffic = {s.name: s for s in cost.stages}
    rows = []
    for s in result.stages:
        moved = traffic.get(s.name)
        rows.append([s.name, mega(s.params), mega(s.macs), f"{100 * s.macs / max(result.macs, 1):.1f}%",
                     *((_mb(moved.weight_bytes), _mb(moved.act_bytes), _mb(moved.other_bytes), f"{moved.intensity:.2f}")
                       if moved else ("-",) * 4),
                     "x".join(map(str, s.out_shape[1:]))])
    shown = {s.name for s in result.stages}
    rows += [[s.name, "", "", "", _mb(s.weight_bytes), _mb(s.act_bytes), _mb(s.other_bytes), f"{s.intensity:.2f}", ""]
             for s in cost.stages if s.name not in shown]  # ops in the model's own forward (a global mean)
    print(table(rows, ["stage", "params(M)", "MACs(M)", "MACs%", "weights MB", "act MB", "other MB", "MAC/B",
                       "output CxHxW"], align="lrrrrrrrl"))
    print("\nweights: parameters read (with biases); act: conv/linear inputs and outputs; other: the ops between "
          "them\n(activations, adds, pooling, concatenation, shuffle copies); MAC/B: multiply-adds per byte moved")
    print(f"\nsource: {result.source}")
    return 0
