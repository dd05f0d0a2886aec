"""MobileNetV3-Large and -Small (Howard et al. 2019, arXiv:1905.02244): torchvision's layers, the paper's widths.

The layers are torchvision's (``MobileNetV3``, ``InvertedResidual``, ``SqueezeExcitation``), so at alpha 1.0 the
parameter names and shapes are exactly torchvision's and its ImageNet state_dicts load strict. The *width rule* is
the paper's reference code's (TF ``research/slim/nets/mobilenet/mobilenet_v3.py``), not torchvision's:

- each block's expanded width is ``make_divisible(scaled_input * expansion_factor, 8)`` (``expand_input_by_factor``),
  where torchvision rounds ``exp_size * alpha`` on its own: at alpha 0.75 Large's 184-wide blocks get 144 channels
  here (from 64 = round8(60) inputs) and 136 in torchvision;
- the 960/576 head convolution is ``make_divisible(960 * alpha, 8)`` (torchvision: 6 x the rounded last block width);
- the final 1280/1024 layer keeps its full width below alpha 1.0 (scaled above it).

With torchvision's rule Large-0.75 has 140 M MACs and 3.38 M params; the paper's Table 3 says 155 M and 4.0 M, which
this rule reproduces. Channel counts are computed in ``_scaling`` and handed to torchvision's
``InvertedResidualConfig`` with ``width_mult=1.0``, which then leaves them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn as nn
from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3
from torchvision.ops.misc import Conv2dNormActivation

from ..registry import ModelSpec, register_model
from ._scaling import expand_channels, scale_channels, scale_last_channel

SOURCE_LARGE = "Howard et al. 2019, Searching for MobileNetV3 (arXiv:1905.02244v5) Table 1; Table 3 for params/MACs"
SOURCE_SMALL = "Howard et al. 2019, Searching for MobileNetV3 (arXiv:1905.02244v5) Table 2; Table 3 for params/MACs"


@dataclass(frozen=True)
class Bneck:
    """One ``bneck`` row of the paper's Tables 1/2, widths at alpha 1.0."""

    kernel: int
    exp_size: int
    out: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (hard-swish), the paper's NL column
    stride: int


@dataclass(frozen=True)
class Architecture:
    stem: int  # the first 3x3/2 convolution
    blocks: tuple[Bneck, ...]
    head: int  # the 1x1 convolution before pooling (960 / 576)
    last: int  # the 1x1 "NBN" layer after pooling (1280 / 1024)


# Table 1 (MobileNetV3-Large).
LARGE = Architecture(
    stem=16,
    blocks=(
        Bneck(3, 16, 16, False, "RE", 1),
        Bneck(3, 64, 24, False, "RE", 2),
        Bneck(3, 72, 24, False, "RE", 1),
        Bneck(5, 72, 40, True, "RE", 2),
        Bneck(5, 120, 40, True, "RE", 1),
        Bneck(5, 120, 40, True, "RE", 1),
        Bneck(3, 240, 80, False, "HS", 2),
        Bneck(3, 200, 80, False, "HS", 1),
        Bneck(3, 184, 80, False, "HS", 1),
        Bneck(3, 184, 80, False, "HS", 1),
        Bneck(3, 480, 112, True, "HS", 1),
        Bneck(3, 672, 112, True, "HS", 1),
        Bneck(5, 672, 160, True, "HS", 2),
        Bneck(5, 960, 160, True, "HS", 1),
        Bneck(5, 960, 160, True, "HS", 1),
    ),
    head=960,
    last=1280,
)

# Table 2 (MobileNetV3-Small), as in arXiv v5 and the TF reference (last layer 1024).
SMALL = Architecture(
    stem=16,
    blocks=(
        Bneck(3, 16, 16, True, "RE", 2),
        Bneck(3, 72, 24, False, "RE", 2),
        Bneck(3, 88, 24, False, "RE", 1),
        Bneck(5, 96, 40, True, "HS", 2),
        Bneck(5, 240, 40, True, "HS", 1),
        Bneck(5, 240, 40, True, "HS", 1),
        Bneck(5, 120, 48, True, "HS", 1),
        Bneck(5, 144, 48, True, "HS", 1),
        Bneck(5, 288, 96, True, "HS", 2),
        Bneck(5, 576, 96, True, "HS", 1),
        Bneck(5, 576, 96, True, "HS", 1),
    ),
    head=576,
    last=1024,
)


