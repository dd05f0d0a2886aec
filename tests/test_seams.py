"""The seams: a new runtime and a new export format are registered from this file alone, and export, verify and
bench use them with no edit anywhere else. Also: options are declared once, and `import edgekit` stays light."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.cli import main as cli_main
from edgekit.formats import Format, register_format, unregister_format
from edgekit.metadata import Metadata
from edgekit.runtimes import Runner, RuntimeSpec, TensorSpec, register_runtime, unregister_runtime

MAGIC = b"EKTEST01"


# --- a minimal format: TorchScript bytes behind a magic header, metadata as a JSON line --------------------------
def _write(job, path: Path) -> dict:
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.jit.save(torch.jit.freeze(torch.jit.trace(job.fused, job.example).eval()), buffer)
    path.write_bytes(MAGIC + job.metadata.to_json().encode() + b"\n" + buffer.getvalue())
    return {"container": "magic"}


def _split(path: Path) -> tuple[Metadata, bytes]:
    data = path.read_bytes()
    header, _, body = data[len(MAGIC):].partition(b"\n")
    return Metadata.from_json(header, where=path.name), body


class MagicRunner(Runner):
    """The minimal runtime: the TorchScript inside the container, on the CPU."""

    runtime = "magic"

    def __init__(self, path: Path, options, fmt) -> None:
        self.path, self.format = path, fmt.name
        self.metadata, body = _split(path)
        self.module = torch.jit.load(io.BytesIO(body)).eval()
        meta = self.metadata
        self.inputs = (TensorSpec(meta.input_name, tuple(meta.input_shape), "float32"),)
        self.outputs = (TensorSpec(meta.output_name, (meta.input_shape[0], meta.num_classes), "float32"),)
        self.providers, self.version, self.label = ("magic cpu",), "magic 1.0", f"{path.name} (magic)"

    def _run(self, feeds):
        with torch.inference_mode():
            return [self.module(torch.from_numpy(next(iter(feeds.values())))).numpy()]


@pytest.fixture
def plugins():
    fmt = register_format(Format(
        "magic", ".magic", "Magic", _write, lambda p: _split(p)[0], lambda head: head.head.startswith(MAGIC),
        default_runtime="magic",
    ))
    runtime = register_runtime(RuntimeSpec("magic", "Magic", ("magic", "onnx"), lambda p, o, f: _open(p, o, f)))
    yield fmt, runtime
    unregister_format("magic")
    unregister_runtime("magic")


def _open(path, options, fmt):
    if fmt.name == "onnx":  # the same runtime also runs ONNX, through ONNX Runtime with its own runner
        from edgekit.runtimes.onnxruntime import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(path, options)
        runner.runtime = "magic"  # type: ignore[misc]
        return runner
    return MagicRunner(path, options, fmt)


def test_a_format_and_a_runtime_registered_here_are_used_by_export_verify_and_bench(plugins, tmp_path):
    result = edgekit.export("mobilenet_v2", alpha=0.35, res=64, out_dir=tmp_path / "e",
                            options=edgekit.ExportOptions(formats=("magic", "onnx")))
    magic = result.files["magic"]
    assert magic.suffix == ".magic" and magic.read_bytes().startswith(MAGIC)
    entry = next(f for f in result.manifest["files"] if f["format"] == "magic")
    assert entry["container"] == "magic" and entry["bytes"] == magic.stat().st_size
    assert all(c.ok for c in result.checks if c.format == "magic")  # export's self-check ran it through verify

    report = edgekit.verify(magic)
    assert report.passed and report.runtime == "magic" and report.format == "magic"
    assert report.active_providers == ("magic cpu",)

    timing = edgekit.bench(magic, options=edgekit.BenchOptions(warmup=1, iters=3))
    assert timing.runtime == "magic" and timing.providers == ("magic cpu",) and timing.latency_ms.count == 3
    assert timing.model == "mobilenet_v2" and timing.gmacs is not None

    on_onnx = edgekit.verify(result.files["onnx"], options=edgekit.VerifyOptions(runtime="magic"))
    assert on_onnx.passed and on_onnx.runtime == "magic"


def test_the_new_format_is_detected_by_content_and_a_broken_copy_fails_verify(plugins, tmp_path):
    result = edgekit.export("mobilenet_v2", alpha=0.35, res=64, out_dir=tmp_path / "e",
                            options=edgekit.ExportOptions(formats=("magic",), verify=False))
    renamed = tmp_path / "no_suffix.bin"
    renamed.write_bytes(result.files["magic"].read_bytes())
    assert edgekit.verify(renamed).passed  # found by its content, not its name

    meta, body = _split(renamed)
    broken = tmp_path / "broken.magic"
    other = json.loads(meta.to_json()) | {"alpha": 0.5}  # metadata describing another width than the program
    broken.write_bytes(MAGIC + json.dumps(other).encode() + b"\n" + body)
    report = edgekit.verify(broken)
    assert not report.passed and report.runtime == "magic"
    assert any(not o.passed for c in report.cases for o in c.outputs)


def test_the_cli_takes_the_new_runtime_and_format(plugins, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["export", "mobilenet_v2", "--alpha", "0.35", "--res", "64", "--format", "magic", "--out",
                     str(out), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    magic = out / manifest["files"][0]["name"]
    assert cli_main(["verify", str(magic), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runtime"] == "magic"
    assert cli_main(["bench", str(magic), "--iters", "2", "--warmup", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runtime"] == "magic"


def test_a_format_only_option_is_refused_naming_the_format():
    with pytest.raises(edgekit.errors.BadArgument, match="--opset applies to the onnx format only"):
        edgekit.ExportOptions(formats=("torchscript",), opset=18)
    assert edgekit.ExportOptions(formats=("onnx", "pt2"), opset=18).opset == 18
    assert edgekit.ExportOptions(formats=("pt2",), simplify=False).formats == ("pt2",)  # turning a step off is fine


def test_a_runtime_that_cannot_run_a_format_says_which_can(tmp_path):
    from edgekit.runtimes import open_runner

    result = edgekit.export("mobilenet_v2", alpha=0.35, res=64, out_dir=tmp_path / "e",
                            options=edgekit.ExportOptions(formats=("pt2",), verify=False))
    with pytest.raises(edgekit.errors.BadArgument, match="cannot run torch.export pt2 files.*torch"):
        open_runner(result.files["pt2"], "onnxruntime")


def test_options_are_declared_once_for_flags_and_presets():
    from edgekit.export import ExportOptions
    from edgekit.options import declared
    from edgekit.presets import KEYS

    fields = {f.name for f in dataclasses.fields(ExportOptions)}
    assert fields <= set(KEYS)  # every export option is a preset key ...
    parser = __import__("edgekit.cli", fromlist=["build_parser"]).build_parser()
    export_parser = parser._subparsers._group_actions[0].choices["export"]
    dests = {a.dest for a in export_parser._actions}
    assert {n for n, (_f, spec) in declared(ExportOptions).items() if spec.cli} <= dests  # ... and a CLI flag


def test_import_edgekit_is_light():
    code = ("import sys; import edgekit; "
            "print([m for m in ('torch', 'onnxruntime', 'onnx', 'torch.onnx', 'torchvision') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # nothing heavy until a command needs it (tools/ measures the time)


def _shape(report: dict) -> dict:
    """The report's shape: its keys, and the keys of its fixed-structure sections."""
    return {"top": sorted(report), "latency_ms": sorted(report["latency_ms"]), "system": sorted(report["system"]),
            "inputs": [sorted(i) for i in report["inputs"]]}


def test_bench_of_pt2_and_torchscript_has_the_report_shape_of_onnx(tmp_path, capsys):
    result = edgekit.export("mobilenet_v2", alpha=0.35, res=32, out_dir=tmp_path / "e",
                            options=edgekit.ExportOptions(formats=("onnx", "torchscript", "pt2"), verify=False))
    reports = {}
    for fmt in ("onnx", "torchscript", "pt2"):
        assert cli_main(["bench", str(result.files[fmt]), "--iters", "3", "--warmup", "1", "--json"]) == 0
        reports[fmt] = json.loads(capsys.readouterr().out)
    onnx_shape = _shape(reports["onnx"])
    for fmt in ("torchscript", "pt2"):
        assert _shape(reports[fmt]) == onnx_shape, fmt
        assert reports[fmt]["runtime"] == "torch" and reports[fmt]["format"] == fmt
        assert reports[fmt]["model"] == "mobilenet_v2" and reports[fmt]["latency_ms"]["count"] == 3
    assert reports["onnx"]["runtime"] == "onnxruntime"
