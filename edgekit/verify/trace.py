"""The reference, traced: which conv/linear layers run in which order, which BN follows which conv, their outputs,
the weights a faithful Conv-BN fold gives, and the reference folded by PyTorch itself (its rounding sensitivity)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..modes import eval_mode


LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class Trace:
    order: list[str]  # conv/linear module names in execution order
    bn_of: dict[str, str]  # conv name -> the BatchNorm that consumes its output
    outputs: dict[str, np.ndarray]  # conv/linear name -> its fused-equivalent output (after its BN, if any)
    types: dict[str, str]


@torch.no_grad()
def trace_reference(module: nn.Module, x: np.ndarray | None, res: int) -> Trace:
    """Run ``module`` once with hooks: which layers run in which order, which BN follows which conv, and outputs."""
    names = {id(m): n for n, m in module.named_modules()}
    layers = {n: m for n, m in module.named_modules() if isinstance(m, LAYER_TYPES)}
    order: list[str] = []
    bn_of: dict[str, str] = {}
    outputs: dict[str, np.ndarray] = {}
    live: dict[int, tuple[str, torch.Tensor]] = {}  # id(conv output) -> (conv name, the tensor: keeps the id unique)
    keep = x is not None

    def layer_hook(mod: nn.Module, _inputs: tuple, out: Any) -> None:
        name = names[id(mod)]
        if name in order or not isinstance(out, torch.Tensor):
            return
        order.append(name)
        live[id(out)] = (name, out)
        if keep:
            outputs[name] = out.detach().float().cpu().numpy().copy()  # clone: in-place activations follow

    def bn_pre(mod: nn.Module, inputs: tuple) -> None:
        if inputs and id(inputs[0]) in live:
            conv = live[id(inputs[0])][0]
            bn_of.setdefault(conv, names[id(mod)])
            mod._edgekit_conv = conv  # type: ignore[attr-defined]

    def bn_post(mod: nn.Module, _inputs: tuple, out: Any) -> None:
        conv = getattr(mod, "_edgekit_conv", None)
        if conv is not None and keep and isinstance(out, torch.Tensor):
            outputs[conv] = out.detach().float().cpu().numpy().copy()

    handles = []
    for name, mod in module.named_modules():
        if isinstance(mod, LAYER_TYPES):
            handles.append(mod.register_forward_hook(layer_hook))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            handles.append(mod.register_forward_pre_hook(bn_pre))
            handles.append(mod.register_forward_hook(bn_post))
    try:
        with eval_mode(module):
            # without inputs, only the structure is traced: zeros on the module's device (a "meta" module, built
            # without weights, gives the structure for free)
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            module(torch.from_numpy(x) if x is not None else torch.zeros(1, 3, res, res, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for mod in module.modules():
            if hasattr(mod, "_edgekit_conv"):
                del mod._edgekit_conv
    types = {n: type(layers[n]).__name__ for n in order}
    return Trace(order, bn_of, outputs, types)


def fused_weights(module: nn.Module, trace: Trace, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The weight and bias a faithful Conv-BN fold gives for layer ``name`` (torch's own folding formula)."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    layer = module.get_submodule(name)
    weight, bias = layer.weight.detach(), layer.bias.detach() if layer.bias is not None else None
    bn_name = trace.bn_of.get(name)
    if bn_name is not None:
        bn = module.get_submodule(bn_name)
        with torch.no_grad():
            fw, fb = fuse_conv_bn_weights(
                weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias,
                transpose=isinstance(layer, nn.ConvTranspose2d),
            )
        return fw.detach().numpy(), fb.detach().numpy()
    return weight.numpy(), None if bias is None else bias.numpy()


def fold_reference(module: nn.Module, trace: Trace) -> nn.Module:
    """A copy of the reference with every Conv-BN pair folded by torch's own ``fuse_conv_bn_eval``."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for conv_name, bn_name in trace.bn_of.items():
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        if not isinstance(conv, nn.modules.conv._ConvNd) or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        for name, new in ((conv_name, fuse_conv_bn_eval(conv, bn)), (bn_name, nn.Identity())):
            parent, _, leaf = name.rpartition(".")
            setattr(folded.get_submodule(parent) if parent else folded, leaf, new)
    return folded


def norm_tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^0-9A-Za-z]+", name) if t]


def match_module(name: str, candidates: dict[str, str]) -> str | None:
    """Map a parameter / scope name to a module name by its dotted path, tolerating prefixes and separators.

    ``candidates`` maps normalised module paths ("features.3.conv.1.0") to module names. ``model.features.3.conv.1.0
    .weight``, ``p_features_3_conv_1_0_weight`` and ``features.3.conv.1.0.weight_bias`` all map to that module.
    """
    tokens = norm_tokens(name)
    for end in range(len(tokens), 0, -1):
        for start in range(0, end):
            key = ".".join(tokens[start:end])
            if key in candidates:
                return candidates[key]
    return None


def layer_index(trace: Trace) -> dict[str, str]:
    return {".".join(norm_tokens(n)): n for n in trace.order}


