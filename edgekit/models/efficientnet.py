"""EfficientNet-B0 ... B7 (Tan & Le 2019, arXiv:1905.11946): torchvision's layers, the paper's compound scaling.

B0 is the paper's Table 1 (seven MBConv stages); B1-B7 scale it with the (width, depth, resolution) coefficients of
the reference code (TF ``tpu/models/official/efficientnet/efficientnet_builder.py``, ``efficientnet_params``).
``alpha`` multiplies the width coefficient, so alpha 1.0 is the published model and e.g. ``efficientnet_b3`` at
alpha 0.5 is B3's depth and resolution at 0.6 width.

Channel and layer counts come from :mod:`._scaling` with the reference rules (``round_filters``: make_divisible
by 8; ``round_repeats``: ceil) and are handed to torchvision's ``MBConvConfig`` with ``width_mult=depth_mult=1.0``,
which leaves them as they are. The head convolution is ``round_filters(1280)`` as in the reference code
(torchvision writes ``4 * round_filters(320)``, equal at every published coefficient but not at every alpha). The
layers are torchvision's ``EfficientNet`` / ``MBConv`` / ``SqueezeExcitation``, with torchvision's defaults per
variant (dropout 0.2-0.5, stochastic depth 0.2, BatchNorm eps 1e-3 / momentum 0.01 for B5-B7 whose weights were
ported from TF), so at alpha 1.0 the parameter names, shapes and counts are exactly torchvision's
``efficientnet_bN`` and its ImageNet state_dicts load strict.

The paper's "FLOPS" in Table 2 are multiply-adds. Params of all eight models and MACs of B0-B3, B6 and B7 are
reproduced; B4 and B5 count 4.39 B and 10.27 B multiply-adds at 380/456 px against the printed 4.2 B and 9.9 B with
exactly the reference architecture (see the notes in edgekit/papers/efficientnet.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn as nn
from torchvision.models.efficientnet import EfficientNet, MBConvConfig

from ..registry import ModelSpec, register_model
from ._scaling import scale_channels, scale_depth

SOURCE = (
    "Tan & Le 2019, EfficientNet (arXiv:1905.11946) Table 1 (B0) and Table 2; coefficients from the TF reference "
    "efficientnet_builder.py"
)


@dataclass(frozen=True)
class Stage:
    """One row of Table 1 (MBConv stages 2-8), widths and repeats of B0."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


#: Table 1: EfficientNet-B0's MBConv stages (the reference code's ``blocks_args``).
B0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 32, 16, 1),
    Stage(6, 3, 2, 16, 24, 2),
    Stage(6, 5, 2, 24, 40, 2),
    Stage(6, 3, 2, 40, 80, 3),
    Stage(6, 5, 1, 80, 112, 3),
    Stage(6, 5, 2, 112, 192, 4),
    Stage(6, 3, 1, 192, 320, 1),
)
HEAD_WIDTH = 1280
CHANNEL_DIVISOR = 8  # the reference code's depth_divisor


@dataclass(frozen=True)
class Variant:
    """Compound-scaling coefficients of one published model, and torchvision's training-time defaults for it."""

    width: float
    depth: float
    resolution: int
    dropout: float
    tf_batchnorm: bool = False  # torchvision's B5-B7 use BatchNorm(eps=1e-3, momentum=0.01): weights ported from TF


#: The reference code's efficientnet_params: (width_coefficient, depth_coefficient, resolution, dropout_rate).
VARIANTS: dict[str, Variant] = {
    "b0": Variant(1.0, 1.0, 224, 0.2),
    "b1": Variant(1.0, 1.1, 240, 0.2),
    "b2": Variant(1.1, 1.2, 260, 0.3),
    "b3": Variant(1.2, 1.4, 300, 0.3),
    "b4": Variant(1.4, 1.8, 380, 0.4),
    "b5": Variant(1.6, 2.2, 456, 0.4, tf_batchnorm=True),
    "b6": Variant(1.8, 2.6, 528, 0.5, tf_batchnorm=True),
    "b7": Variant(2.0, 3.1, 600, 0.5, tf_batchnorm=True),
}
STOCHASTIC_DEPTH_PROB = 0.2  # torchvision's default for every B model (irrelevant in eval mode)


def efficientnet_config(variant: Variant, alpha: float) -> tuple[list[MBConvConfig], int]:
    """The scaled stages (as torchvision configs) and head width of ``variant`` at width multiplier ``alpha``."""
    width = variant.width * alpha
    stages = [
        MBConvConfig(
            expand_ratio=stage.expand_ratio,
            kernel=stage.kernel,
            stride=stage.stride,
            input_channels=scale_channels(stage.in_channels, width, CHANNEL_DIVISOR),
            out_channels=scale_channels(stage.out_channels, width, CHANNEL_DIVISOR),
            num_layers=scale_depth(stage.repeats, variant.depth),
            width_mult=1.0,  # already scaled: torchvision's own rounding leaves multiples of 8 alone
            depth_mult=1.0,
        )
        for stage in B0_STAGES
    ]
    return stages, scale_channels(HEAD_WIDTH, width, CHANNEL_DIVISOR)


def build(alpha: float, num_classes: int, *, variant: Variant) -> nn.Module:
    stages, head = efficientnet_config(variant, alpha)
    norm_layer = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01) if variant.tf_batchnorm else None
    return EfficientNet(
        stages,
        dropout=variant.dropout,
        stochastic_depth_prob=STOCHASTIC_DEPTH_PROB,
        num_classes=num_classes,
        norm_layer=norm_layer,
        last_channel=head,
    )


for _key, _variant in VARIANTS.items():
    register_model(
        ModelSpec(
            name=f"efficientnet_{_key}",
            family="efficientnet",
            builder=partial(build, variant=_variant),
            default_res=_variant.resolution,
            source=SOURCE,
            torchvision_weights=f"efficientnet_{_key}",
        )
    )
