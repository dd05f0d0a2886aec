"""Which layer loses the accuracy: per-layer error of a quantized graph against its fp32 source, named by PyTorch
module, and the greedy mixed-precision search built on it.

ONNX nodes are named after PyTorch modules the way verify maps them: a Conv/Gemm by its weight initializer's name
(the dynamo exporter names initializers after parameters, ``features.3.conv.1.0.weight``, and onnxsim,
``quant_pre_process`` and the quantizer keep it), another node by the exporter's recorded module scope where it
survived, else as ``<Op> after <the nearest named module upstream>``.

The error: one pass of ONNX Runtime's ``qdq_loss_debug`` (every float tensor of both graphs made an output, run on a
few held-out samples, matched by name). For each layer (a compute node together with a ReLU/Clip it alone feeds,
because the QDQ quantizer folds that activation into the quantization range) it gives the SQNR of the quantized
graph against the fp32 graph at the layer's output, the worst SQNR over its inputs, and ``added_noise``: the
relative noise power the layer adds (``10^(-out/10) - 10^(-in/10)``), the ranking key. ONNX Runtime's own
``qdq_err`` (pre- vs post-QuantizeLinear inside the quantized graph) is not used: where the quantizer removed a
ReLU6 the pre-quantization tensor is the unclipped convolution output, and that error measures the clipping.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .int8 import CalibrationReader, graph_input, quiet_ort

WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FOLDED_ACTIVATIONS = ("Clip", "Relu")
COMPUTE_OPS = WEIGHT_OPS + ("Add", "Mul", "Concat", "GlobalAveragePool", "AveragePool", "MaxPool", "ReduceMean",
                            "HardSigmoid", "HardSwish", "Sigmoid", "Softmax")


@dataclass(frozen=True)
class GraphLayer:
    node: str  # node name (the same in the prepared fp32 graph and the quantized one)
    op_type: str
    module: str  # PyTorch module, or "<Op> after <module>"
    output: str  # tensor compared: the node's output, or that of the ReLU/Clip it alone feeds
    inputs: tuple[str, ...]  # activation inputs (constants excluded)


def _module_of_weight(name: str) -> str:
    for suffix in ("_quantized", ".weight", "_weight"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _constants(graph: Any) -> dict[str, str]:
    """Constant values -> the initializer they come from (a QDQ graph's dequantized weights included)."""
    consts = {t.name: t.name for t in graph.initializer}
    consts.update({o: o for n in graph.node if n.op_type == "Constant" for o in n.output})
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    return consts


def graph_layers(model: Any) -> list[GraphLayer]:
    """The compute nodes of an fp32, fp16 or QDQ graph in execution order, each named by its PyTorch module."""
    from ..formats.onnx import _scopes

    graph = model.graph
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    named: dict[str, str] = {}
    seen: dict[str, int] = {}
    out: list[GraphLayer] = []
    for node in graph.node:
        acts = tuple(i for i in node.input if i and i not in consts)
        up = producer.get(acts[0]) if acts else None
        if node.op_type in FOLDED_ACTIVATIONS and len(acts) == 1 and up is not None and up.op_type in COMPUTE_OPS \
                and len(consumers.get(acts[0], [])) == 1:
            named[node.name] = named.get(up.name, "")
            continue  # part of its producer's layer
        if node.op_type not in COMPUTE_OPS:
            named[node.name] = named.get(up.name, "") if up is not None else ""
            continue
        module = None
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in consts:
            module = _module_of_weight(consts[node.input[1]])
        if module is None and _scopes(node):
            module = _scopes(node)[-1]
        if module is None:
            ups = [named.get(producer[i].name, "") for i in acts if i in producer]
            base = next((u for u in reversed(ups) if u), "input").split(" after ", 1)[-1].split(" #", 1)[0]
            module = f"{node.op_type} after {base}"
            seen[module] = seen.get(module, 0) + 1
            if seen[module] > 1:  # the second Mul after a layer (hard-swish, then squeeze-excitation): numbered
                module += f" #{seen[module]}"
        named[node.name] = module
        output = node.output[0]
        users = consumers.get(output, [])
        if len(users) == 1 and users[0].op_type in FOLDED_ACTIVATIONS:
            output = users[0].output[0]
        out.append(GraphLayer(node.name, node.op_type, module, output, acts))
    return out


def layer_activations(path: Path, x: np.ndarray, input_name: str, model: Any = None) -> dict[str, np.ndarray]:
    """Every float tensor of the graph at ``path`` on ``x`` (ONNX Runtime's ``qdq_loss_debug`` helpers)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors

    _, batch = graph_input(model if model is not None else onnx.load(str(path), load_external_data=False))
    with tempfile.TemporaryDirectory(prefix="edgekit-acts-") as tmp, quiet_ort():
        augmented = str(Path(tmp) / "augmented.onnx")
        modify_model_output_intermediate_tensors(str(path), augmented)
        acts = collect_activations(augmented, CalibrationReader(x, input_name, batch or len(x), pad=batch is not None))
    return {k: np.concatenate([np.asarray(a) for a in v]) for k, v in acts.items()}


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).ravel()
    test = np.asarray(test, np.float64).ravel()
    if ref.shape != test.shape:
        return math.nan
    noise = float(np.sum((ref - test) ** 2))
    if noise == 0:
        return math.inf
    if not math.isfinite(noise):
        return -math.inf
    return 10 * math.log10(max(float(np.sum(ref ** 2)), 1e-30) / noise)


def _noise(db: float) -> float:
    """Noise-to-signal power ratio of an SQNR in dB (0 for an exact tensor)."""
    return 0.0 if db == math.inf else (math.nan if math.isnan(db) else 10 ** (-db / 10))


@dataclass(frozen=True)
class LayerError:
    node: str
    op_type: str
    module: str
    sqnr_db: float  # quantized vs fp32 at this layer's output (higher = closer)
    input_sqnr_db: float  # worst over its activation inputs
    added_noise: float  # relative noise power this layer adds: the ranking key

    def to_dict(self) -> dict:
        return asdict(self)


def layer_errors(fp32_path: Path, quant_path: Path, x: np.ndarray) -> list[LayerError]:
    """Per-layer error of the quantized graph against the prepared fp32 graph it was made from, on ``x`` (keep it to
    a few dozen samples: every tensor is held in memory), in execution order; the graph input comes first."""
    import onnx

    fp32 = onnx.load(str(fp32_path))
    name, _ = graph_input(fp32)
    ref = layer_activations(fp32_path, x, name, model=fp32)
    quant = layer_activations(quant_path, x, name)

    def db(tensor: str) -> float:
        # After QuantizeLinear/DequantizeLinear where the quantized graph quantizes the value (that includes the
        # layer's own output rounding, and a folded ReLU6's clipping); the raw tensor where it stays float.
        dq = f"{tensor}_DequantizeLinear_Output"
        got = quant.get(dq, quant.get(tensor))
        return sqnr_db(ref[tensor], got) if tensor in ref and got is not None else math.nan

    result = [LayerError(name, "Input", f"input quantization ({name})", db(name), math.inf, _noise(db(name)))]
    for layer in graph_layers(fp32):
        out_db = db(layer.output)
        ins = [d for d in (db(i) for i in layer.inputs) if not math.isnan(d)]
        in_db = min(ins) if ins else math.inf
        result.append(LayerError(layer.node, layer.op_type, layer.module, out_db, in_db,
                                 _noise(out_db) - _noise(in_db)))
    return result


def rank_by_added(errors: Sequence[LayerError]) -> list[LayerError]:
    """Most harmful first (largest noise added); unmeasured layers last."""
    return sorted(errors, key=lambda e: -e.added_noise if not math.isnan(e.added_noise) else math.inf)


def with_consumers(model: Any, nodes: Sequence[str]) -> list[str]:
    """``nodes`` plus the compute nodes that read their outputs. Keeping a node alone in fp32 keeps its arithmetic
    in float, but its output is still quantized where a quantized consumer reads it (the consumer's input gets a
    QuantizeLinear with the calibrated range): a bad range is only gone when the consumers stay in float too
    (measured: a clipped range injected into one MobileNetV2 layer, held-out SQNR 18.0 dB; that node alone in fp32:
    18.0 dB; with its consumers: 25.6 dB, the clean file's)."""
    by_node = {layer.node: layer for layer in graph_layers(model)}
    out = list(dict.fromkeys(nodes))
    for name in nodes:
        layer = by_node.get(name)
        if layer is None:
            continue
        out.extend(o.node for o in by_node.values() if layer.output in o.inputs and o.node not in out)
    return list(dict.fromkeys(out))


def nodes_for_modules(model: Any, modules: Sequence[str]) -> tuple[list[str], list[str]]:
    """(node names, unknown module names) for ``--keep-fp32 NAME,...``: every node of a named module (or of a module
    inside it: ``features.9`` names the whole block)."""
    layers = graph_layers(model)
    nodes, unknown = [], []
    for module in modules:
        hits = [lay.node for lay in layers if lay.module == module or lay.module.startswith(module + ".")]
        if hits:
            nodes.extend(hits)
        else:
            unknown.append(module)
    return list(dict.fromkeys(nodes)), unknown


def module_names(model: Any, nodes: Sequence[str]) -> list[str]:
    by_node = {layer.node: layer.module for layer in graph_layers(model)}
    return [by_node.get(n, n) for n in nodes]


@dataclass(frozen=True)
class Coverage:
    """How well one quantized activation's calibrated range fits the inputs: its value after
    QuantizeLinear/DequantizeLinear against its value before, over the samples."""

    tensor: str
    module: str  # the layer that produces it ("input quantization" for the graph input)
    op_type: str
    sqnr_db: float
    clipped: float  # share of values outside the calibrated range
    folded: bool  # a ReLU/ReLU6 the quantizer removed: clipping at the range's ends is partly that activation's

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.module} ({self.op_type}): {self.sqnr_db:.1f} dB after 8-bit rounding, "
                f"{100 * self.clipped:.1f}% of values outside the calibrated range")


