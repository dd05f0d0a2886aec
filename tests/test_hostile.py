"""Hostile but realistic input, one test per class: bounded numbers, untrusted metadata, SIGTERM and full disks,
paths, presets checked whole, memory guards, the right diagnosis, and re-export cleanup that trusts nothing.

Each case: non-zero exit, one line on stderr, no traceback, nothing left behind, earlier exports intact. Most run
the CLI in-process (its own parser, dispatch and error handling); signals and full disks need a real process.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekit.export import STAGING_PREFIX, ExportOptions, export

SMALL = ["--alpha", "0.35", "--res", "32"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    result = export("mobilenet_v2", alpha=0.35, res=32, out_dir=folder / "export",
                    options=ExportOptions(simplify=False, verify=False))
    return {"onnx": result.files["onnx"], "pt": result.files["torchscript"], "dir": folder}


def _cli(run, *argv: object) -> tuple[int, str, str]:
    """An in-process CLI run (conftest.cli_inprocess) as (code, stdout, stderr)."""
    result = run(*argv)
    return result.returncode, result.stdout, result.stderr


def _one_line(code: int, err: str, expect: int | None = None) -> str:
    assert code != 0 and (expect is None or code == expect), (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- 1. every number has a range --------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["bench", "{onnx}", "--threads", "10000"], "threads must be <= 256"),
    (["bench", "{onnx}", "--warmup", "1e12"], "warmup must be <= 1000000"),
    (["bench", "{onnx}", "--duration", "1e9"], "duration must be <= 86400"),
    (["bench", "{onnx}", "--device-id", "1e20"], "device id must be <= 64"),
    (["bench", "{onnx}", "--shape", "input:1x3x99999999x32"], "shape"),
    (["export", "mobilenet_v2", "--num-classes", "1000000000"], "num_classes must be <= 100000"),
    (["export", "mobilenet_v2", "--res", "inf"], "resolution"),
    (["export", "mobilenet_v2", "--alpha", "nan"], "alpha"),
    (["verify", "{onnx}", "--seed", "1e30"], "--seed must be"),
    (["verify", "{onnx}", "--batch", "5000"], "--batch must be <= 1024"),
    (["verify", "{onnx}", "--rtol", "inf"], "--rtol must be a finite number"),
    (["sweep", "mobilenet_v2", "--alphas", "0.5", "--res", "inf", "--no-plot"], "resolution 'inf'"),
    (["sweep", "mobilenet_v2", "--alphas", "0.5", "--res", "64", "--threads", "100000", "--no-plot"], "threads"),
])
def test_numbers_out_of_range_are_refused_in_one_line(good, cli_inprocess, tmp_path, argv, needle):
    args = [a.replace("{onnx}", str(good["onnx"])) for a in argv]
    if args[0] in ("export", "sweep"):
        args += ["--out", str(tmp_path / "out")]
    line = _one_line(*_cli(cli_inprocess, *args)[::2], expect=2)
    assert needle in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- 2. metadata is untrusted input ------------------------------------------------------------------------------
def _with_props(src: Path, dst: Path, **changes: str) -> Path:
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({f"edgekit.{k}": v for k, v in changes.items()})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


DAMAGE = {
    "res 1e999": {"res": "1e999"},
    "input_shape 5": {"input_shape": "5"},
    "mean abc": {"mean": '"abc"'},
    "seed past 64 bits": {"seed": str(2**70)},
    "JSON nested 100000 deep": {"mean": "[" * 100_000 + "]" * 100_000},
    "alpha negative": {"alpha": "-1"},
    "num_classes huge": {"num_classes": "1e12"},
    "precision unknown": {"precision": '"int3"'},
}


@pytest.mark.parametrize("command", ["verify", "bench"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_metadata_is_one_line(good, tmp_path, cli_inprocess, command, case):
    path = _with_props(good["onnx"], tmp_path / "damaged.onnx", **DAMAGE[case])
    line = _one_line(*_cli(cli_inprocess, command, path, *(["--iters", "1"] if command == "bench" else []))[::2], expect=1)
    assert "metadata" in line and "damaged" in line, line


def test_damaged_torchscript_metadata_is_one_line(good, tmp_path, cli_inprocess):
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(good["pt"]) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, b'{"model": "mobilenet_v2", "alpha": 1e999}' if item.filename.endswith("edgekit.json")
                         else data)
    line = _one_line(*_cli(cli_inprocess, "verify", damaged)[::2], expect=1)
    assert "damaged" in line


def test_bench_refuses_metadata_that_describes_another_input(good, tmp_path, cli_inprocess):
    """A file whose metadata claims another model's resolution would borrow that model's MACs and reference."""
    lying = _with_props(good["onnx"], tmp_path / "lying.onnx", res="224", input_shape="[1, 3, 224, 224]")
    line = _one_line(*_cli(cli_inprocess, "bench", lying, "--iters", "1", "--compare", "torch")[::2], expect=1)
    assert "does not describe it" in line and "32x32" in line, line
    code, out, err = _cli(cli_inprocess, "verify", lying)
    assert code == 1 and "the graph input is 32x32 but the metadata says res 224" in out + err


# --- 3. SIGTERM and full disks --------------------------------------------------------------------------------------
def test_sigterm_mid_export_exits_143_and_leaves_nothing(good, tmp_path):
    folder = tmp_path / "out"
    export("mobilenet_v2", alpha=0.35, res=32, out_dir=folder, options=ExportOptions(simplify=False, verify=False))
    before = _snapshot(folder)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    # the same stem with another classifier size: a re-export that would replace every file
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "export", "mobilenet_v2", *SMALL, "--no-simplify",
                             "--out", str(folder), "--num-classes", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # terminate once the export is past fusion, i.e. while it writes files
        if line.startswith("fuse"):
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _snapshot(folder) == before
    assert not [p for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_sigterm_mid_sweep_leaves_no_temporary_folder(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore", TMPDIR=str(scratch))
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "sweep", "mobilenet_v2", "--alphas", "0.35,0.5",
                             "--res", "32", "--iters", "5", "--no-plot", "--out", str(tmp_path / "sweep")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if "exporting" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    # the sweep's temporary export folder is gone (onnxruntime itself leaves a ".ses" file in TMPDIR on import)
    assert [p.name for p in scratch.iterdir() if p.name.startswith("edgekit")] == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: a model does not fit on it. Needs root (mount); skipped otherwise."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; run the suite as root to test a full disk")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()[:80]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_full_disk_is_one_line_and_leaves_no_staging(tiny_disk, cli_inprocess, fmt):
    out = tiny_disk / "export"
    line = _one_line(*_cli(cli_inprocess, "export", "mobilenet_v2", *SMALL, "--format", fmt, "--no-verify",
                           *(["--no-simplify"] if fmt == "onnx" else []), "--out", out)[::2], expect=1)
    assert "disk is full" in line, line
    assert not out.exists() or not [p for p in out.iterdir()]


def test_a_sweep_onto_a_full_disk_is_a_failed_row_and_one_line(tiny_disk, cli_inprocess, tmp_path):
    """A sweep goes on past a failing point (its row says why) and ends with exit 1 and one error line."""
    import csv

    code, _, err = _cli(cli_inprocess, "sweep", "mobilenet_v2", "--alphas", "0.35", "--res", "32", "--iters", "2",
                        "--no-plot", "--out", tmp_path / "sweep", "--keep-exports", tiny_disk / "onnx")
    errors = [ln for ln in err.splitlines() if ln.startswith("edgekit")]  # the rest is the sweep's progress
    line = _one_line(code, "\n".join(errors), expect=1)
    assert "failed" in line and "Traceback" not in err
    (row,) = csv.DictReader((tmp_path / "sweep" / "mobilenet_v2_cpu_b1_sweep.csv").open())
    assert "disk is full" in row["error"], row["error"]


# --- 4. paths -------------------------------------------------------------------------------------------------------
LONG = "x" * 300  # longer than any file system's name limit (255)


@pytest.mark.parametrize("argv, needle", [
    (["verify", f"{LONG}.onnx"], "longer than the file system allows"),
    (["bench", f"{LONG}.onnx"], "longer than the file system allows"),
    (["export", "mobilenet_v2", *SMALL, "--out", f"{LONG}/x"], "longer than the file system allows"),
    (["export", "mobilenet_v2", *SMALL, "--weights", f"{LONG}.pth"], "longer than the file system allows"),
    (["export", "--config", f"{LONG}.yaml"], "longer than the file system allows"),
    (["verify", "{onnx}", "--inputs", f"{LONG}.npz"], "longer than the file system allows"),
    (["bench", "{onnx}", "--iters", "1", "--csv", f"{LONG}.csv"], "longer than the file system allows"),
    (["export", "mobilenet_v2", *SMALL, "--out", ""], "is empty; pass a folder path"),
    (["sweep", "mobilenet_v2", "--alphas", "0.5", "--res", "32", "--out", "", "--no-plot"], "--out is empty"),
    (["bench", "{onnx}", "--iters", "1", "--csv", "/dev/null"], "not a regular file"),
])
def test_bad_paths_are_one_line(good, cli_inprocess, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{onnx}", str(good["onnx"])) for a in argv]
    code, _, err = _cli(cli_inprocess, *args)
    line = _one_line(code, err)
    assert needle in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_as_csv_is_refused_without_blocking(good, cli_inprocess, tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    line = _one_line(*_cli(cli_inprocess, "bench", good["onnx"], "--iters", "1", "--csv", fifo)[::2], expect=2)
    assert "not a regular file" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and searches everything: permissions cannot be shown")
def test_unreadable_file_and_unsearchable_folder(good, cli_inprocess, tmp_path):
    locked = tmp_path / "locked.onnx"
    locked.write_bytes(good["onnx"].read_bytes())
    locked.chmod(0)
    assert "permission denied" in _one_line(*_cli(cli_inprocess, "verify", locked)[::2], expect=1)
    folder = tmp_path / "closed"
    folder.mkdir()
    (folder / "m.onnx").write_bytes(good["onnx"].read_bytes())
    folder.chmod(0o600)
    assert "permission denied" in _one_line(*_cli(cli_inprocess, "bench", folder / "m.onnx")[::2], expect=1)


def test_preset_with_an_empty_out_is_refused(cli_inprocess, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text('model: mobilenet_v2\nalpha: 0.35\nres: 32\nout: ""\n')
    line = _one_line(*_cli(cli_inprocess, "export", "--config", preset)[::2], expect=2)
    assert "is empty; pass a folder path" in line


# --- 5. presets are checked whole --------------------------------------------------------------------------------
def test_deeply_nested_yaml_is_one_line(cli_inprocess, tmp_path):
    preset = tmp_path / "deep.yaml"
    preset.write_text("model: " + "[" * 20_000 + "]" * 20_000 + "\n")
    line = _one_line(*_cli(cli_inprocess, "export", "--config", preset)[::2], expect=2)
    assert "nested too deeply" in line or "must be" in line, line


@pytest.mark.parametrize("second", [
    "{model: mobilenet_v2, alpha: 0.5, res: 32, weights: missing.pth}",
    "{model: shufflenet_v2, alpha: 0.5, res: 32, out: first}",
])
def test_a_bad_second_entry_stops_the_run_before_the_first_export(cli_inprocess, tmp_path, monkeypatch, second):
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "zoo.yaml"
    preset.write_text("defaults: {formats: [onnx], verify: false, simplify: false}\nexports:\n"
                      f"  - {{model: mobilenet_v2, alpha: 0.35, res: 32, out: first}}\n  - {second}\n")
    line = _one_line(*_cli(cli_inprocess, "export", "--config", preset)[::2], expect=2)
    assert "exports[1]" in line, line
    assert not (tmp_path / "first").exists()


# --- 6. memory guards everywhere ----------------------------------------------------------------------------------
def test_a_file_declaring_an_absurd_input_is_refused_by_verify_and_bench(cli_inprocess, tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["input"], ["logits"])], "huge",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [64, 3, 60_000, 60_000])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [64, 3, 60_000, 60_000])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 10
    path = tmp_path / "huge.onnx"
    onnx.save(model, path)
    for command, extra in (("verify", ["--against", path]), ("bench", ["--iters", "1"])):
        line = _one_line(*_cli(cli_inprocess, command, path, *extra)[::2])
        assert "GiB" in line, line
    line = _one_line(*_cli(cli_inprocess, "verify", path, "--model", "mobilenet_v2", "--alpha", "0.35")[::2], expect=2)
    assert "larger than the maximum" in line  # rebuilding a reference at that size is refused before anything runs


# --- 7. the right diagnosis -------------------------------------------------------------------------------------
def test_non_finite_inputs_are_blamed_not_the_export(good, cli_inprocess, tmp_path):
    inputs = tmp_path / "nan.npz"
    x = np.zeros((1, 3, 32, 32), np.float32)
    x[0, 0, 0, 0] = np.nan
    np.savez(inputs, x=x)
    line = _one_line(*_cli(cli_inprocess, "verify", good["onnx"], "--inputs", inputs)[::2], expect=2)
    assert "not finite" in line and "diverging" not in line


@pytest.mark.parametrize("kind, needle", [("pt", "exported TorchScript model"), ("onnx", "exported ONNX model")])
def test_an_exported_model_given_as_weights_is_named(good, cli_inprocess, kind, needle):
    line = _one_line(*_cli(cli_inprocess, "export", "mobilenet_v2", *SMALL, "--weights", good[kind], "--format", "onnx")[::2],
                     expect=1)
    assert needle in line and "pickled" not in line, line


# --- 8. re-export cleanup trusts nothing it did not write ---------------------------------------------------------
def test_reexport_removes_only_stale_files_that_still_match_the_manifest(tmp_path):
    folder = tmp_path / "out"
    export("mobilenet_v2", alpha=0.35, res=32, out_dir=folder, options=ExportOptions(verify=False, simplify=False))
    manifest = json.loads((folder / "manifest.json").read_text())
    pt = next(f["name"] for f in manifest["files"] if f["format"] == "torchscript")
    (folder / pt).write_bytes(b"the user's own file, saved under that name after the export")
    manifest["files"].append({"format": "onnx", "name": "notes.txt", "bytes": 5,
                              "sha256": hashlib.sha256(b"other").hexdigest()})
    manifest["files"].append({"format": "onnx", "name": "../outside.txt", "bytes": 3,
                              "sha256": hashlib.sha256(b"abc").hexdigest()})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "notes.txt").write_text("mine!")  # listed, but its digest does not match: not edgekit's
    (tmp_path / "outside.txt").write_text("abc")  # matches, but outside the folder
    export("mobilenet_v2", alpha=0.35, res=32, out_dir=folder,
           options=ExportOptions(formats=("onnx",), verify=False, simplify=False))
    assert (folder / pt).exists() and (folder / "notes.txt").read_text() == "mine!"
    assert (tmp_path / "outside.txt").read_text() == "abc"
