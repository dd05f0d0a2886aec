"""edgekit.bench and `edgekit bench`: statistics, providers and their refusals, inputs, I/O binding, reports, CLI.

No timing assertions: speed is measured by tools/bench_harness.py. Models are tiny (hand-made graphs, or
MobileNetV2 alpha 0.25 at 32 px) and runs are a handful of iterations.
"""

from __future__ import annotations

import csv
import importlib
import json
import statistics
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest
import torch

import edgekit
from edgekit.bench import (
    BenchOptions,
    HostRunner,
    IOBindingRunner,
    check_session_providers,
    latency_stats,
    make_runner,
    parse_shape,
    resolve_input_shapes,
    resolve_provider,
    run_block,
)
from edgekit.errors import BadArgument, BadModelFile, ProviderUnavailable
from edgekit.metadata import Metadata
from edgekit.report import to_json

bench_module = importlib.import_module("edgekit.bench")  # `edgekit.bench` the attribute is the function
ort_runtime = importlib.import_module("edgekit.runtimes.onnxruntime")  # provider checks live with the runtime

FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
QUICK = dict(warmup=1, iters=3)


# --------------------------------------------------------------------------------------------------------------------
# Test models
# --------------------------------------------------------------------------------------------------------------------


def _save(graph: onnx.GraphProto, path: Path, props: dict[str, str] | None = None) -> Path:
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 10
    for key, value in (props or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def multi_input_onnx(tmp_path_factory) -> Path:
    """Three inputs with a symbolic batch: two float [N, 4] and one int64 [N]; two outputs."""
    graph = oh.make_graph(
        [oh.make_node("Add", ["x", "y"], ["s"]), oh.make_node("Relu", ["s"], ["z"]), oh.make_node("Identity", ["k"], ["k_out"])],
        "multi",
        [
            oh.make_tensor_value_info("x", FLOAT, ["N", 4]),
            oh.make_tensor_value_info("y", FLOAT, ["N", 4]),
            oh.make_tensor_value_info("k", INT64, ["N"]),
        ],
        [oh.make_tensor_value_info("z", FLOAT, ["N", 4]), oh.make_tensor_value_info("k_out", INT64, ["N"])],
    )
    return _save(graph, tmp_path_factory.mktemp("onnx") / "multi.onnx")


@pytest.fixture(scope="module")
def spatial_onnx(tmp_path_factory) -> Path:
    """One image input whose batch, height and width are all symbolic."""
    graph = oh.make_graph(
        [oh.make_node("Relu", ["image"], ["out"])],
        "spatial",
        [oh.make_tensor_value_info("image", FLOAT, ["N", 3, "H", "W"])],
        [oh.make_tensor_value_info("out", FLOAT, ["N", 3, "H", "W"])],
    )
    return _save(graph, tmp_path_factory.mktemp("onnx") / "spatial.onnx")


@pytest.fixture(scope="module")
def edgekit_onnx(tmp_path_factory) -> tuple[Path, Metadata]:
    """A real edgekit model (MobileNetV2 0.25 @32, seeded weights) with edgekit metadata and a symbolic batch."""
    from edgekit.complexity import count_complexity

    model, source = edgekit.build_model("mobilenet_v2", alpha=0.25)
    path = tmp_path_factory.mktemp("onnx") / "mnv2_a0.25_r32.onnx"
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript-based exporter: about 1 s here, against 10+ s for dynamo on a loaded 2-core machine
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
        except Exception:  # noqa: BLE001 - a torch without it: the supported exporter
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},))  # fmt: skip
    params, macs, _ = count_complexity(model, 32, with_stages=False)
    meta = Metadata(
        model="mobilenet_v2", alpha=0.25, res=32, num_classes=1000, weights=source.describe(), seed=source.seed,
        input_shape=("batch", 3, 32, 32), dynamic_batch=True, params=params, macs=macs, fused=False,
    )  # fmt: skip
    proto = onnx.load(path)
    for key, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)
    return path, meta


# --------------------------------------------------------------------------------------------------------------------
# Statistics (pure)
# --------------------------------------------------------------------------------------------------------------------


