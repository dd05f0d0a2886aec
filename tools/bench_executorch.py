#!/usr/bin/env python
"""The main job on a phone's CPU runtime: ExecuTorch/XNNPACK fp32 and INT8 .pte against ONNX Runtime fp32, in one run.

1. Exports the model once (ONNX fp32, .pte fp32, .pte INT8 through PT2E with XNNPACKQuantizer, symmetric
   per-channel) into --out, or reuses the files already there; the fp32 files are verified against PyTorch.
2. Opens the three through edgekit's runtime layer with the same thread count (ExecuTorch's process-wide XNNPACK
   pool and ONNX Runtime's intra-op pool), then times them one after the other in alternating rounds (the order
   rotates every round, never two at once), batch 1, on the same seeded input.
3. Prints program load / session creation, first inference, p50/p90 over all rounds, the median of the round
   medians, and the ratios against ONNX Runtime fp32. Asserts nothing: the numbers depend on the machine.
   ``edgekit bench FILE`` gives each file's full report in a process of its own, peak RSS included.

usage: python tools/bench_executorch.py [--threads 2] [--rounds 9] [--runs 100] [--out exports/bench_executorch]
       [--model mobilenet_v3_large --alpha 0.75 --res 192] [--calib synthetic|DIR|FILE.npz]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def export_files(args: argparse.Namespace) -> dict[str, Path]:
    """ONNX fp32, .pte fp32 and INT8 (and ONNX INT8 where edgekit writes it), exported once into --out."""
    import edgekit
    from edgekit.export import ExportOptions, export, stem_for
    from edgekit.formats import FORMATS

    out = Path(args.out)
    stem = stem_for(args.model, args.alpha, args.res)
    files = {"onnx": out / f"{stem}.onnx", "pte": out / f"{stem}.pte", "pte_int8": out / f"{stem}_int8.pte"}
    if "int8" in FORMATS["onnx"].precisions:
        files["onnx_int8"] = out / f"{stem}_int8.onnx"
    if not all(p.exists() for p in files.values()):
        started = time.perf_counter()
        options = ExportOptions(formats=("onnx", "pte"), precision=("fp32", "int8"), calib=args.calib,
                                calib_samples=args.calib_samples, verify=False)
        result = export(args.model, alpha=args.alpha, res=args.res, out_dir=out, options=options,
                        on_progress=lambda s: print(f"  {s.name:<18} {s.seconds:7.2f}s  {s.detail}", flush=True))
        files = {k: result.files[k] for k in files}
        print(f"exported in {time.perf_counter() - started:.0f} s")
    for key in ("onnx", "pte"):
        report = edgekit.verify(files[key])
        print(f"verify {files[key].name}: {'PASS' if report.passed else 'FAIL'} ({report.summary()})")
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_large")
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--res", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds (the order rotates)")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per file per round")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calib", default="synthetic", help="INT8 calibration source (a folder, .npz, synthetic)")
    parser.add_argument("--calib-samples", type=int, default=300)
    parser.add_argument("--out", default="exports/bench_executorch")
    args = parser.parse_args()

    from edgekit.bench.system import cpu_name, load_average
    from edgekit.runtimes import RunOptions, open_runner

    files = export_files(args)
    load = load_average()
    print(f"\n{args.model} alpha {args.alpha:g} res {args.res}, batch 1, {args.threads} threads, CPU {cpu_name()}, "
          f"load average {load[0] if load else float('nan'):.2f} at start")
    x = np.random.default_rng(0).standard_normal((1, 3, args.res, args.res)).astype(np.float32)
    options = RunOptions(threads=args.threads)
    names = {"pte": "ExecuTorch XNNPACK fp32", "pte_int8": "ExecuTorch XNNPACK INT8", "onnx": "ONNX Runtime fp32",
             "onnx_int8": "ONNX Runtime INT8"}
    runners, timers, first = {}, {}, {}
    for key in files:
        runners[key] = open_runner(files[key], options=options)
        timers[key] = runners[key].timer({runners[key].inputs[0].name: x})
        started = time.perf_counter()
        timers[key].once()
        first[key] = (time.perf_counter() - started) * 1e3
        for _ in range(args.warmup):
            timers[key].once()
    samples: dict[str, list[float]] = {k: [] for k in runners}
    medians: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    for round_ in range(args.rounds):
        shift = round_ % len(order)
        for key in order[shift:] + order[:shift]:
            out = [0] * args.runs
            timers[key].timed(out, 0, args.runs, time.perf_counter_ns() + 10**12)
            ms = [v / 1e6 for v in out]
            samples[key].extend(ms)
            medians[key].append(statistics.median(ms))
    print(f"\n{'':26} {'load ms':>8} {'first ms':>9} {'p50 ms':>8} {'p90 ms':>8} {'median of rounds':>17}  what ran")
    for key, runner in runners.items():
        p50, p90 = np.percentile(samples[key], [50, 90])
        print(f"{names[key]:26} {runner.open_ms:8.1f} {first[key]:9.2f} {p50:8.3f} {p90:8.3f} "
              f"{statistics.median(medians[key]):17.3f}  {runner.providers[0]}")
    base = statistics.median(medians["onnx"])
    for key in [k for k in runners if k != "onnx"]:
        mine = statistics.median(medians[key])
        print(f"{names[key]} / ONNX Runtime fp32: {mine / base:.2f}x the latency ({base / mine:.2f}x the speed)")
    ratio = statistics.median(medians["pte_int8"]) / statistics.median(medians["pte"])
    print(f"INT8 / fp32 on ExecuTorch: {ratio:.2f}x the latency; sizes: "
          + ", ".join(f"{files[k].name} {files[k].stat().st_size / 1e6:.1f} MB" for k in files))
    for runner in runners.values():
        runner.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
