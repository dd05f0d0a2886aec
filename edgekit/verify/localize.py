"""Where it breaks: the first layer whose output (or, for graphs without layer outputs, whose weights) diverges."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch.nn as nn

from ..formats import Format
from ..runtimes import Runner
from .layers import WEIGHT_RTOL, CandLayer, weights_diff
from .results import Divergence, LayerError
from .tolerances import Tolerance
from .trace import Trace, trace_reference


def localize_activations(candidate: Runner, fmt: Format, layers: list[CandLayer], module: nn.Module, x: np.ndarray,
                         tol: Tolerance) -> Divergence:
    """Expose the mapped layers' outputs as extra graph outputs (the format's ``with_outputs``), run that copy on the
    candidate's own runtime and device, and compare them with the reference's forward-hook outputs in order."""
    from ..runtimes import open_runner

    trace = trace_reference(module, x, x.shape[-1])
    mapped = [layer for layer in layers if layer.module is not None and layer.output]
    unmapped = len(trace.order) - len(mapped)
    if not mapped:
        return Divergence("activations", None, None, None, None, 0, len(trace.order),
                          f"no layer of the {fmt.title} graph could be mapped to a PyTorch module (no parameter-named "
                          "initializers, no name_scopes metadata, layer counts differ)")
    assert fmt.with_outputs is not None and candidate.path is not None
    with tempfile.TemporaryDirectory(prefix="edgekit-localize-") as scratch:
        copy = fmt.with_outputs(candidate.path, [layer.output for layer in mapped],  # type: ignore[misc]
                                Path(scratch) / f"layers{fmt.suffix}")
        with open_runner(copy, candidate.runtime, options=candidate.run_options,
                         what="the graph with layer outputs") as augmented:
            outs = augmented.run({candidate.inputs[0].name: x})
            values = dict(zip([o.name for o in augmented.outputs], outs))
    position = {name: i for i, name in enumerate(trace.order)}
    mapped.sort(key=lambda layer: position.get(layer.module, len(position)))  # type: ignore[arg-type]
    results: list[LayerError] = []
    first: LayerError | None = None
    first_layer: CandLayer | None = None
    last_ok: str | None = None
    for layer in mapped:
        ref = trace.outputs.get(layer.module)  # type: ignore[arg-type]
        got = values.get(layer.output)  # type: ignore[arg-type]
        if ref is None or got is None:
            continue
        got = np.asarray(got, dtype=np.float64)
        if got.shape != ref.shape:
            rel, abs_err = math.inf, math.inf
        else:
            abs_err = float(np.abs(got - ref).max())
            rel = abs_err / max(float(np.abs(ref).max()), 1e-12)
        diverged = not rel <= tol.rtol or not math.isfinite(rel)
        entry = LayerError(layer.module, trace.types.get(layer.module, "?"), rel, abs_err, diverged)  # type: ignore[arg-type]
        results.append(entry)
        if diverged and first is None:
            first, first_layer = entry, layer
        elif first is None:
            last_ok = layer.module
    if first is None or first_layer is None:
        return Divergence(
            "activations", None, None, None, last_ok, len(results), unmapped,
            f"all {len(results)} mapped layers agree within rtol {tol.rtol:g} of their peak; the difference arises "
            "after the last mapped layer or in ops between layers that have no weights (pooling, reshapes, "
            "activations, the graph's output)",
            tuple(results),
        )
    agreeing = sum(1 for r in results[: results.index(first)] if not r.diverged)
    detail = divergence_detail(first, first_layer, module, trace, agreeing, last_ok, bn=trace.bn_of.get(first.module))
    return Divergence("activations", first.module, first.module_type, first.rel_err, last_ok, len(results),
                      unmapped, detail, tuple(results))


def divergence_detail(first: LayerError, layer: CandLayer, module: nn.Module, trace: Trace,
                       agreeing: int, last_ok: str | None, bn: str | None) -> str:
    where = f"{first.module} ({first.module_type}{' + ' + bn + ' folded' if bn else ''})"
    rel = "its output has another shape" if not math.isfinite(first.rel_err) else \
        f"output error {first.rel_err:.2e} of its peak"
    text = f"first diverging layer: {where}, {rel}"
    if last_ok is not None:
        text += f"; the {agreeing} layers before it agree (last: {last_ok})"
    if layer.weight is not None:
        wrel, n_diff, total = weights_diff(layer, module, trace)
        if n_diff < 0:
            text += "; its weights have another shape than the reference's"
        elif wrel > WEIGHT_RTOL:
            text += (f"; its weights differ from the reference's Conv-BN fold in {n_diff} of {total} values "
                     f"(by up to {wrel:.2e} of the largest reference value)")
        elif last_ok is None:
            text += ("; its weights match the reference's fold, so its input differs: this is the first layer, so "
                     "the graph changes the input before it (channel order RGB/BGR? normalization inside the graph?)")
        else:
            text += (f"; its weights match the reference's fold, so its input differs: an op between {last_ok} and "
                     "this layer (activation, pooling, reshape, residual add, channel shuffle) computes something else")
    return text


def localize_weights(candidate: Runner, layers: list[CandLayer], module: nn.Module, trace: Trace) -> Divergence:
    mapped = [layer for layer in layers if layer.module is not None]
    if not mapped:
        return Divergence("weights", None, None, None, None, 0, len(trace.order),
                          f"the {candidate.format} file's layers could not be matched to the reference's layers")
    position = {name: i for i, name in enumerate(trace.order)}
    mapped.sort(key=lambda layer: position.get(layer.module, len(position)))  # type: ignore[arg-type]
    results: list[LayerError] = []
    first: LayerError | None = None
    last_ok = None
    for layer in mapped:
        rel, n_diff, total = weights_diff(layer, module, trace)
        diverged = not rel <= WEIGHT_RTOL
        entry = LayerError(layer.module, trace.types.get(layer.module, "?"), rel, math.nan, diverged)  # type: ignore[arg-type]
        results.append(entry)
        if diverged and first is None:
            first = entry
            bn = trace.bn_of.get(layer.module)  # type: ignore[arg-type]
            where = f"{layer.module} ({entry.module_type}{' + ' + bn + ' folded' if bn else ''})"
            detail = (f"first layer whose weights differ from the reference's Conv-BN fold: {where}, "
                      + ("other shape" if n_diff < 0 else f"{n_diff} of {total} values, max {rel:.2e} of the largest"))
        elif first is None:
            last_ok = layer.module
    if first is None:
        return Divergence(
            "weights", None, None, None, last_ok, len(results), len(trace.order) - len(results),
            f"the weights of all {len(results)} conv/linear layers match the reference's Conv-BN fold; the "
            "difference comes from the input handling (channel order, normalization) or ops between layers",
            tuple(results),
        )
    return Divergence("weights", first.module, first.module_type, first.rel_err, last_ok, len(results),
                      len(trace.order) - len(results), detail, tuple(results))


