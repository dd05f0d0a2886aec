"""How much does edgekit's benchmark harness add, and how much faster is ONNX Runtime than eager PyTorch? One run.

1. Overhead: edgekit.bench's p50 against a bare ``session.run`` loop (the loop anyone would write: perf_counter
   around each call, append to a list) on a session built with the same settings (edgekit.bench.session_options),
   same model, same input. Rounds alternate which goes first, so drift in machine load hits both alike; the verdict
   is the median of the per-round ratios. Goal: <= 1.02x.
2. Speedup: edgekit.bench with compare_torch on the main job's model (MobileNetV3-large alpha 0.75 @192, batch 1,
   CPU): eager PyTorch is timed after the ONNX Runtime session is released, never concurrently, each for the same
   number of seconds. Goal: >= 5x.

The two never run at the same time, and nothing else of ours runs meanwhile; other processes on the machine do, so
the load average is printed before and after. Use few threads on a shared machine.

usage:
  python tools/bench_harness.py                        # export the main job's model, then measure
  python tools/bench_harness.py --onnx model.onnx      # measure an existing edgekit export
  python tools/bench_harness.py --rounds 7 --iters 300 --threads 2
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _export(name: str, alpha: float, res: int, folder: Path) -> tuple[Path, str]:
    """The main job's export: edgekit.export (Conv-BN fused, simplified, with metadata), ONNX only."""
    from edgekit.export import ExportOptions, export

    result = export(name, alpha=alpha, res=res, out_dir=folder, options=ExportOptions(formats=("onnx",)))
    return Path(result.files["onnx"]), "edgekit.export, Conv-BN fused"


def bare_loop_p50(path: Path, threads: int, warmup: int, iters: int) -> tuple[float, float]:
    """The reference: a plain session.run loop. Returns (p50 ms, mean ms from the loop's total wall time)."""
    import onnxruntime as ort

    from edgekit.bench import session_options

    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
             for i in session.get_inputs()}  # fmt: skip
    session.run(None, feeds)
    for _ in range(warmup):
        session.run(None, feeds)
    latencies = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run(None, feeds)
        latencies.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    del session
    gc.collect()
    return statistics.median(latencies) * 1e3, total / iters * 1e3


def main(argv: list[str] | None = None) -> int:
    import edgekit
    from edgekit.bench import BenchOptions
    from edgekit.bench.system import cpu_name, default_threads

    models = edgekit.list_models()
    default_model = "mobilenet_v3_large" if "mobilenet_v3_large" in models else "mobilenet_v2"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--res", type=int, default=192)
    parser.add_argument("--onnx", type=Path, help="an existing edgekit .onnx export (skips the export)")
    parser.add_argument("--threads", type=int, default=None, help="default: the physical cores available")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--speed-duration", type=float, default=5.0, help="seconds of timed runs per runtime and round")
    args = parser.parse_args(argv)
    threads = args.threads or default_threads()

    import onnxruntime
    import torch

    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} CPUs available, load average {_load()} (start)")
    print(f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, {threads} threads, batch 1, CPU")

    with tempfile.TemporaryDirectory(prefix="edgekit-harness-") as scratch:
        if args.onnx:
            path, how = args.onnx, "given"
        else:
            t0 = time.perf_counter()
            path, how = _export(args.model, args.alpha, args.res, Path(scratch))
            print(f"exported {args.model} alpha {args.alpha:g} res {args.res} with {how} in {time.perf_counter() - t0:.1f} s")
        print(f"model: {path} ({how})\n")

        # 1. Harness overhead -----------------------------------------------------------------------------------
        options = BenchOptions(threads=threads, warmup=args.warmup, iters=args.iters)
        rows = []
        for r in range(args.rounds):
            order = ("edgekit", "bare") if r % 2 == 0 else ("bare", "edgekit")
            got: dict[str, tuple[float, float]] = {}
            for who in order:
                if who == "edgekit":
                    report = edgekit.bench(path, options=options)
                    got[who] = (report.latency_ms.p50, report.latency_ms.mean)
                else:
                    got[who] = bare_loop_p50(path, threads, args.warmup, args.iters)
                gc.collect()
            rows.append((r + 1, order[0], *got["edgekit"], *got["bare"], got["edgekit"][0] / got["bare"][0]))
        print("harness overhead: edgekit.bench vs a bare session.run loop, same session settings")
        print(f"{'round':>5}  {'first':<8} {'edgekit p50':>11} {'mean':>8} {'bare p50':>9} {'mean':>8} {'ratio':>7}")
        for row in rows:
            print(f"{row[0]:>5}  {row[1]:<8} {row[2]:>11.3f} {row[3]:>8.3f} {row[4]:>9.3f} {row[5]:>8.3f} {row[6]:>6.3f}x")
        ratio = statistics.median(row[6] for row in rows)
        pooled = statistics.median(row[2] for row in rows) / statistics.median(row[4] for row in rows)
        verdict = "meets" if ratio <= 1.02 else "MISSES"
        print(f"edgekit p50 / bare p50: median of rounds {ratio:.3f}x, of medians {pooled:.3f}x "
              f"({verdict} the <= 1.02x goal)\n")  # fmt: skip

        # 2. ORT vs eager PyTorch ---------------------------------------------------------------------------------
        speed = []
        for _ in range(args.speed_rounds):
            report = edgekit.bench(
                path,
                options=BenchOptions(threads=threads, warmup=args.warmup, duration_s=args.speed_duration, compare_torch=True),
            )
            assert report.torch is not None
            speed.append((report.latency_ms.p50, report.iterations, report.torch.latency_ms.p50,
                          report.torch.latency_ms.count, report.torch.speedup_p50))  # fmt: skip
            gc.collect()
        print(f"ONNX Runtime vs eager PyTorch ({report.torch.reference})")
        print(f"{'round':>5}  {'ORT p50 ms':>10} {'runs':>5} {'torch p50 ms':>12} {'runs':>5} {'speedup':>8}")
        for i, (o, on, t, tn, s) in enumerate(speed, 1):
            print(f"{i:>5}  {o:>10.3f} {on:>5} {t:>12.3f} {tn:>5} {s:>7.2f}x")
        speedup = statistics.median(row[-1] for row in speed)
        verdict = "meets" if speedup >= 5 else "MISSES"
        print(f"speedup (median): {speedup:.2f}x ({verdict} the >= 5x goal)")
    print(f"\nload average {_load()} (end)")
    return 0


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
