"""Which file should I ship? Every artifact on every runtime: verified, timed and (with --data) scored, in one table.

  edgekit compare NAME [--alpha A] [--res R]   export what is missing (every format x the precisions it writes)
  edgekit compare EXPORT_DIR                   the artifacts an export folder's manifest lists
  edgekit compare FILE [FILE ...]              exported files as they are

Each row is one artifact on one runtime (every installed runtime that runs its format; one that is not installed
is a "skipped" row naming what to install), measured one after the other with the same threads and the same seeded
input: verified against the PyTorch reference with the file's own tolerance (fp32, fp16, int8), timed with bench's
loop (p50, p90, items/s, speedup over eager PyTorch, timed the same way), and with --data scored on labelled images
(top-1 and its drop against eager PyTorch). The last line recommends the fastest row that passed its tolerance
(and lost at most --max-drop points). A row that fails verification, or that a runtime cannot run, says why and is
never recommended. Exit 0 when a row can be recommended, 1 when none passed.

examples:
  edgekit compare mobilenet_v3 --alpha 0.75 --res 192
  edgekit compare exports/mobilenet_v3_large_a0.75_r192 --runtimes onnxruntime,openvino --json
  edgekit compare model.onnx model.pt --duration 3 --csv compare.csv --png compare.png
"""

from __future__ import annotations

import argparse
import sys

from ._args import add_json_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..compare import CompareOptions
    from ..options import add_arguments as add_options

    parser.add_argument("targets", nargs="+", metavar="NAME | EXPORT_DIR | FILE",
                        help="a model name (see 'edgekit models'), an export folder, or exported files")
    parser.add_argument("--alpha", default=None, metavar="A", help="with NAME: width multiplier (default 1.0)")
    parser.add_argument("--res", default=None, metavar="R", help="with NAME: input resolution (default: the model's)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="with NAME: the export folder (default exports/<name>_a<alpha>_r<res>)")
    add_options(parser, CompareOptions, include=["formats", "precisions", "runtimes", "calib", "data", "limit",
                                                 "max_drop", "threads", "warmup"])
    group = parser.add_mutually_exclusive_group()
    add_options(group, CompareOptions, include=["iters", "duration_s"])
    add_options(parser, CompareOptions, include=["weights"])
    parser.add_argument("--csv", metavar="FILE", help="append one row per table row to FILE (header when new)")
    parser.add_argument("--png", metavar="FILE", help="plot latency against accuracy (--data) or agreement")
    add_json_arg(parser)


def _progress(index: int, total: int, label: str, stage: str) -> None:
    words = {"export": "exporting", "verify": "verifying", "bench": "timing", "eval": "scoring"}
    if stage in words:
        where = f"[{index}/{total}] " if total else ""
        sys.stderr.write(f"{where}{label}: {words[stage]}\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from ..compare import CompareOptions, compare
    from ..compare_report import append_csv, check_csv, plot
    from ..options import given
    from ..report import to_json

    options = CompareOptions(**given(args, CompareOptions))
    if args.csv:
        check_csv(args.csv)  # before the runs: a bad --csv must not cost them
    if args.png:
        from ..sweep import require_matplotlib

        require_matplotlib()
    result = compare(args.targets, alpha=args.alpha, res=args.res, out_dir=args.out, options=options,
                     progress=None if args.json else _progress)
    written = {}
    if args.csv:
        written["csv"] = append_csv(result, args.csv)
    if args.png:
        written["png"] = plot(result, args.png)
    from dataclasses import replace

    result = replace(result, files=written)
    print(to_json(result) if args.json else result.to_text(), flush=True)
    if written and not args.json:
        print("\nwrote " + " and ".join(str(p) for p in written.values()))
    return 0 if result.recommendation is not None else 1
