"""Sweep a grid of width multipliers x resolutions: export each, benchmark it, write a CSV and a latency-vs-MACs plot.

Each (alpha, res) is exported to ONNX (fused, with metadata) and benchmarked on the chosen provider, one after the
other. The CSV and the PNG go into --out, named <model>_<provider>_b<batch>_sweep.csv/.png. The plot marks the Pareto
front: the configurations for which no other one has more multiply-adds (capacity) at no more latency. The plot
needs matplotlib (pip install 'edgekit[plot]'); --no-plot writes the CSV alone.

example:
  edgekit sweep mobilenet_v3_large --alphas 0.5,0.75,1.0 --res 160,192,224 --out sweeps/
  edgekit sweep mobilenet_v2 --alphas 0.35,0.5 --res 96,128 --threads 1 --iters 50 --keep-onnx sweeps/onnx
"""

from __future__ import annotations

import argparse
import sys

from ._args import add_json_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..bench import BenchOptions
    from ..options import add_arguments as add_options

    parser.add_argument("name", metavar="NAME", help="model name or alias (see 'edgekit models')")
    parser.add_argument("--alphas", required=True, metavar="A,A,...", help="width multipliers, comma-separated")
    parser.add_argument("--res", required=True, metavar="R,R,...", help="input resolutions, comma-separated")
    parser.add_argument("--out", default="sweeps", metavar="DIR", help="folder for the CSV and PNG (default sweeps/)")
    parser.add_argument(
        "--keep-onnx", metavar="DIR", help="export into DIR and keep the files (default: a temporary folder)"
    )
    parser.add_argument("--weights", metavar="W", help="weights for every point: imagenet or a state_dict path (default: seeded)")
    add_options(parser, BenchOptions, include=["providers", "threads", "batch", "warmup"],
                overrides={"batch": {"help": "batch size (above 1, the exports get a symbolic batch; default 1)"},
                           "warmup": {"help": "warm-up runs per point (default 10)"}})
    group = parser.add_mutually_exclusive_group()
    add_options(group, BenchOptions, include=["iters", "duration_s"],
                overrides={"iters": {"help": "timed runs per point (default 100)"},
                           "duration_s": {"help": "seconds of timed runs per point"}})
    parser.add_argument("--no-plot", action="store_true", help="write the CSV only (no matplotlib needed)")
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions
    from ..report import table, to_json
    from ..sweep import SweepOptions, sweep

    from ..options import given

    options = SweepOptions(
        alphas=args.alphas,
        resolutions=args.res,
        bench=BenchOptions(**given(args, BenchOptions)),
        export_dir=args.keep_onnx,
        plot=not args.no_plot,
        weights=args.weights,
    )

    def progress(index: int, total: int, alpha: float, res: int, stage: str, report: object) -> None:
        if args.json:
            return
        if stage == "done" and report is not None:
            lat = report.latency_ms  # type: ignore[attr-defined]
            sys.stderr.write(f"[{index}/{total}] alpha {alpha:g} res {res}: p50 {lat.p50:.3f} ms\n")
        elif stage == "export":
            sys.stderr.write(f"[{index}/{total}] alpha {alpha:g} res {res}: exporting, then benchmarking\n")
        sys.stderr.flush()

    result = sweep(args.name, out_dir=args.out, options=options, progress=progress)
    if args.json:
        print(to_json(result))
        return 0
    rows = [
        [
            f"{p.alpha:g}", p.res, f"{p.macs / 1e6:.1f}", f"{p.latency_ms['p50']:.3f}", f"{p.latency_ms['p90']:.3f}",
            f"{p.throughput:,.1f}", "" if p.gmacs is None else f"{p.gmacs:.2f}", "*" if p.on_front else "",
        ]
        for p in result.points
    ]  # fmt: skip
    print(f"{result.model} on {result.provider}  ·  {result.system['gpu_name'] or result.system['cpu_name']}")
    print(table(rows, ["alpha", "res", "MACs(M)", "p50 ms", "p90 ms", "items/s", "GMAC/s", "front"], align="rrrrrrrl"))
    print(f"\n* on the Pareto front (no other point has more MACs at no more latency); {result.elapsed_s:.0f} s in all")
    print(f"wrote {result.csv_path}" + (f" and {result.png_path}" if result.png_path else ""))
    return 0
