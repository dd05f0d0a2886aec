#!/usr/bin/env python
"""The main job's speed, in one run: edgekit's export vs a plain torch.onnx.export, and the ONNX each produces.

1. Wall time of ``edgekit export mobilenet_v3 --alpha 0.75 --res 192`` (a fresh process, self-check included)
   vs ``python tools/plain_export.py`` (a fresh process: build + plain ``torch.onnx.export``, nothing else).
2. ONNX Runtime CPU latency (median of N runs, batch 1) of edgekit's fused + simplified ONNX vs the plain export of
   the same *unfused* model: edgekit's must be at least as fast.

Each measurement runs alone (ORT and torch never time concurrently). Prints ratios; asserts nothing.
usage: python tools/bench_export.py [--runs 3] [--iters 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent


def wall(cmd: list[str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def ort_median_ms(path: Path, iters: int, threads: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal((1, 3, 192, 192)).astype(np.float32)}
    for _ in range(max(20, iters // 10)):
        session.run(None, feed)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="process runs of each export (median reported)")
    parser.add_argument("--iters", type=int, default=300, help="timed ORT runs per model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"load average at start: {load} (numbers are only comparable on a quiet machine)")

    with tempfile.TemporaryDirectory() as tmp:
        ours, plain = [], []
        for _ in range(args.runs):  # alternate, so drift in machine speed hits both alike
            ours.append(wall([sys.executable, "-m", "edgekit", "export", "mobilenet_v3", "--alpha", "0.75", "--res", "192",
                              "--out", "ek"], tmp))
            plain.append(wall([sys.executable, str(TOOLS / "plain_export.py"), "plain.onnx"], tmp))
        ours_s, plain_s = statistics.median(ours), statistics.median(plain)
        print(f"export wall time (median of {args.runs}): edgekit {ours_s:.2f} s (goal <= 15 s), plain torch.onnx.export "
              f"{plain_s:.2f} s, ratio {ours_s / plain_s:.2f}x")

        ek_ms = ort_median_ms(Path(tmp) / "ek" / "mobilenet_v3_large_a0.75_r192.onnx", args.iters, args.threads)
        plain_ms = ort_median_ms(Path(tmp) / "plain.onnx", args.iters, args.threads)
        print(f"ORT CPU latency, batch 1, {args.threads} threads (median of {args.iters}): edgekit {ek_ms:.3f} ms, "
              f"plain {plain_ms:.3f} ms, plain/edgekit {plain_ms / ek_ms:.3f}x (goal >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
