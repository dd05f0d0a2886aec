"""INT8 or fp16 from an fp32 ONNX file, with proof: agreement, accuracy, the layers that hurt, latency.

INT8 is ONNX Runtime's static post-training quantization (quant_pre_process + quantize_static, QDQ, int8 weights
per channel by default) calibrated on your images with the file's own preprocessing (shorter side to res/0.875,
centre crop, [0,1], mean/std from its metadata). --to fp16 keeps fp32 inputs/outputs and names any layer that
produces Inf/NaN. The report ends with one comparison of the fp32 and the new file: size, top-1 agreement, accuracy
(when the images are labelled, or --eval DIR) and latency timed one after the other. It says so when the new file
is slower. Exit 0 written, 1 failure (nothing written), 2 usage error.

--scheme auto tries U8S8/S8S8 x per-channel/per-tensor and keeps the fastest that meets --target-agreement on
held-out images. --keep-fp32 auto keeps the most harmful layers in fp32 until it does; --keep-fp32 NAME,... keeps
the named PyTorch modules. Calibration sources: a folder of images (flat or class sub-folders), an .npz, or
'synthetic' (seeded image-like inputs; accuracy claims need real images).

examples:
  edgekit quantize exports/mnv3/mobilenet_v3_large_a0.75_r192.onnx --calib images/ --samples 300
  edgekit quantize model.onnx --calib calib/ --scheme auto --keep-fp32 auto --target-agreement 0.99
  edgekit quantize model.onnx --calib calib.npz --method percentile --act s8 --per-tensor --out model_q.onnx
  edgekit quantize model.onnx --to fp16
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import add_arguments as add_options
    from ..precision.quantize import QuantizeOptions

    parser.add_argument("file", metavar="MODEL.onnx", help="fp32 ONNX file (edgekit metadata, or pass --res)")
    add_options(parser, QuantizeOptions, include=["to", "calib", "samples", "method", "act"])
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--per-channel", dest="per_channel", action="store_const", const=True, default=None,
                         help="int8 weights per output channel (the default)")
    weights.add_argument("--per-tensor", dest="per_channel", action="store_const", const=False,
                         help="one int8 scale per weight tensor")
    search = parser.add_argument_group("searches (agreement measured on held-out calibration images)")
    add_options(search, QuantizeOptions, include=["scheme", "keep_fp32", "target_agreement", "max_fp32"])
    out = parser.add_argument_group("output and comparison")
    add_options(out, QuantizeOptions, include=["out", "eval", "res", "threads", "latency", "iters"])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from ..options import given
    from ..precision.quantize import QuantizeOptions, quantize
    from ..report import to_json

    values = given(args, QuantizeOptions)
    if args.per_channel is not None:
        values["per_channel"] = args.per_channel
    options = QuantizeOptions(**values)

    def progress(message: str) -> None:
        if not args.json:
            print(f"... {message}", file=sys.stderr, flush=True)  # progress on stderr, as bench's and sweep's

    report = quantize(args.file, options=options, progress=progress)
    print(to_json(report) if args.json else report.to_text())
    return 0
