"""Every bad input a user can give, through the real CLI in a subprocess.

Each case: non-zero exit (2 for bad usage, 1 for a failure), exactly one short line on stderr that names the problem
(and, by convention, the fix), no traceback, and no file left behind in the working folder.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

import edgekit
from edgekit.export import ExportOptions, export


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """A small faithful export (ONNX + TorchScript) and a state_dict, built once for the whole file."""
    folder = tmp_path_factory.mktemp("good")
    result = export("mobilenet_v2", alpha=0.35, res=64, out_dir=folder / "export", options=ExportOptions(simplify=False))
    weights = folder / "w_a0.5.pth"
    torch.save(edgekit.get_model("mobilenet_v2", alpha=0.5).state_dict(), weights)
    return {"onnx": result.files["onnx"], "pt": result.files["torchscript"], "weights": weights, "dir": folder}


class _RunsCode:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('pwned')",))


def _make(kind: str, good: dict[str, Path], where: Path) -> str:
    """Create the bad file a case needs (outside the checked working folder) and return its path."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / kind
    if kind == "empty.onnx":
        path.write_bytes(b"")
    elif kind == "text.onnx":
        path.write_text("this is not an onnx model\n")
    elif kind == "random.onnx":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "truncated.onnx":
        data = good["onnx"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "external.onnx":
        model = onnx.load(str(good["onnx"]))
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="external.onnx.data",
                  size_threshold=0)
        (where / "external.onnx.data").unlink()
    elif kind == "broken.pt":
        path.write_bytes(b"PK\x03\x04 not really a torchscript archive")
    elif kind == "a folder.onnx":
        path.mkdir()
    elif kind == "list.pth":
        torch.save([1, 2, 3], path)
    elif kind == "code.pth":
        torch.save({"weight": _RunsCode()}, path)
    elif kind == "unknown_key.yaml":
        path.write_text("model: mobilenet_v2\nalfa: 0.5\n")
    elif kind == "wrong_type.yaml":
        path.write_text("model: mobilenet_v2\nres: large\n")
    elif kind == "foreign/manifest.json":
        path.parent.mkdir(exist_ok=True)
        path.write_text('{"something": "else"}')
        return str(path.parent)
    elif kind == "a_file":
        path.write_text("x")
    return str(path)


# (id, argv with {good:*} / {bad:*} placeholders, expected exit code, a word the error line must contain)
CASES = [
    ("models-unknown-flag", ["models", "--bogus"], 2, "unrecognized"),
    ("info-unknown-model", ["info", "mobilenet_v4"], 2, "did you mean"),
    ("info-alpha-zero", ["info", "mobilenet_v2", "--alpha", "0"], 2, "alpha"),
    ("info-alpha-negative", ["info", "mobilenet_v2", "--alpha", "-0.5"], 2, "alpha"),
    ("info-alpha-not-a-number", ["info", "mobilenet_v2", "--alpha", "wide"], 2, "alpha"),
    ("info-alpha-absurd", ["info", "mobilenet_v2", "--alpha", "1000"], 2, "absurdly large"),
    ("info-alpha-too-small-for-network", ["info", "shufflenet_v1_g8", "--alpha", "0.02"], 2, "use alpha >="),
    ("info-res-zero", ["info", "mobilenet_v2", "--res", "0"], 2, "too small"),
    ("info-res-too-small", ["info", "shufflenet_v2", "--res", "16"], 2, "too small"),
    ("info-res-not-a-number", ["info", "mobilenet_v2", "--res", "hd"], 2, "resolution"),
    ("export-unknown-model", ["export", "efficientnet_b9"], 2, "did you mean"),
    ("export-missing-weights", ["export", "mobilenet_v2", "--weights", "nope.pth"], 1, "does not exist"),
    ("export-mismatched-weights", ["export", "mobilenet_v2", "--weights", "{good:weights}"], 1, "does not match"),
    ("export-non-state-dict", ["export", "mobilenet_v2", "--weights", "{bad:list.pth}"], 1, "not a state_dict"),
    ("export-weights-with-code", ["export", "mobilenet_v2", "--weights", "{bad:code.pth}"], 1, "refused"),
    ("export-unknown-format", ["export", "mobilenet_v2", "--format", "onnx,tflite"], 2, "unknown export format"),
    ("export-out-under-a-file", ["export", "mobilenet_v2", "--alpha", "0.35", "--res", "64", "--out", "{bad:a_file}/sub"], 1, "cannot write"),
    ("export-out-is-a-file", ["export", "mobilenet_v2", "--alpha", "0.35", "--res", "64", "--out", "{bad:a_file}"], 2, "is a file"),
    ("export-foreign-folder", ["export", "mobilenet_v2", "--alpha", "0.35", "--res", "64", "--out", "{bad:foreign/manifest.json}"], 2, "did not write"),
    ("export-preset-unknown-key", ["export", "--config", "{bad:unknown_key.yaml}"], 2, "unknown key 'alfa'"),
    ("export-preset-wrong-type", ["export", "--config", "{bad:wrong_type.yaml}"], 2, "key 'res'"),
    ("export-preset-missing", ["export", "--config", "missing.yaml"], 2, "does not exist"),
    ("export-absurd-memory", ["export", "efficientnet_b7", "--alpha", "4", "--res", "2048"], 2, "GiB"),
    ("verify-missing-file", ["verify", "missing.onnx"], None, "missing.onnx"),
    ("verify-directory", ["verify", "{bad:a folder.onnx}"], None, "folder"),
    ("verify-empty-file", ["verify", "{bad:empty.onnx}"], None, "empty"),
    ("verify-text-file", ["verify", "{bad:text.onnx}"], None, "ONNX"),
    ("verify-random-bytes", ["verify", "{bad:random.onnx}"], None, "ONNX"),
    ("verify-truncated", ["verify", "{bad:truncated.onnx}"], None, "ONNX"),
    ("verify-missing-external-data", ["verify", "{bad:external.onnx}"], None, "external"),
    ("verify-broken-torchscript", ["verify", "{bad:broken.pt}"], None, "TorchScript"),
    ("verify-batch-zero", ["verify", "{good:onnx}", "--batch", "0"], 2, "batch"),
    ("verify-batch-negative", ["verify", "{good:onnx}", "--batch", "-2"], 2, "batch"),
    ("verify-batch-on-fixed-model", ["verify", "{good:onnx}", "--batch", "4"], 2, "batch"),
    ("bench-missing-file", ["bench", "missing.onnx"], None, "missing.onnx"),
    ("bench-empty-file", ["bench", "{bad:empty.onnx}"], None, "empty"),
    ("bench-garbage-file", ["bench", "{bad:random.onnx}"], None, "ONNX"),
    ("bench-unknown-provider", ["bench", "{good:onnx}", "--provider", "warp-drive"], None, "provider"),
    ("bench-provider-absent", ["bench", "{good:onnx}", "--provider", "cuda"], 1, "onnxruntime-gpu"),
    ("bench-batch-zero", ["bench", "{good:onnx}", "--batch", "0"], 2, "batch"),
    ("bench-iters-zero", ["bench", "{good:onnx}", "--iters", "0"], 2, "iters"),
    ("bench-threads-zero", ["bench", "{good:onnx}", "--threads", "0"], 2, "threads"),
    ("bench-shape-mismatch", ["bench", "{good:onnx}", "--shape", "input:1x3x32"], None, "shape"),
]


