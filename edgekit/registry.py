"""Model names -> builders, with aliases and did-you-mean suggestions.

A model file registers itself with :func:`register_model` at import time (torchvision style). Registering a name or
alias twice is a programming error and raises immediately.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .errors import UnknownModel

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

#: Ranges of the numbers that describe a model, checked wherever they are parsed (flags, presets, file metadata).
MAX_ALPHA = 4.0
MAX_RES = 2048
MAX_NUM_CLASSES = 100_000

#: The normalization every ImageNet-trained model of the zoo expects (torchvision's); the one definition.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: builder(alpha, num_classes) -> nn.Module in train mode with default init; edgekit.get_model seeds and evaluates it.
Builder = Callable[[float, int], "nn.Module"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything edgekit knows about a registered model, next to its builder."""

    name: str
    family: str
    builder: Builder = field(repr=False)
    default_res: int
    source: str  # the paper (and table) the architecture and its published numbers come from
    aliases: tuple[str, ...] = ()
    min_res: int = 32
    #: torchvision builder name whose published ImageNet weights fit this model at alpha 1.0 (None: no weights).
    torchvision_weights: str | None = None
    #: alphas at which torchvision publishes weights (ShuffleNetV2 has 0.5/1.0/1.5/2.0); default only 1.0.
    weights_alphas: dict[float, str] = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def imagenet_weights_name(self, alpha: float) -> str | None:
        """The torchvision builder name whose ImageNet weights fit this model at ``alpha``, or None."""
        if alpha in self.weights_alphas:
            return self.weights_alphas[alpha]
        if alpha == 1.0:
            return self.torchvision_weights
        return None


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    for key in (spec.name, *spec.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model name {key!r} is registered twice")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def _ensure_loaded() -> None:
    # The built-in families register themselves when edgekit.models is imported; the registry loads them on first
    # lookup by name (a plug-in load, so this module has no import of the models and no cycle with them).
    importlib.import_module(f"{__package__}.models")


def list_models() -> list[str]:
    """Canonical names of every registered model, in registration order (aliases excluded)."""
    _ensure_loaded()
    return list(_REGISTRY)


def list_aliases() -> dict[str, str]:
    """alias -> canonical name."""
    _ensure_loaded()
    return dict(_ALIASES)


def get_spec(name: str) -> ModelSpec:
    """Resolve a name or alias (case-insensitive, '-' accepted for '_') to its :class:`ModelSpec`."""
    _ensure_loaded()
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    candidates = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownModel(f"unknown model {name!r}; {hint}run 'edgekit models' to list the registered models")