def test_latency_stats_match_an_independent_computation():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 2.5, 3.5, 1.5, 7.0, 2.2]
    stats = latency_stats(samples)
    # statistics.quantiles(method="inclusive") is linear interpolation between order statistics (type 7) too.
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    assert stats.count == len(samples)
    assert stats.min == 1.0 and stats.max == 10.0
    assert stats.mean == pytest.approx(statistics.fmean(samples))
    assert stats.std == pytest.approx(statistics.stdev(samples))
    assert stats.p50 == pytest.approx(statistics.median(samples))
    for p in (50, 90, 95, 99):
        assert getattr(stats, f"p{p}") == pytest.approx(cuts[p - 1])


def test_latency_stats_by_hand():
    stats = latency_stats([4.0, 1.0, 3.0, 2.0])
    assert (stats.min, stats.p50, stats.max) == (1.0, 2.5, 4.0)
    assert stats.p90 == pytest.approx(3.7)  # 1 + 0.9 * 3 = 3.7 -> between 3 and 4
    assert stats.mean == 2.5 and stats.std == pytest.approx((5 / 3) ** 0.5)
    single = latency_stats([2.0])
    assert single.std == 0.0 and single.p99 == 2.0
    with pytest.raises(ValueError):
        latency_stats([])


# --------------------------------------------------------------------------------------------------------------------
# Providers
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cpu", "CPUExecutionProvider"),
        ("CPU", "CPUExecutionProvider"),
        ("cuda", "CUDAExecutionProvider"),
        ("trt", "TensorrtExecutionProvider"),
        ("CPUExecutionProvider", "CPUExecutionProvider"),
        ("openvinoexecutionprovider", "OpenVINOExecutionProvider"),
        ("OpenVINO", "OpenVINOExecutionProvider"),
        ("Dnnl", "DnnlExecutionProvider"),
    ],
)
def test_provider_names_map_to_execution_providers(name, expected):
    assert resolve_provider(name) == expected


def test_unknown_provider_is_a_bad_argument_listing_the_choices():
    with pytest.raises(BadArgument, match="unknown execution provider 'gpu'.*cuda"):
        resolve_provider("gpu")


def test_options_resolve_and_deduplicate_providers():
    assert BenchOptions(providers=("cuda,cpu", "cpu")).providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert BenchOptions(providers="cpu").providers == ("CPUExecutionProvider",)


def test_cuda_refused_here_with_the_install_hint(edgekit_onnx, capsys):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA execution provider")
    with pytest.raises(ProviderUnavailable) as info:
        edgekit.bench(edgekit_onnx[0], options=BenchOptions(providers=("cuda",), **QUICK))
    message = str(info.value)
    assert "CUDAExecutionProvider is not available" in message
    assert "onnxruntime-gpu replaces onnxruntime; never install both" in message
    assert "CPUExecutionProvider" in message  # names what is installed


