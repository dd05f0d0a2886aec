"""The one place where width and depth multipliers become channel and layer counts.

Every model file asks this module for its channel and layer counts; no model file rounds on its own. The rules are
the reference implementations' (TF-slim / TPU repos), which is what reproduces the papers' tables.
"""

from __future__ import annotations

import math

from torchvision.models._utils import _make_divisible


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below 90% of ``value``.

    This is the TF reference rule used by MobileNetV2/V3 and EfficientNet (torchvision's ``_make_divisible``).
    """
    return int(_make_divisible(value, divisor, min_value))


def scale_channels(channels: int, alpha: float, divisor: int = 8, min_value: int | None = None) -> int:
    """``channels * alpha`` rounded by :func:`make_divisible` (MobileNetV2/V3, EfficientNet)."""
    return make_divisible(channels * alpha, divisor, min_value)


def scale_depth(repeats: int, depth_coefficient: float) -> int:
    """EfficientNet's depth rule: ``ceil(repeats * d)``."""
    return int(math.ceil(repeats * depth_coefficient))


def scale_channels_floor(channels: int, alpha: float, min_value: int = 8) -> int:
    """``int(channels * alpha)``, never below ``min_value``: TF-slim's MobileNetV1 rule (``depth_multiplier``).

    MobileNetV1 predates the round-to-8 convention: its reference code truncates ``channels * alpha`` to an integer
    with ``min_depth=8``, which is exactly the paper's "alpha M" at every published multiplier (1.0/0.75/0.5/0.25).
    """
    return max(int(channels * alpha), min_value)


def expand_channels(scaled_in_channels: int, expansion_factor: float, divisor: int = 8) -> int:
    """Expanded width of an inverted-residual block from its *already scaled* input width.

    TF reference ``expand_input_by_factor``: ``make_divisible(scaled_in * factor, 8)``. Scaling the paper's expanded
    width by alpha independently (torchvision's MobileNetV3) rounds differently and misses the paper's numbers.
    """
    return make_divisible(scaled_in_channels * expansion_factor, divisor)


def scale_last_channel(channels: int, alpha: float, divisor: int = 8) -> int:
    """The final wide feature layer (1280/1024): kept at full width below alpha 1.0, scaled above it.

    TF-slim's published narrow MobileNetV2/V3 checkpoints keep this layer unscaled (``finegrain_classification_mode``)
    and torchvision's MobileNetV2 uses ``max(1.0, alpha)``; that is what reproduces the papers' parameter counts.
    """
    return make_divisible(channels * max(1.0, alpha), divisor)
