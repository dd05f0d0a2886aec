"""compare: every artifact on every runtime, verified, timed one after the other and recommended only when it
passed; a broken artifact is a failing row (never the recommendation), a missing runtime a skipped row, and the
table, the JSON and the CSV come from the same runs."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgekit
from edgekit.cli import main as cli_main
from edgekit.compare import CompareOptions, compare
from edgekit.compare_report import table_rows
from edgekit.errors import BadArgument
from edgekit.runtimes import RUNTIMES

FAST = dict(iters=5, warmup=1, threads=1)


@pytest.fixture(scope="module")
def folder(small_export) -> Path:
    return small_export.out_dir


@pytest.fixture(scope="module")
def result(folder):
    return compare(folder, options=CompareOptions(**FAST))


def _rows(result) -> dict[tuple[str, str], object]:
    return {(r.format, r.runtime): r for r in result.rows}


def test_every_artifact_on_every_runtime_is_verified_and_timed(result):
    rows = _rows(result)
    expected = {("onnx", "onnxruntime"), ("torchscript", "torch"), ("pt2", "torch"), ("eager", "torch")}
    if RUNTIMES["openvino"].available():
        expected.add(("onnx", "openvino"))
    assert expected <= set(rows)
    for key in expected - {("eager", "torch")}:
        row = rows[key]
        assert row.verdict == "ok" and row.verified and row.tolerance == "fp32", row.detail
        assert row.max_abs_err < 1e-3 and row.cosine > 0.99999 and row.top1_agreement == 1.0
        assert row.latency_ms["count"] == 5 and row.items_per_s > 0 and row.speedup > 0
        assert row.model == "mobilenet_v2 alpha 0.35 res 64 seed:0"
    assert rows[("onnx", "onnxruntime")].provider == "CPUExecutionProvider"
    eager = rows[("eager", "torch")]
    assert eager.verdict == "reference" and eager.latency_ms["count"] == 5
    best = result.recommendation
    passing = [r for r in result.rows if r.verdict == "ok"]
    assert best in passing and best.p50 == min(r.p50 for r in passing)
    assert best.speedup == pytest.approx(eager.p50 / best.p50)


def test_the_table_shows_the_numbers_of_the_result(result):
    text = result.to_text()
    for row, cells in zip(result.rows, table_rows(result)):
        if row.p50 is not None:
            assert f"{row.p50:,.3f}" in cells and " ".join(cells[:1]) in text
    assert "recommendation: ship " + result.recommendation.artifact in text
    data = json.loads(json.dumps(result.to_dict()))
    assert [r["latency_ms"] for r in data["rows"]] == [r.latency_ms for r in result.rows]


def _break_onnx(src: Path, dst: Path) -> None:
    """Scale one conv's weights: a file that loads and runs, with wrong numbers."""
    model = onnx.load(str(src))
    init = next(t for t in model.graph.initializer if t.name.endswith("features.3.conv.1.0.weight"))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.5), init.name))
    onnx.save(model, str(dst))


