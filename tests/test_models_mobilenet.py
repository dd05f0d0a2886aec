"""MobileNetV1/V2/V3: shapes at any width and resolution, torchvision parity at alpha 1.0, the papers' width rules.

Independent references: torchvision's own models (names, shapes, counts, outputs at alpha 1.0), the papers' tables
(channel counts of MobileNetV1 Table 1, the MobileNetV3 reference rule worked out by hand below). Models are built
with ``spec.builder`` (no seeding) unless the test is about loading weights; inputs are batch 1 at low resolution.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision

import edgekit
from edgekit.errors import BadWeights
from edgekit.models import _scaling
from edgekit.models import mobilenet_v1, mobilenet_v3
from edgekit.registry import get_spec

MOBILENETS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
TORCHVISION_TWINS = {
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "mobilenet_v3_large": torchvision.models.mobilenet_v3_large,
    "mobilenet_v3_small": torchvision.models.mobilenet_v3_small,
}


def _build(name: str, alpha: float, num_classes: int = 1000) -> nn.Module:
    return get_spec(name).builder(alpha, num_classes).eval()


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- every width, every resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MOBILENETS)
@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0, 1.5])
def test_builds_and_runs_at_every_published_kind_of_alpha(name: str, alpha: float) -> None:
    model = _build(name, alpha, num_classes=10)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 96))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MOBILENETS)
@pytest.mark.parametrize("res", [96, 160, 224])
def test_runs_at_every_resolution(name: str, res: int) -> None:
    model = _build(name, 0.25)
    with torch.no_grad():
        assert model(torch.randn(1, 3, res, res)).shape == (1, 1000)


@pytest.mark.parametrize("name", MOBILENETS)
@pytest.mark.parametrize("alpha", [0.1, 0.35, 0.6, 1.3])
def test_in_between_alphas_build_consistent_networks(name: str, alpha: float) -> None:
    """Odd multipliers exercise the rounding paths (V1's floor of 8, V3's head-width swap) end to end."""
    model = _build(name, alpha)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_model_widens_monotonically_with_alpha() -> None:
    for name in MOBILENETS:
        counts = [_params(_build(name, a)) for a in (0.25, 0.5, 0.75, 1.0, 1.5)]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), (name, counts)


# --- torchvision parity at alpha 1.0 ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_alpha_1_has_torchvisions_names_shapes_and_counts(name: str) -> None:
    ours = _build(name, 1.0)
    theirs = TORCHVISION_TWINS[name]()
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert {k: tuple(v.shape) for k, v in ours_sd.items()} == {k: tuple(v.shape) for k, v in theirs_sd.items()}
    assert _params(ours) == _params(theirs)


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_torchvision_state_dict_loads_strict_and_gives_torchvisions_outputs(name: str, tmp_path: Path) -> None:
    """A torchvision checkpoint (stand-in for the ImageNet download) loads via weights=PATH and computes the same."""
    torch.manual_seed(0)
    reference = TORCHVISION_TWINS[name]().eval()
    with torch.no_grad():  # non-default BN statistics, so a mismatched layer order could not hide
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)

    model = edgekit.get_model(name, weights=path)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_imagenet_weights_are_declared_where_torchvision_has_them() -> None:
    assert get_spec("mobilenet_v2").imagenet_weights_name(1.0) == "mobilenet_v2"
    assert get_spec("mobilenet_v3_large").imagenet_weights_name(1.0) == "mobilenet_v3_large"
    assert get_spec("mobilenet_v3_small").imagenet_weights_name(1.0) == "mobilenet_v3_small"
    assert get_spec("mobilenet_v3_large").imagenet_weights_name(0.75) is None  # torchvision has only 1.0
    assert get_spec("mobilenet_v1").torchvision_weights is None


def test_mobilenet_v1_imagenet_weights_are_refused_with_a_way_out() -> None:
    with pytest.raises(BadWeights, match="no published ImageNet weights for mobilenet_v1"):
        edgekit.get_model("mobilenet_v1", weights="imagenet")


def test_mobilenet_v3_alias_is_large() -> None:
    assert get_spec("mobilenet_v3").name == "mobilenet_v3_large"
    assert get_spec("MobileNet-V3-Small").name == "mobilenet_v3_small"


# --- MobileNetV3: the paper's width rule, not torchvision's -----------------------------------------------------


def _expanded_widths(model: nn.Module) -> list[int]:
    """Width of each bneck's depthwise convolution (= its expanded width), in order."""
    widths = []
    for block in model.features[1:-1]:
        depthwise = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert len(depthwise) == 1
        widths.append(depthwise[0].out_channels)
    return widths


# Worked out by hand from the TF reference (expanded = round8(scaled_input * exp_size / input)): e.g. the 184-wide
# blocks get round8(64 * 184 / 80) = round8(147.2) = 144, because their input is round8(80 * 0.75) = round8(60) = 64.
LARGE_075_EXPANDED = [16, 64, 72, 72, 96, 96, 192, 160, 144, 144, 384, 528, 528, 720, 720]
# torchvision's rule, round8(exp_size * 0.75) independently of the input: what the paper's numbers rule out.
LARGE_075_EXPANDED_TORCHVISION = [16, 48, 56, 56, 88, 88, 184, 152, 136, 136, 360, 504, 504, 720, 720]


