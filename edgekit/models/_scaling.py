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


def scale_grouped_channels(channels: int, alpha: float, groups: int, bottleneck_ratio: int = 4) -> int:
    """ShuffleNetV1's width rule: ``channels * alpha`` rounded to a multiple of ``bottleneck_ratio * groups``.

    A ShuffleNetV1 unit has a bottleneck of ``out / 4`` channels between two *grouped* pointwise convolutions and a
    channel shuffle, so both ``out`` and ``out / 4`` must split into ``groups`` equal groups; the smallest step that
    guarantees it is ``4 * groups``. Every width of the paper's Table 1 (144/200/240/272/384 and their doubles) is
    already such a multiple, so at alpha 1.0 the table is reproduced exactly. Rounding is :func:`make_divisible`'s
    (nearest, never below 90%), the same rule as the other families.
    """
    return make_divisible(channels * alpha, bottleneck_ratio * groups)


def scale_channels_by_octave(channels: int, alpha: float, divisor: int = 1, min_value: int = 1) -> int:
    """``channels * 2**floor(log2(alpha))``, at least ``min_value``, rounded to a multiple of ``divisor``.

    The stem rule of the ShuffleNetV1 authors' reference code (megvii-model/ShuffleNet-Series): its 24-channel conv1
    becomes 12/24/24/48 at 0.5x/1x/1.5x/2x, i.e. it is halved or doubled only at whole halvings or doublings of the
    scale factor. Scaling it by alpha itself (36 at 1.5x) misses the paper's 292 MFLOPs for ShuffleNet 1.5x (g=3).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    octave = 2.0 ** math.floor(math.log2(alpha))
    return make_divisible(max(channels * octave, min_value), divisor)


def interpolate_published_width(alpha: float, published: dict[float, int]) -> float:
    """Width at ``alpha`` from widths published only at a few alphas (ShuffleNetV2's 0.5/1.0/1.5/2.0).

    Piecewise linear between the published alphas, so the published models are reproduced exactly and the width is
    monotone in alpha; below the smallest and above the largest published alpha it scales proportionally (through
    zero) from the nearest published model, which is what the papers' "s x" multiplier means. Not rounded: pass
    the result through :func:`make_divisible`.
    """
    if not published:
        raise ValueError("no published widths to interpolate")
    knots = sorted(published.items())
    lowest_alpha, lowest_width = knots[0]
    highest_alpha, highest_width = knots[-1]
    if alpha <= lowest_alpha:
        return lowest_width * alpha / lowest_alpha
    if alpha >= highest_alpha:
        return highest_width * alpha / highest_alpha
    for (a0, w0), (a1, w1) in zip(knots, knots[1:]):
        if a0 <= alpha <= a1:
            return w0 + (w1 - w0) * (alpha - a0) / (a1 - a0)
    raise AssertionError("unreachable: alpha lies between the knots")


def scale_published_channels(alpha: float, published: dict[float, int], divisor: int = 4) -> int:
    """:func:`interpolate_published_width` rounded by :func:`make_divisible` to a multiple of ``divisor``."""
    return make_divisible(interpolate_published_width(alpha, published), divisor)


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
