"""``bench --profile``: where the time goes, node by node, from the runtime's own profiler.

After the plain benchmark (unprofiled, so its numbers stay what an application sees), the file is opened a second
time with the runtime's profiler on (ONNX Runtime's profiling JSON, OpenVINO's per-node counters) and run again on
the same inputs. Every node the runtime executed is then tied to the PyTorch module it computes:

1. the runtime says which of the file's nodes each of its nodes computes (its *region*; see the runtime modules);
2. a region with a layer (a Conv/Gemm) takes that layer's module, found exactly as ``verify`` finds it (the
   weight's initializer name, ``edgekit.verify.layers.map_layers``); a region without one (an activation, a
   residual add, SE pooling, a channel shuffle) takes the nearest layer that feeds it ("upstream");
3. a node the runtime inserted (a layout reorder) takes the module of the node it feeds or drains, and a node that
   the runtime cannot place takes the one that ran before it ("adjacent").

Times are then summed by operator type, by module and by stage, and each module's time is set against its
multiply-adds and the bytes it moves (``edgekit.memory_cost``): achieved GMAC/s and GB/s show which layers are
compute-bound and which wait for memory. Each node keeps the provider that ran it, so a partial fallback to the CPU
shows node by node.

The profiled run is not the plain run: ONNX Runtime's profiler costs a few microseconds per node, and both runtimes
spend time outside their kernels (input/output handling, thread hand-off). The report puts the summed node times
next to the plain p50 and names those differences.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import EdgekitError
from ..runtimes import NodeTime, RuntimeProfile, open_runner
from .stats import LatencyStats, ProgressFn

#: profiled runs: as many as the plain run had, within these bounds (the trace grows with nodes x runs)
MIN_RUNS, MAX_RUNS = 20, 500
#: summed node times within this share of the plain p50 need no explanation
AGREEMENT = 0.15


@dataclass(frozen=True)
class ProfiledNode:
    name: str
    op_type: str
    impl: str
    provider: str
    precision: str
    time_us: float
    module: str | None
    how: str  # weight, upstream <node>, inserted -> <node>, adjacent -> <node>, unmapped
    region: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def check_profiler(runtime_name: str) -> None:
    """Refuse ``--profile`` on a runtime without a profiler before anything is measured."""
    from ..runtimes import RUNTIMES, no_profiler

    spec = RUNTIMES.get(runtime_name)
    if spec is not None and not spec.profiles:
        raise no_profiler(runtime_name)


def collect_profile(file: Path, options: Any, threads: int, feeds: Mapping[str, Any], plain: LatencyStats,
                    batch: int, progress: ProgressFn, notes: list[str]) -> dict:
    """Open ``file`` again with the runtime's profiler, run it, and attribute every node (see the module docstring).

    ``plain``: the unprofiled run's statistics, which the summed node times are compared with.
    """
    runs = max(MIN_RUNS, min(MAX_RUNS, plain.count))
    progress("profile", 0, runs)
    runner = open_runner(file, options.runtime, options=options.run_options(threads, profile=True))
    try:
        raw = runner.profile(feeds, runs=runs, warmup=max(1, options.warmup))
        runtime, metadata = runner.runtime, runner.metadata
        index = _graph_index(file) if runner.format == "onnx" else None
    finally:
        runner.close()
    progress("profile", runs, runs)
    model = _structure(metadata)
    modules = _modules(file, index, model, metadata.res) if model is not None and index is not None else {}
    nodes = attribute(raw.nodes, index, modules)
    costs, stages = _costs(model, metadata.res, batch) if model is not None else ({}, [])
    if model is None:
        notes.append("the file carries no edgekit metadata: nodes are not mapped to PyTorch modules")
    return summarise(nodes, raw, plain, costs, stages, runtime=runtime, top=options.top)


def _graph_index(file: Path) -> Any:
    from ..formats.onnx import graph_index

    return graph_index(file)


def _structure(metadata: Any) -> Any:
    """The model on PyTorch's meta device (shapes only, no weights): module names, stages and costs come from it."""
    if metadata is None:
        return None
    import torch

    from ..registry import get_spec

    try:
        spec = get_spec(metadata.model)
    except EdgekitError:  # a module exported by itself: no registered builder
        return None
    with torch.device("meta"):
        return spec.builder(metadata.alpha, metadata.num_classes)


def _modules(file: Path, index: Any, model: Any, res: int) -> dict[str, str]:
    """The file's layer nodes -> the modules they come from, by verify's own mapping (weights' initializer names)."""
    from ..formats.onnx import layers
    from ..verify.layers import map_layers
    from ..verify.trace import trace_reference

    found = layers(file)
    mapped = map_layers(found, trace_reference(model, None, res))
    by_weight = {f.name: c.module for f, c in zip(found, mapped) if f.name and c.module}
    return {name: by_weight[node.inputs[1]] for name, node in index.nodes.items()
            if node.weight is not None and node.inputs[1] in by_weight}


