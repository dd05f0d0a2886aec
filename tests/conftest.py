from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgekit  # noqa: F401  (before torch: it sets OMP_WAIT_POLICY=PASSIVE, which must precede torch's OpenMP)
import torch  # noqa: E402

# Tests run on small CPUs: keep torch from oversubscribing the cores when pytest itself is the only process.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (python -m edgekit), capturing text output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


class CliResult:
    """What a CLI run gave: exit code and the text on stdout/stderr (subprocess.CompletedProcess's names)."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli_inprocess(capsys, monkeypatch):
    """The CLI's own entry point (parser, dispatch, error handling) without a new interpreter: the 3-5 s of torch
    import a subprocess pays are saved. For what is not about the process itself (signals, exit of the interpreter)."""
    from edgekit.cli import main

    def run(*args: object, cwd: str | os.PathLike | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return CliResult(int(code), out, err)

    return run


#: Run with -m slow in the registry-wide tests, to keep the default suite near 10 minutes: EfficientNet-B1..B7 (B0's
#: blocks at other compound coefficients, a minute of exports together) and ShuffleNetV1 g1/g2/g4 (the blocks of g3
#: and g8, which stay, at other group counts).
SLOW_ZOO = {f"efficientnet_b{i}" for i in range(1, 8)} | {"shufflenet_v1_g1", "shufflenet_v1_g2", "shufflenet_v1_g4"}


def zoo_models() -> list:
    """Every registered model for the registry-wide tests, the ones in SLOW_ZOO marked slow."""
    return [pytest.param(n, marks=[pytest.mark.slow]) if n in SLOW_ZOO else n for n in edgekit.list_models()]


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory):
    """``get(name)``: edgekit.export of a registered model at alpha 0.25, 64 px, symbolic batch, self-check on.

    Exported once per session and shared by the registry-wide completeness tests of export and verify, so both walk
    every model by default without paying for the exports twice.
    """
    from edgekit.export import ExportOptions, export

    root = tmp_path_factory.mktemp("zoo")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = export(name, alpha=0.25, res=64, out_dir=root / name,
                                 options=ExportOptions(dynamic_batch=True))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """One small model (MobileNetV2 alpha 0.35, 64 px) exported once as ONNX, TorchScript and pt2 through
    edgekit.export (self-check on): shared by the OpenVINO, profile and compare tests."""
    from edgekit.export import ExportOptions, export

    return export("mobilenet_v2", alpha=0.35, res=64, out_dir=tmp_path_factory.mktemp("small") / "m2",
                  options=ExportOptions(formats=("onnx", "torchscript", "pt2")))


# --- precision: real labelled images (scikit-learn's digits) and a model fine-tuned on them --------------------------
DIGITS_WEIGHTS = REPO / "tests" / "data" / "digits_mobilenet_v3_small_a0.35_r64.pth"
DIGITS_MODEL = ("mobilenet_v3_small", 0.35, 64)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """scikit-learn's handwritten digits as image folders: ``calib`` (300) and ``test`` (497), one sub-folder per
    class (edgekit.precision.digits; the split tools/train_digits.py trained on is ``train``)."""
    pytest.importorskip("sklearn")
    from edgekit.precision.digits import write_digits

    root = tmp_path_factory.mktemp("digits")
    write_digits(root, splits=("calib", "test"))
    return root


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory):
    """The digits model (tests/data weights, trained by tools/train_digits.py) exported to fp32 ONNX with edgekit."""
    from edgekit.export import ExportOptions, export

    name, alpha, res = DIGITS_MODEL
    out = tmp_path_factory.mktemp("digits_export")
    result = export(name, alpha=alpha, res=res, out_dir=out,
                    options=ExportOptions(formats=("onnx",), weights=str(DIGITS_WEIGHTS), num_classes=10))
    return result.files["onnx"]


@pytest.fixture(scope="session")
def digits_int8(digits_onnx, digits_dir):
    """``edgekit quantize`` of the digits model: per-channel U8S8 min-max on 200 of the 300 calibration images (the
    other 100 held out), scored on the 497 test images; the latency comparison is left to tools/."""
    from edgekit.precision.quantize import QuantizeOptions, quantize

    return quantize(digits_onnx, options=QuantizeOptions(calib=str(digits_dir / "calib"), samples=200,
                                                         eval=str(digits_dir / "test"), latency=False))
