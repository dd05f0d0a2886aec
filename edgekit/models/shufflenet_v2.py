"""ShuffleNetV2 (Ma et al. 2018, arXiv:1807.11164): torchvision's ``ShuffleNetV2`` class, the paper's widths.

The paper publishes four models (Table 5) and no rule for other widths: stage widths 48/116/176/244 (doubling per
stage) and a 1024-channel conv5 at 0.5x/1x/1.5x, 2048 at 2x; conv1 is 24 in all four. torchvision's
``shufflenet_v2_x0_5 ... x2_0`` are exactly these, so at alpha 0.5/1.0/1.5/2.0 this builder hands the published
widths to ``ShuffleNetV2(stages_repeats=[4, 8, 4], stages_out_channels=...)`` and the parameter names and shapes are
torchvision's: its four ImageNet state_dicts load strict (``ModelSpec.weights_alphas``).

Other alphas (documented rule, monotone in alpha; the rounding lives in :mod:`._scaling`):

- each stage's width is interpolated linearly between the published alphas, scaled proportionally from the 0.5x
  model below 0.5 and from the 2x model above 2.0, then rounded to a multiple of 4 (all published widths are, and
  a stride-1 unit splits its channels into two equal halves, so the width must at least be even);
- conv1 stays 24 (the paper never scales it);
- conv5 stays 1024 below 2.0, as in every published model below 2x, and is ``1024 alpha`` (2048 at 2x) from 2.0.

Batch dimension in exports: torchvision's ``channel_shuffle`` does ``x.view(batchsize, groups, ...)`` with
``batchsize`` from ``x.size()``. Under ``torch.onnx.export(dynamo=True)`` the size is a symbolic int, and the legacy
TorchScript tracer records ``x.size()`` as a graph op, so in both the batch stays symbolic (checked in
tests/test_models_shufflenet.py: one export, run by ONNX Runtime at batch 1 and 4). torchvision's module is
therefore used unchanged.
"""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.shufflenetv2 import ShuffleNetV2

from ..registry import ModelSpec, register_model
from ._scaling import make_divisible, scale_published_channels

SOURCE = "Ma et al. 2018, ShuffleNet V2 (arXiv:1807.11164) Table 5"

STAGE_REPEATS = (4, 8, 4)
CONV1_WIDTH = 24
#: Table 5: output channels of Stages 2/3/4 at the four published complexities.
PUBLISHED_STAGE_WIDTHS: dict[float, tuple[int, int, int]] = {
    0.5: (48, 96, 192),
    1.0: (116, 232, 464),
    1.5: (176, 352, 704),
    2.0: (244, 488, 976),
}
CONV5_WIDTH = 1024  # below 2x
CONV5_FROM_ALPHA = 2.0  # Table 5: 2048 at 2x, i.e. 1024 * alpha from here on
STAGE_DIVISOR = 4

#: torchvision builder names of the published models, for ModelSpec.weights_alphas.
TORCHVISION_NAMES: dict[float, str] = {
    0.5: "shufflenet_v2_x0_5",
    1.0: "shufflenet_v2_x1_0",
    1.5: "shufflenet_v2_x1_5",
    2.0: "shufflenet_v2_x2_0",
}


def shufflenet_v2_widths(alpha: float) -> list[int]:
    """``stages_out_channels`` for torchvision's ``ShuffleNetV2``: ``[conv1, stage2, stage3, stage4, conv5]``."""
    stages = [
        scale_published_channels(alpha, {a: widths[i] for a, widths in PUBLISHED_STAGE_WIDTHS.items()}, STAGE_DIVISOR)
        for i in range(len(STAGE_REPEATS))
    ]
    conv5 = CONV5_WIDTH if alpha < CONV5_FROM_ALPHA else make_divisible(CONV5_WIDTH * alpha, 8)
    return [CONV1_WIDTH, *stages, conv5]


def build(alpha: float, num_classes: int) -> nn.Module:
    return ShuffleNetV2(list(STAGE_REPEATS), shufflenet_v2_widths(alpha), num_classes=num_classes)


register_model(
    ModelSpec(
        name="shufflenet_v2",
        family="shufflenet_v2",
        builder=build,
        default_res=224,
        source=SOURCE,
        torchvision_weights=TORCHVISION_NAMES[1.0],
        weights_alphas=dict(TORCHVISION_NAMES),
    )
)
