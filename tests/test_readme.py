"""Every command in README.md runs as written (the cheap ones by default, the heavy ones with -m slow).

Commands are the lines of ```bash blocks; they run in order in one scratch folder, where the files the examples
name (model.onnx, model.pt, plain.onnx, my_state_dict.pth, ...) are created first. ```text blocks are real output.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.export import ExportOptions, export

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")

#: Commands that take minutes: run with -m slow.
HEAVY = ("edgekit sweep", "mobile_zoo.yaml", "tools/bench_", "tools/profile_agreement", "tools/paper_tables",
         "--duration 10", "--format pte", "exports/pte/", "--scheme auto", "--precision fp32,fp16,int8",
         "edgekit compare mobilenet_v3", "edgekit compare exports/")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    return [line.split("  #")[0].strip() for block in _blocks("bash") for line in block.splitlines() if line.strip()]


def test_setup_block_is_exactly_install_then_test():
    setup = README.split("<!-- ci:setup -->", 1)[1].split("```", 2)[1].strip().splitlines()
    assert setup == ['pip install -e ".[test]"', "pytest -q"]


def test_the_quick_start_shows_the_three_mission_commands():
    commands = _commands()
    assert "edgekit export mobilenet_v3 --alpha 0.75 --res 192" in commands
    assert any(c.startswith("edgekit verify exports/mobilenet_v3_large_a0.75_r192/") for c in commands)
    assert any(c.startswith("edgekit bench exports/mobilenet_v3_large_a0.75_r192/") for c in commands)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The files the README's examples name, built small."""
    folder = tmp_path_factory.mktemp("readme")
    result = export("mobilenet_v2", alpha=0.35, res=224, out_dir=folder / "m",
                    options=ExportOptions(dynamic_batch=True, simplify=False))
    os.replace(result.files["onnx"], folder / "model.onnx")
    os.replace(result.files["torchscript"], folder / "model.pt")
    torch.save(edgekit.get_model("mobilenet_v2", alpha=0.5).state_dict(), folder / "my_state_dict.pth")
    plain = edgekit.get_model("mobilenet_v2", alpha=0.5, weights=folder / "my_state_dict.pth")
    torch.onnx.export(plain, (torch.randn(1, 3, 160, 160),), str(folder / "plain.onnx"), dynamo=True, external_data=False)
    (folder / "export_configs").symlink_to(REPO / "export_configs")
    (folder / "tools").symlink_to(REPO / "tools")
    (folder / "tests").symlink_to(REPO / "tests")  # the digits model the precision examples load
    return folder


def _heavy(command: str) -> bool:
    return any(h in command for h in HEAVY)


def _params():
    out = []
    for i, command in enumerate(_commands()):
        marks = [pytest.mark.slow] if _heavy(command) else []
        out.append(pytest.param(i, command, marks=marks, id=f"{i:02d}-{command[:60]}"))
    return out


#: indexes of the commands already run in this session's scratch folder
_RAN: set[int] = set()


@pytest.mark.parametrize("index, command", _params())
def test_readme_command_runs_as_written(scratch, cli_inprocess, index, command):
    # A heavy command may use what earlier cheap ones made (exports/digits/ ...): under -m slow those were
    # deselected, so run them first, in order, as the README does.
    for i, earlier in enumerate(_commands()[:index]):
        if i not in _RAN and not _heavy(earlier):
            _run(scratch, cli_inprocess, i, earlier)
    _run(scratch, cli_inprocess, index, command)


def _run(scratch: Path, cli_inprocess, index: int, command: str) -> None:
    _RAN.add(index)
    argv = shlex.split(command)
    if "--iters 500" in command:
        argv[argv.index("500")] = "50"  # the example's length, not its point: keep the suite fast
    if argv[0] == "edgekit":  # the CLI's own entry point, in this interpreter (the process is tested elsewhere)
        result = cli_inprocess(*argv[1:], cwd=scratch)
    else:
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        result = subprocess.run(argv, cwd=scratch, capture_output=True, text=True, env=env, timeout=1800)
    if "--provider cuda" in command and "CUDAExecutionProvider" not in _ort_providers():
        # No GPU here: the README's CUDA examples must be refused clearly, never run on CPU under a CUDA label.
        assert result.returncode == 1, result.stdout
        assert "onnxruntime-gpu" in result.stderr and "Traceback" not in result.stderr
        return
    assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"


def _ort_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def _python_blocks() -> list:
    blocks = [b for b in _blocks("python") if "import edgekit" in b]
    return [pytest.param(b, id=f"python-{i}", marks=[pytest.mark.slow] if i else []) for i, b in enumerate(blocks)]


@pytest.mark.parametrize("code", _python_blocks())
def test_python_api_example_runs(scratch, code):
    result = subprocess.run([sys.executable, "-c", code], cwd=scratch, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "True"
