"""Build a model, fold Conv-BN, export ONNX + TorchScript (and pt2/pte on request), self-check, write a manifest.

One line per stage with its time; --json prints the manifest instead. Files appear in the output folder only when
everything, the self-check included, succeeded (written under a temporary name, then renamed). Formats:
onnx (.onnx), torchscript (.pt), pt2 (.pt2) and whatever else 'edgekit export --help' lists.

examples:
  edgekit export mobilenet_v3 --alpha 0.75 --res 192
  edgekit export shufflenet_v2 --alpha 0.5 --res 160 --dynamic-batch --out exports/snv2
  edgekit export efficientnet_b0 --weights my_finetuned.pth --num-classes 10 --format onnx
  edgekit export --config export_configs/mobile_zoo.yaml
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..export import ExportOptions
    from ..formats import FORMATS
    from ..options import add_arguments as add_options
    from ..presets import ExportJob

    parser.add_argument("name", nargs="?", metavar="NAME", help="model name or alias (optional with --config)")
    add_options(parser, ExportJob)
    formats = ",".join(FORMATS)
    add_options(parser, ExportOptions, overrides={"formats": {"help": f"comma-separated: {formats} (default "
                                                                      "onnx,torchscript)"}})
    parser.add_argument("--config", default=None, metavar="FILE", help="YAML preset (see export_configs/); flags override it")
    parser.add_argument("--json", action="store_true", help="print the manifest(s) as JSON instead of progress lines")


def _overrides(args: argparse.Namespace) -> dict:
    from ..export import ExportOptions
    from ..options import given
    from ..presets import ExportJob

    values = {**given(args, ExportJob), **given(args, ExportOptions)}
    if args.name is not None:
        values["model"] = args.name
    return values


def run(args: argparse.Namespace) -> int:
    from ..errors import BadArgument
    from ..export import export
    from ..presets import load_jobs, make_job
    from ..report import to_json

    overrides = _overrides(args)
    if args.config:
        jobs = load_jobs(args.config, overrides)
    elif args.name is None:
        raise BadArgument("no model given; pass NAME (see 'edgekit models') or --config FILE")
    else:
        jobs = [make_job(overrides)]
    if len(jobs) > 1 and args.out:
        raise BadArgument("--out names one folder but the preset exports several models; drop --out")
    results = []
    for job in jobs:
        def progress(stage) -> None:
            if not args.json:
                print(stage.to_text(), flush=True)

        result = export(job.model, alpha=job.alpha, res=job.res, out_dir=job.out, options=job.options, on_progress=progress)
        results.append(result)
        if not args.json:
            print(result.to_text() + ("\n" if len(jobs) > 1 else ""))
    if args.json:
        payload = results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results]
        sys.stdout.write(to_json(payload) + "\n")
    return 0