def _costs(model: Any, res: int, batch: int) -> tuple[dict, list[str]]:
    from ..complexity import _stages
    from ..memory_cost import layer_costs

    layers, _other = layer_costs(model, res, batch=batch)
    return {layer.module: layer for layer in layers}, [name for name, _ in _stages(model)]


def attribute(raw: Sequence[NodeTime], index: Any, modules: Mapping[str, str]) -> list[ProfiledNode]:
    """Each runtime node with the module it computes and how that was found (see the module docstring)."""
    placed: dict[str, tuple[str | None, str]] = {}
    for node in raw:
        if node.region and index is not None:
            placed[node.name] = _region_module(node.region, index, modules)
    by_name = {node.name: node for node in raw}
    previous: str | None = None
    for node in raw:  # in execution order
        if node.name not in placed:
            target = _placed_neighbour(node, by_name, placed)
            if target is not None:
                placed[node.name] = (placed[target][0], f"{'inserted' if node.inserted else 'next to'} -> {target}")
            elif previous is not None:
                placed[node.name] = (placed[previous][0], f"adjacent -> {previous}")
            else:
                placed[node.name] = (None, "unmapped")
        if placed[node.name][0] is not None:
            previous = node.name
    return [ProfiledNode(n.name, n.op_type, n.impl, n.provider, n.precision, n.time_us, *placed[n.name], n.region)
            for n in raw]


def _region_module(region: Sequence[str], index: Any, modules: Mapping[str, str]) -> tuple[str | None, str]:
    order = lambda name: index.nodes[name].order  # noqa: E731
    weighted = [name for name in region if index.nodes[name].weight is not None]
    if weighted:
        anchor = min(weighted, key=order)
        return (modules.get(anchor), "weight") if anchor in modules else (None, "unmapped")
    upstream = index.weighted_upstream(max(region, key=order))
    if upstream is not None and upstream in modules:
        return modules[upstream], f"upstream {upstream}"
    return None, "unmapped"


def _placed_neighbour(node: NodeTime, by_name: Mapping[str, NodeTime],
                      placed: Mapping[str, tuple[str | None, str]]) -> str | None:
    """The first neighbour with a region, walking through chains of neighbours without one (reorder pairs)."""
    seen, queue = {node.name}, list(node.neighbours)
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if name in placed and placed[name][0] is not None:
            return name
        other = by_name.get(name)
        if other is not None and not other.region:
            queue.extend(other.neighbours)
    return None


# --------------------------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------------------------
def _group(nodes: Sequence[ProfiledNode], key: Any) -> dict[str, list[ProfiledNode]]:
    groups: dict[str, list[ProfiledNode]] = {}
    for node in nodes:
        groups.setdefault(key(node), []).append(node)
    return groups


def _rate(work: float, time_us: float) -> float | None:
    """work per microsecond / 1e3: MACs -> GMAC/s, bytes -> GB/s."""
    return round(work / (time_us * 1e3), 3) if time_us > 0 and work else None


