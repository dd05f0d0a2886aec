"""Checks of a file against its own metadata and the reference: what a deployment reads must be true."""

from __future__ import annotations

import numpy as np

from ..errors import EdgekitError
from ..reference import ReferenceSpec
from ..runtimes import Runner
from .results import Check


def metadata_checks(candidate: Runner, ref: ReferenceSpec | None) -> list[Check]:
    """The file's declared input/output against its metadata, the metadata's normalization against the model's,
    and the weights file the reference is rebuilt from against the digest recorded at export."""
    meta = candidate.metadata
    if meta is None:
        return []
    checks: list[Check] = []
    from ..registry import get_spec

    shape = candidate.input_shape if candidate.shapes_from_file else None
    if shape is not None:
        file_dims = [d if isinstance(d, int) else "batch" for d in shape]
        meta_dims = list(meta.input_shape)
        problems = []
        if len(shape) == 4 and (shape[2], shape[3]) != (meta.res, meta.res):
            problems.append(f"the graph input is {shape[2]}x{shape[3]} but the metadata says res {meta.res}")
        if [str(d) for d in file_dims[1:]] != [str(d) for d in meta_dims[1:]]:
            problems.append(f"graph input {file_dims} vs metadata input_shape {meta_dims}")
        if candidate.dynamic_batch != bool(meta.dynamic_batch):
            problems.append(f"the batch dimension is {'symbolic' if candidate.dynamic_batch else 'fixed'} but "
                            f"the metadata says dynamic_batch={meta.dynamic_batch}")
        if candidate.inputs[0].name != meta.input_name:
            problems.append(f"input is named {candidate.inputs[0].name!r}, the metadata says {meta.input_name!r}")
        if candidate.outputs and candidate.outputs[0].name != meta.output_name:
            problems.append(f"output is named {candidate.outputs[0].name!r}, the metadata says {meta.output_name!r}")
        out_shapes = [o.shape for o in candidate.outputs]
        if out_shapes and isinstance(out_shapes[0][-1], int) and out_shapes[0][-1] != meta.num_classes:
            problems.append(f"the output has {out_shapes[0][-1]} classes, the metadata says {meta.num_classes}")
        checks.append(Check("input/output vs metadata", not problems,
                            "; ".join(problems) or f"input {file_dims}, output {list(out_shapes[0]) if out_shapes else '?'}"))
    elif len(meta.input_shape) == 4 and meta.input_shape[2:] != (meta.res, meta.res):
        checks.append(Check("input/output vs metadata", False,
                            f"metadata input_shape {list(meta.input_shape)} disagrees with its res {meta.res}"))
    try:
        spec = get_spec(meta.model)
    except EdgekitError:
        return checks  # a module exported by itself: no registered mean/std to hold the metadata to
    mean_ok = len(meta.mean) == len(spec.mean) and np.allclose(meta.mean, spec.mean, atol=1e-6)
    std_ok = len(meta.std) == len(spec.std) and np.allclose(meta.std, spec.std, atol=1e-6)
    checks.append(Check(
        "normalization", mean_ok and std_ok,
        f"mean {list(meta.mean)} std {list(meta.std)}"
        + ("" if mean_ok and std_ok else f" differ from {spec.name}'s mean {list(spec.mean)} std {list(spec.std)}: "
           "a deployment that follows the metadata would feed wrongly normalized images"),
    ))
    if ref is not None and ref.weights.kind == "file" and meta.weights_sha256:
        from ..files import sha256_file

        digest = sha256_file(ref.weights.path)  # type: ignore[arg-type]
        checks.append(Check(
            "weights file", digest == meta.weights_sha256,
            f"{ref.weights.path} sha256 {digest[:12]}" + ("" if digest == meta.weights_sha256 else
                                                     f" differs from the exported {meta.weights_sha256[:12]}: the "
                                                     "file changed since the export"),
        ))
    return checks


