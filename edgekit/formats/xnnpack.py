"""Lowering to ExecuTorch's XNNPACK delegate: PT2E INT8, graph rewrites, constant folding, the delegation report.

Used by ``pte.py`` only (imported when a ``.pte`` is written). The rewrites change the *form* of three ops that
XNNPACK's partitioner refuses only for their form, never their arithmetic:

* ``mean.dim(x, [2, 3], keepdim=False)`` on a 4-D tensor (ShuffleNet's ``x.mean([2, 3])``): XNNPACK accepts only
  ``keepdim=True`` -> ``view_copy(mean.dim(x, [2, 3], True), [N, C])``;
* ``avg_pool2d(..., padding=p > 0, count_include_pad=True)`` (ShuffleNetV1's shortcut ``AvgPool2d(3, 2, 1)``):
  XNNPACK cannot count padding in an average -> ``constant_pad_nd(x, p, 0.0)`` then ``avg_pool2d(padding=0)``, the
  same sum over the same window. fp32 only: XNNPACK refuses a quantized pad when the program loads;
* ``split_with_sizes_copy`` (``x.chunk(2, dim=1)`` in ShuffleNetV2): no XNNPACK node -> one ``slice_copy`` per piece.

Constant folding (ExecuTorch's own ``constant_prop_pass``) removes the dtype copies of scalar constants that the
edge decomposition of ``hardsigmoid`` leaves in front of the delegate (MobileNetV3, EfficientNet's SE blocks),
which would otherwise run on portable kernels at every call.
"""

from __future__ import annotations

import operator
from collections import Counter
from typing import Any

import numpy as np
from executorch.exir.dialects._ops import ops as exir_ops
from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult, ExportPass, ProxyValue

from . import dynamic_batch_shapes

#: non-delegated operators listed by module in the report (the counts cover all of them)
MAX_LISTED = 40


# --------------------------------------------------------------------------------------------------------------------
# INT8
# --------------------------------------------------------------------------------------------------------------------
def quantize_int8(fused: Any, example: Any, calibration: np.ndarray, batch: int = 32) -> Any:
    """PT2E static INT8 for XNNPACK: per-channel symmetric weights, per-tensor activations, observed on
    ``calibration`` (NCHW float32, preprocessed like the deployment input). Returns the exported quantized program.

    The graph is captured with a symbolic batch for calibration only (batches of ``batch`` images instead of one at
    a time), then the converted model is exported again at the example's fixed shape.
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    pair = torch.cat([example, example])  # torch.export specialises an example batch of 1
    captured = torch.export.export(fused, (pair,), dynamic_shapes=dynamic_batch_shapes(fused, True))
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(captured.module(), quantizer)
    for start in range(0, len(calibration), batch):
        prepared(torch.from_numpy(calibration[start:start + batch]))
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, (example,))


# --------------------------------------------------------------------------------------------------------------------
# Lowering
# --------------------------------------------------------------------------------------------------------------------
def lower(program: Any) -> Any:
    """``to_edge_transform_and_lower`` with the rewrites and constant folding, partitioned for XNNPACK."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.pass_manager import ExportedProgramPassManager

    passes = ExportedProgramPassManager([XnnpackFriendlyRewrites(), FoldConstants()])
    return to_edge_transform_and_lower(program, transform_passes=passes, partitioner=[XnnpackPartitioner()])


def to_executorch(edge: Any, constant_methods: dict[str, Any]) -> bytes:
    """The serialised program, with ``constant_methods`` added after lowering (so the metadata can carry the
    delegation report, which is only known once the partitioner ran)."""
    from executorch.exir import EdgeProgramManager

    manager = EdgeProgramManager(edge.exported_program(), constant_methods=constant_methods,
                                 compile_config=edge.compile_config)
    return manager.to_executorch().buffer


class FoldConstants(ExportedProgramPassBase):
    """ExecuTorch's constant propagation (quantize/dequantize ops are left alone by it)."""

    def call(self, exported_program: Any) -> ExportedProgramPassResult:
        from executorch.exir.passes.constant_prop_pass import constant_prop_pass

        return ExportedProgramPassResult(constant_prop_pass(exported_program), True)


def _dequantized(value: Any) -> bool:
    """Whether ``value`` comes straight out of a dequantize op (an INT8 graph)."""
    node = getattr(value, "node", None)
    return node is not None and "dequantize" in str(getattr(node, "target", ""))


def _pair(value: Any, default: list[int] | None) -> list[int] | None:
    if not value:
        return default
    if isinstance(value, int):
        return [value, value]
    return list(value) * 2 if len(value) == 1 else list(value)


class _Pieces(list):
    """The slices standing in for a split's outputs: ``getitem`` on it picks one, no graph node needed."""


