"""The file's layers mapped to the reference's modules: by parameter/initializer name, by recorded module scopes,
else by position; the structure check and the weights comparison against the reference's Conv-BN fold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from ..formats import FileLayer
from .results import Check
from .trace import Trace, fused_weights, layer_index, match_module, norm_tokens


@dataclass
class CandLayer:
    module: str | None  # reference module it maps to
    weight: np.ndarray | None  # in PyTorch layout
    bias: np.ndarray | None
    output: str | None = None  # ONNX value name to compare
    how: str = ""  # "initializer name", "name_scopes", "position"


def map_layers(found: list[FileLayer], trace: Trace) -> list[CandLayer]:
    """The file's layers (from its format's ``layers``) with the reference module each corresponds to.

    By the parameter / initializer name the exporter kept (``features.3.conv.1.0.weight``), else by the module
    scopes recorded on the node (a scope may name the BatchNorm that was folded into the conv), else, when nothing
    carries a usable name and the layer counts agree, by position.
    """
    index = layer_index(trace)
    bn_index = {".".join(norm_tokens(b)): c for c, b in trace.bn_of.items()}
    layers: list[CandLayer] = []
    for item in found:
        mapped, how = (match_module(item.name, index), item.name_kind) if item.name else (None, "")
        if mapped is None and item.scopes:
            mapped, how = _scope_module(item.scopes, index, bn_index), "name_scopes"
        layers.append(CandLayer(mapped, item.weight, item.bias, item.output, how if mapped else ""))
    return _finish_mapping(layers, trace)


def _scope_module(scopes: tuple[str, ...], index: dict[str, str], bn_index: dict[str, str]) -> str | None:
    for scope in reversed(scopes):
        key = ".".join(norm_tokens(scope))
        for table in (index, bn_index):
            tokens = key.split(".")
            for start in range(len(tokens)):
                sub = ".".join(tokens[start:])
                if sub in table:
                    return table[sub]
    return None


def _finish_mapping(layers: list[CandLayer], trace: Trace) -> list[CandLayer]:
    """Drop duplicate mappings; map by position when nothing mapped by name and the layer lists line up."""
    seen: set[str] = set()
    for layer in layers:
        if layer.module is not None:
            if layer.module in seen:
                layer.module, layer.how = None, ""
            else:
                seen.add(layer.module)
    if not seen and layers and len(layers) == len(trace.order):
        # Nothing carries a usable name (frozen TorchScript, renamed initializers): pair the layers in execution
        # order. The structure check then reports any weight shape that does not fit.
        for layer, name in zip(layers, trace.order):
            layer.module, layer.how = name, "position"
    return layers


def structure_check(layers: list[CandLayer], trace: Trace, module: nn.Module, ref_label: str) -> Check | None:
    """Do the file's layer weights have the reference's shapes? (A different alpha or model shows up here.)"""
    if not layers:
        return None
    mapped = [layer for layer in layers if layer.module is not None and layer.weight is not None]
    if not mapped:
        return Check(
            "structure", False,
            f"none of the file's {len(layers)} conv/linear layers corresponds to a layer of the reference "
            f"({len(trace.order)} layers): it is a different network, or the metadata does not describe it",
        )
    wrong = [
        (layer.module, tuple(layer.weight.shape), tuple(module.get_submodule(layer.module).weight.shape))
        for layer in mapped
        if tuple(layer.weight.shape) != tuple(module.get_submodule(layer.module).weight.shape)
    ]
    if wrong:
        name, got, want = wrong[0]
        return Check(
            "structure", False,
            f"{len(wrong)} of {len(mapped)} layers have other weight shapes than the reference "
            f"(first: {name} {list(got)} in the file vs {list(want)}): the file is another alpha or model than "
            f"its metadata says",
        )
    unmapped = len(layers) - len(mapped)
    missing = len(trace.order) - len(mapped)
    if missing > 0 and unmapped == 0:
        return Check("structure", False, f"the file has {len(layers)} conv/linear layers, the reference "
                                         f"{len(trace.order)}: a different network")
    how = sorted({layer.how for layer in mapped})
    detail = f"{len(mapped)} of {len(trace.order)} reference layers found with matching shapes (by {', '.join(how)})"
    if unmapped:
        detail += f"; {unmapped} file layers not mapped"
    return Check("structure", True, detail)


def weights_diff(layer: CandLayer, module: nn.Module, trace: Trace) -> tuple[float, int, int]:
    """(relative error, differing values, total values) of a layer's weights+bias vs the reference's fold."""
    ref_w, ref_b = fused_weights(module, trace, layer.module)  # type: ignore[arg-type]
    if layer.weight is None or layer.weight.shape != ref_w.shape:
        return math.inf, -1, int(ref_w.size)
    scale_w = float(np.abs(ref_w).max()) or 1.0
    dw = np.abs(layer.weight.astype(np.float64) - ref_w)
    rel = float(dw.max()) / scale_w
    n_diff = int((dw > 1e-4 * scale_w).sum())
    total = int(ref_w.size)
    cand_b = layer.bias if layer.bias is not None else (np.zeros_like(ref_b) if ref_b is not None else None)
    if ref_b is not None and cand_b is not None and cand_b.shape == ref_b.shape:
        scale_b = max(float(np.abs(ref_b).max()), 1e-3 * scale_w, 1e-12)
        db = np.abs(cand_b.astype(np.float64) - ref_b)
        rel = max(rel, float(db.max()) / scale_b)
        n_diff += int((db > 1e-4 * scale_b).sum())
        total += int(ref_b.size)
    elif ref_b is None and layer.bias is not None and np.abs(layer.bias).max() > 0:
        rel, n_diff = max(rel, math.inf), n_diff + int((layer.bias != 0).sum())
    return rel, n_diff, total


WEIGHT_RTOL = 1e-4  # a faithful fold reproduces torch's fold to ~1e-7 of the largest weight




def _weight_rel(layer: CandLayer, module: nn.Module, trace: Trace) -> float:
    ref_w, _ = fused_weights(module, trace, layer.module)  # type: ignore[arg-type]
    if layer.weight is None or layer.weight.shape != ref_w.shape:
        return math.inf
    return float(np.abs(layer.weight.astype(np.float64) - ref_w).max()) / (float(np.abs(ref_w).max()) or 1.0)


def weights_check(layers: list[CandLayer], trace: Trace, module: nn.Module, rtol: float, precision: str) -> Check:
    """A reduced-precision file's weights, dequantized, against the reference's Conv-BN fold: every layer within the
    rounding of its precision (8-bit: half a step, 1/254 of the largest weight; fp16: 2**-11). Independent of how the
    network amplifies rounding, so it certifies the graph even where end-to-end agreement cannot. INT8 biases are
    left out: they are int32 at the scale input x weight, so their rounding is set by the activation's range (up to
    4% of a small bias, measured), which the statistical check judges."""
    mapped = [layer for layer in layers if layer.module is not None and layer.weight is not None]
    worst: tuple[float, str] = (0.0, "")
    bad: list[tuple[str, float]] = []
    for layer in mapped:
        rel = _weight_rel(layer, module, trace) if precision == "int8" else weights_diff(layer, module, trace)[0]
        if not rel <= rtol:
            bad.append((layer.module, rel))  # type: ignore[arg-type]
        if rel > worst[0] or not math.isfinite(rel):
            worst = (rel, layer.module)  # type: ignore[assignment]
    if bad:
        name, rel = bad[0]
        return Check("weights", False, f"{len(bad)} of {len(mapped)} layers' weights differ from the reference's "
                                       f"Conv-BN fold by more than {precision} rounding ({rtol:.1e} of the largest "
                                       f"weight; first: {name}, {rel:.2e}): the file holds other weights")
    return Check("weights", True, f"{len(mapped)} layers within {precision} rounding of the reference's Conv-BN fold "
                                  f"(worst {worst[0]:.2e} of the largest weight, {worst[1] or '-'}; bound {rtol:.1e})")
