"""ShuffleNetV1/V2: shapes at any width and resolution, the papers' channel tables, the shuffle, exports.

Independent references: the papers' tables (V1 Table 1 widths, V2 Table 5 widths), the V1 authors' reference code
(megvii-model/ShuffleNet-Series: its published FLOPs/params and its stem widths), torchvision's ShuffleNetV2 models
(names, shapes, counts, outputs at the four published alphas), torch's own ``nn.ChannelShuffle`` and a hand-written
permutation, and ONNX Runtime's outputs against PyTorch's. Models are built with ``spec.builder`` (no seeding)
unless the test compares numerics; inputs are batch 1 at low resolution.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models.shufflenetv2 import channel_shuffle as torchvision_channel_shuffle

import edgekit
from edgekit.complexity import count_complexity
from edgekit.models import build_model
from edgekit.models import shufflenet_v1, shufflenet_v2
from edgekit.models.shufflenet_v1 import ShuffleUnit, channel_shuffle
from edgekit.papers import PaperRow
from edgekit.registry import get_spec

V1_GROUPS = (1, 2, 3, 4, 8)
V1_MODELS = tuple(f"shufflenet_v1_g{g}" for g in V1_GROUPS)
ALL_MODELS = (*V1_MODELS, "shufflenet_v2")
TORCHVISION_V2 = {
    0.5: torchvision.models.shufflenet_v2_x0_5,
    1.0: torchvision.models.shufflenet_v2_x1_0,
    1.5: torchvision.models.shufflenet_v2_x1_5,
    2.0: torchvision.models.shufflenet_v2_x2_0,
}


def _build(name: str, alpha: float, num_classes: int = 1000) -> nn.Module:
    return get_spec(name).builder(alpha, num_classes).eval()


def _signature(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


def _units(model: nn.Module) -> list[ShuffleUnit]:
    return [m for m in model.modules() if isinstance(m, ShuffleUnit)]


# --- every width, every resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0, 1.5])
def test_builds_and_runs_at_several_alphas_and_resolutions(name: str, alpha: float) -> None:
    model = _build(name, alpha, num_classes=10)
    res = {0.25: 224, 0.5: 96, 1.0: 160, 1.5: 96}[alpha]  # every resolution is covered across the alphas
    with torch.no_grad():
        out = model(torch.randn(1, 3, res, res))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["shufflenet_v1_g3", "shufflenet_v1_g8", "shufflenet_v2"])
@pytest.mark.parametrize("res", [32, 96, 160, 224])
def test_runs_at_every_resolution_down_to_the_minimum(name: str, res: int) -> None:
    with torch.no_grad():
        assert _build(name, 0.5)(torch.randn(1, 3, res, res)).shape == (1, 1000)


def test_registry_names_alias_and_weights() -> None:
    assert get_spec("shufflenet_v1").name == "shufflenet_v1_g3"
    assert {get_spec(n).family for n in V1_MODELS} == {"shufflenet_v1"}
    assert all(get_spec(n).default_res == 224 and get_spec(n).torchvision_weights is None for n in V1_MODELS)
    v2 = get_spec("shufflenet_v2")
    assert {a: v2.imagenet_weights_name(a) for a in TORCHVISION_V2} == {
        0.5: "shufflenet_v2_x0_5", 1.0: "shufflenet_v2_x1_0", 1.5: "shufflenet_v2_x1_5", 2.0: "shufflenet_v2_x2_0",
    }
    assert v2.imagenet_weights_name(0.75) is None


# --- ShuffleNetV1: the paper's Table 1 --------------------------------------------------------------------------

TABLE_1 = {  # g: (conv1, stage2, stage3, stage4) at 1x
    1: (24, 144, 288, 576),
    2: (24, 200, 400, 800),
    3: (24, 240, 480, 960),
    4: (24, 272, 544, 1088),
    8: (24, 384, 768, 1536),
}


@pytest.mark.parametrize("groups", V1_GROUPS)
def test_v1_channel_table_at_1x_is_table_1(groups: int) -> None:
    model = _build(f"shufflenet_v1_g{groups}", 1.0)
    conv1, *stages = TABLE_1[groups]
    assert model.conv1[0].out_channels == conv1
    for stage_name, width, repeats in zip(("stage2", "stage3", "stage4"), stages, (4, 8, 4)):
        units = list(getattr(model, stage_name))
        assert len(units) == repeats  # Table 1: one stride-2 unit, then 3/7/3 stride-1 units
        assert [u.stride for u in units] == [2] + [1] * (repeats - 1)
        for unit in units:
            assert unit.compress[0].out_channels == width // 4  # bottleneck = 1/4 of the output (Sec. 3.3)
            assert unit.depthwise[0].groups == width // 4  # depthwise on the bottleneck
    assert model.fc.in_features == stages[-1]


@pytest.mark.parametrize("groups", V1_GROUPS)
def test_v1_pointwise_convs_are_grouped_except_the_first_of_stage_2(groups: int) -> None:
    model = _build(f"shufflenet_v1_g{groups}", 0.5)
    units = _units(model)
    assert len(units) == 16
    assert units[0].compress[0].groups == 1  # Table 1's note: input has only 24 (here 12) channels
    assert all(u.compress[0].groups == groups for u in units[1:])
    assert all(u.expand[0].groups == groups for u in units)
    assert all(len(u.depthwise) == 2 for u in units)  # conv + BN: no ReLU after the depthwise conv


def test_v1_stride_2_units_concatenate_an_average_pooled_shortcut() -> None:
    unit = ShuffleUnit(48, 240, groups=3, stride=2).eval()
    assert isinstance(unit.shortcut, nn.AvgPool2d) and unit.shortcut.kernel_size == 3
    assert unit.expand[0].out_channels == 240 - 48  # the branch makes only what the concatenation lacks
    x = torch.rand(1, 48, 16, 16)
    with torch.no_grad():
        out = unit(x)
    assert out.shape == (1, 240, 8, 8)
    # The first 48 output channels are the pooled input itself (already >= 0, so the final ReLU keeps them).
    assert torch.allclose(out[:, :48], nn.functional.avg_pool2d(x, 3, 2, 1))


@pytest.mark.parametrize("groups", V1_GROUPS)
def test_v1_widths_split_into_groups_and_grow_with_alpha(groups: int) -> None:
    alphas = [0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0]
    previous = (0, 0, 0, 0)
    for alpha in alphas:
        widths = shufflenet_v1.shufflenet_v1_widths(groups, alpha)
        conv1, *stages = widths
        assert conv1 % groups == 0 and conv1 >= 12
        assert all(w % (4 * groups) == 0 for w in stages), (alpha, widths)
        assert all(b >= a for a, b in zip(previous, widths)), (alpha, previous, widths)
        previous = widths
    with torch.device("meta"):  # builds (its own consistency checks run) without allocating anything
        for alpha in alphas:
            shufflenet_v1.build(alpha, 1000, groups=groups)


def test_v1_stem_follows_the_authors_reference_code() -> None:
    """megvii-model/ShuffleNet-Series ShuffleNetV1: stage_out_channels[1] is 12/24/24/48 at 0.5/1/1.5/2x (16 for
    g=8 at 0.5x), not 24 * s."""
    stems = {(g, a): shufflenet_v1.shufflenet_v1_widths(g, a)[0] for g in (3, 8) for a in (0.5, 1.0, 1.5, 2.0)}
    assert stems == {
        (3, 0.5): 12, (3, 1.0): 24, (3, 1.5): 24, (3, 2.0): 48,
        (8, 0.5): 16, (8, 1.0): 24, (8, 1.5): 24, (8, 2.0): 48,
    }


# The authors' reference implementation publishes FLOPs (multiply-adds) and params of the models it ships
# (megvii-model/ShuffleNet-Series, ShuffleNetV1/README.md): an independent check of the whole architecture,
# params included, which the paper does not print.
MEGVII_README = "megvii-model/ShuffleNet-Series ShuffleNetV1/README.md"
REFERENCE_MODELS = [
    PaperRow("shufflenet_v1_g3", 2.0, 224, "524", "5.4", MEGVII_README),
    PaperRow("shufflenet_v1_g8", 2.0, 224, "522", "6.5", MEGVII_README),
    PaperRow("shufflenet_v1_g3", 1.5, 224, "292", "3.4", MEGVII_README),
    PaperRow("shufflenet_v1_g8", 1.5, 224, "290", "4.3", MEGVII_README),
    PaperRow("shufflenet_v1_g3", 1.0, 224, "138", "1.9", MEGVII_README),
    PaperRow("shufflenet_v1_g8", 1.0, 224, "138", "2.4", MEGVII_README),
    PaperRow("shufflenet_v1_g3", 0.5, 224, "38", "0.7", MEGVII_README),
    PaperRow("shufflenet_v1_g8", 0.5, 224, "40", "1.0", MEGVII_README),
]


@pytest.mark.parametrize("row", REFERENCE_MODELS, ids=lambda r: f"{r.model}-{r.alpha:g}x")
def test_v1_matches_the_authors_reference_flops_and_params(row: PaperRow) -> None:
    result = edgekit.info(row.model, alpha=row.alpha, res=row.res)
    assert row.macs_match(result.macs / 1e6), (result.macs / 1e6, row.macs_m)
    assert row.params_match(result.params / 1e6), (result.params / 1e6, row.params_m)


# --- the channel shuffle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups, per_group", [(2, 3), (3, 4), (4, 2), (8, 3)])
def test_channel_shuffle_is_the_papers_permutation(groups: int, per_group: int) -> None:
    """Sec. 3.1: reshape channels to (g, n), transpose, flatten: output j*g + i is input i*n + j."""
    channels = groups * per_group
    x = torch.arange(channels, dtype=torch.float32).reshape(1, channels, 1, 1).expand(2, channels, 3, 3)
    expected = [i * per_group + j for j in range(per_group) for i in range(groups)]
    out = channel_shuffle(x, groups)
    assert out[0, :, 0, 0].tolist() == expected
    assert torch.equal(out, nn.ChannelShuffle(groups)(x))
    assert torch.equal(out, torchvision_channel_shuffle(x.contiguous(), groups))
    # Each run of g consecutive output channels takes one channel from every group: that is what lets information
    # cross the groups of the next group convolution.
    assert all(sorted(e // per_group for e in expected[k:k + groups]) == list(range(groups))
               for k in range(0, channels, groups))
    assert torch.equal(channel_shuffle(out, per_group), x)  # shuffling back with n groups undoes it


def test_channel_shuffle_traced_at_one_batch_size_runs_at_another() -> None:
    """TorchScript tracing records Python ints read from shapes as constants; this shuffle never reads the batch."""

    class Shuffle(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return channel_shuffle(x, 3)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(Shuffle(), torch.randn(2, 12, 4, 4))
    x = torch.randn(5, 12, 4, 4)
    assert torch.equal(traced(x), nn.ChannelShuffle(3)(x))


# --- ShuffleNetV2: torchvision at the published alphas, a monotone rule between ---------------------------------


@pytest.mark.parametrize("alpha", sorted(TORCHVISION_V2))
def test_v2_at_published_alphas_is_torchvision(alpha: float) -> None:
    with torch.device("meta"):
        ours = get_spec("shufflenet_v2").builder(alpha, 1000)
        theirs = TORCHVISION_V2[alpha]()
    assert _signature(ours) == _signature(theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_v2_widths_are_table_5_at_the_published_alphas() -> None:
    assert shufflenet_v2.shufflenet_v2_widths(0.5) == [24, 48, 96, 192, 1024]
    assert shufflenet_v2.shufflenet_v2_widths(1.0) == [24, 116, 232, 464, 1024]
    assert shufflenet_v2.shufflenet_v2_widths(1.5) == [24, 176, 352, 704, 1024]
    assert shufflenet_v2.shufflenet_v2_widths(2.0) == [24, 244, 488, 976, 2048]


def test_v2_widths_between_and_around_the_published_alphas() -> None:
    # Linear between the knots: 0.75 is half way between 0.5x and 1x ((48 + 116) / 2 = 82, rounded to 4: 84).
    assert shufflenet_v2.shufflenet_v2_widths(0.75) == [24, 84, 164, 328, 1024]
    assert shufflenet_v2.shufflenet_v2_widths(0.25)[1:4] == [24, 48, 96]  # proportional below 0.5x
    assert shufflenet_v2.shufflenet_v2_widths(3.0) == [24, 368, 732, 1464, 3072]  # proportional above 2x
    assert shufflenet_v2.shufflenet_v2_widths(1.99)[-1] == 1024  # conv5 widens only at 2x


def test_v2_widths_are_even_and_monotone_in_alpha() -> None:
    previous = [0] * 5
    for step in range(1, 401):
        alpha = step / 100  # 0.01 ... 4.0
        widths = shufflenet_v2.shufflenet_v2_widths(alpha)
        assert all(w % 2 == 0 and w > 0 for w in widths), (alpha, widths)  # units split channels in halves
        assert all(b >= a for a, b in zip(previous, widths)), (alpha, previous, widths)
        previous = widths


def test_v2_params_and_macs_grow_with_alpha() -> None:
    alphas = [0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.2, 1.5, 1.75, 1.9, 2.0, 2.5]
    counts = [count_complexity(_build("shufflenet_v2", a), 64, with_stages=False)[:2] for a in alphas]
    params, macs = zip(*counts)
    assert list(params) == sorted(params) and len(set(params)) == len(params)
    assert list(macs) == sorted(macs) and len(set(macs)) == len(macs)


def test_v2_loads_torchvision_weights_and_computes_what_torchvision_computes(tmp_path) -> None:
    """A stand-in for the published 0.5x weights (nothing can be downloaded here): torchvision's own model with
    non-trivial weights, saved as a state_dict, loads strict into ours and gives the same logits."""
    reference = edgekit.get_model("shufflenet_v2", alpha=0.5)  # seeded, non-trivial BN statistics
    theirs = torchvision.models.shufflenet_v2_x0_5()
    theirs.load_state_dict(reference.state_dict())
    theirs.eval()
    path = tmp_path / "x0_5.pth"
    torch.save(theirs.state_dict(), path)
    ours, source = build_model("shufflenet_v2", alpha=0.5, weights=path)
    assert source.kind == "file"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


# --- exports keep the batch dimension symbolic ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shufflenet_v1_g3", "shufflenet_v2"])
def test_onnx_export_with_symbolic_batch_runs_at_batch_1_and_4(name: str, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = edgekit.get_model(name, alpha=0.5)  # seeded: real numerics, not identity BNs
    path = tmp_path / f"{name}.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.randn(2, 3, 64, 64),), str(path),
            dynamo=True, dynamic_shapes=({0: batch},), external_data=False, verbose=False,
        )
    graph_input = onnx.load(str(path)).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # a named, symbolic batch dimension
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    for batch_size in (1, 4):
        x = torch.randn(batch_size, 3, 64, 64)
        (out,) = session.run(None, {input_name: x.numpy()})
        with torch.no_grad():
            expected = model(x)
        assert out.shape == (batch_size, 1000)
        torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_too_small_alpha_is_a_clear_error_naming_the_smallest_that_builds(groups):
    """conv1 and the stages bottom out at different alphas; below that a unit's branch would have no channels."""
    import re

    from edgekit.errors import BadArgument

    with pytest.raises(BadArgument, match=r"too small for shufflenet_v1_g\d.*use alpha >= ") as caught:
        edgekit.info(f"shufflenet_v1_g{groups}", alpha=0.01, res=64)
    smallest = float(re.search(r"use alpha >= ([0-9.]+)", str(caught.value)).group(1))
    assert 0.01 < smallest <= 0.1
    model = edgekit.get_model(f"shufflenet_v1_g{groups}", alpha=smallest)  # the advice works
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
