"""Do bench --profile's summed per-node times account for the plain run's latency? One run, both profilers.

For the main job's model (MobileNetV3-large alpha 0.75 @192, batch 1, CPU) on ONNX Runtime and OpenVINO, in
alternating rounds (A B, then B A, ...): edgekit.bench with profile=True, which times the plain (unprofiled) session
first, then opens a second, profiled one. Printed per round and runtime: the plain p50 and min, the summed per-node
times (ONNX Runtime: per-node medians; OpenVINO: per-node means over the window, its counters are running means),
their ratio to the plain p50 and min, the profiled runs' p50 and the time outside the nodes. The goal of the issue:
summed node time within 15% of the plain p50, or the difference explained (the report's "agreement" line says how).

On a shared machine the plain p50 measures the load as much as the model: compare the ratio to the min too.

usage:
  python tools/profile_agreement.py                          # export the main job's model, then measure
  python tools/profile_agreement.py --onnx model.onnx --rounds 3 --duration 5 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, help="an edgekit ONNX export (default: export the main job's model)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of plain timing per run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import edgekit
    from edgekit.runtimes import RUNTIMES

    with tempfile.TemporaryDirectory(prefix="edgekit-profile-agreement-") as tmp:
        onnx = args.onnx
        if onnx is None:
            result = edgekit.export("mobilenet_v3", alpha=0.75, res=192, out_dir=Path(tmp) / "m",
                                    options=edgekit.ExportOptions(formats=("onnx",)))
            onnx = result.files["onnx"]
        runtimes = [r for r in ("onnxruntime", "openvino") if RUNTIMES[r].available()]
        print(f"{onnx.name}, {args.threads} thread(s), {args.duration:g} s per plain run; load average before "
              f"{os.getloadavg()[0]:.2f}")
        header = f"{'round':>5}  {'runtime':<11}  {'plain p50':>9}  {'min':>7}  {'node sum':>8}  {'sum/p50':>7}  " \
                 f"{'sum/min':>7}  {'profiled p50':>12}  {'outside':>7}"
        print(header)
        ratios: dict[str, list[float]] = {r: [] for r in runtimes}
        for k in range(args.rounds):
            for runtime in runtimes if k % 2 == 0 else list(reversed(runtimes)):
                report = edgekit.bench(onnx, options=edgekit.BenchOptions(
                    runtime=runtime, threads=args.threads, duration_s=args.duration, profile=True))
                p = report.profile
                ratios[runtime].append(p["node_sum_vs_plain_p50"])
                print(f"{k + 1:>5}  {runtime:<11}  {p['plain_p50_ms']:>9.3f}  {p['plain_min_ms']:>7.3f}  "
                      f"{p['node_sum_ms']:>8.3f}  {p['node_sum_vs_plain_p50']:>7.2f}  "
                      f"{p['node_sum_ms'] / p['plain_min_ms']:>7.2f}  {p['profiled_p50_ms']:>12.3f}  "
                      f"{p['outside_nodes_ms'] if p['outside_nodes_ms'] is not None else float('nan'):>7.3f}")
                print(f"       {p['agreement']}")
        for runtime, values in ratios.items():
            print(f"{runtime}: median node sum / plain p50 = {statistics.median(values):.2f} over {len(values)} rounds")
        print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