@dataclass(frozen=True)
class ChannelPlan:
    """Every width of the network at one alpha, as the paper's rule gives it."""

    stem: int
    blocks: tuple[tuple[int, int, int], ...]  # (input, expanded, output) per bneck
    head: int
    last: int


def channel_plan(arch: Architecture, alpha: float) -> ChannelPlan:
    """The TF reference widths: every layer scaled by alpha, expansions taken from the *scaled* input width."""
    stem = scale_channels(arch.stem, alpha)
    blocks = []
    in_channels, paper_in = stem, arch.stem
    for block in arch.blocks:
        # The paper's expansion factor (e.g. 184/80) applied to the width this block really receives.
        expanded = expand_channels(in_channels, block.exp_size / paper_in)
        out = scale_channels(block.out, alpha)
        blocks.append((in_channels, expanded, out))
        in_channels, paper_in = out, block.out
    return ChannelPlan(
        stem=stem,
        blocks=tuple(blocks),
        head=scale_channels(arch.head, alpha),
        last=scale_last_channel(arch.last, alpha),
    )


def _torchvision_configs(arch: Architecture, plan: ChannelPlan) -> list[InvertedResidualConfig]:
    configs = []
    for block, (in_channels, expanded, out) in zip(arch.blocks, plan.blocks):
        cfg = InvertedResidualConfig(
            in_channels, block.kernel, expanded, out, block.use_se, block.activation, block.stride, 1, width_mult=1.0
        )
        # width_mult=1.0 must leave our (multiple-of-8) widths alone; if a torchvision release ever re-rounds them,
        # fail loudly instead of silently building a different network.
        if (cfg.input_channels, cfg.expanded_channels, cfg.out_channels) != (in_channels, expanded, out):
            raise RuntimeError(f"torchvision re-rounded a MobileNetV3 block: {(in_channels, expanded, out)}")
        configs.append(cfg)
    return configs


def _build(arch: Architecture, alpha: float, num_classes: int) -> MobileNetV3:
    plan = channel_plan(arch, alpha)
    model = MobileNetV3(_torchvision_configs(arch, plan), plan.last, num_classes=num_classes)
    # torchvision sizes the head convolution as 6 x the last block width; the reference scales the paper's 960/576
    # directly. They agree at the published multipliers, not everywhere (Small at 0.35: 192 vs 200), so swap in the
    # reference width where they differ, keeping torchvision's module types, names and initialisation.
    head_in = plan.blocks[-1][2]
    if model.features[-1].out_channels != plan.head:
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)  # MobileNetV3's own norm_layer
        model.features[-1] = Conv2dNormActivation(
            head_in, plan.head, kernel_size=1, norm_layer=norm, activation_layer=nn.Hardswish
        )
        nn.init.kaiming_normal_(model.features[-1][0].weight, mode="fan_out")
        model.classifier[0] = nn.Linear(plan.head, plan.last)
        nn.init.normal_(model.classifier[0].weight, 0, 0.01)
        nn.init.zeros_(model.classifier[0].bias)
    return model


def build_large(alpha: float, num_classes: int) -> nn.Module:
    return _build(LARGE, alpha, num_classes)


def build_small(alpha: float, num_classes: int) -> nn.Module:
    return _build(SMALL, alpha, num_classes)


register_model(
    ModelSpec(
        name="mobilenet_v3_large",
        family="mobilenet_v3",
        builder=build_large,
        default_res=224,
        source=SOURCE_LARGE,
        aliases=("mobilenet_v3",),
        torchvision_weights="mobilenet_v3_large",
    )
)

register_model(
    ModelSpec(
        name="mobilenet_v3_small",
        family="mobilenet_v3",
        builder=build_small,
        default_res=224,
        source=SOURCE_SMALL,
        torchvision_weights="mobilenet_v3_small",
    )
)
