"""The PyTorch reference of an exported file: its metadata (and the user's overrides) -> the unfused eager model.

One resolver for every command that compares against PyTorch: ``verify`` (the numbers), ``bench --compare torch``
(the speed), ``eval`` and ``compare`` (the accuracy of the fp32 model). The export's own self-check passes the
module it already has instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import BadArgument
from .weights import DEFAULT_SEED, WeightsRef, resolve_weights_path

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from .metadata import Metadata


@dataclass(frozen=True)
class ReferenceSpec:
    """What to rebuild: a registered model at a width and resolution with its weights. ``source`` says where the
    description came from: ``metadata`` (the file), ``flags`` (the user overrode it) or ``caller`` (a module given)."""

    model: str
    alpha: float
    res: int
    num_classes: int
    weights: WeightsRef
    source: str

    def describe(self) -> str:
        return (f"PyTorch eager {self.model} alpha {self.alpha:g} res {self.res} classes {self.num_classes} "
                f"weights {self.weights.describe()} (unfused, fp32, cpu; from {self.source})")

    def build(self) -> "nn.Module":
        """The unfused eager model in eval mode."""
        from .models import build_model

        weights: str | None
        if self.weights.kind == "seed":
            weights = None
        elif self.weights.kind == "imagenet":
            weights = "imagenet"
        elif self.weights.kind == "file":
            weights = self.weights.path
        else:
            raise BadArgument(f"the reference weights {self.weights.describe()!r} cannot be rebuilt; pass --weights")
        model, _ = build_model(self.model, alpha=self.alpha, num_classes=self.num_classes, weights=weights,
                               seed=self.weights.seed if self.weights.seed is not None else DEFAULT_SEED)
        return model.eval()

    def to_dict(self) -> dict:
        return {"model": self.model, "alpha": self.alpha, "res": self.res, "num_classes": self.num_classes,
                "weights": self.weights.describe(), "source": self.source}


def resolve_reference(
    metadata: "Metadata | None",
    *,
    path: Path,
    input_shape: Sequence[Any] | None = None,
    output_classes: int | None = None,
    model: str | None = None,
    alpha: float | None = None,
    res: int | None = None,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    seed: int | None = None,
) -> ReferenceSpec:
    """The reference of the file at ``path``: its metadata, overridden by whatever the user passed.

    ``input_shape``/``output_classes``: what the file itself declares, used where neither metadata nor flags say.
    A weights file named in the metadata is looked for where it says, then next to the model file.
    """
    from .models import check_res, get_spec

    if metadata is None and model is None:
        raise BadArgument(
            f"{path.name} carries no edgekit metadata, so the PyTorch reference is unknown; pass "
            "--model NAME --alpha A --res R [--weights W] to rebuild it, or --against OTHER_FILE to compare "
            "with another export of the same model"
        )
    flags = any(v is not None for v in (model, alpha, res, weights))
    name = model or metadata.model  # type: ignore[union-attr]
    spec = get_spec(name)
    if alpha is None:
        if metadata is None or model not in (None, metadata.model):
            raise BadArgument(f"pass --alpha with --model for {path.name}: the width multiplier cannot be guessed")
        alpha = metadata.alpha
    if res is None and metadata is not None:
        res = metadata.res
    if res is None:
        shape = input_shape
        if shape is not None and len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            res = shape[2]
        else:
            raise BadArgument(f"pass --res for {path.name}: its input size is not fixed in the file")
    res = check_res(spec, res)
    classes = num_classes or (metadata.num_classes if metadata is not None else None) or output_classes or 1000
    if weights is not None:
        ref = WeightsRef.parse(weights, seed=seed)
        if ref.kind == "file":
            ref = WeightsRef("file", path=str(Path(ref.path)))  # type: ignore[arg-type]
    else:
        text = metadata.weights if metadata is not None else f"seed:{DEFAULT_SEED}"
        ref = WeightsRef.parse(text)
        if ref.kind == "seed":
            meta_seed = metadata.seed if metadata is not None else None
            ref = WeightsRef("seed", seed=seed if seed is not None else (meta_seed if meta_seed is not None else ref.seed))
        elif ref.kind == "file":
            ref = WeightsRef("file", path=str(resolve_weights_path(ref.path, path)))  # type: ignore[arg-type]
        elif ref.kind == "module":
            raise BadArgument(
                f"{path.name} was exported from a module edgekit cannot rebuild; pass --model/--alpha/--weights to "
                "describe the reference, or --against another export"
            )
    return ReferenceSpec(spec.name, float(alpha), int(res), int(classes), ref, "flags" if flags else "metadata")


def reference_for_file(path: Path, metadata: "Metadata | None", what: str = "--compare torch") -> "nn.Module":
    """The eager reference of an exported file from its metadata alone (bench --compare torch, eval's baseline)."""
    if metadata is None:
        raise BadArgument(f"{what} needs edgekit metadata in {path.name} to rebuild the PyTorch reference")
    return resolve_reference(metadata, path=path).build()
