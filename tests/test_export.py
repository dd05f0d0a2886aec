"""Export: the main job through the real CLI, every model to both formats, dynamic batch, atomicity, presets."""

from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import edgekit
from conftest import zoo_models
from edgekit.errors import BadArgument, BadConfig, ExportFailed
from edgekit.export import FORMATS, STAGING_PREFIX, ExportOptions, export
from edgekit.metadata import TORCHSCRIPT_EXTRA_FILE, Metadata
from edgekit.presets import load_jobs, load_presets, make_job

REPO = Path(__file__).resolve().parents[1]
STAGE_WORDS = {"build", "fuse", "onnx", "simplify", "torchscript", "pt2", "check", "done"}


def _bn_nodes(path: Path) -> int:
    return sum(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_main_job_through_the_cli(tmp_path):
    """`edgekit export mobilenet_v3 --alpha 0.75 --res 192` exactly as in the README, with Python's default warning
    filters: the user sees our stage lines and nothing of the exporters' chatter or deprecation warnings."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run([sys.executable, "-m", "edgekit", "export", "mobilenet_v3", "--alpha", "0.75", "--res", "192"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    for stage in ("build", "fuse", "onnx", "simplify", "torchscript", "check", "done"):
        assert any(line.startswith(stage) for line in lines), stage
    assert all(line.split(" ", 1)[0] in STAGE_WORDS or line.startswith("  ") for line in lines), result.stdout
    folder = tmp_path / "exports" / "mobilenet_v3_large_a0.75_r192"
    onnx_path = folder / "mobilenet_v3_large_a0.75_r192.onnx"
    pt_path = folder / "mobilenet_v3_large_a0.75_r192.pt"
    assert sorted(p.name for p in folder.iterdir()) == sorted([onnx_path.name, pt_path.name, "manifest.json"])

    model = onnx.load(str(onnx_path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "input" and dims == [1, 3, 192, 192]
    assert _bn_nodes(onnx_path) == 0

    x = np.random.default_rng(1).standard_normal((1, 3, 192, 192)).astype(np.float32)
    reference = edgekit.get_model("mobilenet_v3_large", alpha=0.75)
    with torch.no_grad():
        eager = reference(torch.from_numpy(x)).numpy()
        scripted = torch.jit.load(str(pt_path))(torch.from_numpy(x)).numpy()
    onnx_out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(onnx_out - eager).max() < 1e-4
    assert np.abs(scripted - eager).max() < 1e-4
    assert np.abs(onnx_out - scripted).max() < 1e-4

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == "mobilenet_v3_large" and manifest["alpha"] == 0.75 and manifest["res"] == 192
    assert manifest["macs"] / 1e6 == pytest.approx(155 * (192 / 224) ** 2, rel=0.05)
    assert manifest["fusion"]["bn_folded"] == manifest["fusion"]["bn_total"] == 46
    assert all(c["ok"] for c in manifest["checks"]) and manifest["checks"]
    for entry in manifest["files"]:
        import hashlib

        assert hashlib.sha256((folder / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    assert {s["name"] for s in manifest["stages"]} >= {"build", "fuse", "onnx", "simplify", "torchscript", "check"}


def test_json_prints_the_manifest(cli_inprocess, tmp_path):
    result = cli_inprocess("export", "mobilenet_v2", "--alpha", "0.35", "--res", "64", "--format", "onnx", "--json",
                           cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["model"] == "mobilenet_v2" and [f["format"] for f in manifest["files"]] == ["onnx"]


@pytest.mark.parametrize("name", zoo_models())
def test_every_model_exports_to_both_formats(zoo_export, name):
    """Completeness over the registry (alpha 0.25, 64 px, symbolic batch): zero BN nodes, every BN folded, and the
    self-check (edgekit verify) passes both files at batch 1 and 4."""
    result = zoo_export(name)
    assert _bn_nodes(result.files["onnx"]) == 0
    assert result.fuse_report.bn_folded == result.fuse_report.bn_total > 0
    assert result.checks and all(c.ok for c in result.checks)
    assert {c.format for c in result.checks} == {"onnx", "torchscript"}
    assert {c.batch for c in result.checks} == {1, 4}


@pytest.mark.parametrize("name", ["shufflenet_v1_g3", "shufflenet_v1_g8", "shufflenet_v2", "mobilenet_v3_small"])
def test_dynamic_batch_runs_at_batch_1_and_4(zoo_export, name):
    """Checked here independently of verify: ORT and TorchScript against eager PyTorch at batch 1 and 4 (channel
    shuffles must not bake the example batch into a Reshape)."""
    result = zoo_export(name)  # alpha 0.25, 64 px, --dynamic-batch (tests/conftest.py)
    path = result.files["onnx"]
    shape = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert shape[0].dim_param and not shape[0].dim_value  # symbolic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(result.files["torchscript"]))
    reference = edgekit.get_model(name, alpha=0.25)
    for batch in (1, 4):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64)).astype(np.float32)
        with torch.no_grad():
            ref = reference(torch.from_numpy(x)).numpy()
            ts = scripted(torch.from_numpy(x)).numpy()
        out = session.run(None, {"input": x})[0]
        assert out.shape == (batch, 1000)
        assert np.abs(out - ref).max() < 1e-4 * max(1, np.abs(ref).max())
        assert np.abs(ts - ref).max() < 1e-4 * max(1, np.abs(ref).max())
    assert {c.batch for c in result.checks} == {1, 4}


def test_pt2_format(tmp_path):
    result = export("mobilenet_v2", alpha=0.35, res=64, out_dir=tmp_path, options=ExportOptions(formats=("pt2",)))
    program = torch.export.load(str(result.files["pt2"]))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), edgekit.get_model("mobilenet_v2", alpha=0.35)(x), atol=1e-4)


def test_metadata_round_trip(tmp_path):
    result = export("shufflenet_v2", alpha=0.5, res=96, out_dir=tmp_path, options=ExportOptions(opset=18))
    props = {p.key: p.value for p in onnx.load(str(result.files["onnx"])).metadata_props}
    meta = Metadata.from_props(props)
    assert (meta.model, meta.alpha, meta.res, meta.num_classes) == ("shufflenet_v2", 0.5, 96, 1000)
    assert meta.weights == "seed:0" and meta.seed == 0 and meta.opset == 18
    assert meta.input_shape == (1, 3, 96, 96) and meta.input_name == "input"
    assert meta.mean == (0.485, 0.456, 0.406) and meta.params == edgekit.info("shufflenet_v2", alpha=0.5).params
    assert meta.torch_version == torch.__version__ and meta.edgekit_version == edgekit.__version__
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    torch.jit.load(str(result.files["torchscript"]), _extra_files=extra)
    assert Metadata.from_json(extra[TORCHSCRIPT_EXTRA_FILE]) == meta.__class__(**{**meta.__dict__, "opset": None})


def test_weights_file_is_recorded_with_its_hash(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(edgekit.get_model("mobilenet_v2", alpha=0.35, num_classes=10).state_dict(), weights)
    result = export("mobilenet_v2", alpha=0.35, res=64, out_dir=tmp_path / "out",
                    options=ExportOptions(weights=str(weights), num_classes=10, formats=("onnx",)))
    meta = Metadata.from_props({p.key: p.value for p in onnx.load(str(result.files["onnx"])).metadata_props})
    assert meta.weights == f"file:{weights}" and len(meta.weights_sha256) == 64 and meta.num_classes == 10


def test_a_failure_mid_export_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    export("mobilenet_v2", alpha=0.35, res=64, out_dir=folder)
    before = _snapshot(folder)

    def boom(job, path):
        path.write_bytes(b"half an onnx file")
        raise RuntimeError("simulated crash while writing ONNX")

    # TorchScript is written first, then ONNX crashes: the staged .pt must not replace the good one.
    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], write=boom))
    with pytest.raises(ExportFailed, match="simulated crash"):
        export("mobilenet_v2", alpha=0.35, res=64, out_dir=folder, options=ExportOptions(formats=("torchscript", "onnx"), seed=7))
    assert _snapshot(folder) == before
    assert not any(p.name.startswith(STAGING_PREFIX) for p in folder.iterdir())

    def interrupted(job, path):
        path.write_bytes(b"half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], write=interrupted))
    with pytest.raises(KeyboardInterrupt):
        export("mobilenet_v2", alpha=0.35, res=64, out_dir=folder, options=ExportOptions(formats=("torchscript", "onnx"), seed=7))
    assert _snapshot(folder) == before

    # Another model into the same folder would replace this export's manifest: refused, nothing touched.
    with pytest.raises(BadArgument, match="holds the export of mobilenet_v2_a0.35_r64"):
        export("mobilenet_v1", alpha=0.25, res=64, out_dir=folder)
    assert _snapshot(folder) == before


def test_re_export_with_other_formats_leaves_no_stale_model_beside_the_new_manifest(tmp_path):
    folder = tmp_path / "out"
    (folder).mkdir()
    (folder / "notes.txt").write_text("mine")  # not edgekit's: never touched
    export("mobilenet_v3_small", alpha=0.25, res=64, out_dir=folder, options=ExportOptions(formats=("torchscript",), seed=1))
    assert (folder / "mobilenet_v3_small_a0.25_r64.pt").exists()
    export("mobilenet_v3_small", alpha=0.25, res=64, out_dir=folder, options=ExportOptions(formats=("onnx",), seed=2))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [f["name"] for f in manifest["files"]] == ["mobilenet_v3_small_a0.25_r64.onnx"] and manifest["seed"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "mobilenet_v3_small_a0.25_r64.onnx", "notes.txt"]


def test_a_failed_export_into_a_new_folder_leaves_nothing(tmp_path, monkeypatch):
    import importlib

    export_module = importlib.import_module("edgekit.export")  # the module; edgekit.export is the function

    def failing_check(*args, **kwargs):
        raise ExportFailed("self-check failed (simulated)")

    monkeypatch.setattr(export_module, "self_check", failing_check)
    with pytest.raises(ExportFailed):
        export("mobilenet_v2", alpha=0.35, res=64, out_dir=tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []  # every folder the export created is gone, not just the last one


def test_a_module_exports_and_comes_back_in_its_own_mode(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2.0)
    model.train()
    model[5].eval()  # a mixed-mode module must come back mixed
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = export(model, res=32, out_dir=tmp_path)
    assert [m.training for m in model.modules()] == [True, True, True, True, True, True, False]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert result.fuse_report.bn_folded == 1 and _bn_nodes(result.files["onnx"]) == 0
    assert result.checks and all(c.ok for c in result.checks)


def test_options_are_validated():
    with pytest.raises(BadArgument, match="unknown export format 'tflite'"):
        ExportOptions(formats=("onnx", "tflite"))
    with pytest.raises(BadArgument, match="opset"):
        ExportOptions(opset=9)
    assert ExportOptions(formats="onnx, torchscript").formats == ("onnx", "torchscript")
    for bad, needle in [({"dynamic_batch": "yes"}, "dynamic_batch"), ({"simplify": 1}, "simplify"),
                        ({"num_classes": 0}, "num_classes"), ({"seed": -1}, "seed"), ({"opset": "x"}, "opset")]:
        with pytest.raises(BadArgument, match=needle):
            ExportOptions(**bad)


def test_a_multi_model_preset_applies_cli_flags_to_every_export(tmp_path):
    from edgekit.presets import load_jobs

    preset = tmp_path / "zoo.yaml"
    preset.write_text("defaults: {formats: [onnx]}\nexports:\n  - {model: mobilenet_v2, alpha: 0.5, res: 96}\n"
                      "  - {model: shufflenet_v2, alpha: 1.0, res: 128, dynamic_batch: false}\n")
    jobs = load_jobs(preset, {"dynamic_batch": True, "res": 64})
    assert [(j.model, j.alpha, j.res) for j in jobs] == [("mobilenet_v2", 0.5, 64), ("shufflenet_v2", 1.0, 64)]
    assert all(j.options.dynamic_batch and j.options.formats == ("onnx",) for j in jobs)


@pytest.mark.parametrize("preset", sorted((REPO / "export_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_preset_parses(preset):
    jobs = [make_job(entry, str(preset)) for entry in load_presets(preset)]
    assert jobs and all(edgekit.registry.get_spec(j.model) for j in jobs)


def test_shipped_presets_cover_every_family_and_a_multi_model_file():
    families, multi = set(), False
    for preset in (REPO / "export_configs").glob("*.yaml"):
        entries = load_presets(preset)
        multi |= len(entries) > 1
        families |= {edgekit.registry.get_spec(e["model"]).family for e in entries}
    assert multi
    assert families >= {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "shufflenet_v1", "shufflenet_v2", "efficientnet"}


@pytest.mark.parametrize(
    "text, needle",
    [
        ("model: mobilenet_v2\nalfa: 0.5\n", "unknown key 'alfa'"),
        ("model: mobilenet_v2\nres: high\n", "key 'res' must be"),
        ("model: mobilenet_v2\ndynamic_batch: 3\n", "key 'dynamic_batch' must be"),
        ("exports:\n  - {model: mobilenet_v2}\n  - {model: mobilenet_v2, formats: [onnx, tflite]}\n", "exports[1]"),
        ("exports:\n  - {model: mobilenet_v2}\n  - {model: mobilenet_v3_smal}\n", "exports[1]: unknown model"),
        ("exports:\n  - {model: mobilenet_v2}\n  - {model: mobilenet_v2, alpha: 0}\n", "exports[1]: alpha"),
        ("model: mobilenet_v2\nres: 8\n", "resolution 8 is too small"),
        ("model: [unclosed\n", "not valid YAML"),
        ("", "empty"),
    ],
)
def test_bad_presets_name_the_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(BadConfig) as info:
        load_jobs(path)
    assert needle in str(info.value)


def test_cli_flags_override_the_preset(cli_inprocess, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("model: mobilenet_v2\nalpha: 0.5\nres: 96\nformats: [onnx]\n")
    result = cli_inprocess("export", "--config", str(preset), "--alpha", "0.35", "--res", "64", "--json",
                           cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["alpha"] == 0.35 and manifest["res"] == 64
    assert (tmp_path / "exports" / "mobilenet_v2_a0.35_r64" / "mobilenet_v2_a0.35_r64.onnx").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["export", "mobilenet_v9"], "did you mean"),
        (["export", "mobilenet_v2", "--alpha", "-1"], "alpha"),
        (["export", "mobilenet_v2", "--format", "tflite"], "unknown export format"),
        (["export", "mobilenet_v2", "--weights", "missing.pth"], "does not exist"),
        (["export"], "no model given"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(cli, cli_inprocess, tmp_path, args, needle):
    result = (cli if args == ["export"] else cli_inprocess)(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(cli, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        out = blocker / "sub"  # a folder under a file can never be created, even by root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "sub"
    result = cli("export", "mobilenet_v2", "--alpha", "0.35", "--res", "64", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot write to output folder" in result.stderr and "Traceback" not in result.stderr


def test_torchscript_convolutions_are_recorded_without_tf32(tmp_path):
    """Tracing records cuDNN's allow_tf32 flag in every convolution; PyTorch's default (on) would make the file compute
    TF32 on any GPU (measured on an H200: 1.6e-3 of the logits' peak away from fp32, far outside verify's bound)."""
    result = export("mobilenet_v2", alpha=0.35, res=32, out_dir=tmp_path / "e",
                    options=ExportOptions(formats=("torchscript",), verify=False))
    import torch

    graph = torch.jit.load(str(result.files["torchscript"])).graph
    convs = [n for n in graph.nodes() if n.kind() == "aten::_convolution"]
    assert convs and all(list(n.inputs())[-1].toIValue() is False for n in convs)
    assert torch.backends.cudnn.allow_tf32  # the process's own default is left as it was