class XnnpackFriendlyRewrites(ExportPass):
    """See the module docstring; every rewrite computes exactly what it replaces."""

    def call_operator(self, op, args, kwargs, meta):  # type: ignore[override]
        if op == exir_ops.edge.aten.mean.dim:
            out = self._mean(op, args, kwargs, meta)
        elif op == exir_ops.edge.aten.avg_pool2d.default:
            out = self._avg_pool(op, args, meta)
        elif op == exir_ops.edge.aten.split_with_sizes_copy.default:
            out = self._split(args, kwargs, meta)
        else:
            out = None
        return super().call_operator(op, args, kwargs, meta) if out is None else out

    def _mean(self, op, args, kwargs, meta):  # type: ignore[no-untyped-def]
        x, dims = args[0], args[1]
        keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        t = x.to_tensor() if isinstance(x, ProxyValue) else None
        if t is None or t.dim() != 4 or keepdim or kwargs.get("dtype") is not None:
            return None
        if sorted(d % 4 for d in dims) != [2, 3] or not all(isinstance(s, int) for s in t.shape):
            return None
        pooled = super().call_operator(op, (x, list(dims), True), {}, meta)
        return super().call_operator(exir_ops.edge.aten.view_copy.default, (pooled, [int(t.shape[0]), int(t.shape[1])]),
                                     {}, meta)

    def _avg_pool(self, op, args, meta):  # type: ignore[no-untyped-def]
        x = args[0]
        kernel = _pair(args[1], None)
        stride = _pair(args[2] if len(args) > 2 else None, kernel)
        padding = _pair(args[3] if len(args) > 3 else None, [0, 0])
        ceil_mode = bool(args[4]) if len(args) > 4 else False
        count_include_pad = bool(args[5]) if len(args) > 5 else True
        divisor = args[6] if len(args) > 6 else None
        if not (count_include_pad and any(padding) and not ceil_mode and divisor is None) or _dequantized(x):
            return None
        ph, pw = padding  # type: ignore[misc]
        padded = super().call_operator(exir_ops.edge.aten.constant_pad_nd.default, (x, [pw, pw, ph, ph], 0.0), {},
                                       meta)
        return super().call_operator(op, (padded, kernel, stride, [0, 0], False, True), {}, meta)

    def _split(self, args, kwargs, meta):  # type: ignore[no-untyped-def]
        x, sizes = args[0], list(args[1])
        dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
        t = x.to_tensor() if isinstance(x, ProxyValue) else None
        if t is None or not all(isinstance(s, int) for s in [*t.shape, *sizes]):
            return None
        pieces, start = _Pieces(), 0
        for size in sizes:
            pieces.append(super().call_operator(exir_ops.edge.aten.slice_copy.Tensor, (x, dim, start, start + size, 1),
                                                {}, meta))
            start += size
        return pieces

    def call_getitem(self, value, key, meta):  # type: ignore[override]
        if isinstance(value, _Pieces):
            return value[key]
        return super().call_getitem(value, key, meta)


# --------------------------------------------------------------------------------------------------------------------
# The delegation report
# --------------------------------------------------------------------------------------------------------------------
def delegation(edge_program: Any) -> dict:
    """Which operators XNNPACK took and which stayed on portable CPU kernels, each of those with its PyTorch module.

    Counts edge operators inside the lowered subgraphs as delegated and every other operator call of the top graph
    (``executorch_call_delegate`` and ``getitem`` excepted) as not delegated.
    """
    graph_module = edge_program.graph_module
    delegated: Counter[str] = Counter()
    subgraphs = 0
    left: list[dict] = []
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            subgraphs += 1
            for inner in getattr(graph_module, node.target).original_module.graph.nodes:
                if inner.op == "call_function" and inner.target is not operator.getitem:
                    delegated[_op_name(inner.target)] += 1
        elif node.op == "call_function":
            name = _op_name(node.target)
            if node.target is operator.getitem or name.endswith("executorch_call_delegate"):
                continue
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            module, kind = (stack[-1][0], _short_type(stack[-1][1])) if stack else ("", "")
            left.append({"op": name, "module": module, "module_type": kind})
    return {
        "subgraphs": subgraphs,
        "delegated_ops": sum(delegated.values()),
        "not_delegated_ops": len(left),
        "not_delegated_by_op": dict(Counter(d["op"] for d in left)),
        "not_delegated": left[:MAX_LISTED],
    }


def describe(report: dict) -> str:
    """One line for export's progress: how much XNNPACK took, and what it left, by module."""
    total = report["delegated_ops"] + report["not_delegated_ops"]
    text = (f"edge graph: {report['delegated_ops']} of {total} operators in {report['subgraphs']} XNNPACK "
            f"subgraph{'s' if report['subgraphs'] != 1 else ''}")
    if not report["not_delegated_ops"]:
        return text + "; none left on portable kernels"
    where = Counter(f"{d['op']} in {d['module'] or '(top level)'}" for d in report["not_delegated"])
    listed = ", ".join(f"{k}{f' x{n}' if n > 1 else ''}" for k, n in list(where.items())[:4])
    more = "" if len(where) <= 4 else f", ... ({len(where) - 4} more)"
    return text + f"; left on portable kernels: {listed}{more}"


def _op_name(target: Any) -> str:
    op = getattr(target, "_op", None)  # EdgeOpOverload wraps the ATen OpOverload
    if op is not None and hasattr(op, "name"):
        return op.name().replace("::", ".")
    return str(getattr(target, "__name__", None) or target).replace("::", ".")


def _short_type(value: Any) -> str:
    text = value if isinstance(value, str) else getattr(value, "__qualname__", str(value))
    return text.rsplit(".", 1)[-1].strip("'>")
