"""The model zoo: ``get_model(name, alpha=..., weights=...)`` for every registered family.

Each family module registers its names on import; the order here is the order of ``edgekit models``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from ..errors import BadArgument
from ..parsing import parse_float as _parse_float
from ..parsing import parse_int
from ..registry import MAX_ALPHA, MAX_NUM_CLASSES, MAX_RES, ModelSpec, get_spec, list_models
from ..weights import (
    DEFAULT_SEED,
    WeightsRef,
    apply_state_dict,
    check_seed,
    load_imagenet_state_dict,
    load_state_dict_file,
    seed_model,
    sha256_file,
)

# Registration order = listing order. Each import registers its models.
from . import mobilenet_v1, mobilenet_v2, mobilenet_v3, shufflenet_v1, shufflenet_v2, efficientnet  # noqa: E402,F401


def parse_float(value: object, what: str, example: str) -> float:
    """``value`` as a finite float, or BadArgument naming ``what`` and an ``example`` of a good value."""
    return _parse_float(value, what, example=example)


def check_alpha(alpha: object) -> float:
    """Validate the width multiplier: a number in (0, MAX_ALPHA]."""
    value = parse_float(alpha, "alpha (width multiplier)", "--alpha 0.75")
    if value <= 0:
        raise BadArgument(f"alpha (width multiplier) must be > 0, got {alpha!r}; typical values are 0.25-2.0")
    if value > MAX_ALPHA:
        raise BadArgument(
            f"alpha (width multiplier) {alpha!r} is absurdly large (maximum {MAX_ALPHA:g}); typical values are 0.25-2.0"
        )
    return value


def check_res(spec: ModelSpec, res: object) -> int:
    """Validate the input resolution (pixels, square) for ``spec``; None means the published default."""
    if res is None:
        return spec.default_res
    number = parse_float(res, "resolution", f"--res {spec.default_res}")
    if number != int(number):
        raise BadArgument(f"resolution must be a whole number of pixels, got {res!r}; pass e.g. --res {spec.default_res}")
    value = int(number)
    if value < spec.min_res:
        raise BadArgument(
            f"resolution {value} is too small for {spec.name} (it downsamples 32x); use --res {spec.min_res} or more"
        )
    if value > MAX_RES:
        raise BadArgument(f"resolution {value} is larger than the maximum {MAX_RES}; use --res {spec.default_res}")
    return value


def check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise BadArgument(f"num_classes must be a positive integer, got {num_classes!r}")
    return parse_int(num_classes, "num_classes", lo=1, hi=MAX_NUM_CLASSES, example="--num-classes 10")


def build_model(
    name: str,
    *,
    alpha: float = 1.0,
    num_classes: int = 1000,
    weights: str | os.PathLike | None = None,
    seed: int = DEFAULT_SEED,
) -> tuple[nn.Module, WeightsRef]:
    """Like :func:`get_model`, but also say where the weights came from (recorded in export metadata)."""
    spec = get_spec(name)
    alpha = check_alpha(alpha)
    num_classes = check_num_classes(num_classes)
    seed = check_seed(seed)
    model = spec.builder(alpha, num_classes)
    if weights is None:
        seed_model(model, seed)
        source = WeightsRef(kind="seed", seed=seed)
    elif isinstance(weights, str) and weights.lower() == "imagenet":
        if num_classes != 1000:
            raise BadArgument("ImageNet weights have 1000 classes; drop --num-classes or load your own --weights PATH")
        state, tv_name = load_imagenet_state_dict(spec, alpha)
        apply_state_dict(model, state, f"torchvision's {tv_name} weights", spec.name, alpha)
        source = WeightsRef(kind="imagenet", torchvision_name=tv_name)
    else:
        path = Path(weights)
        state = load_state_dict_file(path)
        apply_state_dict(model, state, f"weights file {str(path)!r}", spec.name, alpha)
        source = WeightsRef(kind="file", path=str(path), sha256=sha256_file(path))
    model.eval()
    return model, source


def get_model(
    name: str,
    *,
    alpha: float = 1.0,
    num_classes: int = 1000,
    weights: str | os.PathLike | None = None,
) -> nn.Module:
    """Build a registered model in eval mode.

    ``weights``: ``None`` (deterministic seeded weights with non-trivial BatchNorm statistics), ``"imagenet"``
    (torchvision's published weights, alpha 1.0 only) or a path to a ``state_dict`` file (loaded with
    ``weights_only=True`` and strict key/shape checking).
    """
    return build_model(name, alpha=alpha, num_classes=num_classes, weights=weights)[0]


__all__ = ["get_model", "build_model", "list_models", "get_spec", "check_alpha", "check_res"]
