"""Nothing lost: an interrupted or crashed export keeps the earlier good export; concurrent exports never mix."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.export import STAGING_PREFIX, ExportOptions, export

ARGS = ["--alpha", "0.35", "--res", "64", "--no-simplify"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _staging(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX)]


def _consistent(folder: Path) -> bool:
    manifest = json.loads((folder / "manifest.json").read_text())
    return all(
        hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest() == f["sha256"] for f in manifest["files"]
    )


@pytest.fixture
def earlier(tmp_path) -> tuple[Path, dict[str, bytes], Path]:
    """A good export in a folder, plus a weights file that makes a later export's bytes differ."""
    folder = tmp_path / "out"
    export("mobilenet_v2", alpha=0.35, res=64, out_dir=folder, options=ExportOptions(simplify=False))
    other = tmp_path / "other.pth"
    torch.save(edgekit.get_model("mobilenet_v2", alpha=0.35).state_dict() | {
        "classifier.1.bias": torch.ones(1000)}, other)
    return folder, _snapshot(folder), other


def test_sigint_mid_export_keeps_the_earlier_export(earlier):
    folder, before, other = earlier
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "export", "mobilenet_v2", *ARGS, "--weights", str(other), "--out", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    seen = []
    for line in proc.stdout:  # interrupt once the export is past fusion, i.e. while it writes files
        seen.append(line)
        if line.startswith("fuse"):
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert seen and seen[-1].startswith("fuse"), seen
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert _snapshot(folder) == before
    assert _staging(folder) == []


def test_crash_mid_write_keeps_the_earlier_export_and_the_next_export_cleans_up(earlier):
    folder, before, other = earlier
    crash = (
        "import importlib, os, sys\n"
        "ex = importlib.import_module('edgekit.export')  # the module (edgekit.export is also the function)\n"
        "def boom(job, path):\n"
        "    path.write_bytes(b'half an onnx')\n"
        "    os._exit(3)  # a hard crash: no exception handler, no cleanup\n"
        "import dataclasses\n"
        "ex.FORMATS['onnx'] = dataclasses.replace(ex.FORMATS['onnx'], write=boom)\n"
        "ex.export('mobilenet_v2', alpha=0.35, res=64, out_dir=sys.argv[1],\n"
        "          options=ex.ExportOptions(formats=('torchscript', 'onnx'), weights=sys.argv[2]))\n"
    )
    result = subprocess.run([sys.executable, "-c", crash, str(folder), str(other)], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert _snapshot(folder) == before  # the good files are untouched
    assert len(_staging(folder)) == 1  # the crashed process could not clean up its staging folder...
    export("mobilenet_v2", alpha=0.35, res=64, out_dir=folder, options=ExportOptions(simplify=False))
    assert _staging(folder) == []  # ...the next export in that folder does
    assert _consistent(folder)


def test_two_exports_to_one_folder_at_once_never_mix(earlier):
    folder, _, other = earlier
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [
        subprocess.Popen([sys.executable, "-m", "edgekit", "export", "mobilenet_v2", *ARGS, *extra, "--out", str(folder)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        for extra in ([], ["--weights", str(other)])
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert _consistent(folder)  # every file is the one the manifest describes: one export's complete set
    assert _staging(folder) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["weights"] in ("seed:0", f"file:{other}")


def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_export(earlier, monkeypatch):
    """Python drops exceptions raised in __del__ / weakref callbacks, and the exporters run many: a Ctrl-C landing
    there must still stop the export before it commits, not be lost."""
    import importlib

    folder, before, other = earlier
    export_module = importlib.import_module("edgekit.export")
    real = export_module.FORMATS["torchscript"]

    def write_then_lose_a_ctrl_c(job, path):
        details = real.write(job, path)
        try:
            signal.raise_signal(signal.SIGINT)  # what a finalizer running at this moment would swallow
        except KeyboardInterrupt:
            pass
        return details

    import dataclasses

    monkeypatch.setitem(export_module.FORMATS, "torchscript", dataclasses.replace(real, write=write_then_lose_a_ctrl_c))
    with pytest.raises(KeyboardInterrupt):
        export("mobilenet_v2", alpha=0.35, res=64, out_dir=folder,
               options=ExportOptions(formats=("torchscript",), weights=str(other), simplify=False))
    assert _snapshot(folder) == before and _staging(folder) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_the_commit_holds_a_ctrl_c_until_every_file_is_in_place(tmp_path, monkeypatch):
    """A Ctrl-C during the renames (delivered to any thread) waits until the set is complete, then is raised."""
    import importlib

    export_module = importlib.import_module("edgekit.export")
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    out.mkdir()
    names = ["a.onnx", "b.pt", "manifest.json"]
    for name in names:
        (staging / name).write_text(name)
    real_replace = os.replace
    calls = []

    def replace_with_a_ctrl_c(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # arrives after the first rename
        real_replace(src, dst)

    monkeypatch.setattr(export_module.os, "replace", replace_with_a_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        export_module._commit(staging, out, names)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # all three moved before the interrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