def _expand(argv: list[str], good: dict[str, Path], bad_dir: Path) -> list[str]:
    out = []
    for arg in argv:
        if "{good:" in arg:
            key = arg.split("{good:")[1].split("}")[0]
            arg = arg.replace(f"{{good:{key}}}", str(good[key]))
        if "{bad:" in arg:
            kind = arg.split("{bad:")[1].split("}")[0]
            arg = arg.replace(f"{{bad:{kind}}}", _make(kind, good, bad_dir))
        out.append(arg)
    return out


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25
    assert {c[1][0] for c in CASES} == {"models", "info", "export", "verify", "bench"}


#: cases also run in a real interpreter: the process's exit code and stderr, not only main()'s
IN_A_PROCESS = {"models-unknown-flag", "export-weights-with-code", "verify-random-bytes", "bench-provider-absent",
                "export-absurd-memory"}


@pytest.mark.parametrize("case_id, argv, code, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(cli, cli_inprocess, good, tmp_path, case_id, argv, code, needle):
    work = tmp_path / "work dir ü"  # spaces and non-ASCII in every path the CLI sees
    work.mkdir()
    args = _expand(argv, good, tmp_path / "bad files ü")
    if case_id in IN_A_PROCESS:
        result = cli(*args, cwd=work)
    else:
        result = cli_inprocess(*args, cwd=work)
    assert result.returncode != 0, result.stdout
    if code is not None:
        assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert len(lines[0]) < 400
    assert needle.lower() in lines[0].lower(), lines[0]
    assert list(work.iterdir()) == [], "a failed command left files behind"
    assert not (work / "PWNED").exists() and not Path("PWNED").exists()


def test_paths_with_spaces_and_non_ascii_work_end_to_end(cli_inprocess, tmp_path):
    out = tmp_path / "my exports ü"
    result = cli_inprocess("export", "mobilenet_v2", "--alpha", "0.35", "--res", "64", "--format", "onnx",
                           "--out", str(out))
    assert result.returncode == 0, result.stderr
    onnx_path = out / "mobilenet_v2_a0.35_r64.onnx"
    result = cli_inprocess("verify", str(onnx_path))
    assert result.returncode == 0, result.stderr
    result = cli_inprocess("bench", str(onnx_path), "--iters", "5", "--warmup", "1", "--json")
    assert result.returncode == 0, result.stderr


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"weight": _RunsCode()}, path)
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(edgekit.errors.BadWeights, match="refused"):
            edgekit.get_model("mobilenet_v2", weights=path)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "PWNED").exists()
