"""Conv-BN folding, and the report of what was folded.

Every Conv2d that is immediately followed by a BatchNorm2d inside an ``nn.Sequential`` (torchvision's
Conv2dNormActivation, ShuffleNet branches, our own models) is folded with torch's own
``torch.nn.utils.fusion.fuse_conv_bn_eval``; the BN is replaced by ``nn.Identity`` so module names, and hence the
names the ONNX exporter records on nodes, stay those of the unfused model (verify maps layers by them).

A BN that no conv feeds directly (none in the zoo today) is left in place and named in the report, never silently.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .modes import eval_mode

#: seed of the inputs the fused model is compared on (the same seed in every run, so reports are reproducible)
FUSE_CHECK_SEED = 0


@dataclass(frozen=True)
class FuseReport:
    bn_total: int
    bn_folded: int
    unfolded: tuple[str, ...]  # BN layers that no conv precedes (left in the graph, listed so nothing is silent)
    max_abs_diff: float  # eager fused vs unfused on seeded inputs
    max_abs_ref: float  # the size of the reference output, to read max_abs_diff against

    def to_dict(self) -> dict:
        data = asdict(self)
        data["unfolded"] = list(self.unfolded)
        return data

    def describe(self) -> str:
        return (
            f"folded {self.bn_folded}/{self.bn_total} BatchNorm layers; "
            f"eager max |fused - unfused| = {self.max_abs_diff:.2e} (output max {self.max_abs_ref:.2g})"
        )


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Qualified names of (conv, bn) pairs that sit next to each other in a Sequential."""
    pairs = []
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and a.out_channels == b.num_features:
                join = f"{prefix}." if prefix else ""
                pairs.append((join + name_a, join + name_b))
    return pairs


def seeded_input(res: int, batch: int = 1, seed: int = FUSE_CHECK_SEED) -> torch.Tensor:
    return torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def fuse(model: nn.Module, *, res: int = 224) -> tuple[nn.Module, FuseReport]:
    """A folded copy of ``model`` (eval mode) and the report; the caller's model is left exactly as it was.

    ``res``: the input resolution the fused copy is compared with the original at (seeded standard-normal input).
    """
    fused = copy.deepcopy(model).eval()
    all_bns = [name for name, m in fused.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    pairs = conv_bn_pairs(fused)
    for conv_name, bn_name in pairs:
        parent_name, _, conv_attr = conv_name.rpartition(".")
        parent = fused.get_submodule(parent_name) if parent_name else fused
        bn_attr = bn_name.rpartition(".")[2]
        setattr(parent, conv_attr, fuse_conv_bn_eval(getattr(parent, conv_attr), getattr(parent, bn_attr)))
        setattr(parent, bn_attr, nn.Identity())
    folded = {bn for _, bn in pairs}

    # The comparison needs the original in eval mode (BN on running statistics); its mode is restored even when
    # the forward raises, so the caller's module is never left changed.
    x = seeded_input(res)
    with eval_mode(model):
        out_ref = model(x)
    out_fused = fused(x)
    report = FuseReport(
        bn_total=len(all_bns),
        bn_folded=len(folded),
        unfolded=tuple(name for name in all_bns if name not in folded),
        max_abs_diff=float((out_fused - out_ref).abs().max()),
        max_abs_ref=float(out_ref.abs().max()),
    )
    return fused, report
