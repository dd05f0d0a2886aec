"""List the model zoo: names, aliases, default resolution, params and multiply-adds at alpha 1.0, source.

example:
  edgekit models
  edgekit models --json
"""

from __future__ import annotations

import argparse

from ..complexity import info
from ..registry import get_spec, list_aliases, list_models
from ..report import mega, table, to_json
from ._args import add_json_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    aliases: dict[str, list[str]] = {}
    for alias, target in list_aliases().items():
        aliases.setdefault(target, []).append(alias)
    rows = []
    for name in list_models():
        spec = get_spec(name)
        model_info = info(name)
        rows.append(
            {
                "name": name,
                "aliases": sorted(aliases.get(name, [])),
                "family": spec.family,
                "default_res": spec.default_res,
                "params": model_info.params,
                "macs": model_info.macs,
                "imagenet_weights": spec.torchvision_weights is not None or bool(spec.weights_alphas),
                "source": spec.source,
            }
        )
    if args.json:
        print(to_json(rows))
        return 0
    print(
        table(
            [
                [r["name"], ",".join(r["aliases"]), r["default_res"], mega(r["params"]), mega(r["macs"]),
                 "yes" if r["imagenet_weights"] else "-", r["source"].split(";")[0]]
                for r in rows
            ],
            ["name", "aliases", "res", "params(M)", "MACs(M)", "imagenet", "source"],
            align="llrrrll",
        )
    )
    print("\nparams/MACs at alpha 1.0 and the default resolution; MACs = multiply-adds counted the papers' way.")
    return 0
