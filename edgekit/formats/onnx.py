"""ONNX: the dynamo exporter, one self-contained file, ``onnx.checker``, onnxsim, metadata in ``metadata_props``.

Reading: :func:`read` parses a file with one-line errors for every way that fails (not protobuf, no graph, external
data missing) and is cached per (path, size, mtime), so verify's checks, layer mapping and runner share one parse.
"""

from __future__ import annotations

import ast
import functools
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import BadModelFile, ExportFailed, first_line
from ..metadata import Metadata
from . import FileLayer, WriteJob, dynamic_batch_shapes, quiet_exporters

#: ops whose second input is a weight: conv/linear layers for verify's structure check and localisation
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def max_opset() -> int:
    import onnx.defs

    return min(onnx.defs.onnx_opset_version(), 23)


def write(job: WriteJob, path: Path) -> dict:
    import onnx
    import torch

    started = time.perf_counter()
    meta = job.metadata
    with quiet_exporters(), torch.no_grad():
        program = torch.onnx.export(
            job.fused,
            (job.example,),
            None,  # the proto in memory: edgekit writes the file itself, once, with one-line errors on a full disk
            dynamo=True,
            external_data=False,
            input_names=[meta.input_name],
            output_names=[meta.output_name],
            opset_version=job.options.opset,
            dynamic_shapes=dynamic_batch_shapes(job.fused, job.options.dynamic_batch),
            optimize=True,
        )
    model = program.model_proto
    opset = opset_of(model)
    onnx.checker.check_model(model, full_check=True)
    job.report("onnx", time.perf_counter() - started, f"opset {opset}, {len(model.graph.node)} nodes")

    details: dict = {"opset": opset, "nodes_exported": len(model.graph.node)}
    if job.options.simplify:
        started = time.perf_counter()
        model, outcome = simplify(model, meta.input_name, [1, *job.example.shape[1:]])
        details["simplify"] = outcome
        job.report("simplify", time.perf_counter() - started, outcome)
    bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    if bn:
        raise ExportFailed(f"{bn} BatchNormalization nodes survived fusion in the ONNX graph; please report this model")
    set_metadata(model, replace(meta, opset=opset))
    path.write_bytes(model.SerializeToString())
    details["nodes"] = len(model.graph.node)
    return details


def onnx_version() -> str:
    try:
        import onnx
    except ImportError:  # pragma: no cover - a base dependency
        return "not installed"
    return onnx.__version__


