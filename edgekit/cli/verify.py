"""Prove an export computes what its PyTorch model computes, or say where it does not.

Reads edgekit's metadata from the file (ONNX or TorchScript .pt), rebuilds the unfused eager PyTorch model with the
same weights or seed, runs both on seeded inputs (normal, image-like, constant, checkerboard; batch 1 and, when the
batch is symbolic, batch 3) and compares every output: max/mean/p99.9 abs error, relative errors, cosine, top-1/5.
On failure it names the first layer whose output diverges. Exit 0 pass, 1 fail, 2 usage error.

Default fp32 tolerance: max|c - r| <= 1e-5 + 1e-4 * max|r| per sample, cosine >= 0.99999, top-1 agrees
(near-ties excepted); --tolerance fp16 is 1e-3 + 1e-2 * max|r|, cosine >= 0.999. Where the reference itself
amplifies rounding, the bound widens to 4x how far PyTorch's own Conv-BN fold moves it (the ref_noise column), and
beyond 1e-2 of the peak nothing is certified. The rationale is in the docstring of edgekit/verify.py.

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
    parser.add_argument("file", metavar="FILE", help="exported model: .onnx, TorchScript .pt or torch.export .pt2")
    parser.add_argument("--against", metavar="REF", default=None,
                        help="compare with another export instead of the eager PyTorch model")
    ref = parser.add_argument_group("reference model (for files without edgekit metadata; override it otherwise)")
    ref.add_argument("--model", metavar="NAME", default=None, help="registered model name (see 'edgekit models')")
    ref.add_argument("--alpha", metavar="A", default=None, help="width multiplier")
    ref.add_argument("--res", metavar="R", default=None, help="input resolution in pixels")
    ref.add_argument("--weights", metavar="W", default=None,
                     help="seed:N (seeded weights, default seed:0), imagenet, or a state_dict file")
    ref.add_argument("--num-classes", metavar="N", default=None, type=_int_or_str, help="classifier outputs")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--batch", metavar="N", nargs="+", default=None,
                        help="batch sizes to test (default: 1, and 3 when the batch dimension is symbolic)")
    inputs.add_argument("--inputs", metavar="FILE.npz", default=None,
                        help="your own NCHW float32 tensors, one case per array (numpy.savez)")
    inputs.add_argument("--seed", metavar="S", default="0", help="seed of the generated inputs (default 0)")
    check = parser.add_argument_group("verdict")
    check.add_argument("--provider", default="cpu", metavar="{cpu,cuda}",
                       help="where the candidate runs (ONNX Runtime execution provider; default cpu)")
    check.add_argument("--tolerance", default="fp32", metavar="{fp32,fp16}", help="tolerance preset (default fp32)")
    check.add_argument("--atol", metavar="X", default=None, help="absolute tolerance (overrides the preset)")
    check.add_argument("--rtol", metavar="Y", default=None,
                       help="tolerance relative to each sample's peak |reference| (overrides the preset)")
    check.add_argument("--no-localize", action="store_true", help="on failure, do not search the diverging layer")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON instead of a table")


def _int_or_str(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def run(args: argparse.Namespace) -> int:
    from ..errors import BadArgument
    from ..report import to_json
    from ..verify import VerifyOptions, verify

    try:
        input_seed = int(args.seed)
    except ValueError:
        raise BadArgument(f"--seed must be a non-negative integer, got {args.seed!r}") from None
    options = VerifyOptions(
        against=args.against,
        model=args.model,
        alpha=args.alpha,
        res=args.res,
        weights=args.weights,
        num_classes=args.num_classes,
        batches=tuple(args.batch) if args.batch is not None else None,
        inputs=args.inputs,
        input_seed=input_seed,
        provider=args.provider,
        tolerance=args.tolerance,
        atol=args.atol,
        rtol=args.rtol,
        localize=not args.no_localize,
    )
    report = verify(args.file, options=options)
    print(to_json(report) if args.json else report.to_table())
    report.raise_if_failed()
    return 0
