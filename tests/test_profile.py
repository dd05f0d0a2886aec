"""bench --profile: per-node times from the runtime's own profiler, every node tied to the PyTorch module it computes
(through verify's mapping), summed by operator, module, stage and layer kind, against MACs and bytes; the plain run
stays unprofiled; a runtime without a profiler is refused before anything is measured."""

from __future__ import annotations

import json

import pytest
import torch.nn as nn

import edgekit
from edgekit.cli import main as cli_main
from edgekit.memory_cost import memory_cost
from edgekit.models import build_model


@pytest.fixture(scope="module")
def layer_modules() -> dict[str, str]:
    """conv/linear module name -> kind, from the PyTorch model itself (the independent source)."""
    model, _ = build_model("mobilenet_v2", alpha=0.35)
    return {n: type(m).__name__ for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _profile(path, runtime: str) -> dict:
    report = edgekit.bench(path, options=edgekit.BenchOptions(runtime=runtime, threads=1, iters=20, warmup=2,
                                                              profile=True))
    assert report.profile is not None and report.latency_ms.count == 20
    return report.to_dict()["profile"] | {"_text": report.to_text()}


@pytest.fixture(scope="module")
def ort_profile(small_export) -> dict:
    return _profile(small_export.files["onnx"], "onnxruntime")


@pytest.fixture(scope="module")
def ov_profile(small_export) -> dict:
    pytest.importorskip("openvino")
    return _profile(small_export.files["onnx"], "openvino")


@pytest.mark.parametrize("which", ["ort_profile", "ov_profile"])
def test_every_node_is_tied_to_a_real_layer_and_the_sums_agree(which, request, layer_modules):
    profile = request.getfixturevalue(which)
    nodes = profile["nodes"]
    total = sum(n["time_us"] for n in nodes)
    assert nodes and total > 0
    assert profile["coverage"].get("unmapped", 0) == 0  # every microsecond reached a module
    assert {n["module"] for n in nodes} <= set(layer_modules)
    for table in ("by_op", "by_module", "by_kind"):  # each table accounts for every node's time
        assert sum(r["time_us"] for r in profile[table]) == pytest.approx(total, rel=1e-3, abs=0.05)
    assert sum(r["share"] for r in profile["by_stage"]) == pytest.approx(1.0, abs=2e-3)
    assert profile["node_sum_ms"] == pytest.approx(total / 1e3, rel=1e-3)
    assert profile["runs"] >= 20 and "of the plain p50" in profile["agreement"]
    # the classifier: the one Linear layer, found by its weight's name on both runtimes
    linear = next(n for n, kind in layer_modules.items() if kind == "Linear")
    row = next(r for r in profile["by_module"] if r["module"] == linear)
    assert row["kind"] == "linear" and row["macs"] == 1280 * 1000 and row["gmacs"] > 0


def test_onnx_runtime_nodes_carry_their_provider_and_map_by_weight(ort_profile, layer_modules):
    nodes = ort_profile["nodes"]
    assert {n["provider"] for n in nodes} == {"CPUExecutionProvider"}
    assert ort_profile["providers"]["CPUExecutionProvider"]["nodes"] == len(nodes)
    convs = [n for n in nodes if n["op_type"] == "Conv"]
    assert convs and all(n["how"] == "weight" for n in convs)
    assert all(layer_modules[n["module"]] == "Conv2d" for n in convs)
    # every conv layer of the model has its own kernel (none lost in the mapping)
    assert {n["module"] for n in convs} == {m for m, kind in layer_modules.items() if kind == "Conv2d"}
    reorders = [n for n in nodes if n["op_type"].startswith("Reorder")]
    assert all(n["how"].startswith(("inserted", "next to", "adjacent")) for n in reorders)


def test_openvino_runs_fp32_kernels_and_reports_means(ov_profile):
    assert ov_profile["statistic"] == "mean"
    assert all(n["precision"] != "bf16" for n in ov_profile["nodes"])
    assert any(n["impl"].endswith("_f32") for n in ov_profile["nodes"])


def test_module_costs_are_the_memory_cost_of_that_layer(ort_profile):
    costs = memory_cost("mobilenet_v2", alpha=0.35, res=64).by_module()
    for row in ort_profile["by_module"]:
        cost = costs[row["module"]]
        assert (row["macs"], row["bytes"], row["kind"]) == (cost.macs, cost.bytes, cost.kind)
        assert row["gbs"] == pytest.approx(cost.bytes / (row["time_us"] * 1e3), rel=1e-2, abs=1e-3)


def test_text_report_has_the_tables(ort_profile):
    text = ort_profile["_text"]
    for title in ("by operator type (top 10)", "by PyTorch module (top 10)", "by layer kind", "by stage",
                  "slowest nodes (top 10)", "ran on: CPUExecutionProvider"):
        assert title in text


def test_profile_json_from_the_cli(small_export, capsys):
    assert cli_main(["bench", str(small_export.files["onnx"]), "--profile", "--top", "3", "--iters", "20",
                     "--warmup", "1", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"]["top"] == 3 and data["profile"]["plain_p50_ms"] == round(data["latency_ms"]["p50"], 4)


def test_a_runtime_without_a_profiler_is_refused_before_measuring(small_export, capsys):
    assert cli_main(["bench", str(small_export.files["torchscript"]), "--profile", "--iters", "2000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "the torch runtime has no per-node profiler" in err and "onnxruntime, openvino" in err
