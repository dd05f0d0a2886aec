#!/usr/bin/env python
"""INT8 accuracy of the ExecuTorch path on real labelled images: top-1 of ONNX fp32, .pte fp32 and .pte INT8.

Exports a trained model (a state_dict from --weights) to ONNX fp32 and to .pte fp32 + INT8 (PT2E, XNNPACKQuantizer,
symmetric per-channel), calibrating on --calib (a folder of images, an .npz, or 'synthetic') through edgekit's one
preprocessing, then scores every file on --data (a folder with one sub-folder per class, or an .npz with labels)
with ``edgekit.eval.evaluate``. Prints top-1 per file, the INT8 drop against the .pte fp32 and ONNX fp32, how
often INT8 predicts the same class as fp32, and ``verify``'s verdict on the INT8 program with ``--data`` (the int8
preset). Asserts nothing.

Without --weights/--data it runs the digits model of the precision work: MobileNetV3-Small 0.35 @64 px fine-tuned
on scikit-learn's handwritten digits (tests/data/), calibrated on the 300-image ``calib`` split and scored on the
497-image ``test`` split, both written by edgekit.precision.digits into --out (the ``data`` extra).

usage:
  python tools/bench_pte_accuracy.py
  python tools/bench_pte_accuracy.py --model mobilenet_v2 --alpha 0.35 --res 64 --num-classes 10 \\
      --weights my_digits_mv2.pth --calib images/calib --data images/test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIGITS = {"model": "mobilenet_v3_small", "alpha": 0.35, "res": 64, "num_classes": 10,
          "weights": REPO / "tests" / "data" / "digits_mobilenet_v3_small_a0.35_r64.pth"}


def digits_defaults(args: argparse.Namespace) -> None:
    """Fill what was not given with the digits model and its splits (written on first use)."""
    from edgekit.precision.digits import write_digits

    for key in ("model", "alpha", "res", "num_classes", "weights"):
        if getattr(args, key) is None:
            setattr(args, key, str(DIGITS[key]) if key == "weights" else DIGITS[key])
    if args.data is None or args.calib is None:
        folders = write_digits(Path(args.out) / "digits", splits=("calib", "test"))
        args.calib = args.calib or str(folders["calib"])
        args.data = args.data or str(folders["test"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the digits model")
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--res", type=int, default=None)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--weights", default=None, help="the trained state_dict")
    parser.add_argument("--data", default=None, help="labelled images to score (kept apart from --calib)")
    parser.add_argument("--calib", default=None, help="calibration images: a folder, an .npz, or 'synthetic'")
    parser.add_argument("--calib-samples", type=int, default=300)
    parser.add_argument("--out", default="exports/bench_pte_accuracy")
    args = parser.parse_args()
    if args.weights is None or args.data is None:
        digits_defaults(args)

    from edgekit.eval import evaluate
    from edgekit.export import ExportOptions, export

    started = time.perf_counter()
    options = ExportOptions(formats=("onnx", "pte"), precision=("fp32", "int8"), num_classes=args.num_classes,
                            weights=args.weights, calib=args.calib, calib_samples=args.calib_samples, verify=False)
    result = export(args.model, alpha=args.alpha, res=args.res, out_dir=Path(args.out), options=options,
                    on_progress=lambda s: print(f"  {s.name:<18} {s.seconds:7.2f}s  {s.detail}", flush=True))
    print(f"exported in {time.perf_counter() - started:.0f} s to {result.out_dir}/\n")
    keys = [k for k in ("onnx", "onnx_int8", "pte", "pte_int8") if k in result.files]  # onnx_int8: edgekit quantize
    reports = {key: evaluate(result.files[key], args.data) for key in keys}
    first = next(iter(reports.values()))
    print(f"{args.model} alpha {args.alpha:g} res {args.res}, {first.images} images: {first.data}")
    for key, report in reports.items():
        print(f"  {result.files[key].name:<40} top-1 {100 * report.top1:6.2f}%   {report.runtime} "
              f"{report.providers[0]}")
    int8, fp32, onnx = reports["pte_int8"], reports["pte"], reports["onnx"]
    same = sum(a == b for a, b in zip(int8.predictions, fp32.predictions)) / max(1, len(fp32.predictions))
    print(f"INT8 drop: {100 * (fp32.top1 - int8.top1):+.2f} points against the .pte fp32, "
          f"{100 * (onnx.top1 - int8.top1):+.2f} against ONNX fp32; INT8 predicts the fp32 class on "
          f"{100 * same:.1f}% of the images")
    import dataclasses

    import edgekit

    if "data" in {f.name for f in dataclasses.fields(edgekit.VerifyOptions)}:  # verify's int8 preset on real images
        report = edgekit.verify(result.files["pte_int8"], options=edgekit.VerifyOptions(data=args.data))
        print(f"edgekit verify {result.files['pte_int8'].name} --data {args.data}: {report.summary()}")
    entry = next(f for f in result.manifest["files"] if f["name"] == result.files["pte_int8"].name)
    quantization = entry.get("quantization") or {}
    calibration = quantization.get("calibration", {})
    print(f"calibration: {calibration.get('samples')} images from {calibration.get('source')} "
          f"(sha256 {str(calibration.get('sha256'))[:12]}); scheme {quantization.get('scheme')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
