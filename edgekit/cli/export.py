"""Build a model, fold Conv-BN, export ONNX + TorchScript (and pt2 on request), self-check, write a manifest.

One line per stage with its time; --json prints the manifest instead. Files appear in the output folder only when
everything, the self-check included, succeeded (written under a temporary name, then renamed).

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
    parser.add_argument("name", nargs="?", metavar="NAME", help="model name or alias (optional with --config)")
    parser.add_argument("--alpha", default=None, metavar="A", help="width multiplier (default 1.0)")
    parser.add_argument("--res", default=None, metavar="R", help="input resolution (default: the published one)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default exports/<name>_a<alpha>_r<res>/)")
    parser.add_argument("--weights", default=None, metavar="W", help="'imagenet' or a state_dict file (default: seeded)")
    parser.add_argument("--num-classes", default=None, type=int, metavar="N", help="classifier size (default 1000)")
    parser.add_argument("--format", dest="formats", default=None, metavar="LIST",
                        help="comma-separated: onnx,torchscript,pt2 (default onnx,torchscript)")
    parser.add_argument("--opset", default=None, metavar="N", help="ONNX opset (default: the exporter's, >= 18)")
    parser.add_argument("--dynamic-batch", action="store_true", default=None, help="symbolic batch dimension")
    parser.add_argument("--no-simplify", dest="simplify", action="store_false", default=None, help="skip onnxsim")
    parser.add_argument("--no-verify", dest="verify", action="store_false", default=None, help="skip the self-check")
    parser.add_argument("--config", default=None, metavar="FILE", help="YAML preset (see export_configs/); flags override it")
    parser.add_argument("--json", action="store_true", help="print the manifest(s) as JSON instead of progress lines")


def _overrides(args: argparse.Namespace) -> dict:
    values = {
        "model": args.name, "alpha": args.alpha, "res": args.res, "out": args.out, "weights": args.weights,
        "num_classes": args.num_classes, "formats": args.formats, "opset": args.opset,
        "dynamic_batch": args.dynamic_batch, "simplify": args.simplify, "verify": args.verify,
    }
    return {k: v for k, v in values.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    from ..export import export
    from ..presets import load_jobs, make_job
    from ..report import to_json

    overrides = _overrides(args)
    if args.config:
        jobs = load_jobs(args.config, overrides)
    elif args.name is None:
        from ..errors import BadArgument

        raise BadArgument("no model given; pass NAME (see 'edgekit models') or --config FILE")
    else:
        jobs = [make_job(overrides)]
    if len(jobs) > 1 and args.out:
        from ..errors import BadArgument

        raise BadArgument("--out names one folder but the preset exports several models; drop --out")
    results = []
    for job in jobs:
        def progress(stage, _job=job) -> None:
            if not args.json:
                detail = f"  {stage.detail}" if stage.detail else ""
                print(f"{stage.name:<12} {stage.seconds:6.2f}s{detail}", flush=True)

        result = export(job.model, alpha=job.alpha, res=job.res, out_dir=job.out, options=job.options, on_progress=progress)
        results.append(result)
        if not args.json:
            total = result.manifest["total_seconds"]
            print(f"{'done':<12} {total:6.2f}s  wrote {result.out_dir}/")
            for entry in result.manifest["files"]:
                print(f"  {entry['name']}  ({entry['bytes'] / 1e6:.1f} MB)")
            if len(jobs) > 1:
                print()
    if args.json:
        payload = results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results]
        sys.stdout.write(to_json(payload) + "\n")
    return 0