def test_v3_large_075_expanded_widths_follow_the_reference_rule() -> None:
    ours = _build("mobilenet_v3_large", 0.75)
    theirs = torchvision.models.mobilenet_v3_large(width_mult=0.75)
    assert _expanded_widths(ours) == LARGE_075_EXPANDED
    assert _expanded_widths(theirs) == LARGE_075_EXPANDED_TORCHVISION
    # ...which is why torchvision's 0.75 model has 3.38 M params where the paper (Table 3) says 4.0 M.
    assert _params(theirs) == pytest.approx(3.38e6, rel=0.01)
    assert _params(ours) == pytest.approx(4.0e6, rel=0.01)


def test_v3_expanded_widths_match_torchvision_at_alpha_1() -> None:
    ours = _expanded_widths(_build("mobilenet_v3_large", 1.0))
    assert ours == [16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]  # Table 1's exp size
    assert _expanded_widths(_build("mobilenet_v3_small", 1.0)) == [16, 72, 88, 96, 240, 240, 120, 144, 288, 576, 576]


@pytest.mark.parametrize(
    ("name", "last"), [("mobilenet_v3_large", 1280), ("mobilenet_v3_small", 1024)]
)
def test_v3_last_layer_stays_full_width_below_1_and_scales_above(name: str, last: int) -> None:
    for alpha in (0.35, 0.5, 0.75, 1.0):
        assert _build(name, alpha).classifier[0].out_features == last
    assert _build(name, 1.5).classifier[0].out_features == int(last * 1.5)


def test_v3_head_conv_is_the_papers_width_where_torchvision_would_differ() -> None:
    """Small at 0.35: the reference head is round8(576 * 0.35) = 200; torchvision's 6 x 32 would give 192."""
    model = _build("mobilenet_v3_small", 0.35)
    assert model.features[-2].out_channels == 32  # last bneck
    assert model.features[-1][0].out_channels == 200
    assert model.classifier[0].in_features == 200
    assert isinstance(model.features[-1][1], nn.BatchNorm2d) and model.features[-1][1].eps == 0.001


# --- MobileNetV1: Table 1 thinned by alpha ------------------------------------------------------------------------


def _v1_widths(model: nn.Module) -> list[int]:
    stem = model.features[0][0].out_channels
    return [stem] + [block.pw[0].out_channels for block in model.features[1:]]


def test_v1_channel_counts_at_half_width_follow_the_paper() -> None:
    model = _build("mobilenet_v1", 0.5)
    # Table 1 widths (32, 64, 128, 128, 256, 256, 512 x 6, 1024, 1024), each times 0.5.
    assert _v1_widths(model) == [16, 32, 64, 64, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
    for block in model.features[1:]:  # depthwise really is depthwise
        assert block.dw[0].groups == block.dw[0].in_channels == block.dw[0].out_channels
    assert model.classifier.in_features == 512


def test_v1_structure_is_table_1() -> None:
    model = _build("mobilenet_v1", 1.0)
    assert len(model.features) == 14  # stem + 13 depthwise-separable blocks
    strides = [model.features[0][0].stride[0]] + [block.dw[0].stride[0] for block in model.features[1:]]
    assert strides == [2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert [type(m) for m in model.features[1].pw] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert model.features[1].pw[0].bias is None  # BN follows every conv
    info = edgekit.info("mobilenet_v1", res=224)
    assert info.stages[13].out_shape == (1, 1024, 7, 7)  # 32x downsampling, the last depthwise at stride 1


def test_v1_rounding_is_the_reference_floor_of_8() -> None:
    # TF-slim: max(int(c * alpha), 8): 32 * 0.1 = 3.2 -> 8, 1024 * 0.35 = 358.4 -> 358 (no snapping to 8).
    assert mobilenet_v1.channel_plan(0.1)[0] == 8
    assert mobilenet_v1.channel_plan(0.35)[-1] == 358
    assert _scaling.scale_channels_floor(1024, 1.5) == 1536


# --- rounding lives in _scaling only ---------------------------------------------------------------------------------


MODEL_FILES = sorted(p for p in Path(mobilenet_v1.__file__).parent.glob("*.py") if p.name != "_scaling.py")


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_no_model_file_uses_torchvisions_make_divisible(path: Path) -> None:
    tree = ast.parse(path.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            used.update(alias.name for alias in node.names)
    assert "_make_divisible" not in used, f"{path.name} rounds channels itself; use edgekit.models._scaling"


def test_v3_channel_plan_comes_from_scaling_helpers() -> None:
    plan = mobilenet_v3.channel_plan(mobilenet_v3.LARGE, 0.75)
    assert plan.stem == _scaling.scale_channels(16, 0.75)
    assert plan.blocks[8] == (64, _scaling.expand_channels(64, 184 / 80), 64) == (64, 144, 64)
    assert plan.head == 720 and plan.last == _scaling.scale_last_channel(1280, 0.75) == 1280
