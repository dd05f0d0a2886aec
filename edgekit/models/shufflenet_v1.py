"""ShuffleNetV1 (Zhang et al. 2017, arXiv:1707.01083): our own implementation of the paper's Table 1.

No maintained library ships ShuffleNetV1 (torchvision has only V2), so the architecture is written out here from the
paper, checked against the authors' reference code (megvii-model/ShuffleNet-Series, ``ShuffleNetV1/``):

- conv1 3x3/2 (24 channels) + BN + ReLU, maxpool 3x3/2, then three stages of ShuffleNet units repeated 4/8/4 times
  (Table 1: one stride-2 unit, then 3/7/3 stride-1 units), global average pool, fully-connected;
- a unit is 1x1 group conv (g groups) + BN + ReLU -> channel shuffle -> 3x3 depthwise (BN, *no* ReLU) -> 1x1 group
  conv + BN; the bottleneck is a quarter of the unit's output width (Sec. 3.3: "1/4 of the output channels");
- stride-1 units add the input and apply ReLU; stride-2 units put a 3x3/2 average pool on the shortcut and
  *concatenate* it with the residual branch, which therefore produces ``out - in`` channels (Fig. 2c);
- the first pointwise layer of Stage 2 is not grouped (Table 1's note: its input has only 24 channels).

Width multiplier: the paper's scale factor s ("ShuffleNet s x", "scaling the number of filters in ShuffleNet 1x by
s times") is ``alpha``. The rounding lives in :mod:`._scaling`:

- stage widths: ``s x`` Table 1's width, rounded to a multiple of ``4 g`` (``scale_grouped_channels``), so the
  bottleneck ``out / 4`` splits into g groups; Table 1's widths already are such multiples, so 1x is exact;
- conv1: 24 halved or doubled only at whole octaves of s, never below 12, rounded to a multiple of g
  (``scale_channels_by_octave``): the authors' reference code uses 12/24/24/48 at 0.5x/1x/1.5x/2x (16 for g = 8 at
  0.5x, since the first unit's residual branch has ``stage2 - conv1`` channels in g groups). Scaling the stem by s
  itself misses the paper's numbers: 300 instead of 292 MFLOPs at 1.5x (g = 3, Table 5), and 11 instead of 13 at
  0.25x (Table 2), which a 12-channel stem reproduces.

With these rules every model of the authors' reference (g = 3 and 8 at 0.5/1/1.5/2x) has their published FLOPs
and params, and Tables 1, 2 and 5 of the paper are reproduced (tests/test_paper_tables.py; the three Table 2 cells
that print a row's nominal complexity rather than the model's carry a note in edgekit/papers/shufflenet.py). The
paper's "FLOPs" are multiply-adds (Table 1 caption).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadArgument
from ..registry import ModelSpec, register_model
from ._scaling import scale_channels_by_octave, scale_grouped_channels

SOURCE = "Zhang et al. 2017, ShuffleNet (arXiv:1707.01083) Table 1; Table 2 for MFLOPs (multiply-adds) per scale"

#: Table 1: output channels of Stages 2/3/4 for each number of groups g, at ShuffleNet 1x.
STAGE_WIDTHS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
CONV1_WIDTH = 24
CONV1_MIN_WIDTH = 12
STAGE_REPEATS = (4, 8, 4)  # Table 1: 1 + 3, 1 + 7, 1 + 3 units
BOTTLENECK_RATIO = 4


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """The paper's shuffle (Sec. 3.1): view channels as (groups, n), transpose to (n, groups), flatten back.

    Output channel ``j * groups + i`` is input channel ``i * n + j``, the same permutation as torch's
    ``nn.ChannelShuffle`` and torchvision's ``channel_shuffle``. Written with ``unflatten``/``flatten`` on the
    channel dimension only, instead of ``x.view(batchsize, groups, ...)`` with a batch size read from ``x.size()``:
    a Python int read from the example input would be recorded as a constant by a tracer, baking the export
    example's batch size into the Reshape and breaking ONNX/TorchScript exports with a symbolic batch dimension.
    This form never mentions the batch size, so it stays symbolic under every exporter.
    """
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit (Fig. 2b for stride 1, Fig. 2c for stride 2)."""

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, stride: int, group_first_pointwise: bool = True
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleNet units have stride 1 or 2, got {stride}")
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 unit adds its input: in {in_channels} != out {out_channels}")
        bottleneck = out_channels // BOTTLENECK_RATIO
        first_groups = groups if group_first_pointwise else 1
        # Internal consistency (widths come from shufflenet_v1_widths, which guarantees these): a grouped conv needs
        # its input and output widths divisible by its groups.
        for what, count, need in (
            ("input", in_channels, first_groups),
            ("bottleneck", bottleneck, groups),
            ("branch output", branch_out, groups),
        ):
            if count <= 0 or count % need:
                raise ValueError(f"{what} width {count} does not split into {need} groups")
        self.groups = groups
        self.stride = stride
        self.compress = nn.Sequential(
            nn.Conv2d(in_channels, bottleneck, 1, groups=first_groups, bias=False),
            nn.BatchNorm2d(bottleneck),
            nn.ReLU(inplace=True),
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(bottleneck, bottleneck, 3, stride=stride, padding=1, groups=bottleneck, bias=False),
            nn.BatchNorm2d(bottleneck),  # no ReLU after the depthwise conv (Sec. 3.2, following Xception)
        )
        self.expand = nn.Sequential(
            nn.Conv2d(bottleneck, branch_out, 1, groups=groups, bias=False),
            nn.BatchNorm2d(branch_out),
        )
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.compress(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 1:
            return F.relu(out + x)
        return F.relu(torch.cat((self.shortcut(x), out), dim=1))


class ShuffleNetV1(nn.Module):
    """Table 1's network for ``groups`` g with the given widths ``(conv1, stage2, stage3, stage4)``.

    The top-level children (conv1, maxpool, stage2..4, fc) mirror torchvision's ShuffleNetV2 so ``edgekit info``
    shows the same per-stage breakdown for both versions.
    """

    def __init__(self, groups: int, widths: tuple[int, int, int, int], num_classes: int = 1000) -> None:
        super().__init__()
        conv1, *stage_widths = widths
        self.groups = groups
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, conv1, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(conv1),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = conv1
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for index, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, stage_widths)):
            units = [
                ShuffleUnit(in_channels, out_channels, groups, stride=2, group_first_pointwise=index > 0),
                *(ShuffleUnit(out_channels, out_channels, groups, stride=1) for _ in range(repeats - 1)),
            ]
            setattr(self, f"stage{index + 2}", nn.Sequential(*units))
            in_channels = out_channels
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(x.mean((2, 3)))  # global average pool over whatever resolution came in


