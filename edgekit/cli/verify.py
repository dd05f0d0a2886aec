"""Prove an export computes what its PyTorch model computes, or say where it does not.

Reads edgekit's metadata from the file (ONNX, TorchScript .pt, torch.export .pt2, ...), rebuilds the unfused eager
PyTorch model with the same weights or seed, runs both on seeded inputs (normal, image-like, constant,
checkerboard; batch 1 and, when the batch is symbolic, batch 3) and compares every output: max/mean/p99.9 abs
error, relative errors, cosine, top-1/5. On failure it names the first layer whose output diverges. The candidate
runs on its format's runtime unless --runtime/--provider say otherwise. Exit 0 pass, 1 fail, 2 usage error.

Default fp32 tolerance: max|c - r| <= 1e-5 + 1e-4 * max|r| per sample, cosine >= 0.99999, top-1 agrees
(near-ties excepted); --tolerance fp16 is 1e-3 + 1e-2 * max|r|, cosine >= 0.999. Where the reference itself
amplifies rounding, the bound widens to 4x how far PyTorch's own rounding variants (Conv-BN folded, channels-last)
move it (the ref_noise column), and beyond 1e-2 of the peak nothing is certified. The rationale is in the docstring of edgekit/verify/__init__.py.

examples:
  edgekit verify exports/mobilenet_v3_large_a0.75_r192/mobilenet_v3_large_a0.75_r192.onnx
  edgekit verify model.pt --batch 1 4 --json
  edgekit verify plain.onnx --model mobilenet_v2 --alpha 0.5 --res 160 --weights my_state_dict.pth
  edgekit verify model.onnx --against model.pt
  edgekit verify model.onnx --inputs my_images.npz --provider cuda
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import add_arguments as add_options
    from ..verify.options import VerifyOptions

    parser.add_argument("file", metavar="FILE", help="exported model: .onnx, TorchScript .pt, torch.export .pt2, ...")
    add_options(parser, VerifyOptions, include=["against"])
    ref = parser.add_argument_group("reference model (for files without edgekit metadata; override it otherwise)")
    add_options(ref, VerifyOptions, include=["model", "alpha", "res", "weights", "num_classes"])
    inputs = parser.add_argument_group("inputs")
    add_options(inputs, VerifyOptions, include=["batches", "inputs", "input_seed"])
    check = parser.add_argument_group("runtime and verdict")
    add_options(check, VerifyOptions, include=["runtime", "provider", "tolerance", "atol", "rtol", "localize"])
    parser.add_argument("--json", action="store_true", help="print the full report as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..options import given
    from ..report import to_json
    from ..verify import VerifyOptions, verify

    values = given(args, VerifyOptions)
    if "batches" in values:
        values["batches"] = tuple(values["batches"])
    report = verify(args.file, options=VerifyOptions(**values))
    print(to_json(report) if args.json else report.to_text())
    report.raise_if_failed()
    return 0
