"""Conv-BN folding: every BN folded, same function, caller's model untouched, statistics really used."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import edgekit
from edgekit.fuse import conv_bn_pairs, fuse


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", edgekit.list_models())
def test_every_bn_of_every_model_is_folded(name):
    model = edgekit.get_model(name, alpha=0.25) if not name.startswith("efficientnet_b") or name in (
        "efficientnet_b0", "efficientnet_b1") else None
    if model is None:
        with torch.device("meta"):
            model = edgekit.registry.get_spec(name).builder(0.25, 1000)
        assert len(conv_bn_pairs(model)) == _bn_count(model)  # structure only for the deep ones
        return
    fused, report = fuse(model, res=64)
    assert report.bn_total == _bn_count(model) > 0
    assert report.bn_folded == report.bn_total and report.unfolded == ()
    assert _bn_count(fused) == 0
    assert report.max_abs_diff <= 1e-4 * max(1.0, report.max_abs_ref)


def test_fusion_preserves_module_names_and_leaves_the_input_alone():
    model = edgekit.get_model("mobilenet_v2", alpha=0.35)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused, _ = fuse(model, res=64)
    assert _bn_count(model) == 52  # untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(fused.features[0][1], nn.Identity)
    names = {n for n, _ in fused.named_modules()}
    assert "features.3.conv.0.0" in names  # the conv keeps its name: ONNX node names map back to modules


def test_folding_really_uses_the_bn_statistics():
    """With the statistics ignored (plain conv, BN dropped) the output must change: the seeded BNs are not identity."""
    model = edgekit.get_model("mobilenet_v2", alpha=0.35)
    fused, _ = fuse(model, res=64)
    naive = edgekit.get_model("mobilenet_v2", alpha=0.35)
    for _, bn in conv_bn_pairs(naive):
        parent, _, attr = bn.rpartition(".")
        setattr(naive.get_submodule(parent), attr, nn.Identity())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, good, bad = model(x), fused(x), naive(x)
    assert (good - ref).abs().max() < 1e-4
    assert (bad - ref).abs().max() > 1e-1


def test_fused_sequential_computes_the_same_function():
    conv = nn.Conv2d(3, 8, 3, bias=False).eval()
    bn = nn.BatchNorm2d(8).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    seq = nn.Sequential(conv, bn).eval()
    fused, report = fuse(seq, res=16)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(fused(x), seq(x), atol=1e-5)
    assert report.bn_folded == 1