def summarise(nodes: Sequence[ProfiledNode], raw: RuntimeProfile, plain: LatencyStats, costs: Mapping[str, Any],
              stages: Sequence[str], *, runtime: str, top: int) -> dict:
    total = sum(n.time_us for n in nodes) or 1e-9
    all_macs = sum(c.macs for c in costs.values()) or 1
    all_bytes = sum(c.bytes for c in costs.values()) or 1

    def share(x: float) -> float:
        return round(x / total, 4)

    by_op = [{"op_type": op, "nodes": len(g), "time_us": round(sum(n.time_us for n in g), 2),
              "share": share(sum(n.time_us for n in g)), "providers": sorted({n.provider for n in g})}
             for op, g in _group(nodes, lambda n: n.op_type).items()]
    by_module = []
    for module, group in _group(nodes, lambda n: n.module or "(unmapped)").items():
        t = sum(n.time_us for n in group)
        cost = costs.get(module)
        row = {"module": module, "nodes": len(group), "time_us": round(t, 2), "share": share(t),
               "kind": cost.kind if cost else None, "macs": cost.macs if cost else None,
               "bytes": cost.bytes if cost else None, "gmacs": _rate(cost.macs, t) if cost else None,
               "gbs": _rate(cost.bytes, t) if cost else None,
               "intensity": round(cost.intensity, 3) if cost else None}
        by_module.append(row)
    stage_of = lambda m: next((s for s in stages if m == s or m.startswith(s + ".")), m or "(unmapped)")  # noqa: E731
    by_stage = []
    for stage, group in _group(nodes, lambda n: stage_of(n.module or "")).items():
        t = sum(n.time_us for n in group)
        layers = [c for m, c in costs.items() if stage_of(m) == stage]
        by_stage.append({"stage": stage, "time_us": round(t, 2), "share": share(t),
                         "macs_share": round(sum(c.macs for c in layers) / all_macs, 4),
                         "bytes_share": round(sum(c.bytes for c in layers) / all_bytes, 4)})
    by_kind = _by_kind(by_module, costs, total, all_macs, all_bytes)
    by = lambda rows: sorted(rows, key=lambda r: -r["time_us"])  # noqa: E731
    coverage: dict[str, float] = {}
    for node in nodes:
        how = node.how.split(" ", 1)[0] if node.module else "unmapped"
        coverage[how] = round(coverage.get(how, 0.0) + node.time_us / total, 4)
    providers = {p: {"nodes": len(g), "share": share(sum(n.time_us for n in g))}
                 for p, g in _group(nodes, lambda n: n.provider).items()}
    return {
        "runtime": runtime, "statistic": raw.statistic, "runs": raw.runs, "top": top, "nodes_profiled": len(nodes),
        **_agreement(raw, plain, total, len(nodes)),
        "providers": providers, "coverage": coverage, "notes": list(raw.notes),
        "by_op": by(by_op), "by_module": by(by_module), "by_stage": by_stage, "by_kind": by_kind,
        "nodes": [n.to_dict() for n in nodes],
    }


def _by_kind(by_module: Sequence[dict], costs: Mapping[str, Any], total: float, all_macs: int,
             all_bytes: int) -> list[dict]:
    """Layer kinds (pointwise, depthwise, linear, ...): share of MACs, of bytes and of time, side by side."""
    kinds: dict[str, dict] = {}
    for row in by_module:
        kind = row["kind"] or "(no layer)"
        entry = kinds.setdefault(kind, {"kind": kind, "layers": 0, "time_us": 0.0, "macs": 0, "bytes": 0})
        entry["layers"] += 1 if row["kind"] else 0
        entry["time_us"] += row["time_us"]
        entry["macs"] += row["macs"] or 0
        entry["bytes"] += row["bytes"] or 0
    for cost in costs.values():  # layers the profile never reached (fused away entirely) still count for the shares
        if not any(row["module"] == cost.module for row in by_module):
            entry = kinds.setdefault(cost.kind, {"kind": cost.kind, "layers": 0, "time_us": 0.0, "macs": 0, "bytes": 0})
            entry["macs"] += cost.macs
            entry["bytes"] += cost.bytes
    rows = []
    for entry in kinds.values():
        rows.append({**entry, "time_us": round(entry["time_us"], 2), "share": round(entry["time_us"] / total, 4),
                     "macs_share": round(entry["macs"] / all_macs, 4), "bytes_share": round(entry["bytes"] / all_bytes, 4),
                     "gmacs": _rate(entry["macs"], entry["time_us"]), "gbs": _rate(entry["bytes"], entry["time_us"])})
    return sorted(rows, key=lambda r: -r["time_us"])


def _agreement(raw: RuntimeProfile, plain: LatencyStats, node_sum_us: float, nodes: int) -> dict:
    """The summed node times against the plain run, and what makes them differ: the machine's load (a p50 far above
    the min), the profiler's own cost, and the time a run spends outside the nodes."""
    node_sum = node_sum_us / 1e3
    ratio = node_sum / plain.p50 if plain.p50 > 0 else None
    text = (f"summed per-node {raw.statistic}s {node_sum:.3f} ms = {100 * (ratio or 0):.0f}% of the plain p50 "
            f"{plain.p50:.3f} ms")
    parts = [text + (f" (within {100 * AGREEMENT:.0f}%)" if ratio and abs(ratio - 1) <= AGREEMENT
                     else f", {100 * node_sum / plain.min:.0f}% of its min {plain.min:.3f} ms")]
    if plain.p50 > (1 + AGREEMENT) * plain.min:
        parts.append(f"the plain p50 is {plain.p50 / plain.min:.1f}x its min: other processes held the cores during "
                     "many runs" + (", which per-node medians leave out" if raw.statistic == "median" else ""))
    profiled_p50 = statistics.median(raw.wall_ms) if raw.wall_ms else None
    if profiled_p50 is not None:
        cost = min(raw.wall_ms) - plain.min  # mins: what the load leaves alone
        why = (f"the profiler costs about {1e3 * cost / max(nodes, 1):.1f} us per node" if raw.costs_per_node
               and cost > 0 else "the profiler itself costs nothing measurable")
        parts.append(f"profiled runs p50 {profiled_p50:.3f} ms, min {min(raw.wall_ms):.3f} ms ({why})")
    outside = None
    if raw.runtime_ms and len(raw.node_sums_ms) == len(raw.runtime_ms):  # the same runs, run by run
        outside = statistics.median(r - n for r, n in zip(raw.runtime_ms, raw.node_sums_ms))
        parts.append(f"{outside:.3f} ms of each run is outside the nodes (median of the runtime's own run time "
                     "minus that run's nodes: input/output handling, thread hand-off)")
    elif raw.wall_ms:
        outside = statistics.fmean(raw.wall_ms) - node_sum  # per-node means: compare with the mean wall time
        parts.append(f"the profiled runs' mean wall time exceeds the summed means by {outside:.3f} ms (time outside "
                     "the nodes: input/output handling, thread hand-off)")
    return {"node_sum_ms": round(node_sum, 4), "plain_p50_ms": round(plain.p50, 4), "plain_min_ms": round(plain.min, 4),
            "profiled_p50_ms": round(profiled_p50, 4) if profiled_p50 is not None else None,
            "outside_nodes_ms": round(outside, 4) if outside is not None else None,
            "node_sum_vs_plain_p50": round(ratio, 4) if ratio is not None else None, "agreement": "; ".join(parts)}


