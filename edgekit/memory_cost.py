"""Memory access cost next to multiply-adds: the bytes each layer reads and writes.

The ShuffleNetV2 paper's first guideline: FLOPs are not speed. A layer is bound by its arithmetic *or* by the bytes it
moves, and on a CPU running a small CNN at batch 1 many layers are the second kind: depthwise convolutions, the SE
blocks' 1x1 convolutions on 1x1 maps, the classifier (all weights, read once per image), element-wise ops and the
channel shuffle's copies. For every Conv/Linear layer this counts, from shapes alone:

- ``macs``: multiply-adds, the papers' convention (``edgekit.complexity``: the totals are equal, which a test holds);
- ``act_in_bytes`` / ``act_out_bytes``: the layer's input and output tensors, each moved once (the least traffic);
- ``weight_bytes``: weight and bias; after Conv-BN folding every exported conv has a bias, so it is counted;
- ``intensity``: MACs per byte moved. A CPU core doing ~50 GMAC/s on 1x1 convs but streaming ~10-20 GB/s cannot
  keep its arithmetic busy below a few MACs per byte: those layers are memory-bound.

``other_bytes`` per stage adds what the runtimes run as separate kernels or copies between the layers: element-wise
activations, residual adds and SE scales, reductions, pooling, concatenation and ``contiguous()`` copies (ShuffleNet's
channel shuffle). BatchNorm is left out (folded into the convs in every export) and views move nothing.

Like :func:`edgekit.complexity.info`, the model is built on PyTorch's ``meta`` device: no weights, no arithmetic,
a fraction of a second even for EfficientNet-B7. Bytes are fp32 (4 per element) unless told otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from .modes import eval_mode

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_ELTWISE = {"relu", "relu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "sigmoid", "sigmoid_", "silu",
            "silu_", "add", "add_", "mul", "mul_", "clamp", "clamp_", "clamp_min", "clamp_min_", "hardtanh",
            "hardtanh_", "gelu", "div", "sub", "relu6"}
_REDUCE = {"mean", "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "avg_pool2d", "sum"}
_POOL = {"max_pool2d", "max_pool2d_with_indices"}
_COPY = {"clone", "cat", "_to_copy", "copy_", "stack"}


class _Traffic:
    """Bytes moved and MACs per byte, for a layer or a stage."""

    macs: int

    @property
    def bytes(self) -> int:
        raise NotImplementedError

    @property
    def intensity(self) -> float:
        """MACs per byte moved."""
        return self.macs / self.bytes if self.bytes else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "bytes": self.bytes, "intensity": round(self.intensity, 4)}  # type: ignore[call-overload]


@dataclass(frozen=True)
class LayerCost(_Traffic):
    """One conv/linear layer. ``kind``: conv, pointwise (1x1), depthwise, grouped, linear, or fc1x1 (a 1x1 conv on a
    1x1 map, as in squeeze-and-excitation: a matrix-vector product at batch 1)."""

    module: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    weight_bytes: int
    act_in_bytes: int
    act_out_bytes: int

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.act_in_bytes + self.act_out_bytes


@dataclass(frozen=True)
class StageCost(_Traffic):
    """One stage of ``edgekit info`` (a child of the model, ``features``-like containers expanded one level)."""

    name: str
    layers: int
    macs: int
    weight_bytes: int
    act_bytes: int  # conv/linear inputs + outputs
    other_bytes: int  # element-wise ops, pooling, concatenation and copies between the layers

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.act_bytes + self.other_bytes


@dataclass(frozen=True)
class MemoryCost:
    res: int
    batch: int
    bytes_per_element: int
    layers: tuple[LayerCost, ...]
    stages: tuple[StageCost, ...]
    other_bytes: int = 0

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers) + self.other_bytes

    def by_module(self) -> dict[str, LayerCost]:
        return {layer.module: layer for layer in self.layers}

    def to_dict(self) -> dict:
        return {"res": self.res, "batch": self.batch, "bytes_per_element": self.bytes_per_element,
                "macs": self.macs, "bytes": self.bytes, "other_bytes": self.other_bytes,
                "intensity": round(self.macs / self.bytes, 4) if self.bytes else 0.0,
                "stages": [s.to_dict() for s in self.stages], "layers": [layer.to_dict() for layer in self.layers]}


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _kind(layer: nn.Module, out_shape: tuple[int, ...]) -> str:
    if isinstance(layer, nn.Linear):
        return "linear"
    if layer.groups == 1:
        if all(k == 1 for k in layer.kernel_size):
            return "fc1x1" if all(d == 1 for d in out_shape[2:]) else "pointwise"
        return "conv"
    if layer.groups == layer.in_channels and layer.out_channels % layer.in_channels == 0:
        return "depthwise"
    return "grouped"


class _OtherOps(TorchDispatchMode):
    """Bytes of the ops between the layers, charged to the innermost module running them (``stack[-1]``)."""

    def __init__(self, stack: list[str], inside_layer: list[int], elem: int) -> None:
        super().__init__()
        self.stack, self.inside_layer, self.elem = stack, inside_layer, elem
        self.bytes_by_module: dict[str, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]  # 'add.Tensor' -> 'add'
        if self.inside_layer[0] or not (name in _ELTWISE or name in _REDUCE or name in _POOL or name in _COPY):
            return out
        ins = [a for a in _flat(args) if isinstance(a, torch.Tensor)]
        outs = [o for o in _flat(out) if isinstance(o, torch.Tensor)]
        moved = sum(_numel(t.shape) for t in ins)
        moved += _numel(ins[0].shape) if name.endswith("_") and ins else sum(_numel(t.shape) for t in outs)
        key = self.stack[-1] if self.stack else ""
        self.bytes_by_module[key] = self.bytes_by_module.get(key, 0) + moved * self.elem
        return out


def _flat(x: Any) -> list:
    if isinstance(x, (list, tuple)):
        return [y for item in x for y in _flat(item)]
    return [x]


@torch.no_grad()
def layer_costs(model: nn.Module, res: int, *, batch: int = 1,
                bytes_per_element: int = 4) -> tuple[list[LayerCost], dict[str, int]]:
    """Per conv/linear layer in execution order, and the other ops' bytes by module, for one forward pass on
    ``batch x 3 x res x res`` (on the model's own device: build it under ``torch.device("meta")``)."""
    names = {id(m): n for n, m in model.named_modules()}
    layers: list[LayerCost] = []
    stack: list[str] = []
    inside = [0]
    elem = bytes_per_element

    def pre(mod: nn.Module, _inputs: tuple) -> None:
        stack.append(names.get(id(mod), ""))
        inside[0] += isinstance(mod, _LAYERS)

    def post(mod: nn.Module, inputs: tuple, out: Any) -> None:
        stack.pop()
        if not isinstance(mod, _LAYERS):
            return
        inside[0] -= 1
        x = inputs[0] if inputs else None
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
            return
        in_shape, out_shape = tuple(x.shape), tuple(out.shape)
        weights = _numel(mod.weight.shape)
        conv = isinstance(mod, nn.modules.conv._ConvNd)
        bias = (mod.out_channels if conv else mod.out_features) if (conv or mod.bias is not None) else 0
        per_output = mod.in_features if not conv else (mod.in_channels // mod.groups) * _numel(mod.kernel_size)
        layers.append(LayerCost(names.get(id(mod), ""), _kind(mod, out_shape), in_shape, out_shape,
                                _numel(out_shape) * per_output, (weights + bias) * elem, _numel(in_shape) * elem,
                                _numel(out_shape) * elem))

    handles = [h for m in model.modules() for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    recorder = _OtherOps(stack, inside, elem)
    try:
        device = next(model.parameters()).device
        with eval_mode(model), recorder:
            model(torch.zeros(batch, 3, res, res, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return layers, recorder.bytes_by_module


def memory_cost(name: str, *, alpha: float = 1.0, res: int | None = None, num_classes: int = 1000,
                batch: int = 1, bytes_per_element: int = 4) -> MemoryCost:
    """Memory access cost of a registered model at width ``alpha`` and resolution ``res``, per layer and stage."""
    from .complexity import _stages
    from .models import check_alpha, check_res
    from .registry import get_spec

    spec = get_spec(name)
    alpha = check_alpha(alpha)
    res = check_res(spec, res)
    with torch.device("meta"):
        model = spec.builder(alpha, num_classes)
    layers, other = layer_costs(model, res, batch=batch, bytes_per_element=bytes_per_element)
    stages = [stage for stage, _ in _stages(model)]

    def stage_of(module: str) -> str:
        return next((s for s in stages if module == s or module.startswith(s + ".")), "(top level)")

    totals: dict[str, list[int]] = {s: [0, 0, 0, 0, 0] for s in stages}  # layers, macs, weight, act, other bytes
    for layer in layers:
        entry = totals.setdefault(stage_of(layer.module), [0, 0, 0, 0, 0])
        for i, value in enumerate((1, layer.macs, layer.weight_bytes, layer.act_in_bytes + layer.act_out_bytes)):
            entry[i] += value
    for module, moved in other.items():
        totals.setdefault(stage_of(module), [0, 0, 0, 0, 0])[4] += moved
    rows = tuple(StageCost(s, *t) for s, t in totals.items())
    return MemoryCost(res, batch, bytes_per_element, tuple(layers), rows, sum(other.values()))


@dataclass(frozen=True)
class KindShare:
    """How a layer kind's share of the MACs compares with its share of the bytes (and, in a profile, of the time)."""

    kind: str
    layers: int
    macs: int
    bytes: int
    macs_share: float
    bytes_share: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "extra"}, **self.extra}


def by_kind(layers: Sequence[LayerCost]) -> list[KindShare]:
    """Per layer kind, largest share of MACs first."""
    macs = sum(layer.macs for layer in layers) or 1
    moved = sum(layer.bytes for layer in layers) or 1
    groups: dict[str, list[LayerCost]] = {}
    for layer in layers:
        groups.setdefault(layer.kind, []).append(layer)
    out = [KindShare(kind, len(group), sum(x.macs for x in group), sum(x.bytes for x in group),
                     sum(x.macs for x in group) / macs, sum(x.bytes for x in group) / moved)
           for kind, group in groups.items()]
    return sorted(out, key=lambda k: -k.macs)


__all__ = ["LayerCost", "StageCost", "MemoryCost", "KindShare", "layer_costs", "memory_cost", "by_kind"]
