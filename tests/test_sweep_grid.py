"""Multi-model sweeps in this process: the grid checked before anything runs, rows appended as points finish, a
failing point recorded while the sweep goes on, --resume running only the missing points, the fronts rebuilt from
the whole CSV. (Ray: test_sweep_ray.py; one model's grid and the plot: test_sweep.py.)"""

from __future__ import annotations

import csv
import functools
import json
import sys
from pathlib import Path

import pytest

import edgekit.sweep
from edgekit.bench import BenchOptions
from edgekit.cli import main as cli_main
from edgekit.errors import BadArgument
from edgekit.sweep import SweepOptions, pareto_front, sweep
from edgekit.sweep.grid import Point, expand, format_for
from edgekit.sweep.table import CSV_COLUMNS

sys.path.insert(0, str(Path(__file__).parent))
from sweep_helpers import BROKEN, failing_exporter, fast_exporter  # noqa: E402

QUICK_BENCH = BenchOptions(threads=1, warmup=1, iters=3)
BASE = ["--alphas", "0.5", "--res", "96"]


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["mobilenet_v2", *BASE, "--precisions", "fp32,int4"], 2, "unknown precision 'int4'; the export formats write: fp32"),
        (["mobilenet_v2", *BASE, "--runtime", "tflite"], 2, "unknown runtime 'tflite'; use one of: onnxruntime"),
        (["mobilenet_v2,mobilenet_v9", *BASE], 2, "unknown model"),
        (["all", "--alphas", ",".join(f"0.{i}" for i in range(1, 10)) + ",1", "--res", "64,96,128,160,192,224,256,288,"
          "320,352", "--runtime", "onnxruntime,torch"], 2, "is 3,600 points, more than 2,000"),
        (["mobilenet_v2", *BASE, "--ray-cpus", "2"], 2, "--ray-cpus sizes a private Ray cluster"),
        (["mobilenet_v2", *BASE, "--ray", "ray://head:10001"], 2, "Ray Client addresses (ray://) are not supported"),
        (["mobilenet_v2", *BASE, "--ray", "headnode"], 2, "is not HOST:PORT or auto"),
        (["mobilenet_v2", *BASE, "--ray", "auto", "--ray-cpus", "2"], 2, "--ray-cpus sizes a private cluster"),
        (["mobilenet_v2", *BASE, "--ray", "127.0.0.1:1"], 1, "nothing answers at 127.0.0.1:1"),
    ],
)
def test_bad_grids_and_ray_targets_are_one_line_before_anything_runs(argv, code, needle, capsys, tmp_path):
    capsys.readouterr()
    got = cli_main(["sweep", *argv, "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert got == code and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_without_ray_installed_ray_is_one_line_naming_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    assert cli_main(["sweep", "mobilenet_v2", *BASE, "--ray", "--out", str(tmp_path)]) == 1
    assert "pip install -e '.[ray]'" in capsys.readouterr().err


def test_precisions_and_runtimes_come_from_the_format_and_runtime_tables():
    assert format_for("onnxruntime", "fp32") == "onnx" and format_for("torch", "fp32") == "pt2"
    options = SweepOptions(alphas="0.5", resolutions="96", runtimes="ort,torch,ORT")
    assert options.runtimes == ("onnxruntime", "torch")  # aliases resolved, each once
    assert options.bench_for("torch").providers == ("cpu",)  # ONNX Runtime's CPUExecutionProvider, as torch says it
    assert expand(["mobilenet_v2"], options) == [Point("mobilenet_v2", 0.5, 96, "fp32", "onnxruntime"),
                                                 Point("mobilenet_v2", 0.5, 96, "fp32", "torch")]


def test_a_registered_precision_and_runtime_sweep_with_no_change_to_the_sweep():
    """A format that writes int8 and its own runtime, registered from here (as the executorch and precision work
    will): the sweep accepts them, picks that format, and refuses int8 on a runtime none of whose formats write it."""
    from edgekit.formats import FORMATS, Format, register_format, unregister_format
    from edgekit.runtimes import RuntimeSpec, register_runtime, unregister_runtime

    onnx = FORMATS["onnx"]
    register_format(Format("fake", ".fake", "Fake", onnx.write, onnx.read_metadata, lambda head: False,
                           default_runtime="fakert", precisions=("fp32", "int8")))
    register_runtime(RuntimeSpec("fakert", "Fake runtime", ("onnx", "fake"), lambda p, o, f: None))
    try:
        options = SweepOptions(alphas="0.5", resolutions="96", precisions="int8", runtimes="fakert", calib="synthetic")
        assert format_for("fakert", "int8") == "fake" and format_for("fakert", "fp32") == "fake"
        with pytest.raises(BadArgument, match=r"the torch runtime runs no format written at int8: its formats write "
                                              r"torchscript \(fp32\), pt2 \(fp32\); sweep int8 on ([a-z]+, )*fakert"):
            SweepOptions(alphas="0.5", resolutions="96", precisions="int8", runtimes="torch,fakert")
        assert options.export_for("fake", "int8").precision == ("int8",)
    finally:
        unregister_runtime("fakert")
        unregister_format("fake")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == list(CSV_COLUMNS)
        return list(reader)


def _check_fronts(rows: list[dict]) -> None:
    """The pareto columns against pareto_front computed here from the CSV's own numbers."""
    good = [r for r in rows if not r["error"]]
    expected = {id(good[i]) for i in pareto_front([float(r["p50_ms"]) for r in good], [int(r["macs"]) for r in good])}
    assert {id(r) for r in good if r["pareto"] == "1"} == expected and expected
    for family in {r["family"] for r in good}:
        members = [r for r in good if r["family"] == family]
        front = pareto_front([float(r["p50_ms"]) for r in members], [int(r["macs"]) for r in members])
        assert {id(members[i]) for i in front} == {id(r) for r in members if r["family_pareto"] == "1"}
    assert all(r["pareto"] == r["family_pareto"] == "" for r in rows if r["error"])


def test_a_failing_point_is_a_row_and_resume_runs_only_what_the_csv_lacks(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    events: list = []
    options = SweepOptions(alphas="0.25", resolutions="32,64", bench=QUICK_BENCH)
    first = sweep("mobilenet_v2,shufflenet_v2", out_dir=out, options=options, exporter=failing_exporter,
                  progress=lambda *e: events.append(e))
    path = out / "zoo_cpu_b1_sweep.csv"
    rows = _rows(path)
    keys = [(r["model"], r["alpha"], r["res"]) for r in rows]
    assert keys == [("mobilenet_v2", "0.25", "32"), ("mobilenet_v2", "0.25", "64"), ("shufflenet_v2", "0.25", "32"),
                    ("shufflenet_v2", "0.25", "64")]
    (broken,) = [r for r in rows if (r["model"], int(r["res"])) == BROKEN]
    assert broken["error"] == "export: onnx export of shufflenet_v2 failed: injected by the test; try --format without onnx"
    assert broken["p50_ms"] == "" and first.failures == ({**{k: broken[k] for k in ("model", "alpha", "res",
                                                          "precision", "runtime", "threads")}, "error": broken["error"]},)
    good = [r for r in rows if not r["error"]]
    assert len(first.points) == 3 and all(r["verify"] == "pass" and float(r["p50_ms"]) > 0 for r in good)
    assert {r["family"] for r in rows} == {"mobilenet_v2", "shufflenet_v2"}
    assert all(r["threads"] == "1" and r["node_hostname"] and r["node_cpu_model"] and r["ray_node_id"] == ""
               and r["export_started_at"] < r["export_ended_at"] <= r["bench_started_at"] < r["bench_ended_at"]
               for r in good)
    _check_fronts(rows)
    assert first.png_path is not None and first.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finished = [e[5] for e in events if e[4] in ("done", "failed")]
    assert [e.done for e in finished] == [1, 2, 3, 4] and finished[-1].failed == 1 and finished[-1].eta_s == 0

    calls: list = []
    recording = lambda *a: calls.append(a[:3]) or fast_exporter(*a)  # noqa: E731
    wider = SweepOptions(alphas="0.25,0.5", resolutions="32,64", bench=QUICK_BENCH)
    with pytest.raises(BadArgument, match="already holds 4 points; pass --resume"):
        sweep("mobilenet_v2,shufflenet_v2", out_dir=out, options=wider, exporter=recording)
    second = sweep("mobilenet_v2,shufflenet_v2", out_dir=out, options=wider, exporter=recording, resume=True)
    assert sorted(calls) == [("mobilenet_v2", 0.5, 32), ("mobilenet_v2", 0.5, 64), ("shufflenet_v2", 0.5, 32),
                             ("shufflenet_v2", 0.5, 64)]  # the failed point is not run again
    rows = _rows(path)
    assert len(rows) == 8 == len({tuple(r[k] for k in ("model", "alpha", "res", "precision", "runtime", "threads"))
                                  for r in rows})
    assert second.ran == 4 and second.total == 8 and len(second.points) == 7
    _check_fronts(rows)  # rebuilt over both runs' rows

    # the CLI on the finished CSV: nothing to run, the summary as JSON, exit 1 for the recorded failure; a line cut
    # short by a writer killed mid-line (not ours: ours are single writes) is dropped, not taken for a point
    with open(path, "a") as fh:
        fh.write("mobilenet_v2,0.75,32,fp32")
    monkeypatch.setattr(edgekit.sweep, "sweep", functools.partial(edgekit.sweep.sweep, exporter=fast_exporter))
    capsys.readouterr()
    code = cli_main(["sweep", "mobilenet_v2,shufflenet_v2", "--alphas", "0.25,0.5", "--res", "32,64", "--threads",
                     "1", "--resume", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)["summary"]
    assert code == 1 and summary == {"total": 8, "ran": 0, "resumed": 8, "ok": 7, "failed": 1, "mode": "in-process",
                                     "nodes": []}
    assert "1 point(s) failed" in captured.err and _rows(path) == rows
