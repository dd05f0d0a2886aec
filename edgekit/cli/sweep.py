"""Sweep models x width multipliers x resolutions (x precisions x runtimes): export, verify and benchmark each point.

Each point is exported in the format its runtime runs, at its precision, verified against its PyTorch reference and
benchmarked. One CSV and one PNG go into --out, named <model>_<provider>_b<batch>_sweep.csv/.png (several models:
zoo_..., or --name). Rows are appended as points finish: an interrupted sweep keeps them, and --resume runs only the
points the CSV lacks (matched on model, alpha, res, precision, runtime and threads). A point that fails is a row
with its error and the sweep goes on (exit 1 at the end). The plot shows latency against multiply-adds per model
family with each family's Pareto front, and marks the overall front: the configurations for which no other one has
more multiply-adds at no more latency. It needs matplotlib (pip install 'edgekit[plot]'); --no-plot writes the CSV
alone.

--ray runs every point's export + verification as a Ray task (pip install 'edgekit[ray]'), and every benchmark as a
task that holds all the CPUs of its node while no other export of the sweep runs on that machine, so no two timings
share a machine's cores; rows record the node each point was timed on. --ray alone starts a private cluster on this
machine (--ray-cpus N), --ray auto joins the cluster found on this machine (which may be someone else's), --ray
HOST:PORT the cluster at that address. Exports are kept only with --keep-exports DIR, which with --ray must be a
folder every node reaches; otherwise they are deleted on the machine that made them after their benchmark.

examples:
  edgekit sweep mobilenet_v3_large --alphas 0.5,0.75,1.0 --res 160,192,224 --out sweeps/
  edgekit sweep mobilenet_v2,shufflenet_v2 --alphas 0.5,1.0 --res 128,160 --ray --out sweeps/
  edgekit sweep all --alphas 0.5,1.0 --res 96,128 --runtime onnxruntime,torch --resume --out sweeps/zoo
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._args import add_json_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..bench import BenchOptions
    from ..options import add_arguments as add_options

    parser.add_argument("name", metavar="MODEL[,MODEL...]", help="model names or aliases, comma-separated; 'all' for "
                                                                "every model (see 'edgekit models')")
    parser.add_argument("--alphas", required=True, metavar="A,A,...", help="width multipliers, comma-separated")
    parser.add_argument("--res", required=True, metavar="R,R,...", help="input resolutions, comma-separated")
    parser.add_argument("--precisions", "--precision", dest="precisions", default="fp32", metavar="P,P,...",
                        help="precisions, comma-separated, among those the export formats write (default fp32)")
    parser.add_argument("--runtime", "--runtimes", dest="runtimes", default="onnxruntime", metavar="RT,RT,...",
                        help="runtimes, comma-separated; each point is exported in the format its runtime runs "
                             "(default onnxruntime)")
    parser.add_argument("--out", default="sweeps", metavar="DIR", help="folder for the CSV and PNG (default sweeps/)")
    parser.add_argument("--name", dest="name_stem", metavar="STEM", help="first part of the CSV/PNG names (default: the model, or 'zoo')")
    parser.add_argument("--keep-exports", "--keep-onnx", dest="keep_exports", metavar="DIR",
                        help="keep every export in DIR, one folder per point (with --ray: a folder all nodes reach)")
    parser.add_argument("--weights", metavar="W", help="weights for every point: imagenet or a state_dict path (default: seeded)")
    parser.add_argument("--calib", metavar="SOURCE", help="calibration images for int8 (see 'edgekit export --help')")
    parser.add_argument("--calib-samples", default=300, metavar="N", help="calibration images to use (default 300)")
    add_options(parser, BenchOptions, include=["providers", "threads", "batch", "warmup"],
                overrides={"threads": {"help": "intra-op threads of every benchmark, on every node (default: the "
                                               "physical cores of this machine)"},
                           "batch": {"help": "batch size (above 1, the exports get a symbolic batch; default 1)"},
                           "warmup": {"help": "warm-up runs per point (default 10)"}})
    group = parser.add_mutually_exclusive_group()
    add_options(group, BenchOptions, include=["iters", "duration_s"],
                overrides={"iters": {"help": "timed runs per point (default 100)"},
                           "duration_s": {"help": "seconds of timed runs per point"}})
    parser.add_argument("--no-verify", action="store_true", help="time the exports without verifying them first")
    parser.add_argument("--no-plot", action="store_true", help="write the CSV only (no matplotlib needed)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="run only the points the CSV lacks (failed points "
                                                             "included: delete their rows to run them again)")
    again.add_argument("--overwrite", action="store_true", help="delete an existing CSV and PNG and start over")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS|auto",
                        help="run on Ray: alone, a private cluster on this machine; 'auto', the cluster found on "
                             "this machine (it may be someone else's); HOST:PORT, the cluster there")
    parser.add_argument("--ray-cpus", metavar="N", help="CPUs of the private cluster (default: all of this machine)")
    add_json_arg(parser)


class _Progress:
    """Lines on stderr: what runs where, each finished point with done/total, failures and the time left."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.csv = ""
        self.done = self.ran = self.total = 0
        self.shown: tuple[bool, bool, bool] = (False, False, False)

    def label(self, point: Any) -> str:
        model, precision, runtime = self.shown
        return " ".join([*([point.model] if model else []), f"alpha {point.alpha:g} res {point.res}",
                         *([point.precision] if precision else []), *([point.runtime] if runtime else [])])

    def __call__(self, index: int, total: int, alpha: float, res: int, stage: str, event: Any) -> None:
        self.done, self.ran, self.total = event.done, event.ran, event.total
        if stage == "start":
            self.csv = event.detail["csv"]
            self.shown = tuple(len(event.detail[k]) > 1 for k in ("models", "precisions", "runtimes"))
        if self.quiet:
            return
        where = f" on {event.detail['node']}" if event.detail.get("node") else ""
        if stage == "start":
            resumed = event.detail["resumed"]
            line = (f"sweep: {total} points, {event.to_run} to run ({event.detail['mode']})"
                    + (f", {resumed} already in {self.csv}" if resumed else ""))
        elif stage == "cluster":
            nodes = event.detail["nodes"]
            line = f"ray: {len(nodes)} node(s), {event.detail['cpus']} CPUs, at {event.detail['address']}"
        elif stage in ("export", "bench"):
            if not where and stage == "bench":
                return  # in this process, the export's line said it
            doing = {"export": "exporting", "bench": "benchmarking"}[stage] if where else "exporting, then benchmarking"
            line = f"[{index}/{total}] {self.label(event.point)}: {doing}{where}"
        else:
            row = event.row or {}
            what = f"p50 {float(row['p50_ms']):.3f} ms" if stage == "done" else f"FAILED {row.get('error', '')}"
            node = f" on {row['node_hostname']}" if row.get("ray_node_id") else ""
            eta = "" if event.eta_s is None or event.done == total else f", ETA {_duration(event.eta_s)}"
            line = (f"[{index}/{total}] {self.label(event.point)}: {what}{node}  ({event.done}/{total} done, "
                    f"{event.failed} failed{eta})")
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions
    from ..errors import Terminated
    from ..options import given
    from ..report import to_json
    from ..sweep import SweepOptions, sweep

    options = SweepOptions(
        alphas=args.alphas, resolutions=args.res, bench=BenchOptions(**given(args, BenchOptions)),
        export_dir=args.keep_exports, plot=not args.no_plot, weights=args.weights, precisions=args.precisions,
        runtimes=args.runtimes, verify=not args.no_verify, calib=args.calib, calib_samples=args.calib_samples,
    )
    progress = _Progress(quiet=args.json)
    try:
        result = sweep(args.name, out_dir=args.out, options=options, progress=progress, resume=args.resume,
                       overwrite=args.overwrite, ray=args.ray, ray_cpus=args.ray_cpus, name=args.name_stem)
    except KeyboardInterrupt as exc:
        if not progress.csv:
            raise
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        sys.stderr.write(f"edgekit sweep: {what} with {progress.done} of {progress.total} points in {progress.csv} "
                         f"({progress.ran} from this run); rerun with --resume to finish\n")
        return 143 if isinstance(exc, Terminated) else 130
    if args.json:
        print(to_json(result))
    else:
        _print_table(result)
    if result.failures:
        sys.stderr.write(f"edgekit sweep: {len(result.failures)} point(s) failed; their rows in {result.csv_path} "
                         "say why\n")
        return 1
    return 0


