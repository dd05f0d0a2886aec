"""MobileNetV2 (Sandler et al., 2018): torchvision's builder and layers.

torchvision's ``MobileNetV2(width_mult=...)`` already follows the TF-slim reference rules (every layer rounded by
``make_divisible(c * alpha, 8)``, the last 1280 layer kept unscaled below 1.0), so it reproduces the TF-slim
table; see tests/test_paper_tables.py.
"""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.mobilenetv2 import MobileNetV2

from ..registry import ModelSpec, register_model

SOURCE = "Sandler et al. 2018, MobileNetV2 (arXiv:1801.04381); TF-slim mobilenet_v2 table"


def build(alpha: float, num_classes: int) -> nn.Module:
    # torchvision rounds with its _make_divisible, which is the same function models/_scaling.make_divisible wraps.
    return MobileNetV2(num_classes=num_classes, width_mult=alpha, round_nearest=8)


register_model(
    ModelSpec(
        name="mobilenet_v2",
        family="mobilenet_v2",
        builder=build,
        default_res=224,
        source=SOURCE,
        torchvision_weights="mobilenet_v2",
    )
)
