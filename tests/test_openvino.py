"""The OpenVINO runtime: verify, bench and eval run ONNX files on it through the runtime layer; fp32 is forced and
read back (its CPU plugin computes fp32 models in bf16 by default where the CPU has AVX512-BF16 or AMX); the device
that really ran is reported; a missing extra, an absent device and a broken file are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

import edgekit  # noqa: E402
from edgekit.cli import main as cli_main  # noqa: E402
from edgekit.errors import BadModelFile, MissingExtra, ProviderUnavailable  # noqa: E402
from edgekit.runtimes import RUNTIMES, RunOptions, open_runner  # noqa: E402


@pytest.fixture(scope="module")
def onnx_file(small_export) -> Path:
    return small_export.files["onnx"]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def test_verify_on_openvino_passes_fp32_against_pytorch(onnx_file):
    report = edgekit.verify(onnx_file, options=edgekit.VerifyOptions(runtime="openvino"))
    assert report.runtime == "openvino" and report.passed, report.summary()
    assert report.active_providers == ("CPU",)  # EXECUTION_DEVICES of the compiled model
    assert "f32" in report.candidate


def test_openvino_outputs_match_onnx_runtime_and_precision_is_read_back(onnx_file):
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64), dtype=np.float32)
    with open_runner(onnx_file, "openvino") as ov, open_runner(onnx_file, "onnxruntime") as ort:
        assert ov.precision == "f32" and ov.config["INFERENCE_PRECISION_HINT"] == "f32"
        assert ov.inputs[0].shape == (1, 3, 64, 64) and ov.metadata.model == "mobilenet_v2"
        got, want = ov.run(x)[0], ort.run(x)[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_bf16_is_an_explicit_labelled_choice(onnx_file):
    """bf16 computes faster where the CPU has it and is labelled everywhere; it is not fp32 numerics."""
    flags = _cpu_flags()
    if not ({"avx512_bf16", "amx_bf16"} & flags):
        with pytest.raises(ProviderUnavailable, match="bf16"):
            open_runner(onnx_file, "openvino", options=RunOptions(precision="bf16"))
        return
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64), dtype=np.float32)
    with open_runner(onnx_file, "openvino", options=RunOptions(precision="bf16")) as bf16, \
            open_runner(onnx_file, "onnxruntime") as ort:
        assert bf16.precision == "bf16" and bf16.providers == ("CPU bf16",)
        assert any("bf16" in note for note in bf16.notes())
        got, want = bf16.run(x)[0], ort.run(x)[0]
    assert np.abs(got - want).max() > 1e-4 * np.abs(want).max()  # far outside what fp32 allows


def test_bench_runs_on_openvino_with_threads_and_reports_the_device(onnx_file, capsys):
    assert cli_main(["bench", str(onnx_file), "--runtime", "openvino", "--threads", "1", "--iters", "5",
                     "--warmup", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runtime"] == "openvino" and report["providers"] == ["CPU"] and report["threads"] == 1
    assert report["latency_ms"]["p50"] > 0 and report["system"]["runtime_version"].startswith("openvino 2")


def test_eval_on_openvino_predicts_what_onnx_runtime_predicts(onnx_file, tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / "images.npz"
    np.savez(data, x=rng.standard_normal((12, 3, 64, 64), dtype=np.float32), y=rng.integers(0, 1000, 12))
    from edgekit.eval import EvalOptions, evaluate

    on_ov = evaluate(onnx_file, data, options=EvalOptions(runtime="openvino", batch=4))
    on_ort = evaluate(onnx_file, data, options=EvalOptions(runtime="onnxruntime", batch=4))
    assert on_ov.runtime == "openvino" and on_ov.images == 12
    assert on_ov.predictions == on_ort.predictions and on_ov.top1 == on_ort.top1


def test_a_device_that_is_not_there_is_one_line(onnx_file, capsys):
    import openvino

    if any(d.startswith("GPU") for d in openvino.Core().available_devices):
        pytest.skip("this machine has an OpenVINO GPU")
    assert cli_main(["bench", str(onnx_file), "--runtime", "openvino", "--provider", "gpu", "--iters", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "OpenVINO device 'gpu' is not available here (available: CPU)" in err


def test_missing_extra_names_the_install_command(onnx_file, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(RUNTIMES, "openvino", replace(RUNTIMES["openvino"], requires="edgekit_no_such_module"))
    with pytest.raises(MissingExtra, match=r"pip install -e '\.\[openvino\]'"):
        open_runner(onnx_file, "openvino")


def test_a_file_that_is_not_onnx_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(BadModelFile, match="not an ONNX model"):
        open_runner(bad, "openvino")


def test_an_fp16_file_keeps_its_tensor_names_and_verifies(onnx_file, tmp_path):
    """Compiling an fp16 file fuses its boundary Casts into the ports, which then carry two names each
    ('input' and 'graph_input_cast_0'); the runner must report the file's own names, or the metadata check fails."""
    out = tmp_path / "m_fp16.onnx"
    edgekit.quantize(onnx_file, options=edgekit.QuantizeOptions(to="fp16", out=str(out), latency=False))
    with open_runner(out, "openvino") as ov, open_runner(out, "onnxruntime") as ort:
        assert [s.name for s in ov.inputs] == [s.name for s in ort.inputs] == ["input"]
        assert [s.name for s in ov.outputs] == [s.name for s in ort.outputs]
    report = edgekit.verify(out, options=edgekit.VerifyOptions(runtime="openvino"))
    assert report.passed and report.tolerance.name == "fp16", report.summary()
