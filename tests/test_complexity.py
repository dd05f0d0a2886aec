"""Complexity: params and multiply-adds counted the papers' way, checked against hand counts and torchvision."""

from __future__ import annotations

import pytest
import torch.nn as nn

import edgekit
from edgekit.complexity import count_complexity
from edgekit.errors import BadArgument, UnknownModel


def test_depthwise_separable_cost_matches_the_closed_form():
    """MobileNetV1's formula: D_K*D_K*M*D_F*D_F + M*N*D_F*D_F (the seed notes' F1 + F2)."""
    m, n, f = 32, 64, 28
    block = nn.Sequential(
        nn.Conv2d(m, m, 3, padding=1, groups=m, bias=False), nn.BatchNorm2d(m), nn.ReLU(),
        nn.Conv2d(m, n, 1, bias=False), nn.BatchNorm2d(n), nn.ReLU(),
    )

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, m, 1, bias=False)
            self.block = block

        def forward(self, x):
            return self.block(self.stem(x))

    params, macs, _ = count_complexity(Wrap(), f)
    stem = 3 * m * f * f
    assert macs == stem + 3 * 3 * m * f * f + m * n * f * f  # BN, ReLU not counted
    assert params == 3 * m + 9 * m + 2 * m + m * n + 2 * n


def test_fully_connected_and_grouped_convs_are_counted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 12, 1, groups=3, bias=False)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(12, 10)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).flatten(1))

    _, macs, _ = count_complexity(Net(), 4)
    assert macs == (3 // 3) * 12 * 4 * 4 + 12 * 10  # pooling and the bias add are not multiply-adds


@pytest.mark.parametrize(
    "name, tv_name",
    [("mobilenet_v2", "mobilenet_v2"), ("mobilenet_v3_large", "mobilenet_v3_large"),
     ("shufflenet_v2", "shufflenet_v2_x1_0"), ("efficientnet_b0", "efficientnet_b0")],
)
def test_matches_torchvision_at_alpha_one(name, tv_name):
    import torchvision.models as tvm

    ours = edgekit.info(name)
    reference = getattr(tvm, tv_name)()
    params, macs, _ = count_complexity(reference, ours.res, with_stages=False)
    assert ours.params == params == sum(p.numel() for p in reference.parameters())
    assert ours.macs == macs


def test_macs_scale_with_resolution_squared_and_params_do_not():
    small = edgekit.info("mobilenet_v2", res=128)
    large = edgekit.info("mobilenet_v2", res=256)
    assert small.params == large.params
    fc = 1280 * 1000
    assert (large.macs - fc) == pytest.approx(4 * (small.macs - fc), rel=0.02)


def test_macs_shrink_roughly_with_alpha_squared():
    """The seed notes: the width multiplier cuts computation by about alpha^2."""
    full = edgekit.info("mobilenet_v1", alpha=1.0)
    half = edgekit.info("mobilenet_v1", alpha=0.5)
    assert half.macs / full.macs == pytest.approx(0.25, abs=0.03)


def test_stage_breakdown_adds_up():
    result = edgekit.info("mobilenet_v2", alpha=0.5, res=160)
    assert len(result.stages) > 5
    assert sum(s.macs for s in result.stages) == result.macs
    assert sum(s.params for s in result.stages) == result.params
    assert result.stages[-1].out_shape == (1, 1000)


def test_info_json_fields():
    data = edgekit.info("mobilenet_v2", alpha=0.75, res=192).to_dict()
    assert {"params", "macs", "alpha", "res", "stages"} <= set(data)
    assert isinstance(data["params"], int) and isinstance(data["macs"], int)
    assert data["alpha"] == 0.75 and data["res"] == 192


def test_info_rejects_bad_input():
    with pytest.raises(UnknownModel):
        edgekit.info("mobilenet_v9")
    with pytest.raises(BadArgument):
        edgekit.info("mobilenet_v2", alpha=-1)
    with pytest.raises(BadArgument):
        edgekit.info("mobilenet_v2", res=8)
