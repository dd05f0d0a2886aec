"""`edgekit sweep --ray` on real Ray clusters on this machine: a private one started in this process (ray.init with 2
CPUs), and, marked slow, a head plus a second node started with `ray start`. Rows say where each point ran and when;
benchmarks never overlap anything else of the sweep on a machine; Ctrl-C keeps the finished rows and --resume
completes them; nothing is left running.

Clusters are stopped by pid (LocalCluster.stop, ray.shutdown), never by `ray stop`: that kills every Ray process on
the machine, other people's included.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import sweep_helpers  # noqa: E402
from sweep_helpers import BROKEN, LocalCluster, crashing_exporter, fast_exporter, wait_gone, worker_env  # noqa: E402

sweep_helpers.private_token()  # before anything in this process imports Ray (it reads the token once)

from edgekit.bench import BenchOptions  # noqa: E402
from edgekit.bench.system import cpu_name  # noqa: E402
from edgekit.sweep import SweepOptions, sweep  # noqa: E402
from edgekit.sweep.grid import expand  # noqa: E402
from edgekit.sweep.table import KEY_COLUMNS  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")

QUICK_BENCH = BenchOptions(threads=1, warmup=1, iters=3)
HELPERS = str(Path(sweep_helpers.__file__))


@pytest.fixture
def workers_import_helpers(monkeypatch):
    """Ray workers inherit the driver's environment: let them import the tests' exporters by name."""
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _leftovers() -> set[str]:
    """Scratch folders of Ray sweeps and private cluster folders (everything here runs on this one machine)."""
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "edgekit-ray-*"))) | set(glob.glob("/tmp/ekr-*"))


def _span(row: dict, stage: str) -> tuple[float, float]:
    return (datetime.fromisoformat(row[f"{stage}_started_at"]).timestamp(),
            datetime.fromisoformat(row[f"{stage}_ended_at"]).timestamp())


def assert_benches_alone_per_machine(rows: list[dict]) -> None:
    """No benchmark overlaps another benchmark or any export (+ verification) on the same machine, from the CSV."""
    benches = [(r["node_hostname"], _span(r, "bench"), i) for i, r in enumerate(rows) if r["bench_started_at"]]
    exports = [(r["node_hostname"], _span(r, "export"), i) for i, r in enumerate(rows) if r["export_started_at"]]
    assert benches
    for host, (b0, b1), i in benches:
        assert b0 < b1
        for other_host, (o0, o1), j in benches + exports:
            if other_host == host and (other_host, (o0, o1), j) != (host, (b0, b1), i):
                assert not (b0 < o1 and o0 < b1), f"the bench of row {i} overlaps an interval of row {j} on {host}"


def test_ray_sweep_in_process_records_nodes_times_and_a_dead_worker(tmp_path, workers_import_helpers, capsys):
    before = _leftovers()
    events: list = []
    options = SweepOptions(alphas="0.25", resolutions="32,64", bench=QUICK_BENCH)
    result = sweep("mobilenet_v2,shufflenet_v2", out_dir=tmp_path, options=options, exporter=crashing_exporter,
                   ray="local", ray_cpus=2, progress=lambda *e: events.append(e))
    rows = _rows(result.csv_path)
    assert [(r["model"], int(r["res"])) for r in rows] == [("mobilenet_v2", 32), ("mobilenet_v2", 64),
                                                           ("shufflenet_v2", 32), ("shufflenet_v2", 64)]
    (cluster,) = [e[5].detail for e in events if e[4] == "cluster"]
    (node,) = cluster["nodes"]
    assert node["cpus"] == 2 and cluster["cpus"] == 2
    (dead,) = [r for r in rows if (r["model"], int(r["res"])) == BROKEN]
    assert dead["error"].startswith(f"export: the Ray worker on {socket.gethostname()} ({node['node_id'][:8]}) died")
    good = [r for r in rows if r is not dead]
    for r in good:  # where and how each point was timed
        assert r["ray_node_id"] == r["export_ray_node_id"] == node["node_id"] and r["verify"] == "pass"
        assert r["node_hostname"] == socket.gethostname() and r["node_cpu_model"] == cpu_name()
        assert r["threads"] == "1" and float(r["p50_ms"]) > 0 and r["error"] == ""
        assert float(r["bench_cpus_held"]) == 2  # the benchmark held every CPU of its node
    assert_benches_alone_per_machine(rows)
    assert result.mode == "ray local" and len(result.points) == 3 and len(result.failures) == 1
    import ray

    assert not ray.is_initialized()
    assert _leftovers() == before  # the dead worker's scratch folder was swept, the cluster's folder removed
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # nothing of Ray's reaches the driver's stdout/stderr


GRID = ["mobilenet_v2", "--alphas", "0.25,0.5,0.75", "--res", "32,48,64", "--threads", "1", "--warmup", "0", "--iters",
        "3", "--no-plot"]


def _signal_mid_sweep(out: Path, sig: int) -> tuple[int, str, list[dict]]:
    """A `--ray` driver (in its own session, like a terminal's job) signalled once two rows are in the CSV; returns
    its exit code, stderr and the rows it kept, after checking that nothing of it is left running or on disk."""
    csv_path = out / "mobilenet_v2_cpu_b1_sweep.csv"
    before = _leftovers()
    driver = subprocess.Popen([sys.executable, HELPERS, "sweep", *GRID, "--out", str(out), "--ray", "--ray-cpus", "2"],
                              env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            if csv_path.exists() and len(_rows(csv_path)) >= 2:
                break
            time.sleep(0.2)
        assert driver.poll() is None, driver.stderr.read()
        os.kill(driver.pid, sig)
        code = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    err = driver.stderr.read()
    assert "rerun with --resume to finish" in err and "Traceback" not in err, err
    assert wait_gone(driver.pid) == []  # the private cluster's processes went with it
    assert _leftovers() == before  # no scratch folder, no cluster folder
    assert [p.name for p in out.iterdir()] == [csv_path.name]  # no temporary file beside the CSV
    return code, err, _rows(csv_path)


def test_ctrl_c_keeps_finished_rows_and_resume_completes_them(tmp_path):
    """SIGINT to a `--ray` driver mid-sweep: exit 130, finished rows kept, nothing left running; `--resume` (in
    this process, which never imports Ray) then runs exactly the missing points."""
    out = tmp_path / "out"
    code, err, kept = _signal_mid_sweep(out, signal.SIGINT)
    assert code == 130 and "interrupted with" in err and 2 <= len(kept) < 9

    resumed = subprocess.run([sys.executable, HELPERS, "sweep", *GRID, "--out", str(out), "--resume"],
                             env=worker_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert "ray imported: False" in resumed.stderr and f"{len(kept)} already in" in resumed.stderr
    rows = _rows(out / "mobilenet_v2_cpu_b1_sweep.csv")
    keys = [tuple(r[k] for k in KEY_COLUMNS) for r in rows]
    options = SweepOptions(alphas="0.25,0.5,0.75", resolutions="32,48,64")
    assert sorted(keys) == sorted(p.key(1) for p in expand(["mobilenet_v2"], options))  # an uninterrupted run's
    assert len(set(keys)) == len(keys) == 9 and all(not r["error"] for r in rows)
    by_key = {tuple(r[k] for k in KEY_COLUMNS): r for r in rows}
    assert all(by_key[tuple(r[k] for k in KEY_COLUMNS)]["p50_ms"] == r["p50_ms"] for r in kept)  # kept as they were


@pytest.mark.slow
def test_sigterm_mid_ray_sweep_exits_143_and_leaves_nothing(tmp_path):
    """In the driver, Ray turns SIGTERM into an abort unless edgekit takes it back: exit 143, rows kept, clean."""
    code, err, kept = _signal_mid_sweep(tmp_path / "out", signal.SIGTERM)
    assert code == 143 and "terminated (SIGTERM) with" in err and len(kept) >= 2


@pytest.mark.slow
def test_two_ray_nodes_on_one_machine_share_points_but_never_a_benchmark(tmp_path, workers_import_helpers):
    """A head and a second node (`ray start`, separate --resources) on this machine: both export and both time, and
    since they share the machine's cores no benchmark overlaps anything else of the sweep."""
    cluster = LocalCluster(nodes=[{"num_cpus": 1, "resources": {"nodeA": 1}},
                                  {"num_cpus": 1, "resources": {"nodeB": 1}}]).start()
    events: list = []
    try:
        options = SweepOptions(alphas="0.25,0.5", resolutions="32,64", bench=QUICK_BENCH,
                               export_dir=tmp_path / "kept")  # every node sees it: one machine
        result = sweep("mobilenet_v2,shufflenet_v2", out_dir=tmp_path, options=options, exporter=fast_exporter,
                       ray=cluster.address, progress=lambda *e: events.append(e))
    finally:
        killed = cluster.stop()
    assert killed == []  # every node stopped on SIGTERM
    (detail,) = [e[5].detail for e in events if e[4] == "cluster"]
    node_ids = {n["node_id"] for n in detail["nodes"]}
    rows = _rows(result.csv_path)
    assert len(rows) == 8 and all(not r["error"] for r in rows) and len(node_ids) == 2
    assert {r["ray_node_id"] for r in rows} == node_ids  # timed on both nodes
    assert {r["export_ray_node_id"] for r in rows} == node_ids  # exported on both
    assert {r["node_hostname"] for r in rows} == {socket.gethostname()}
    assert all(float(r["bench_cpus_held"]) == 1 for r in rows)  # each node has one CPU: it held it
    assert_benches_alone_per_machine(rows)
    kept = [Path(r["file"]) for r in rows]  # written by the workers into the shared folder, one folder per point
    assert all(p.is_file() and p.parent.parent == tmp_path / "kept" for p in kept) and len(set(kept)) == 8
    assert [p.name for p in (tmp_path / "kept").iterdir() if p.name.startswith(".")] == []  # the probe's marker went