def simplify(model: Any, input_name: str, shape: list[int]) -> tuple[Any, str]:
    """onnxsim, re-checked; a simplification that fails or changes nothing is reported, never fatal."""
    import onnx
    import onnxsim

    before = len(model.graph.node)
    try:
        with quiet_exporters():
            simplified, ok = onnxsim.simplify(model, test_input_shapes={input_name: shape})
        if not ok:
            return model, "skipped: onnxsim's own check failed, kept the exported graph"
        onnx.checker.check_model(simplified, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnxsim raises many types; a failed optimisation must not fail the export
        return model, f"skipped: onnxsim failed ({type(exc).__name__}: {first_line(exc, 80)})"
    after = len(simplified.graph.node)
    if after == before:
        return simplified, f"no change ({before} nodes)"
    return simplified, f"{before} -> {after} nodes"


def set_metadata(model: Any, metadata: Metadata) -> None:
    """Replace edgekit's ``metadata_props`` entries (others, e.g. a quantizer's, are kept)."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("edgekit.")]
    del model.metadata_props[:]
    for key, value in [*kept, *metadata.to_props().items()]:
        model.metadata_props.add(key=key, value=value)


def opset_of(model: Any) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def read(path: str | os.PathLike) -> Any:
    """The parsed ModelProto (external data attached), cached per file version; BadModelFile when it is not ONNX."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise BadModelFile(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return _read_cached(str(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_cached(path_text: str, _size: int, _mtime_ns: int) -> Any:
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    path = Path(path_text)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - DecodeError, RuntimeError, ValueError ... depending on the bytes
        raise BadModelFile(
            f"{path.name} is not an ONNX model (not a model ONNX Runtime can load: it does not parse as ONNX "
            f"protobuf: {first_line(exc, 80)}); pass an .onnx written by 'edgekit export'"
        ) from None
    if proto.ir_version <= 0 or not proto.graph.node or not proto.graph.input or not proto.graph.output:
        raise BadModelFile(
            f"{path.name} is not an ONNX model (no graph in it, not a model ONNX Runtime can load); pass an .onnx "
            "written by 'edgekit export'"
        )
    base = path.parent
    missing: list[str] = []
    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            resolved = (base / location).resolve() if location else None
            inside = resolved is not None and base.resolve() in resolved.parents
            if not location or not inside or not resolved.is_file():
                if location not in missing:
                    missing.append(location or "(no location)")
    if missing:
        raise BadModelFile(
            f"{path.name} keeps its weights in external data {', '.join(repr(m) for m in missing[:3])} that is "
            f"missing from {str(base)!r}; copy it next to the .onnx, or re-export as one file (external_data=False)"
        )
    try:
        onnx.load_external_data_for_model(proto, str(base))
    except Exception as exc:  # noqa: BLE001
        raise BadModelFile(f"cannot read the external data of {path.name}: {first_line(exc)}") from None
    return proto


def props_of(proto: Any) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def read_metadata(path: Path) -> Metadata | None:
    return Metadata.from_props(props_of(read(path)), where=Path(path).name)


def layers(path: Path) -> list[FileLayer]:
    """Conv/Gemm/MatMul nodes with a constant weight: the file's layers, in graph order."""
    from onnx import numpy_helper

    graph = read(path).graph
    inits = {t.name: t for t in graph.initializer}
    consts = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = node.attribute[0].t
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: list[FileLayer] = []
    for node in graph.node:
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            continue
        wname = node.input[1]
        tensor = inits.get(wname)
        if tensor is None:
            tensor = consts.get(wname)
        if tensor is None and node.op_type == "MatMul":
            continue  # activation x activation
        weight = numpy_helper.to_array(tensor) if tensor is not None else None
        bias = None
        if len(node.input) > 2 and node.input[2] in inits:
            bias = numpy_helper.to_array(inits[node.input[2]])
        output = node.output[0]
        if weight is not None:
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "MatMul" or (node.op_type == "Gemm" and not (attrs.get("transB") and attrs["transB"].i)):
                weight = weight.T
            if node.op_type == "MatMul" or (node.op_type == "Conv" and bias is None):
                # bias added by a following Add: compare after it, where the PyTorch layer's output is
                users = consumers.get(output, [])
                if len(users) == 1 and users[0].op_type == "Add":
                    other = [i for i in users[0].input if i != output]
                    if other and other[0] in inits:
                        bias = numpy_helper.to_array(inits[other[0]]).reshape(-1)
                        output = users[0].output[0]
        found.append(FileLayer(wname, weight, bias, output, _scopes(node), "initializer name"))
    return found


def _scopes(node: Any) -> tuple[str, ...]:
    """Module scopes the dynamo exporter records on a node (``pkg.torch.onnx.name_scopes``; onnxsim drops them)."""
    raw = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
    if not raw:
        return ()
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return ()
    if not isinstance(scopes, (list, tuple)):
        return ()
    return tuple(s for s in scopes if isinstance(s, str) and s)


def with_outputs(path: Path, names: list[str], dst: Path) -> Path:
    """A copy of the model at ``dst`` that also outputs the values ``names`` (for activation localisation)."""
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(read(path))
    existing = {o.name for o in proto.graph.output}
    elem = proto.graph.input[0].type.tensor_type.elem_type
    for name in names:
        if name not in existing:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
            existing.add(name)
    onnx.save(proto, str(dst))
    return dst


# --------------------------------------------------------------------------------------------------------------------
# The graph as an index: who produces and consumes each value, which weight each layer reads. Profilers name the
# nodes a runtime executed; this is how those names lead back to the file's nodes (and, through their weights, to
# PyTorch modules: bench --profile).
# --------------------------------------------------------------------------------------------------------------------
#: node types whose second input is a weight (QLinearConv/ConvInteger: quantized models, FusedConv: ORT's own)
WEIGHTED_OPS = (*LAYER_OPS, "ConvInteger", "QLinearConv", "FusedConv")
#: nodes that pass a weight through on its way to a layer (QDQ and fp16 files)
_WEIGHT_PASSES = ("DequantizeLinear", "Cast", "Reshape", "Transpose", "Identity")


@dataclass(frozen=True)
class GraphNode:
    name: str  # the node's name ('#<position>' when it has none)
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    order: int  # position in the file (a valid execution order)
    #: the weight value the layer reads (its input 1) when it traces back to a constant: what verify maps by
    weight: str | None
    scopes: tuple[str, ...] = ()


@dataclass
class GraphIndex:
    nodes: dict[str, GraphNode]
    producer: dict[str, str]  # value -> node name
    consumers: dict[str, list[str]]  # value -> node names
    constants: set[str]  # initializers and Constant outputs
    graph_inputs: set[str]

    def resolve(self, name: str, suffixes: tuple[str, ...] = ()) -> str | None:
        """A runtime's spelling of a node or value name -> the node's name, or None.

        Tries the name, then with trailing ``/part``s removed one at a time (OpenVINO splits ``node_conv2d`` into
        ``node_conv2d/WithoutBiases``; the legacy exporter's own names contain ``/``), then without each of
        ``suffixes``; first as node names, then as values (their producer).
        """
        parts = name.split("/")
        candidates = [name, *("/".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))]
        for suffix in suffixes:
            candidates += [c[: -len(suffix)] for c in list(candidates) if c.endswith(suffix) and len(c) > len(suffix)]
        found = next((c for c in candidates if c in self.nodes), None)
        if found is None:
            found = next((self.producer[c] for c in candidates if c in self.producer), None)
        return found

    def weighted_upstream(self, name: str, depth: int = 40) -> str | None:
        """The nearest layer (a node with a weight) that feeds ``name``, latest in execution order; else the
        nearest one it feeds. An activation leads to its conv, an SE scale to its last fc, a residual add to the
        block's last conv, a channel shuffle to the last conv of its unit, the input's layout change to the stem."""
        for step in (self._inputs_of, self._outputs_of):
            seen, frontier = {name}, [name]
            for _ in range(depth):
                found = [n for n in (m for f in frontier for m in step(f)) if n not in seen]
                seen.update(found)
                weighted = [n for n in found if self.nodes[n].weight is not None]
                if weighted:
                    return max(weighted, key=lambda n: self.nodes[n].order)
                if not found:
                    break
                frontier = found
        return None

    def _inputs_of(self, name: str) -> list[str]:
        return [self.producer[v] for v in self.nodes[name].inputs if v in self.producer]

    def _outputs_of(self, name: str) -> list[str]:
        return [c for v in self.nodes[name].outputs for c in self.consumers.get(v, ())]