def activation_coverage(path: Path, x: np.ndarray, input_name: str) -> list[Coverage]:
    """Every activation a QDQ graph quantizes, on ``x``, worst first: where a calibrated range does not fit the
    inputs (a calibration on other images, constant images, another normalization), 8-bit rounding and clipping
    destroy the values, and the layer producing them is named."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    dq_of = {n.input[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    module_of = {layer.node: layer.module for layer in graph_layers(model)}
    acts = layer_activations(path, x, input_name, model=model)
    out = []
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in inits or q.output[0] not in dq_of:
            continue
        before, after = acts.get(q.input[0]), acts.get(dq_of[q.output[0]].output[0])
        if before is None or after is None or len(q.input) < 3 or q.input[1] not in inits or q.input[2] not in inits:
            continue
        scale = numpy_helper.to_array(inits[q.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(inits[q.input[2]])
        if scale.size != 1:
            continue
        info = np.iinfo(zero.dtype)
        lo, hi = (info.min - float(zero)) * float(scale), (info.max - float(zero)) * float(scale)
        node = producer.get(q.input[0])
        op = node.op_type if node is not None else "Input"
        folded = op in WEIGHT_OPS and abs(lo) < 1e-12
        reference = np.maximum(before, 0) if folded else before
        step = abs(float(scale))
        outside = (before > hi + step) if folded else (before > hi + step) | (before < lo - step)
        clipped = float(outside.mean())
        module = "input quantization" if node is None else module_of.get(node.name, f"{op} {node.name}")
        out.append(Coverage(q.input[0], module, op, sqnr_db(reference, after), clipped, folded))
    return sorted(out, key=lambda c: c.sqnr_db)
