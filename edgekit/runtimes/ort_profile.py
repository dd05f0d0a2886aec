"""ONNX Runtime's profiler, read: per-node times of the optimized graph, mapped back to the file's nodes.

With ``SessionOptions.enable_profiling`` ONNX Runtime writes a Chrome-trace JSON (``session.end_profiling()`` returns
its path): one ``cat == "Session"`` event ``model_run`` per run, and one ``cat == "Node"`` event per executed
kernel, named ``<node>_kernel_time``, with ``args.op_name`` and ``args.provider`` (the execution provider that ran
it: a partial fallback to the CPU is visible node by node).

The node names are those of the *optimized* graph, not of the file: at ``ORT_ENABLE_ALL`` a fused conv is named
after the tensor it writes plus ``_nchwc`` (``relu_1_nchwc`` is the Conv + Relu whose output was ``relu_1``), its
weights are renamed (``reorder_token_21``), layout conversions are inserted (``ReorderInput``/``ReorderOutput``),
quantized convs become ``node_conv2d_token_1`` and fp16 files gain ``InsertedPrecisionFreeCast_`` prefixes. The
session saves that optimized graph (``optimized_model_filepath``) next to the trace, and each kernel's *region* (the
file's nodes it computes) is found structurally: from the file's tensors the kernel writes, back through the file's
graph to the tensors some other kernel writes. Reorders take their neighbours' region (ReorderInput the kernel it
feeds, ReorderOutput the kernel it drains). A few kernels appear only in the trace (a HardSwish decomposed when
kernels are created); they take the region of the kernel that ran before them.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import BadModelFile
from . import NodeTime, RuntimeProfile

_SUFFIX = re.compile(r"(_nchwc|_token_\d+|_kernel_time)$")
_PREFIXES = ("InsertedPrecisionFreeCast_",)
INSERTED_OPS = ("ReorderInput", "ReorderOutput", "MemcpyToHost", "MemcpyFromHost")
#: a region stops growing after this many nodes (a conv with its bias, activation and residual add is 2-5)
_MAX_REGION = 16


def parse_trace(events: Sequence[Mapping[str, Any]], skip_runs: int) -> tuple[list[list[Mapping]], list[float]]:
    """The trace's node events grouped by run (``model_run`` spans), the first ``skip_runs`` runs dropped; and each
    kept run's ``model_run`` duration (us)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[skip_runs:]
    nodes = sorted((e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    grouped: list[list[Mapping]] = []
    j = 0
    for run in runs:
        start, end = run["ts"], run["ts"] + run["dur"]
        while j < len(nodes) and nodes[j]["ts"] < start:
            j += 1
        events_of_run = []
        while j < len(nodes) and nodes[j]["ts"] <= end:
            events_of_run.append(nodes[j])
            j += 1
        grouped.append(events_of_run)
    return grouped, [float(r["dur"]) for r in runs]


def read_trace(path: str, skip_runs: int) -> tuple[list[list[Mapping]], list[float]]:
    try:
        events = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BadModelFile(f"cannot read ONNX Runtime's profile {path!r}: {exc}") from None
    if not isinstance(events, list):
        raise BadModelFile(f"ONNX Runtime's profile {path!r} is not a list of trace events")
    return parse_trace([e for e in events if isinstance(e, dict)], skip_runs)


def optimized_graph(path: str) -> list[dict[str, Any]]:
    """name, op_type, domain, inputs, outputs of each node of the optimized graph the session saved."""
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - our own temporary file: only a full disk or a bug gets here
        raise BadModelFile(f"cannot read ONNX Runtime's optimized graph {path!r}: {exc}") from None
    return [{"name": n.name, "op_type": n.op_type, "domain": n.domain, "inputs": tuple(n.input),
             "outputs": tuple(n.output)} for n in model.graph.node]


def name_candidates(name: str) -> list[str]:
    """ONNX Runtime's spellings of a file's name, most specific first: 'InsertedPrecisionFreeCast_relu_1_nchwc' ->
    [..., 'relu_1_nchwc', 'relu_1']; 'node_conv2d_token_1' -> [..., 'node_conv2d']."""
    out = [name, *(name[len(p):] for p in _PREFIXES if name.startswith(p))]
    for candidate in list(out):
        while (stripped := _SUFFIX.sub("", candidate)) not in ("", candidate):
            out.append(stripped)
            candidate = stripped
    return list(dict.fromkeys(out))


class _Regions:
    """Each optimized-graph kernel's region in the file's graph (see the module docstring)."""

    def __init__(self, graph: Sequence[Mapping[str, Any]], index: Any) -> None:
        self.index = index
        self.stems = {g["name"]: self._stems(g["name"], g["op_type"], g["outputs"]) for g in graph}
        self.written = set(index.graph_inputs) | index.constants | {t for s in self.stems.values() for t in s}

    def _stems(self, name: str, op_type: str, outputs: Sequence[str]) -> list[str]:
        """The file's tensors a kernel writes: its own outputs where they kept their names, else its name's stem."""
        index = self.index
        if op_type in INSERTED_OPS:
            return []
        stems = [t for t in outputs if t in index.producer]
        if stems:
            return stems
        for base in name_candidates(name):
            if base in index.producer and base not in index.graph_inputs:
                return [base]  # '<tensor>_nchwc': the fused node's output tensor
            if base in index.nodes:
                return list(index.nodes[base].outputs)  # 'node_conv2d_token_1': the node itself
        return []

    def region(self, name: str, op_type: str, outputs: Sequence[str]) -> tuple[str, ...]:
        index = self.index
        own = set(self.stems.get(name) or self._stems(name, op_type, outputs))
        stack = [index.producer[t] for t in own if t in index.producer]
        region: list[str] = []
        while stack and len(region) < _MAX_REGION:
            node = stack.pop()
            if node in region:
                continue
            region.append(node)
            for value in index.nodes[node].inputs:
                if not value or value in index.constants or (value in self.written and value not in own):
                    continue
                if len(index.consumers.get(value, ())) != 1:
                    continue  # read by several nodes: materialised, so some other kernel wrote it
                producer = index.producer.get(value)
                if producer is not None and index.nodes[producer].op_type != "Constant":
                    stack.append(producer)
        return tuple(sorted(region, key=lambda n: index.nodes[n].order))


def profile_from_trace(trace_path: str, graph_path: str, index: Any, *, skip_runs: int,
                       walls_ms: Sequence[float]) -> RuntimeProfile:
    """Per-node medians over the trace's runs (after ``skip_runs``), each kernel with its region and neighbours."""
    runs, model_runs = read_trace(trace_path, skip_runs)
    graph = optimized_graph(graph_path)
    by_name = {g["name"]: g for g in graph}
    regions = _Regions(graph, index)
    writer = {t: g["name"] for g in graph for t in g["outputs"]}
    readers: dict[str, list[str]] = {}
    for g in graph:
        for t in g["inputs"]:
            readers.setdefault(t, []).append(g["name"])
    per_node: dict[str, list[float]] = {}
    first: dict[str, Mapping] = {}
    for k, events in enumerate(runs):
        for e in events:
            name = str(e["name"])[: -len("_kernel_time")]
            totals = per_node.setdefault(name, [0.0] * len(runs))
            totals[k] += float(e.get("dur", 0))
            first.setdefault(name, e)
    nodes = []
    for order, (name, totals) in enumerate(sorted(per_node.items(), key=lambda kv: first[kv[0]]["ts"])):
        args = first[name].get("args") or {}
        g = by_name.get(name, {"op_type": str(args.get("op_name", "")), "domain": "", "inputs": (), "outputs": ()})
        op_type = str(args.get("op_name") or g["op_type"])
        ups = [writer[t] for t in g["inputs"] if t in writer]
        downs = [r for t in g["outputs"] for r in readers.get(t, ())]
        nodes.append(NodeTime(
            name, op_type, g["domain"] or "ai.onnx", str(args.get("provider", "")), statistics.median(totals), order,
            region=regions.region(name, op_type, g["outputs"]) if name in by_name else (),
            neighbours=tuple(ups + downs if op_type == "ReorderOutput" else downs + ups),
            inserted=op_type in INSERTED_OPS or name not in by_name))
    return RuntimeProfile(tuple(nodes), tuple(walls_ms), "median", len(runs),
                          runtime_ms=tuple(d / 1e3 for d in model_runs),
                          node_sums_ms=tuple(sum(float(e.get("dur", 0)) for e in run) / 1e3 for run in runs),
                          costs_per_node=True)