# --------------------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def format_profile(profile: dict) -> str:
    """The profile as text: how it compares with the plain run, then top-k tables by operator, module and node,
    and every stage and layer kind with its share of time, MACs and bytes."""
    from ..report import table

    top = int(profile.get("top") or 10)
    lines = [f"profile ({profile['runtime']}'s own profiler, per-node {profile['statistic']} over {profile['runs']} "
             f"runs, {profile['nodes_profiled']} nodes)", profile["agreement"]]
    providers = ", ".join(f"{p} {v['nodes']} nodes ({_pct(v['share'])} of node time)"
                          for p, v in profile["providers"].items())
    lines.append(f"ran on: {providers}")
    lines.append("mapped to modules: " + ", ".join(f"{how} {_pct(s)}" for how, s in profile["coverage"].items()))
    lines += [f"note: {n}" for n in profile["notes"]]
    rows = [[r["op_type"], r["nodes"], _num(r["time_us"]), _pct(r["share"]), ", ".join(r["providers"])]
            for r in profile["by_op"][:top]]
    lines += ["", f"by operator type (top {top})", table(rows, ["op type", "nodes", "us", "time%", "provider"],
                                                          align="lrrrl")]
    rows = [[r["module"], r["kind"] or "-", r["nodes"], _num(r["time_us"]), _pct(r["share"]),
             _num(r["macs"] / 1e6 if r["macs"] is not None else None, 2),
             _num(r["bytes"] / 1e3 if r["bytes"] is not None else None, 0), _num(r["gmacs"]), _num(r["gbs"]),
             _num(r["intensity"], 2)] for r in profile["by_module"][:top]]
    lines += ["", f"by PyTorch module (top {top}): time against multiply-adds and bytes moved",
              table(rows, ["module", "kind", "nodes", "us", "time%", "MMAC", "KB", "GMAC/s", "GB/s", "MAC/B"],
                    align="llrrrrrrrr")]
    rows = [[r["kind"], r["layers"], _pct(r["share"]), _pct(r["macs_share"]), _pct(r["bytes_share"]), _num(r["gmacs"]),
             _num(r["gbs"])] for r in profile["by_kind"]]
    lines += ["", "by layer kind: a kind whose time share exceeds its MACs share is bound by memory or overhead",
              table(rows, ["kind", "layers", "time%", "MACs%", "bytes%", "GMAC/s", "GB/s"], align="lrrrrrr")]
    rows = [[r["stage"], _num(r["time_us"]), _pct(r["share"]), _pct(r["macs_share"]), _pct(r["bytes_share"])]
            for r in profile["by_stage"]]
    lines += ["", "by stage", table(rows, ["stage", "us", "time%", "MACs%", "bytes%"], align="lrrrr")]
    slowest = sorted(profile["nodes"], key=lambda n: -n["time_us"])[:top]
    rows = [[n["name"][:40], n["op_type"], n["impl"][:28], n["provider"], _num(n["time_us"]),
             f"{n['module'] or '-'} ({n['how'].split(' ', 1)[0]})"] for n in slowest]
    lines += ["", f"slowest nodes (top {top})", table(rows, ["node", "op", "kernel", "provider", "us", "module (how)"],
                                                      align="llllrl")]
    return "\n".join(lines)
