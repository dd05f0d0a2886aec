"""EfficientNet-B0 ... B7: torchvision parity at alpha 1.0, the compound-scaling rules, shapes at any width.

Independent references: torchvision's ``efficientnet_b0 ... b7`` (names, shapes, counts, BatchNorm settings,
outputs), the paper's Table 2 (params of all eight models), and the TF reference code's rules worked out by hand
(``round_filters``: make_divisible by 8; ``round_repeats``: ceil; head ``round_filters(1280)``). Parity checks
build on the meta device (no memory, no forward pass); forward passes are batch 1 at low resolution, B2-B7 only at
alpha 0.25.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models.efficientnet import MBConv

import edgekit
from edgekit.complexity import count_complexity
from edgekit.models import build_model
from edgekit.models import efficientnet
from edgekit.papers import efficientnet as paper
from edgekit.registry import get_spec

VARIANTS = tuple(f"efficientnet_b{i}" for i in range(8))
PUBLISHED_RES = dict(zip(VARIANTS, (224, 240, 260, 300, 380, 456, 528, 600)))


def _build(name: str, alpha: float, num_classes: int = 1000) -> nn.Module:
    return get_spec(name).builder(alpha, num_classes).eval()


def _stage_depths(model: nn.Module) -> list[int]:
    return [len(stage) for stage in model.features[1:-1]]


# --- alpha 1.0 is torchvision's model ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_alpha_one_is_torchvision_exactly(name: str) -> None:
    with torch.device("meta"):
        ours = get_spec(name).builder(1.0, 1000)
        theirs = getattr(torchvision.models, name)()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    # What the state_dict does not show but the published weights rely on: BN eps/momentum (1e-3/0.01 for the
    # TF-ported B5-B7), dropout and stochastic-depth rates.
    assert _settings(ours) == _settings(theirs)


def _settings(model: nn.Module) -> list[tuple[str, float | None, float | None, float | None]]:
    kinds = (nn.BatchNorm2d, nn.Dropout, torchvision.ops.StochasticDepth)
    return [
        (type(m).__name__, getattr(m, "eps", None), getattr(m, "momentum", None), getattr(m, "p", None))
        for m in model.modules()
        if isinstance(m, kinds)
    ]


def test_torchvision_weights_load_and_compute_what_torchvision_computes(tmp_path) -> None:
    """Stand-in for the published B0 weights (nothing can be downloaded here): torchvision's B0 with seeded,
    non-trivial weights, saved as a state_dict, loads strict into ours and gives the same logits."""
    reference = edgekit.get_model("efficientnet_b0")
    theirs = torchvision.models.efficientnet_b0()
    theirs.load_state_dict(reference.state_dict())
    theirs.eval()
    path = tmp_path / "b0.pth"
    torch.save(theirs.state_dict(), path)
    ours, _ = build_model("efficientnet_b0", weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_registry_defaults_are_the_published_ones() -> None:
    for name in VARIANTS:
        spec = get_spec(name)
        assert spec.family == "efficientnet"
        assert spec.default_res == PUBLISHED_RES[name]
        assert spec.torchvision_weights == name and spec.imagenet_weights_name(1.0) == name
        assert spec.imagenet_weights_name(0.5) is None


# --- compound scaling: the reference rules ----------------------------------------------------------------------

B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
B0_WIDTHS = (32, 16, 24, 40, 80, 112, 192, 320)  # stem, then each stage's output
DEPTH = dict(zip(VARIANTS, (1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1)))
WIDTH = dict(zip(VARIANTS, (1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0)))


def _round_filters(filters: float) -> int:
    """The TF reference's round_filters, written out independently of edgekit's _scaling."""
    new = max(8, int(filters + 4) // 8 * 8)
    return new + 8 if new < 0.9 * filters else new


@pytest.mark.parametrize("name", VARIANTS)
def test_depth_is_ceil_of_repeats_times_depth_coefficient(name: str) -> None:
    with torch.device("meta"):
        model = _build(name, 0.5)  # depth does not depend on alpha
    assert _stage_depths(model) == [math.ceil(r * DEPTH[name]) for r in B0_REPEATS]


@pytest.mark.parametrize("name, alpha", [("efficientnet_b0", 0.25), ("efficientnet_b3", 0.75), ("efficientnet_b6", 1.3)])
def test_widths_are_round_filters_of_width_coefficient_times_alpha(name: str, alpha: float) -> None:
    width = WIDTH[name] * alpha
    with torch.device("meta"):
        model = _build(name, alpha)
    assert model.features[0][0].out_channels == _round_filters(32 * width)
    outs = [stage[-1].out_channels for stage in model.features[1:-1]]
    assert outs == [_round_filters(c * width) for c in B0_WIDTHS[1:]]
    assert model.features[-1][0].out_channels == _round_filters(1280 * width)


def test_head_is_round_filters_1280_not_four_times_the_last_stage() -> None:
    """At width 0.3125 the reference head is round_filters(400) = 400, while torchvision's formula
    (4 * round_filters(320 * w) = 4 * 104) would give 416."""
    with torch.device("meta"):
        model = _build("efficientnet_b0", 0.3125)
    assert model.features[-2][-1].out_channels == 104
    assert model.features[-1][0].out_channels == 400
    assert model.classifier[1].in_features == 400


def test_expanded_and_squeeze_widths_follow_the_scaled_input() -> None:
    """MBConv: expanded = 6 x the (already rounded) input width, SE squeeze = input // 4, as in the reference."""
    with torch.device("meta"):
        model = _build("efficientnet_b2", 0.6)
    for block in (m for m in model.modules() if isinstance(m, MBConv)):
        layers = list(block.block)
        in_channels = layers[0][0].in_channels
        se = next(layer for layer in layers if isinstance(layer, torchvision.ops.SqueezeExcitation))
        if len(layers) == 4:  # expand, depthwise, SE, project
            assert layers[0][0].out_channels == 6 * in_channels
        assert se.fc1.out_channels == max(1, in_channels // 4)


@pytest.mark.parametrize("name", VARIANTS)
def test_params_match_table_2(name: str) -> None:
    """Every model's params, B4 and B5 included (whose printed MACs are the paper's own, see NOT_REPRODUCED)."""
    row = next(r for r in (*paper.ROWS, *paper.NOT_REPRODUCED) if r.model == name)
    with torch.device("meta"):
        params = sum(p.numel() for p in _build(name, 1.0).parameters())
    assert row.params_match(params / 1e6), (params / 1e6, row.params_m)


def test_b4_and_b5_are_recorded_as_not_reproduced_with_a_reason() -> None:
    assert {r.model for r in paper.NOT_REPRODUCED} == {"efficientnet_b4", "efficientnet_b5"}
    assert all(r.note and r.macs_unit_m == 100 for r in paper.NOT_REPRODUCED)
    assert not {r.model for r in paper.ROWS} & {"efficientnet_b4", "efficientnet_b5"}


# --- any width, any resolution ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha, res", [(0.25, 96), (0.5, 160), (1.0, 96), (1.5, 96), (0.5, 224)])
@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b1"])
def test_b0_b1_build_and_run(name: str, alpha: float, res: int) -> None:
    model = _build(name, alpha, num_classes=10)
    with torch.no_grad():
        out = model(torch.randn(1, 3, res, res))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", VARIANTS[2:])
def test_larger_variants_run_at_small_width_and_resolution(name: str) -> None:
    model = _build(name, 0.25, num_classes=10)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_params_and_macs_grow_with_alpha() -> None:
    alphas = [0.25, 0.5, 0.75, 1.0, 1.5]
    counts = [count_complexity(_build("efficientnet_b0", a), 32, with_stages=False)[:2] for a in alphas]
    params, macs = zip(*counts)
    assert list(params) == sorted(params) and len(set(params)) == len(params)
    assert list(macs) == sorted(macs) and len(set(macs)) == len(macs)


def test_stage_breakdown_lists_the_seven_mbconv_stages() -> None:
    result = edgekit.info("efficientnet_b0", alpha=0.5, res=96)
    names = [s.name for s in result.stages]
    assert names[:9] == [f"features.{i}" for i in range(9)]
    assert sum(s.macs for s in result.stages) == result.macs
    assert result.stages[-1].out_shape == (1, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS[5:])
def test_largest_variants_run_at_their_published_resolution(name: str) -> None:
    model = _build(name, 1.0, num_classes=10)
    res = PUBLISHED_RES[name]
    with torch.no_grad():
        assert model(torch.randn(1, 3, res, res)).shape == (1, 10)


def test_efficientnet_config_is_reused_by_the_builder() -> None:
    stages, head = efficientnet.efficientnet_config(efficientnet.VARIANTS["b7"], 1.0)
    assert [s.num_layers for s in stages] == [4, 7, 7, 10, 10, 13, 4]
    assert [s.out_channels for s in stages] == [32, 48, 80, 160, 224, 384, 640]
    assert head == 2560
