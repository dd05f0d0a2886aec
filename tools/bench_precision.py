"""fp32 vs fp16 vs INT8 in one run: latency ratios on ONNX Runtime's CPU provider and accuracy drops on real images.

    python tools/bench_precision.py                       # the digits model (tests/data), accuracy + latency
    python tools/bench_precision.py --main-job --rounds 5  # also MobileNetV3-Large 0.75 @192 (seeded: speed only)

The digits model (MobileNetV3-Small 0.35 @64 fine-tuned on scikit-learn's digits by tools/train_digits.py) is
exported with edgekit, converted with ``edgekit quantize``'s own code (INT8: per-channel U8S8 min-max on 200 of the
300 calibration images; fp16), scored on the 497 held-out test images, then timed. Latency: batch 1, edgekit's
benchmark loop, the files timed one after the other in alternating rounds (fp32, fp16, int8, fp32, ...), never
concurrently; the table shows the median over rounds of each file's p50 and the ratio to fp32 within the same run.
Numbers from a loaded machine are noisy; the ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WEIGHTS = REPO / "tests" / "data" / "digits_mobilenet_v3_small_a0.35_r64.pth"


def convert_all(fp32: Path, calib: str, samples: int) -> dict[str, Path]:
    from edgekit.precision.quantize import QuantizeOptions, convert

    files = {"fp32": fp32}
    for precision in ("fp16", "int8"):
        options = QuantizeOptions(to=precision, calib=calib if precision == "int8" else None, samples=samples)
        files[precision] = convert(fp32, fp32.with_name(f"{fp32.stem}_{precision}.onnx"), options).path
    return files


def latency(files: dict[str, Path], threads: int, iters: int, rounds: int) -> dict[str, float]:
    from edgekit.precision.search import median_latency_ms

    seen: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(rounds):
        for key, path in files.items():
            seen[key].append(median_latency_ms(path, threads, iters))
    return {k: statistics.median(v) for k, v in seen.items()}


def report(title: str, files: dict[str, Path], ms: dict[str, float], accuracy: dict[str, float] | None) -> None:
    from edgekit.report import table

    rows = []
    for key, path in files.items():
        acc = f"{100 * accuracy[key]:.2f}%" if accuracy else "-"
        drop = f"{100 * (accuracy[key] - accuracy['fp32']):+.2f}" if accuracy else "-"
        rows.append([key, f"{path.stat().st_size / 1e6:.2f}", f"{ms[key]:.3f}", f"{ms[key] / ms['fp32']:.2f}x",
                     acc, drop])
    print(f"\n{title}")
    print(table(rows, ["precision", "MB", "p50 ms", "vs fp32", "top-1", "points"], align="lrrrrr"))


def digits(work: Path, args: argparse.Namespace) -> None:
    from edgekit.eval import EvalOptions, evaluate
    from edgekit.export import ExportOptions, export
    from edgekit.precision.digits import write_digits

    data = write_digits(work / "digits", splits=("calib", "test"))
    fp32 = export("mobilenet_v3_small", alpha=0.35, res=64, out_dir=work / "digits_export",
                  options=ExportOptions(formats=("onnx",), weights=str(WEIGHTS), num_classes=10)).files["onnx"]
    files = convert_all(fp32, str(data["calib"]), 200)
    accuracy = {k: evaluate(p, data["test"], options=EvalOptions(threads=args.threads)).top1 for k, p in files.items()}
    ms = latency(files, args.threads, args.iters, args.rounds)
    report(f"digits model (MobileNetV3-Small 0.35 @64), 497 test images, {args.threads} threads", files, ms, accuracy)


def main_job(work: Path, args: argparse.Namespace) -> None:
    from edgekit.export import ExportOptions, export

    fp32 = export("mobilenet_v3_large", alpha=0.75, res=192, out_dir=work / "main_job",
                  options=ExportOptions(formats=("onnx",), verify=False)).files["onnx"]
    files = convert_all(fp32, "synthetic", 100)
    ms = latency(files, args.threads, args.iters, args.rounds)
    report(f"main job (MobileNetV3-Large 0.75 @192, seeded weights, synthetic calibration: speed only), "
           f"{args.threads} threads", files, ms, None)


def main() -> None:
    from edgekit.bench.system import cpu_name, default_threads, load_average

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--iters", type=int, default=200, help="timed runs per file and round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    p.add_argument("--main-job", action="store_true", help="also time the main job model")
    args = p.parse_args()
    print(f"{cpu_name()}, load average {load_average()}")
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-precision-") as tmp:
        digits(Path(tmp), args)
        if args.main_job:
            main_job(Path(tmp), args)


if __name__ == "__main__":
    main()
