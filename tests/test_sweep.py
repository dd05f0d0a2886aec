"""edgekit.sweep and `edgekit sweep`: the Pareto front (pure), the grid's validation, CSV + PNG on a tiny grid."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import onnx
import pytest

from edgekit.bench import BenchOptions
from edgekit.cli import main as cli_main
from edgekit.errors import BadArgument, EdgekitError, UnknownModel
from edgekit.sweep import SweepOptions, pareto_front, sweep

sys.path.insert(0, str(Path(__file__).parent))
from sweep_helpers import fast_exporter  # noqa: E402

QUICK_BENCH = BenchOptions(threads=1, warmup=1, iters=3)


# --------------------------------------------------------------------------------------------------------------------
# Pareto front (pure)
# --------------------------------------------------------------------------------------------------------------------


def test_pareto_front_keeps_points_nothing_beats_in_both_latency_and_macs():
    latency = [1.0, 2.0, 2.5, 3.0, 4.0, 1.5]
    macs = [50, 100, 90, 200, 150, 40]
    # 2.5ms/90 is beaten by 2.0ms/100; 4.0ms/150 by 3.0ms/200; 1.5ms/40 by 1.0ms/50.
    assert pareto_front(latency, macs) == [0, 1, 3]


def test_pareto_front_edge_cases():
    assert pareto_front([], []) == []
    assert pareto_front([3.0], [10]) == [0]
    assert pareto_front([2.0, 2.0], [10, 10]) == [0, 1]  # identical points: neither dominates
    assert pareto_front([2.0, 2.0], [10, 20]) == [1]  # same latency, more MACs wins
    assert pareto_front([1.0, 2.0], [10, 10]) == [0]  # same MACs, faster wins
    assert pareto_front([3.0, 1.0, 2.0], [30, 10, 20]) == [1, 2, 0]  # all on the front, ordered by latency
    with pytest.raises(ValueError):
        pareto_front([1.0], [])


def test_pareto_front_agrees_with_a_brute_force_definition():
    import random

    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 12)
        lat = [rng.choice([1.0, 2.0, 3.0, 4.0]) for _ in range(n)]
        mac = [rng.choice([10, 20, 30]) for _ in range(n)]
        expected = {
            i for i in range(n)
            if not any(lat[j] <= lat[i] and mac[j] >= mac[i] and (lat[j], mac[j]) != (lat[i], mac[i]) for j in range(n))
        }  # fmt: skip
        assert set(pareto_front(lat, mac)) == expected


# --------------------------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------------------------


def test_options_parse_sort_and_deduplicate():
    options = SweepOptions(alphas="1.0, 0.5,0.75,0.5", resolutions="224,160,192")
    assert options.alphas == (0.5, 0.75, 1.0) and options.resolutions == (160, 192, 224)
    assert SweepOptions(alphas=[0.5], resolutions=[96]).bench.providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize(
    "alphas, resolutions, needle",
    [
        ("0", "96", "alpha"),
        ("abc", "96", "alpha"),
        ("", "96", "empty"),
        ("0.5", "big", "resolution 'big'"),
        ("0.5", "96.5", "whole number"),
        (",".join(str(0.1 * i) for i in range(1, 12)), ",".join(str(32 + i) for i in range(10)), "more than 100"),
    ],
)
def test_bad_grids_are_refused(alphas, resolutions, needle):
    with pytest.raises(BadArgument, match=needle):
        SweepOptions(alphas=alphas, resolutions=resolutions)


# --------------------------------------------------------------------------------------------------------------------
# The sweep, on a tiny grid
# --------------------------------------------------------------------------------------------------------------------


def _fast_exporter(calls: list):
    """sweep_helpers.fast_exporter (about 1 s a point), recording its calls. The real exporter has its own test."""

    def export(name: str, alpha: float, res: int, folder: Path, weights: str | None) -> Path:
        calls.append((name, alpha, res))
        return fast_exporter(name, alpha, res, folder, weights)

    return export


def test_sweep_writes_csv_and_png_with_the_front_marked(tmp_path):
    calls: list = []
    events: list = []
    options = SweepOptions(alphas="0.25,0.5", resolutions="32,64", bench=QUICK_BENCH, export_dir=tmp_path / "onnx")
    result = sweep(
        "mobilenet_v2", out_dir=tmp_path / "out", options=options, exporter=_fast_exporter(calls),
        progress=lambda *e: events.append(e[:5]),
    )  # fmt: skip
    assert calls == [("mobilenet_v2", 0.25, 32), ("mobilenet_v2", 0.25, 64), ("mobilenet_v2", 0.5, 32), ("mobilenet_v2", 0.5, 64)]
    assert [e for e in events if e[4] == "done"] == [(i, 4, a, r, "done") for i, (_, a, r) in enumerate(calls, 1)]

    assert result.csv_path == tmp_path / "out" / "mobilenet_v2_cpu_b1_sweep.csv"
    rows = list(csv.DictReader(result.csv_path.open()))
    assert [(float(r["alpha"]), int(r["res"])) for r in rows] == [(a, r) for _, a, r in calls]
    macs = [int(r["macs"]) for r in rows]
    assert macs[0] < macs[1] and macs[0] < macs[2] and macs[3] == max(macs)  # MACs grow with alpha and res
    p50 = [float(r["p50_ms"]) for r in rows]
    on_front = [i for i, r in enumerate(rows) if r["pareto"] == "1"]
    assert sorted(on_front) == sorted(pareto_front(p50, macs)) and on_front
    assert all(r["provider"] == "CPUExecutionProvider" and r["threads"] == "1" for r in rows)
    assert all(Path(r["onnx"]).is_file() for r in rows)  # kept, since export_dir was given

    assert result.png_path is not None and result.png_path.suffix == ".png"
    assert result.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result.png_path.stat().st_size > 10_000
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert result.to_dict()["front"] == list(result.front)


def test_missing_matplotlib_fails_before_any_export(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    calls: list = []
    with pytest.raises(EdgekitError, match=r"pip install 'edgekit\[plot\]'.*--no-plot"):
        sweep("mobilenet_v2", out_dir=tmp_path, options=SweepOptions(alphas="0.25", resolutions="32", bench=QUICK_BENCH),
              exporter=_fast_exporter(calls))  # fmt: skip
    assert calls == []


def test_no_plot_needs_no_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    options = SweepOptions(alphas="0.25", resolutions="32", bench=QUICK_BENCH, plot=False)
    result = sweep("mobilenet_v2", out_dir=tmp_path, options=options, exporter=_fast_exporter([]))
    assert result.png_path is None and result.csv_path.is_file()
    assert len(list(csv.DictReader(result.csv_path.open()))) == 1
    assert [p.name for p in tmp_path.iterdir()] == [result.csv_path.name]  # the temporary ONNX folder is gone


def test_unknown_model_and_too_small_res_fail_before_any_export(tmp_path):
    calls: list = []
    with pytest.raises(UnknownModel):
        sweep("mobilenet_v9", out_dir=tmp_path, options=SweepOptions(alphas="0.5", resolutions="96"), exporter=_fast_exporter(calls))
    with pytest.raises(BadArgument, match="too small"):
        sweep("mobilenet_v2", out_dir=tmp_path, options=SweepOptions(alphas="0.5", resolutions="96,8"), exporter=_fast_exporter(calls))
    # values that only the last grid points would trip on: too narrow for the network, no published weights, memory
    with pytest.raises(BadArgument, match="too small for shufflenet_v1_g8"):
        sweep("shufflenet_v1_g8", out_dir=tmp_path, options=SweepOptions(alphas="0.5,0.02", resolutions="96"),
              exporter=_fast_exporter(calls))
    from edgekit.errors import BadWeights, ResourceLimit

    with pytest.raises(BadWeights, match="alpha 0.5"):
        sweep("mobilenet_v2", out_dir=tmp_path, options=SweepOptions(alphas="1.0,0.5", resolutions="96", weights="imagenet"),
              exporter=_fast_exporter(calls))
    with pytest.raises(ResourceLimit, match="GiB"):
        sweep("efficientnet_b7", out_dir=tmp_path, options=SweepOptions(alphas="0.25,4", resolutions="64,2048"),
              exporter=_fast_exporter(calls))
    assert calls == []


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["sweep", "mobilenet_v9", "--alphas", "0.5", "--res", "96"], 2, "unknown model"),
        (["sweep", "mobilenet_v2", "--alphas", "0,0.5", "--res", "96"], 2, "alpha"),
        (["sweep", "mobilenet_v2", "--alphas", "0.5", "--res", "96", "--provider", "cuda"], 1, "onnxruntime-gpu"),
        (["sweep", "mobilenet_v2", "--alphas", "0.5", "--res", "96", "--iters", "0"], 2, "iters must be >= 1"),
    ],
)
def test_cli_bad_input_is_one_line(argv, code, needle, capsys, tmp_path):
    if "cuda" in argv:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            pytest.skip("this machine has a CUDA execution provider")
    capsys.readouterr()
    got = cli_main([*argv, "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert got == code and len(err.strip().splitlines()) == 1 and needle in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_sweep_with_the_real_export(capsys, tmp_path):
    """One point through `edgekit sweep` and edgekit.export itself (the other tests use a faster exporter)."""
    capsys.readouterr()
    code = cli_main([
        "sweep", "mobilenet_v2", "--alphas", "0.25", "--res", "32", "--threads", "1", "--warmup", "0", "--iters", "2",
        "--out", str(tmp_path / "out"), "--keep-onnx", str(tmp_path / "onnx"),
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "[1/1] alpha 0.25 res 32" in err and "front" in out and "mobilenet_v2_cpu_b1_sweep.csv" in out
    (row,) = list(csv.DictReader((tmp_path / "out" / "mobilenet_v2_cpu_b1_sweep.csv").open()))
    assert row["pareto"] == "1" and float(row["p50_ms"]) > 0 and int(row["macs"]) > 0
    exported = onnx.load(row["onnx"])
    props = {p.key: p.value for p in exported.metadata_props}
    assert props["edgekit.model"] == "mobilenet_v2" and float(props["edgekit.alpha"]) == 0.25
    assert not any(n.op_type == "BatchNormalization" for n in exported.graph.node)  # the fused export was timed
    assert (tmp_path / "out" / "mobilenet_v2_cpu_b1_sweep.png").is_file()


def test_reports_are_written_with_the_users_umask_not_private(tmp_path):
    import os

    from edgekit.files import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "r.csv", b"a,b\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"a,b\n" and (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]  # no temp file left
