"""The inputs a benchmark feeds: concrete shapes for symbolic dimensions, and seeded data of each input's type."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import BadArgument, BadModelFile
from ..metadata import Metadata

#: Largest dimension accepted in --shape (a typo like 1x3x2240000x224 would otherwise try to allocate it).
MAX_DIM = 1 << 20


def parse_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``"input:1x3x224x224"``, ``"input:[1,3,224,224]"`` or ``"1x3x224x224"`` -> (name or None, dims).

    The name is split at the last ':' so TensorFlow-style names (``"x:0:1x3x8x8"``) work.
    """
    raw = str(text).strip()
    name: str | None = None
    dims_text = raw
    if ":" in raw:
        name, dims_text = raw.rsplit(":", 1)
        name = name.strip() or None
    dims_text = dims_text.strip().strip("[]()")
    parts = [p for p in dims_text.replace(",", "x").replace("X", "x").split("x")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 or d > MAX_DIM for d in dims) or len(dims) > 8:
        raise BadArgument(
            f"shape {text!r} is not a list of positive dimensions; pass e.g. --shape input:1x3x224x224"
        )
    return name, dims


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------


def is_fixed(dim: object) -> bool:
    return isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim > 0


def fmt_shape(shape: Sequence[object]) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def resolve_input_shapes(
    declared: Sequence[tuple[str, Sequence[object]]],
    *,
    batch: int | None,
    shapes: Mapping[str | None, tuple[int, ...]],
    metadata: Metadata | None = None,
) -> tuple[dict[str, tuple[int, ...]], int]:
    """Concrete shapes for the model's inputs and the batch they carry. Pure: tested without ONNX Runtime.

    The first dimension is the batch: a symbolic one takes ``batch`` (default 1), a fixed one must equal ``batch``
    when it is given. Other symbolic dimensions come from ``shapes`` or, for the input named in edgekit metadata,
    from the metadata's input shape. An explicit shape must fit the declared one: same rank, same fixed dimensions.
    """
    names = [name for name, _ in declared]
    shapes = dict(shapes)
    if None in shapes:
        if len(declared) != 1:
            raise BadArgument(
                f"the model has {len(declared)} inputs ({', '.join(names)}); name each one: --shape NAME:1x3x224x224"
            )
        shapes[names[0]] = shapes.pop(None)
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise BadArgument(f"--shape names input {unknown[0]!r}, but the model's inputs are {', '.join(names) or 'none'}")
    out: dict[str, tuple[int, ...]] = {}
    batches: list[int] = []
    for name, decl in declared:
        decl = list(decl)
        if name in shapes:
            given = tuple(shapes[name])
            if len(given) != len(decl):
                raise BadArgument(
                    f"shape {'x'.join(map(str, given))} for input {name!r} has {len(given)} dimensions but the model "
                    f"declares {len(decl)}: {fmt_shape(decl)}"
                )
            for i, (g, d) in enumerate(zip(given, decl)):
                if is_fixed(d) and g != d:
                    raise BadArgument(
                        f"shape {'x'.join(map(str, given))} does not fit input {name!r} {fmt_shape(decl)}: dimension "
                        f"{i} is fixed at {d}; re-export the model for that shape or pass --shape {name}:"
                        + "x".join(str(x if is_fixed(x) else g2) for x, g2 in zip(decl, given))
                    )
            if batch is not None and given and given[0] != batch:
                raise BadArgument(f"--batch {batch} contradicts --shape {name}:{'x'.join(map(str, given))}; drop one")
            out[name] = given
            if given:
                batches.append(given[0])
            continue
        dims: list[int] = []
        for i, d in enumerate(decl):
            if i == 0:
                if is_fixed(d):
                    if batch is not None and batch != d:
                        raise BadArgument(
                            f"input {name!r} has a fixed batch of {d} {fmt_shape(decl)}, so --batch {batch} does not fit; "
                            f"re-export with a symbolic batch (edgekit export ... --dynamic-batch) or drop --batch"
                        )
                    dims.append(int(d))
                else:
                    dims.append(batch or 1)
                continue
            if is_fixed(d):
                dims.append(int(d))
                continue
            meta_shape = metadata.input_shape if metadata is not None and metadata.input_name == name else None
            if meta_shape is not None and len(meta_shape) == len(decl) and is_fixed(meta_shape[i]):
                dims.append(int(meta_shape[i]))
                continue
            example = "x".join(str(x) if is_fixed(x) else ("1" if j == 0 else "224") for j, x in enumerate(decl))
            raise BadArgument(
                f"input {name!r} {fmt_shape(decl)} has a symbolic dimension {d!r} at position {i}; give its size with "
                f"--shape {name}:{example}"
            )
        out[name] = tuple(dims)
        if dims:
            batches.append(dims[0])
    return out, (batches[0] if batches else (batch or 1))


def synthesize_inputs(
    declared: Sequence[tuple[str, str]], shapes: Mapping[str, tuple[int, ...]], seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded data of each input's numpy dtype: N(0, 1) floats (a normalised image), zeros for integers and bools."""
    from ..guards import check_tensor_bytes

    check_tensor_bytes([shapes[name] for name, _ in declared], 8, "the inputs alone",
                       "use a smaller --batch or --shape")
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for name, dtype_name in declared:
        try:
            dtype = np.dtype(dtype_name)
        except TypeError:
            raise BadModelFile(f"input {name!r} has type {dtype_name}, which edgekit cannot synthesise data for") from None
        shape = shapes[name]
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        else:
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds
