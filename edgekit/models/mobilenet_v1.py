"""MobileNetV1 (Howard et al. 2017, arXiv:1704.04861): the paper's Table 1, own implementation.

No maintained library builder exists (torchvision never shipped V1), so the network is written here from the paper:
a full 3x3/2 convolution with 32 filters, 13 depthwise-separable blocks (3x3 depthwise + BN + ReLU, then 1x1
pointwise + BN + ReLU), global average pooling and one fully-connected layer. The conv-BN-ReLU units are
torchvision's ``Conv2dNormActivation``, so Conv-BN folding sees the same structure as in every other family.

Width multiplier: the paper thins *every* layer, the first convolution included ("the number of input channels M
becomes alpha M"). Rounding follows the paper's reference code (TF-slim ``mobilenet_v1.py``): ``int(c * alpha)``
with a floor of 8 (``_scaling.scale_channels_floor``), not the later round-to-8 rule. Both rules give exactly
``c * alpha`` at the four published multipliers (1.0/0.75/0.5/0.25; every width in Table 1 is a multiple of 32), so
both reproduce Table 6; the reference rule is chosen because it is the one the authors' released checkpoints use and
it does not bend in-between multipliers (e.g. alpha 0.35) onto multiples of 8 that the paper never describes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
from torchvision.ops.misc import Conv2dNormActivation

from ..registry import ModelSpec, register_model
from ._scaling import scale_channels_floor

SOURCE = "Howard et al. 2017, MobileNets (arXiv:1704.04861) Table 1; Tables 6-7 for params/MACs"

#: Width of the first (full) convolution, stride 2.
STEM_CHANNELS = 32
#: Table 1, one row per depthwise-separable block: (pointwise output channels, depthwise stride).
#: The paper prints the 13th depthwise layer as "s2" on a 7x7 input, but its output is listed as 7x7 and the reference
#: code (and the 569 M mult-adds of Table 6) use stride 1 there, so stride 1 it is.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def channel_plan(alpha: float) -> list[int]:
    """Output widths at ``alpha``: the stem, then each block's pointwise layer (14 numbers)."""
    return [scale_channels_floor(c, alpha) for c in (STEM_CHANNELS, *(out for out, _ in BLOCKS))]


def depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """One Table 1 block: 3x3 depthwise conv-BN-ReLU, then 1x1 pointwise conv-BN-ReLU (named ``dw`` and ``pw``)."""
    return nn.Sequential(
        OrderedDict(
            dw=Conv2dNormActivation(in_channels, in_channels, kernel_size=3, stride=stride, groups=in_channels),
            pw=Conv2dNormActivation(in_channels, out_channels, kernel_size=1),
        )
    )


class MobileNetV1(nn.Module):
    """``features`` (stem + 13 blocks, so ``edgekit info`` can break the cost down per block), pooling, ``classifier``."""

    def __init__(self, alpha: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        widths = channel_plan(alpha)
        layers: list[nn.Module] = [Conv2dNormActivation(3, widths[0], kernel_size=3, stride=2)]
        for in_channels, out_channels, (_, stride) in zip(widths[:-1], widths[1:], BLOCKS):
            layers.append(depthwise_separable(in_channels, out_channels, stride))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        self.last_channel = widths[-1]

        # torchvision's MobileNet initialisation, so an unseeded model trains like its siblings.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build(alpha: float, num_classes: int) -> nn.Module:
    return MobileNetV1(alpha=alpha, num_classes=num_classes)


register_model(
    ModelSpec(
        name="mobilenet_v1",
        family="mobilenet_v1",
        builder=build,
        default_res=224,
        source=SOURCE,
        torchvision_weights=None,
    )
)
