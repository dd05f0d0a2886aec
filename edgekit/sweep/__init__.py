"""Sweeps: models x width multipliers x resolutions x precisions x runtimes, each point exported, verified and
benchmarked, as one CSV and a latency-vs-MACs plot with each family's Pareto front and the overall front marked: the
picture a user looks at to pick a backbone, a multiplier and a resolution for a device.

Each point reuses the export API (``edgekit.export`` in the format its runtime runs, at its precision), the verify
API (against the PyTorch reference, on the point's runtime) and the bench API. In this process they run one after
the other; with Ray (``ray=...``, :mod:`edgekit.sweep.ray_runner`, imported only then) exports and verification fan
out over the cluster while benchmarks run one at a time per machine, never sharing its cores.

Rows are appended to the CSV as points finish, so an interrupted sweep loses only the points in flight and
``resume=True`` runs only the points the CSV lacks. A point that fails is a row with its error; the sweep goes on.
The fronts and the PNG are rebuilt from the whole CSV at the end.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import BadArgument, MissingExtra
from . import table
from .grid import MAX_GRID_POINTS, MAX_SWEEP_POINTS, Point, SweepOptions, check_folder, expand, parse_models, preflight
from .plot import plot, require_matplotlib
from .table import CSV_COLUMNS, pareto_front
from .work import Exporter, Work, run_in_process

#: progress(index, total, alpha, res, stage, event): index is the point's place in the grid (1-based; 0 for the
#: whole-sweep stages "start" and "cluster"); stage is "start", "cluster", "export", "bench", "done" or "failed".
SweepProgress = Callable[[int, int, float, int, str, "SweepEvent"], None]


@dataclass(frozen=True)
class SweepEvent:
    """Where the sweep stands: ``done`` counts the points in the CSV (earlier runs' included), ``ran`` and
    ``failed`` this run's, ``eta_s`` the time left at this run's pace (None before the first point finishes)."""

    stage: str
    point: Point | None
    total: int
    done: int
    ran: int
    failed: int
    to_run: int
    elapsed_s: float
    eta_s: float | None
    row: dict | None = None
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPoint:
    model: str
    alpha: float
    res: int
    macs: int
    params: int | None
    latency_ms: dict  # p50, p90, p99, mean, std, min, max
    throughput: float  # items/s
    gmacs: float | None
    provider: str
    threads: int
    batch: int
    iterations: int
    export_s: float
    bench_s: float
    on_front: bool
    onnx: str | None  # the ONNX file, when kept
    family: str = ""
    precision: str = "fp32"
    runtime: str = "onnxruntime"
    format: str = "onnx"
    family_front: bool = False
    file: str | None = None  # the exported file, when kept
    node: str = ""  # the host the benchmark ran on
    verify: str = ""

    @property
    def label(self) -> str:
        return f"a{self.alpha:g} r{self.res}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SweepResult:
    model: str  # the models, comma-separated
    provider: str
    points: tuple[SweepPoint, ...]  # every successful row of the CSV, earlier runs' included
    front: tuple[int, ...]  # indices into points, by latency
    csv_path: Path
    png_path: Path | None
    system: dict
    elapsed_s: float
    total: int = 0  # points in this run's grid
    ran: int = 0  # points run now (the others were in the CSV already)
    failures: tuple[dict, ...] = ()  # the CSV's rows with an error: their key and the error
    mode: str = "in-process"
    nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "provider": self.provider,
            "points": [p.to_dict() for p in self.points],
            "front": list(self.front),
            "csv_path": str(self.csv_path),
            "png_path": str(self.png_path) if self.png_path else None,
            "system": self.system,
            "elapsed_s": self.elapsed_s,
            "summary": {"total": self.total, "ran": self.ran, "resumed": self.total - self.ran,
                        "ok": len(self.points), "failed": len(self.failures), "mode": self.mode,
                        "nodes": list(self.nodes)},
            "failures": list(self.failures),
        }


class _Tracker:
    """Counts and times the run, and turns steps into progress calls."""

    def __init__(self, points: Sequence[Point], todo: Sequence[Point], progress: SweepProgress | None) -> None:
        self.index = {p: i for i, p in enumerate(points, 1)}
        self.total, self.to_run = len(points), len(todo)
        self.ran = self.failed = 0
        self.progress = progress or (lambda *a: None)
        self.started = time.perf_counter()
        self.nodes: dict[str, None] = {}

    def event(self, stage: str, point: Point | None, row: dict | None = None, detail: dict | None = None) -> None:
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.ran * (self.to_run - self.ran) if self.ran else None
        event = SweepEvent(stage, point, self.total, self.total - self.to_run + self.ran, self.ran, self.failed,
                           self.to_run, elapsed, eta, row, detail or {})
        if point is None:
            self.progress(0, self.total, 0.0, 0, stage, event)
        else:
            self.progress(self.index[point], self.total, point.alpha, point.res, stage, event)

    def emit(self, stage: str, point: Point | None, detail: dict) -> None:
        self.event(stage, point, detail=detail)

    def finished(self, point: Point, row: dict) -> None:
        self.ran += 1
        self.failed += bool(row.get("error"))
        if row.get("node_hostname"):
            self.nodes[row["node_hostname"]] = None
        self.event("failed" if row.get("error") else "done", point, row)


def _stem(models: Sequence[str], options: SweepOptions, name: str | None) -> str:
    provider = options.bench.providers[0].replace("ExecutionProvider", "").lower()
    base = name or (models[0] if len(models) == 1 else "zoo")
    if not base.replace("_", "").replace("-", "").isalnum():
        raise BadArgument(f"the sweep name {base!r} must be letters, digits, '_' or '-'; e.g. --name zoo")
    return f"{base}_{provider}_b{options.bench.batch or 1}_sweep"


def _check_ray(ray: str | None, ray_cpus: int | None) -> None:
    if ray is None:
        if ray_cpus is not None:
            raise BadArgument("--ray-cpus sizes a private Ray cluster; add --ray, or drop --ray-cpus")
        return
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise MissingExtra("--ray needs Ray, which is not installed; install it with: pip install -e '.[ray]'")
    from .ray_runner import check_address, check_reachable

    check_address(ray, ray_cpus)
    check_reachable(ray)


def sweep(
    models: str | Sequence[str],
    *,
    out_dir: str | Path,
    options: SweepOptions,
    progress: SweepProgress | None = None,
    exporter: Exporter | None = None,
    resume: bool = False,
    overwrite: bool = False,
    ray: str | None = None,
    ray_cpus: int | None = None,
    name: str | None = None,
) -> SweepResult:
    """Export, verify and benchmark every point of the grid; write ``<name>_<provider>_b<batch>_sweep.csv`` (and
    ``.png``) into ``out_dir``. The whole grid is validated (and matplotlib looked for) before anything runs.

    ``models``: names or aliases ("all": every registered model). ``resume``: skip the points the CSV already holds;
    without it an existing CSV with rows is refused unless ``overwrite``. ``ray``: None runs every point in this
    process; "local" starts a private Ray cluster on this machine (``ray_cpus`` CPUs, default all), "auto" joins the
    cluster found on this machine, "HOST:PORT" the one at that address. ``exporter`` replaces ``edgekit.export``.
    """
    if resume and overwrite:
        raise BadArgument("--resume keeps the CSV's rows and --overwrite deletes them; pass one of them")
    names = parse_models(models)
    points = expand(names, options)
    preflight(names, options)
    if options.plot:
        require_matplotlib()
    _check_ray(ray, ray_cpus)
    stem = _stem(names, options, name)
    out = check_folder(out_dir, "--out")
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    earlier = table.read_rows(csv_path)
    if earlier and not (resume or overwrite):
        raise BadArgument(f"{csv_path} already holds {len(earlier)} points; pass --resume to run only the points it "
                          "lacks, or --overwrite to start over")
    if options.export_dir is not None:
        check_folder(options.export_dir, "--keep-exports")
    from ..bench.system import default_threads

    threads = options.bench.threads or default_threads()
    if overwrite:
        for path in (csv_path, png_path):
            path.unlink(missing_ok=True)
        earlier = []
    table.repair(csv_path)
    done = table.done_keys(earlier)
    todo = [p for p in points if p.key(threads) not in done]
    tracker = _Tracker(points, todo, progress)
    tracker.emit("start", None, {"csv": str(csv_path), "models": list(names), "precisions": list(options.precisions),
                                 "runtimes": list(options.runtimes), "resumed": len(points) - len(todo),
                                 "mode": "in-process" if ray is None else f"ray {ray}"})

    def on_row(point: Point, fields: dict) -> None:
        row = table.make_row(point, threads, fields)
        table.append(csv_path, row)
        tracker.finished(point, row)

    work = Work(options, threads, exporter)
    if todo and ray is None:
        run_in_process(todo, work, on_row, tracker.emit)
    elif todo:
        from .ray_runner import run_on_ray

        run_on_ray(ray, ray_cpus, todo, work, on_row, tracker.emit)
    return _finish(names, points, threads, options, csv_path, png_path, tracker,
                   "in-process" if ray is None else f"ray {ray}")


def _number(row: dict, key: str, kind: type = float, default: Any = None) -> Any:
    text = row.get(key, "")
    return kind(float(text)) if text not in ("", None) else default


def _point(row: dict) -> SweepPoint:
    return SweepPoint(
        model=row["model"], alpha=float(row["alpha"]), res=int(row["res"]), macs=_number(row, "macs", int),
        params=_number(row, "params", int),
        latency_ms={k: float(row[f"{k}_ms"]) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
        throughput=_number(row, "throughput_items_per_s", float, 0.0), gmacs=_number(row, "gmacs"),
        provider=row["provider"], threads=_number(row, "threads", int, 0), batch=_number(row, "batch", int, 1),
        iterations=_number(row, "iterations", int, 0), export_s=_number(row, "export_s", float, 0.0),
        bench_s=_number(row, "bench_s", float, 0.0), on_front=row["pareto"] == "1", onnx=row.get("onnx") or None,
        family=row["family"], precision=row["precision"], runtime=row["runtime"], format=row["format"],
        family_front=row["family_pareto"] == "1", file=row.get("file") or None, node=row.get("node_hostname", ""),
        verify=row.get("verify", ""),
    )  # fmt: skip


def _system(rows: Sequence[dict], options: SweepOptions) -> dict:
    import onnxruntime

    from ..bench.system import cpu_name, gpu_name

    gpu = any("cuda" in p.lower() or "tensorrt" in p.lower() for p in options.bench.providers)
    cpus = sorted({r["node_cpu_model"] for r in rows if r.get("node_cpu_model")}) or [cpu_name()]
    return {"cpu_name": ", ".join(cpus), "gpu_name": gpu_name(options.bench.device_id) if gpu else None,
            "ort_version": onnxruntime.__version__, "platform": f"{platform.system()} {platform.release()} "
                                                          f"{platform.machine()}"}


def _finish(models: Sequence[str], grid: Sequence[Point], threads: int, options: SweepOptions, csv_path: Path,
            png_path: Path, tracker: _Tracker, mode: str) -> SweepResult:
    """Rebuild the fronts from the whole CSV, rewrite it with them marked (rows in grid order, rows of other grids
    after them), draw the PNG."""
    rows = table.read_rows(csv_path)
    place = {p.key(threads): i for i, p in enumerate(grid)}
    rows.sort(key=lambda r: place.get(tuple(r[k] for k in table.KEY_COLUMNS), len(place)))  # stable: others after
    table.mark_fronts(rows)
    if rows:
        table.write_rows(csv_path, rows)
    points = tuple(_point(r) for r in rows if table.ok(r))
    # the CSV's column says (fronts are per CPU model), in pareto_front's order
    front = sorted((i for i, p in enumerate(points) if p.on_front),
                   key=lambda i: (points[i].latency_ms["p50"], -points[i].macs))
    failures = tuple({**{k: r[k] for k in table.KEY_COLUMNS}, "error": r["error"]} for r in rows if r.get("error"))
    system = _system(rows, options)
    provider = points[0].provider if points else options.bench.providers[0]
    written = None
    if options.plot and points:
        models_shown = list(dict.fromkeys(p.model for p in points))
        what = models_shown[0] if len(models_shown) == 1 else f"{len(models_shown)} models"
        used = "/".join(map(str, sorted({p.threads for p in points})))
        title = f"{what} on {provider}, batch {points[0].batch}, {used} threads"
        runtimes = ", ".join(sorted({p.runtime for p in points}))
        written = plot(points, front, png_path, title=title, subtitle=f"{system['cpu_name']}; {runtimes}")
    return SweepResult(
        model=",".join(models), provider=provider, points=points, front=tuple(front), csv_path=csv_path,
        png_path=written, system=system, elapsed_s=time.perf_counter() - tracker.started, total=tracker.total,
        ran=tracker.ran, failures=failures, mode=mode, nodes=tuple(tracker.nodes),
    )


__all__ = ["SweepOptions", "SweepResult", "SweepPoint", "SweepEvent", "Point", "sweep", "pareto_front", "plot",
           "CSV_COLUMNS", "MAX_GRID_POINTS", "MAX_SWEEP_POINTS"]