def test_silent_fallback_is_refused_when_only_availability_is_mocked(edgekit_onnx, monkeypatch):
    """Pretend the CUDA EP is installed (the availability check is the only thing mocked): the real ONNX Runtime
    session then runs on CPU, which edgekit must see in get_providers() and refuse, instead of timing the CPU."""
    monkeypatch.setattr(
        ort_runtime, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    events: list[str] = []
    with pytest.raises(ProviderUnavailable, match="runs on CPUExecutionProvider.*refusing to report CPUExecutionProvider numbers as CUDAExecutionProvider"):
        edgekit.bench(
            edgekit_onnx[0],
            options=BenchOptions(providers=("cuda",), **QUICK),
            progress=lambda phase, done, total: events.append(phase),
        )
    assert not {"first", "warmup", "measure"} & set(events)  # nothing was timed


class _FakeSession:
    def __init__(self, providers):
        self._providers = providers

    def get_providers(self):
        return list(self._providers)


def test_fallback_detected_from_get_providers():
    with pytest.raises(ProviderUnavailable, match="fell back silently"):
        check_session_providers(_FakeSession(["CPUExecutionProvider"]), ["CUDAExecutionProvider"])
    with pytest.raises(ProviderUnavailable):
        check_session_providers(_FakeSession(["CPUExecutionProvider"]), ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    got = check_session_providers(
        _FakeSession(["CUDAExecutionProvider", "CPUExecutionProvider"]), ["CUDAExecutionProvider"]
    )
    assert got[0] == "CUDAExecutionProvider"


# --------------------------------------------------------------------------------------------------------------------
# CUDA path: I/O binding
# --------------------------------------------------------------------------------------------------------------------


class _Named:
    def __init__(self, name):
        self.name = name


class _RecordingBinding:
    def __init__(self, log):
        self.log = log

    def bind_ortvalue_input(self, name, value):
        self.log.append(("bind_input", name, value.device))

    def bind_output(self, name, device_type="cpu", device_id=0, *rest):
        self.log.append(("bind_output", name, device_type, device_id))

    def bind_ortvalue_output(self, name, value):
        self.log.append(("bind_ortvalue_output", name, value.device))

    def synchronize_inputs(self):
        self.log.append(("sync_inputs",))

    def synchronize_outputs(self):
        self.log.append(("sync_outputs",))

    def get_outputs(self):
        return [_DeviceValue("cuda", 0)]

    def copy_outputs_to_cpu(self):
        return [np.zeros((1, 10), np.float32)]


class _RecordingCudaSession:
    def __init__(self, log):
        self.log = log
        self.binding = _RecordingBinding(log)

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def get_outputs(self):
        return [_Named("logits")]

    def io_binding(self):
        return self.binding

    def run_with_iobinding(self, binding, run_options=None):
        assert binding is self.binding
        self.log.append(("run",))


class _DeviceValue:
    def __init__(self, device, device_id):
        self.device = (device, device_id)


def test_cuda_session_is_timed_with_io_binding_on_the_device(monkeypatch):
    """The CUDA path, with the session faked (no GPU here): inputs copied to the device once, outputs bound to the
    device and reused, and each timed window is exactly clock, run, synchronize_outputs, clock."""
    log: list[tuple] = []
    monkeypatch.setattr(
        ort.OrtValue, "ortvalue_from_numpy", staticmethod(lambda array, device="cpu", device_id=0: _DeviceValue(device, device_id))
    )
    session = _RecordingCudaSession(log)
    feeds = {"input": np.zeros((1, 3, 8, 8), np.float32)}
    runner = make_runner(session, feeds, session.get_providers())
    assert isinstance(runner, IOBindingRunner) and runner.io_binding and runner.device_type == "cuda"
    assert ("bind_input", "input", ("cuda", 0)) in log
    assert ("bind_output", "logits", "cuda", 0) in log
    assert log[-1] == ("sync_inputs",)

    runner.once()  # first inference: outputs allocated on the device, then rebound for reuse
    assert log[-3:] == [("run",), ("sync_outputs",), ("bind_ortvalue_output", "logits", ("cuda", 0))]

    log.clear()
    ticks = iter(range(0, 10_000, 7))

    def clock():
        log.append(("clock",))
        return next(ticks)

    out = [0] * 3
    assert runner.timed(out, 0, 3, deadline_ns=1 << 62, clock=clock) == 3
    assert log == [("clock",), ("run",), ("sync_outputs",), ("clock",)] * 3
    assert out == [7, 7, 7]


def test_io_binding_runner_really_runs_on_cpu_memory(multi_input_onnx):
    """The same I/O binding code, on a real session with the 'cpu' device: outputs equal session.run's."""
    session = ort.InferenceSession(str(multi_input_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((2, 4), dtype=np.float32),
        "y": rng.standard_normal((2, 4), dtype=np.float32),
        "k": np.arange(2, dtype=np.int64),
    }
    runner = IOBindingRunner(session, feeds, "cpu", 0)
    runner.once()
    expected = session.run(None, feeds)
    for got, want in zip(runner.outputs_to_cpu(), expected):
        np.testing.assert_array_equal(got, want)
    out = [0] * 4
    assert runner.timed(out, 0, 4, deadline_ns=1 << 62) == 4 and all(t > 0 for t in out)


def test_cpu_session_uses_plain_session_run(multi_input_onnx):
    session = ort.InferenceSession(str(multi_input_onnx), providers=["CPUExecutionProvider"])
    feeds = {"x": np.ones((1, 4), np.float32), "y": np.ones((1, 4), np.float32), "k": np.zeros(1, np.int64)}
    assert isinstance(make_runner(session, feeds, session.get_providers()), HostRunner)


def test_timed_loop_stops_at_the_deadline_and_reports_progress_between_chunks():
    class Runner:
        calls = 0

        def timed(self, out, start, stop, deadline_ns, clock=None):
            for i in range(start, stop):
                self.calls += 1
                out[i] = 1000
            return stop

    events = []
    samples, _ = run_block(Runner(), iters=25, duration_s=None, estimate_ns=0.05e9, phase="measure",
                           progress=lambda *e: events.append(e))  # fmt: skip
    assert len(samples) == 25
    assert events[0] == ("measure", 0, 25) and events[-1] == ("measure", 25, 25)
    assert len(events) > 3  # 5 runs per 0.25 s chunk: progress came between chunks


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------


def test_parse_shape_forms():
    assert parse_shape("input:1x3x224x224") == ("input", (1, 3, 224, 224))
    assert parse_shape("x:0:[1,3,8,8]") == ("x:0", (1, 3, 8, 8))
    assert parse_shape("2x4") == (None, (2, 4))
    for bad in ("input:", "input:1xfoo", "input:0x3", "input:-1x3"):
        with pytest.raises(BadArgument, match="shape"):
            parse_shape(bad)


def test_input_shapes_symbolic_batch_fixed_batch_and_overrides():
    declared = [("x", ["N", 3, 8, 8])]
    assert resolve_input_shapes(declared, batch=None, shapes={}) == ({"x": (1, 3, 8, 8)}, 1)
    assert resolve_input_shapes(declared, batch=4, shapes={}) == ({"x": (4, 3, 8, 8)}, 4)
    assert resolve_input_shapes([("x", [8, 3, 8, 8])], batch=None, shapes={}) == ({"x": (8, 3, 8, 8)}, 8)
    with pytest.raises(BadArgument, match="fixed batch of 1.*--dynamic-batch"):
        resolve_input_shapes([("x", [1, 3, 8, 8])], batch=2, shapes={})
    with pytest.raises(BadArgument, match="dimension 2 is fixed at 8"):
        resolve_input_shapes(declared, batch=None, shapes={"x": (1, 3, 9, 8)})
    with pytest.raises(BadArgument, match="has 3 dimensions but the model declares 4"):
        resolve_input_shapes(declared, batch=None, shapes={None: (1, 3, 8)})
    with pytest.raises(BadArgument, match="inputs are x"):
        resolve_input_shapes(declared, batch=None, shapes={"nope": (1, 3, 8, 8)})
    with pytest.raises(BadArgument, match="contradicts"):
        resolve_input_shapes(declared, batch=2, shapes={"x": (3, 3, 8, 8)})


def test_symbolic_spatial_dims_need_a_shape_or_metadata():
    declared = [("image", ["N", 3, "H", "W"])]
    with pytest.raises(BadArgument, match="symbolic dimension 'H'.*--shape image:"):
        resolve_input_shapes(declared, batch=None, shapes={})
    meta = Metadata(model="m", alpha=1.0, res=64, num_classes=10, weights="seed:0", input_name="image",
                    input_shape=("batch", 3, 64, 64))  # fmt: skip
    assert resolve_input_shapes(declared, batch=2, shapes={}, metadata=meta) == ({"image": (2, 3, 64, 64)}, 2)


def test_multi_input_model_with_symbolic_batch(multi_input_onnx):
    report = edgekit.bench(multi_input_onnx, options=BenchOptions(batch=3, **QUICK))
    shapes = {i.name: (i.shape, i.dtype) for i in report.inputs}
    assert shapes == {"x": ((3, 4), "float32"), "y": ((3, 4), "float32"), "k": ((3,), "int64")}
    assert report.batch == 3 and report.model is None and report.gmacs is None
    assert report.providers[0] == "CPUExecutionProvider" and report.iterations == 3
    assert report.throughput == pytest.approx(3 / (report.latency_ms.mean / 1e3))


def test_symbolic_spatial_model_runs_with_shape(spatial_onnx):
    report = edgekit.bench(spatial_onnx, options=BenchOptions(shapes=("2x3x16x16",), **QUICK))
    assert report.inputs[0].shape == (2, 3, 16, 16) and report.inputs[0].declared_shape == ("N", 3, "H", "W")
    assert report.batch == 2


# --------------------------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"threads": 0}, "threads must be >= 1"),
        ({"threads": "two"}, "threads must be a whole number"),
        ({"batch": 0}, "batch must be >= 1"),
        ({"batch": -2}, "batch must be >= 1"),
        ({"batch": 1.5}, "batch must be a whole number"),
        ({"iters": 0}, "iters must be >= 1"),
        ({"warmup": -1}, "warmup must be >= 0"),
        ({"duration_s": 0}, "duration must be > 0"),
        ({"duration_s": "nan"}, "duration must be a finite number"),
        ({"iters": 5, "duration_s": 1.0}, "either --iters or --duration"),
        ({"providers": ("gpu",)}, "unknown execution provider"),
        ({"providers": ()}, "no execution provider"),
        ({"shapes": ("input:1xbig",)}, "shape"),
        ({"shapes": ("a:1x2", "a:1x3")}, "given twice"),
        ({"cudnn_conv_algo_search": "fast"}, "EXHAUSTIVE"),
    ],
)
def test_bad_options_are_refused_at_construction(kwargs, needle):
    with pytest.raises(BadArgument, match=needle):
        BenchOptions(**kwargs)


def test_options_are_frozen_and_normalised():
    options = BenchOptions(threads="2", batch="4", warmup="0", duration_s="1.5")
    assert (options.threads, options.batch, options.warmup, options.duration_s, options.iters) == (2, 4, 0, 1.5, None)
    assert BenchOptions().iters == 100
    with pytest.raises(Exception):
        options.threads = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------------------------
# Reports from a real edgekit model
# --------------------------------------------------------------------------------------------------------------------


def test_report_of_an_edgekit_export(edgekit_onnx):
    path, meta = edgekit_onnx
    events: list[tuple] = []
    report = edgekit.bench(
        path, options=BenchOptions(threads=1, batch=2, warmup=2, iters=4), progress=lambda *e: events.append(e)
    )
    assert (report.model, report.alpha, report.res, report.macs, report.params) == (
        "mobilenet_v2", 0.25, 32, meta.macs, meta.params,
    )  # fmt: skip
    assert report.threads == 1 and report.batch == 2 and report.inputs[0].shape == (2, 3, 32, 32)
    assert report.providers == ("CPUExecutionProvider",) and report.io_binding is False
    assert report.latency_with_copies_ms is None
    assert report.gmacs == pytest.approx(meta.macs * 2 / (report.latency_ms.mean / 1e3) / 1e9)
    assert report.session_create_ms > 0 and report.first_inference_ms > 0 and report.peak_rss_mib > 0
    assert report.system.ort_version == ort.__version__ and report.system.cpu_name
    assert report.nodes_per_provider and set(report.nodes_per_provider) == {"CPUExecutionProvider"}
    assert ("warmup", 2, 2) in events and events[-1] == ("measure", 4, 4)
    data = json.loads(to_json(report))
    assert set(data["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std", "min", "max"}
    assert data["throughput"] > 0


def test_duration_mode_runs_at_least_once(multi_input_onnx):
    report = edgekit.bench(multi_input_onnx, options=BenchOptions(warmup=1, duration_s=0.05))
    assert report.iterations >= 1 and report.latency_ms.count == report.iterations


def test_compare_torch_needs_edgekit_metadata(multi_input_onnx):
    with pytest.raises(BadModelFile, match="needs edgekit metadata"):
        edgekit.bench(multi_input_onnx, options=BenchOptions(compare_torch=True, **QUICK))


# --------------------------------------------------------------------------------------------------------------------
# The real CLI
# --------------------------------------------------------------------------------------------------------------------


def test_cli_json_with_compare_torch(cli_inprocess, edgekit_onnx):
    result = cli_inprocess("bench", edgekit_onnx[0], "--iters", "3", "--warmup", "1", "--threads", "1", "--compare", "torch",
                           "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress with --json
    data = json.loads(result.stdout)
    assert set(data["latency_ms"]) >= {"p50", "p90", "p95", "p99", "mean", "std", "min", "max"}
    assert data["throughput"] > 0 and data["providers"] == ["CPUExecutionProvider"]
    assert data["model"] == "mobilenet_v2" and data["gmacs"] > 0
    torch_block = data["torch"]
    assert torch_block["threads"] == 1 and torch_block["latency_ms"]["count"] == 3
    assert torch_block["speedup_p50"] == pytest.approx(torch_block["latency_ms"]["p50"] / data["latency_ms"]["p50"])
    assert "eager mobilenet_v2" in torch_block["reference"]


def test_cli_text_report_progress_and_csv_append(cli_inprocess, edgekit_onnx, tmp_path):
    table = tmp_path / "runs.csv"
    for _ in range(2):
        result = cli_inprocess("bench", edgekit_onnx[0], "--iters", "3", "--warmup", "1", "--batch", "2", "--csv",
                               table)
        assert result.returncode == 0, result.stderr
    assert "p50" in result.stdout and "throughput" in result.stdout and "CPUExecutionProvider" in result.stdout
    assert "measuring: 3 runs" in result.stderr and "warm-up: 1 runs" in result.stderr  # progress on stderr
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2 and table.read_text().count("timestamp,") == 1
    assert {r["batch"] for r in rows} == {"2"} and all(float(r["p50_ms"]) > 0 for r in rows)



def test_csv_with_other_columns_is_left_alone(cli_inprocess, edgekit_onnx, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    code, out, err = _triple(cli_inprocess("bench", edgekit_onnx[0], "--iters", "1", "--warmup", "0", "--csv", other))
    assert code != 0 and "other columns" in err and out == ""
    assert other.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("target, needle", [("nodir/x.csv", "does not exist"), ("other.csv", "other columns")])
def test_a_bad_csv_target_is_refused_before_the_benchmark_runs(cli_inprocess, edgekit_onnx, tmp_path, monkeypatch, target,
                                                               needle):
    """A --csv that cannot take the row must not cost a finished (possibly long) benchmark."""
    import importlib

    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    bench_module = importlib.import_module("edgekit.bench")
    monkeypatch.setattr(bench_module, "bench", lambda *a, **k: pytest.fail("the benchmark ran before the --csv check"))
    code, out, err = _triple(cli_inprocess("bench", edgekit_onnx[0], "--duration", "60", "--csv", tmp_path / target))
    assert code == 2 and needle in err and out == ""


def test_compare_text_says_which_is_faster(edgekit_onnx):
    import dataclasses

    from edgekit.cli.bench import format_report

    report = edgekit.bench(edgekit_onnx[0], options=BenchOptions(compare_torch=True, threads=1, warmup=1, iters=3))
    faster = dataclasses.replace(report, torch=dataclasses.replace(report.torch, speedup_p50=4.0, speedup_mean=3.9))
    slower = dataclasses.replace(report, torch=dataclasses.replace(report.torch, speedup_p50=0.5, speedup_mean=0.6))
    assert "ONNX Runtime is 4.00x faster than eager PyTorch" in format_report(faster)
    text = format_report(slower)
    assert "eager PyTorch is 2.00x faster than ONNX Runtime" in text and "ONNX Runtime is 0.50x faster" not in text


def test_cli_cuda_refused_without_numbers(cli, edgekit_onnx):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA execution provider")
    result = cli("bench", edgekit_onnx[0], "--provider", "cuda")
    assert result.returncode == 1
    assert result.stdout == ""  # never a CPU number under a CUDA label
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "onnxruntime-gpu" in lines[0] and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "garbage.onnx").write_bytes(b"this is not a protobuf \x00\xff" * 10)
    (folder / "dir.onnx").mkdir()
    return {"missing": folder / "missing.onnx", **{p.stem: p for p in folder.iterdir()}}


def _triple(result) -> tuple[int, str, str]:
    return result.returncode, result.stdout, result.stderr


BAD_INPUT_CASES = [
    ("missing", [], 1, "does not exist"),
    ("empty", [], 1, "is empty"),
    ("garbage", [], 1, "not a model ONNX Runtime can load"),
    ("dir", [], 1, "is a folder"),
    ("good", ["--provider", "warp"], 2, "unknown execution provider"),
    ("good", ["--batch", "0"], 2, "batch must be >= 1"),
    ("good", ["--batch", "many"], 2, "batch must be a whole number"),
    ("good", ["--iters", "0"], 2, "iters must be >= 1"),
    ("good", ["--iters", "1e12"], 2, "for a long run pass --duration"),
    ("good", ["--threads", "0"], 2, "threads must be >= 1"),
    ("good", ["--warmup", "-1"], 2, "warmup must be >= 0"),
    ("good", ["--duration", "-1"], 2, "duration must be > 0"),
    ("good", ["--shape", "input:1x3x64x64"], 2, "dimension 2 is fixed at 32"),
    ("good", ["--shape", "input:1x3x32"], 2, "has 3 dimensions"),
    ("good", ["--shape", "other:1x3x32x32"], 2, "inputs are input"),
    ("good", ["--iters", "3", "--duration", "1"], 2, "not allowed with"),
    ("multi", ["--compare", "torch"], 1, "needs edgekit metadata"),
]


def _bad_path(file, bad_files, edgekit_onnx, multi_input_onnx):
    return {"good": edgekit_onnx[0], "multi": multi_input_onnx}.get(file) or bad_files[file]


@pytest.mark.parametrize("file, extra, code, needle", BAD_INPUT_CASES)
def test_cli_bad_input_is_one_line(cli_inprocess, bad_files, edgekit_onnx, multi_input_onnx, file, extra, code, needle):
    path = _bad_path(file, bad_files, edgekit_onnx, multi_input_onnx)
    got, out, err = _triple(cli_inprocess("bench", path, *extra))
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0] and lines[0].startswith("edgekit")
    assert out == ""


@pytest.mark.parametrize("case", ["not a model ONNX Runtime can load", "dimension 2 is fixed at 32"])
def test_cli_bad_input_in_a_real_process_has_no_traceback(cli, bad_files, edgekit_onnx, multi_input_onnx, case):
    """A garbage file; a shape that does not fit the model."""
    file, extra, code, needle = next(c for c in BAD_INPUT_CASES if c[3] == case)
    result = cli("bench", _bad_path(file, bad_files, edgekit_onnx, multi_input_onnx), *extra)
    assert result.returncode == code
    assert result.stderr.strip().count("\n") == 0 and needle in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_provider_that_takes_no_node_is_refused(edgekit_onnx):
    """A provider can be active and run nothing (every node handed to the CPU): that is a CPU number too."""
    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this ONNX Runtime build has no Azure execution provider to show it with")
    with pytest.raises(ProviderUnavailable, match="assigned it none of the model's nodes.*CPUExecutionProvider"):
        edgekit.bench(edgekit_onnx[0], options=BenchOptions(providers=("AzureExecutionProvider",), **QUICK))


def test_nodes_assigned_check_with_a_faked_assignment():
    class Subgraph:
        def __init__(self, ep, n):
            self.ep_name, self._n = ep, n

        def get_nodes(self):
            return [object()] * self._n

    class Session:
        def __init__(self, parts):
            self.parts = parts

        def get_provider_graph_assignment_info(self):
            return [Subgraph(ep, n) for ep, n in self.parts]

    bench_module.check_nodes_assigned(Session([("CUDAExecutionProvider", 90), ("CPUExecutionProvider", 3)]), "CUDAExecutionProvider")
    with pytest.raises(ProviderUnavailable, match="none of the model's nodes"):
        bench_module.check_nodes_assigned(Session([("CPUExecutionProvider", 93)]), "CUDAExecutionProvider")


def test_compare_torch_finds_state_dict_weights_next_to_the_model(tmp_path, monkeypatch):
    """An export made from --weights FILE, moved to another folder with its weights: --compare torch rebuilds it."""
    from edgekit.export import ExportOptions, export

    weights = tmp_path / "w.pth"
    torch.save(edgekit.build_model("mobilenet_v2", alpha=0.35, seed=5)[0].state_dict(), weights)
    monkeypatch.chdir(tmp_path)
    result = export("mobilenet_v2", alpha=0.35, res=32, out_dir="out",
                    options=ExportOptions(formats=("onnx",), weights="w.pth", verify=False, simplify=False))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    result.files["onnx"].rename(moved / "m.onnx")
    weights.rename(moved / "w.pth")
    report = edgekit.bench(moved / "m.onnx", options=BenchOptions(compare_torch=True, threads=1, warmup=0, iters=2))
    assert report.torch is not None and report.torch.latency_ms.count == 2