def _print_table(result: Any) -> None:
    from ..report import table

    points = result.points
    several = len({p.model for p in points}) > 1
    variants = len({(p.precision, p.runtime) for p in points}) > 1
    rows = [
        [
            *([p.model] if several else []), f"{p.alpha:g}", p.res, *([p.precision, p.runtime] if variants else []),
            f"{p.macs / 1e6:.1f}", f"{p.latency_ms['p50']:.3f}", f"{p.latency_ms['p90']:.3f}", f"{p.throughput:,.1f}",
            "" if p.gmacs is None else f"{p.gmacs:.2f}", "*" if p.on_front else ("+" if p.family_front and several else ""),
        ]
        for p in points
    ]  # fmt: skip
    head = [*(["model"] if several else []), "alpha", "res", *(["precision", "runtime"] if variants else []),
            "MACs(M)", "p50 ms", "p90 ms", "items/s", "GMAC/s", "front"]
    align = ("l" if several else "") + "rr" + ("ll" if variants else "") + "rrrrrl"
    system = result.system
    print(f"{result.model} on {result.provider}  ·  {system['gpu_name'] or system['cpu_name']}")
    print(table(rows, head, align=align))
    legend = "* on the Pareto front (no other point has more MACs at no more latency)"
    if several:
        legend += "; + on its family's front"
    print(f"\n{legend}; {result.elapsed_s:.0f} s in all, {result.ran} point(s) run now")
    print(f"wrote {result.csv_path}" + (f" and {result.png_path}" if result.png_path else ""))