def shufflenet_v1_widths(groups: int, alpha: float) -> tuple[int, int, int, int]:
    """``(conv1, stage2, stage3, stage4)`` output channels of ShuffleNet ``alpha`` x with ``groups`` groups."""
    if groups not in STAGE_WIDTHS:
        raise ValueError(f"ShuffleNetV1 is defined for g in {sorted(STAGE_WIDTHS)}, got {groups}")
    widths = _widths(groups, alpha)
    if not _grows(widths):
        # conv1 and the stage widths stop shrinking at their minimums at different alphas: a stride-2 unit's branch
        # (this stage's width - the previous one's) would have no channels left. The smallest alpha that still
        # builds comes from the same integer rule.
        smallest = next(a / 100 for a in range(1, 401) if _grows(_widths(groups, a / 100)))
        raise BadArgument(
            f"alpha {alpha:g} is too small for shufflenet_v1_g{groups}: its widths {list(widths)} do not grow from "
            f"stage to stage; use alpha >= {smallest:g}"
        )
    return widths


def _grows(widths: tuple[int, ...]) -> bool:
    return all(b > a for a, b in zip(widths, widths[1:]))


def _widths(groups: int, alpha: float) -> tuple[int, int, int, int]:
    conv1 = scale_channels_by_octave(CONV1_WIDTH, alpha, divisor=groups, min_value=CONV1_MIN_WIDTH)
    stages = tuple(scale_grouped_channels(c, alpha, groups, BOTTLENECK_RATIO) for c in STAGE_WIDTHS[groups])
    return (conv1, *stages)  # type: ignore[return-value]


def build(alpha: float, num_classes: int, *, groups: int) -> nn.Module:
    return ShuffleNetV1(groups, shufflenet_v1_widths(groups, alpha), num_classes=num_classes)


for _groups in STAGE_WIDTHS:
    register_model(
        ModelSpec(
            name=f"shufflenet_v1_g{_groups}",
            family="shufflenet_v1",
            builder=partial(build, groups=_groups),
            default_res=224,
            source=SOURCE,
            aliases=("shufflenet_v1",) if _groups == 3 else (),
        )
    )
