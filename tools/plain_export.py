#!/usr/bin/env python
"""The baseline edgekit's export is measured against: a plain ``torch.onnx.export`` of the same unfused model.

No fusion, no simplification, no TorchScript, no self-check, no manifest: what a user's ad-hoc script does.
usage: python tools/plain_export.py OUT.onnx [--model mobilenet_v3 --alpha 0.75 --res 192]
"""

from __future__ import annotations

import argparse

import torch

import edgekit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--model", default="mobilenet_v3")
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--res", type=int, default=192)
    args = parser.parse_args()
    model = edgekit.get_model(args.model, alpha=args.alpha)
    x = torch.randn(1, 3, args.res, args.res)
    torch.onnx.export(model, (x,), args.out, dynamo=True, external_data=False)


if __name__ == "__main__":
    main()