def graph_index(path: str | os.PathLike) -> GraphIndex:
    """The index of the file's main graph (parsed once, with :func:`read`'s one-line errors)."""
    graph = read(path).graph
    named = [(node.name or f"#{i}", node) for i, node in enumerate(graph.node)]
    producer = {value: name for name, node in named for value in node.output if value}
    consumers: dict[str, list[str]] = {}
    for name, node in named:
        for value in node.input:
            consumers.setdefault(value, []).append(name)
    inits = {t.name for t in graph.initializer}
    constants = inits | {node.output[0] for _, node in named if node.op_type == "Constant" and node.output}
    by_name = dict(named)

    def weight_of(value: str) -> str | None:
        for _ in range(4):  # through DequantizeLinear / Cast / ... to the constant (QDQ and fp16 files)
            if value in constants:
                return value
            node = by_name.get(producer.get(value, ""))
            if node is None or node.op_type not in _WEIGHT_PASSES or not node.input:
                return None
            value = node.input[0]
        return None

    nodes = {
        name: GraphNode(name, node.op_type, tuple(node.input), tuple(node.output), i,
                        weight_of(node.input[1]) if node.op_type in WEIGHTED_OPS and len(node.input) > 1 else None,
                        _scopes(node))
        for i, (name, node) in enumerate(named)
    }
    return GraphIndex(nodes, producer, consumers, constants, {i.name for i in graph.input} - inits)