def test_a_broken_artifact_is_a_failing_row_and_never_recommended(folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    onnx_file = next(broken.glob("*.onnx"))
    _break_onnx(onnx_file, onnx_file)  # the manifest still lists it
    (next(broken.glob("*.pt2"))).write_bytes(b"PK\x03\x04 truncated")  # a file no runtime can open
    result = compare(broken, options=CompareOptions(runtimes=("onnxruntime", "torch"), **FAST))
    rows = _rows(result)
    bad = rows[("onnx", "onnxruntime")]
    assert bad.verdict == "FAIL" and bad.verified is False and "features.3.conv.1.0" in bad.detail
    assert "differs from the manifest" in bad.detail
    assert rows[("pt2", "torch")].verdict == "error" and rows[("pt2", "torch")].latency_ms is None
    assert result.recommendation is rows[("torchscript", "torch")]  # the rest went on
    assert "FAIL: " + bad.label in result.to_text()


def test_only_failing_rows_means_no_recommendation_and_exit_1(folder, tmp_path, capsys):
    broken = tmp_path / "only"
    broken.mkdir()
    _break_onnx(next(folder.glob("*.onnx")), broken / "model.onnx")
    assert cli_main(["compare", str(broken / "model.onnx"), "--runtimes", "onnxruntime", "--iters", "3",
                     "--warmup", "0", "--threads", "1"]) == 1
    out = capsys.readouterr().out
    assert "no recommendation: no row passed its tolerance" in out and "ok *" not in out


def test_a_runtime_that_is_not_installed_is_a_skipped_row(folder, monkeypatch):
    monkeypatch.setitem(RUNTIMES, "openvino", replace(RUNTIMES["openvino"], requires="edgekit_no_such_module"))
    result = compare(folder, options=CompareOptions(formats=("onnx",), **FAST))
    row = _rows(result)[("onnx", "openvino")]
    assert row.verdict == "skipped" and row.detail == "skipped: pip install -e '.[openvino]'"
    assert row.latency_ms is None and result.recommendation.runtime == "onnxruntime"
    assert "skipped: " + row.label + ": pip install -e '.[openvino]'" in result.to_text()


def test_json_csv_and_table_come_from_the_same_run(folder, tmp_path, capsys):
    table = tmp_path / "rows.csv"
    assert cli_main(["compare", str(folder), "--formats", "onnx,torchscript", "--runtimes", "onnxruntime,torch",
                     "--iters", "3", "--warmup", "0", "--threads", "1", "--json", "--csv", str(table)]) == 0
    data = json.loads(capsys.readouterr().out)
    with open(table, newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert [(r["artifact"], r["runtime"]) for r in lines] == [(r["artifact"], r["runtime"]) for r in data["rows"]]
    for line, row in zip(lines, data["rows"]):
        assert (float(line["p50_ms"]) if line["p50_ms"] else None) == (row["latency_ms"] or {}).get("p50")
        assert line["verdict"] == row["verdict"]
    assert sum(int(line["recommended"]) for line in lines) == 1
    assert data["recommendation"]["artifact"] in data["recommendation_text"]


def test_a_model_name_exports_what_is_missing_then_reuses_it(tmp_path):
    out = tmp_path / "exp"
    options = CompareOptions(formats=("onnx",), precisions=("fp32",), runtimes=("onnxruntime",), **FAST)
    first = compare("mobilenet_v2", alpha=0.35, res=32, out_dir=out, options=options)
    manifest = out / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert [r.format for r in first.rows] == ["onnx", "eager"] and first.recommendation.format == "onnx"
    again = compare("mobilenet_v2", alpha=0.35, res=32, out_dir=out, options=options)
    assert manifest.stat().st_mtime_ns == stamp and [r.verdict for r in again.rows] == ["ok", "reference"]


def test_bad_input_is_one_line(folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(empty)], "has no manifest.json"),
        ([str(folder), "--runtimes", "tensorflow"], "unknown runtime 'tensorflow'; use one of: onnxruntime, "),
        ([str(folder), "--formats", "tflite"], "unknown format 'tflite'; known formats: onnx, torchscript, pt2"),
        ([str(folder), "--precisions", "int4"], "unknown precision 'int4'; known precisions: fp32, fp16, int8"),
        ([str(folder), "--alpha", "0.5"], "--alpha, --res, --out and --weights describe a model to export"),
        (["mobilenet_v9"], "unknown model"),
    ]
    for argv, message in cases:
        assert cli_main(["compare", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    (empty / "manifest.json").write_text('{"files": [{"name": "../../etc/passwd", "format": "onnx"}]}')
    assert cli_main(["compare", str(empty)]) == 1
    assert "is damaged (file name '../../etc/passwd' is not a plain file name)" in capsys.readouterr().err


def test_options_are_checked_before_any_work():
    with pytest.raises(BadArgument, match="either --iters or --duration"):
        CompareOptions(iters=5, duration_s=1.0)
    with pytest.raises(BadArgument, match="--limit applies to --data"):
        CompareOptions(limit=10)


def test_a_runtime_registered_elsewhere_adds_its_rows(folder):
    """The seam: compare walks FORMATS x runtimes_for(format); a new runtime needs no edit in compare."""
    from edgekit.runtimes import RuntimeSpec, register_runtime, unregister_runtime
    from edgekit.runtimes.onnxruntime import OnnxRuntimeRunner

    class TwinRunner(OnnxRuntimeRunner):
        runtime = "twin"

    register_runtime(RuntimeSpec("twin", "Twin", ("onnx",), lambda path, options, fmt: TwinRunner(path, options)))
    try:
        result = compare(folder, options=CompareOptions(formats=("onnx",), runtimes=("onnxruntime", "twin"), **FAST))
    finally:
        unregister_runtime("twin")
    rows = _rows(result)
    assert rows[("onnx", "twin")].verdict == "ok" and rows[("onnx", "twin")].latency_ms["count"] == 5
    assert set(rows) == {("onnx", "onnxruntime"), ("onnx", "twin"), ("eager", "torch")}


@pytest.mark.slow
def test_main_job_has_a_verified_row_per_format_precision_and_runtime(tmp_path, capsys):
    """The acceptance run: every format x the precisions it writes x every runtime that runs it, plus eager; every
    row verified (or skipped with the install hint); a second run with --json has the same rows."""
    from edgekit.formats import FORMATS
    from edgekit.runtimes import runtimes_for

    argv = ["compare", "mobilenet_v3", "--alpha", "0.75", "--res", "192", "--out", str(tmp_path / "m"),
            "--iters", "30", "--threads", "1"]
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    assert cli_main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = {(f, p, r.name) for f, fmt in FORMATS.items() if fmt.available() for p in fmt.precisions
                for r in runtimes_for(f)}
    expected |= {(f, ",".join(fmt.precisions), "-") for f, fmt in FORMATS.items() if not fmt.available()}
    assert {(r["format"], r["precision"], r["runtime"]) for r in data["rows"]} - {("eager", "fp32", "torch")} == expected
    for row in data["rows"]:
        assert row["verdict"] in ("ok", "skipped", "reference"), row
        assert row["verified"] or row["verdict"] != "ok"
        assert row["artifact"] in text
    assert "recommendation: ship " + data["recommendation"]["artifact"] in text


def test_data_scores_each_row_against_eager_pytorch(folder, tmp_path):
    """Labels are eager PyTorch's own predictions: eager scores 100%, a faithful export the same, drop 0."""
    import torch

    from edgekit.formats import read_metadata
    from edgekit.reference import reference_for_file

    onnx_file = next(folder.glob("*.onnx"))
    x = np.random.default_rng(5).standard_normal((16, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        labels = reference_for_file(onnx_file, read_metadata(onnx_file))(torch.from_numpy(x)).argmax(1).numpy()
    data = tmp_path / "labelled.npz"
    np.savez(data, x=x, y=labels)
    result = compare([onnx_file], options=CompareOptions(runtimes=("onnxruntime",), data=str(data), **FAST))
    rows = _rows(result)
    assert rows[("eager", "torch")].accuracy == 1.0
    assert rows[("onnx", "onnxruntime")].accuracy == 1.0 and rows[("onnx", "onnxruntime")].accuracy_drop == 0.0
    assert "acc %" in result.to_text() and "loses at most 1 top-1 points" in result.to_text()


def test_a_row_that_loses_more_than_max_drop_is_not_recommended():
    from edgekit.compare import CompareRow, _finish, _recommend

    lat = lambda p50: {"p50": p50, "min": p50, "p90": p50, "count": 1}  # noqa: E731
    eager = CompareRow("PyTorch eager", "eager", "fp32", "torch", model="m", latency_ms=lat(10.0), accuracy=0.80,
                       verdict="reference")
    fast = CompareRow("a_int8.onnx", "onnx", "int8", "onnxruntime", model="m", verified=True, latency_ms=lat(1.0),
                      accuracy=0.77, verdict="ok")
    slow = CompareRow("a.onnx", "onnx", "fp32", "onnxruntime", model="m", verified=True, latency_ms=lat(2.0),
                      accuracy=0.80, verdict="ok")
    rows = _finish([fast, slow], eager, CompareOptions(max_drop=1.0))
    assert rows[0].verdict == "FAIL" and rows[0].accuracy_drop == pytest.approx(3.0) and "--max-drop 1" in rows[0].detail
    assert _recommend(rows) is rows[1] and rows[1].speedup == pytest.approx(5.0)
    assert _recommend(_finish([fast, slow], eager, CompareOptions(max_drop=5.0))).artifact == "a_int8.onnx"


def test_an_int8_file_calibrated_on_synthetic_inputs_is_noted_wherever_it_comes_from(folder, result, tmp_path):
    """The note is read from the file's own calibration record, so files given by path carry it too."""
    fp32 = next(folder.glob("*.onnx"))
    int8 = tmp_path / "m_int8.onnx"
    edgekit.quantize(fp32, options=edgekit.QuantizeOptions(calib="synthetic", samples=20, out=str(int8), latency=False))
    options = CompareOptions(runtimes=("onnxruntime",), **FAST)
    assert any("calibrated on synthetic inputs" in n for n in compare([fp32, int8], options=options).notes)
    assert not any("synthetic" in n for n in result.notes)  # the fp32 folder
