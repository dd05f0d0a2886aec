"""Top-1/top-5 accuracy of an exported file on a labelled image folder, with the file's own preprocessing.

Any file a runtime runs: fp32, fp16 or int8 ONNX, TorchScript .pt, torch.export .pt2, ... Classes are the sorted
sub-folder names (torchvision ImageFolder style) unless --labels FILE names them, one per line in class-index order;
their number must match the model's classes. Images are resized (shorter side to res/0.875), centre-cropped,
scaled to [0,1] and normalised with the mean/std in the file's metadata. With two files, both are scored on the same
images and the report adds the accuracy drop and how often they agree (top-1, with a 95% interval).
Exit 0 scored, 1 failure, 2 usage error.

examples:
  edgekit eval model.onnx --data images/val
  edgekit eval model.onnx model_int8.onnx --data images/val --limit 1000
  edgekit eval model.pt --data imagenet/val --labels imagenet_classes.txt --batch 32 --json
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval import EvalOptions
    from ..options import add_arguments as add_options

    parser.add_argument("files", metavar="FILE", nargs="+", help="one exported model, or two to compare (A B)")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="labelled images: one sub-folder per class, or an .npz with x and y")
    add_options(parser, EvalOptions)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _line(report) -> str:
    top5 = f"  top-5 {100 * report.top5:6.2f}%" if report.top5 is not None else ""
    where = ", ".join(report.providers)
    where = where if where.startswith(report.runtime) else f"{report.runtime} {where}"
    return (f"{report.path}  ({report.precision}, {where})\n"
            f"  top-1 {100 * report.top1:6.2f}%{top5}  on {report.images} images  "
            f"({report.images_per_s:,.0f} images/s, {report.seconds:.1f} s)")


def run(args: argparse.Namespace) -> int:
    from ..errors import BadArgument
    from ..eval import EvalOptions, compare, evaluate
    from ..options import given
    from ..report import to_json

    if len(args.files) > 2:
        raise BadArgument(f"eval takes one file, or two to compare; got {len(args.files)}")
    options = EvalOptions(**given(args, EvalOptions))
    reports = []
    for path in args.files:
        def progress(done: int, total: int, _name: str = path) -> None:
            if args.json or not sys.stderr.isatty() and done != total:
                return
            width = 30
            filled = int(width * done / max(total, 1))
            end = "\n" if done == total else ""
            sys.stderr.write(f"\r{_name}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
            sys.stderr.flush()

        reports.append(evaluate(path, args.data, options=options, progress=progress))
    if len(reports) == 1:
        print(to_json(reports[0]) if args.json else _line(reports[0]))
        return 0
    comparison = compare(*reports)
    if args.json:
        print(to_json(comparison))
        return 0
    print(_line(reports[0]))
    print(_line(reports[1]))
    print(f"drop {comparison.drop_points:+.2f} points (A - B)   top-1 agreement {comparison.agreement:.4f} "
          f"(95% CI {comparison.agreement_lo:.4f}-{comparison.agreement_hi:.4f}) on {reports[0].images} images")
    return 0
