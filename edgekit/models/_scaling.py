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
