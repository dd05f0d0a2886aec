"""One point's work, the same in this process and in a Ray worker: export + verify it, then time it alone on its host.

Each step returns a flat dict of CSV fields. A step that fails returns its ``error`` (one line, prefixed with the
stage) instead of raising, so the sweep records the point and goes on; only an interrupt propagates.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import EdgekitError, first_line
from .grid import Point, SweepOptions, format_for

#: exporter(name, alpha, res, folder, weights) -> path of the file it wrote for the point's format: replaces
#: edgekit.export (tests use a faster exporter).
Exporter = Callable[[str, float, int, Path, "str | None"], Path]
#: emit(stage, point, detail): stage is "export" or "bench", detail says where it runs.
Emit = Callable[[str, Point, dict], None]
#: on_row(point, row): a finished point, successful or not.
OnRow = Callable[[Point, dict], None]

#: Benchmarks on one machine take turns on this lock: other sweeps' and other drivers' included.
BENCH_LOCK = "edgekit-bench-{uid}.lock"


@dataclass(frozen=True)
class Work:
    """Everything a worker needs to make and time a point (it travels to Ray workers by pickle)."""

    options: SweepOptions
    threads: int  # every benchmark of the sweep runs this many threads, wherever it runs
    exporter: Exporter | None = None

    def format_of(self, point: Point) -> str:
        return format_for(point.runtime, point.precision)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def host_id() -> str:
    """The same for every Ray node on one machine (they share its cores), different across machines."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id"):
        with contextlib.suppress(OSError):
            value = Path(path).read_text().strip()
            if value:
                return f"{socket.gethostname()}/{value[:12]}"
    return socket.gethostname()


def node_facts() -> dict:
    """Where a benchmark ran, recorded on its row."""
    from ..bench.system import allowed_cpus, cpu_name

    return {"node_hostname": socket.gethostname(), "node_cpu_model": cpu_name(),
            "node_logical_cpus": len(allowed_cpus()), "node_platform": platform.machine()}


@contextlib.contextmanager
def bench_lock() -> Iterator[float]:
    """Hold the machine's benchmark lock for the block; yields the seconds spent waiting for it. A POSIX lock on a
    file in the temp folder: the kernel releases it when its holder dies, so a killed benchmark never blocks the
    next one (the empty file stays, as lock files do)."""
    from ..files import file_lock

    started = time.perf_counter()
    path = Path(tempfile.gettempdir()) / BENCH_LOCK.format(uid=os.getuid() if hasattr(os, "getuid") else 0)
    with open(path, "a") as fh, file_lock(fh):
        yield time.perf_counter() - started


def _stage_error(stage: str, exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {first_line(exc, 200)}"
    return f"{stage}: {text}"


def _export_file(point: Point, work: Work, folder: Path) -> Path:
    if work.exporter is not None:
        return Path(work.exporter(point.model, point.alpha, point.res, folder, work.options.weights))
    from ..export import export
    from ..formats import artifact_key

    fmt = work.format_of(point)
    result = export(point.model, alpha=point.alpha, res=point.res, out_dir=folder,
                    options=work.options.export_for(fmt, point.precision))
    return Path(result.files[artifact_key(fmt, point.precision)])


def make_point(point: Point, work: Work, folder: Path) -> dict:
    """Export ``point`` into ``folder`` and verify the file against its PyTorch reference on the point's runtime.
    ``export_started_at``/``export_ended_at`` span both steps (what runs on the machine before its benchmark)."""
    out: dict[str, Any] = {"format": work.format_of(point), "export_started_at": utc_now()}
    try:
        _export_and_verify(point, work, folder, out)
    finally:
        out["export_ended_at"] = utc_now()
    return out


def _export_and_verify(point: Point, work: Work, folder: Path, out: dict) -> None:
    started = time.perf_counter()
    try:
        path = _export_file(point, work, folder)
    except Exception as exc:  # noqa: BLE001 - the sweep records the point and goes on
        out["error"] = _stage_error("export", exc)
        return
    out.update(file=str(path), export_s=round(time.perf_counter() - started, 3))
    if not work.options.verify:
        out["verify"] = "skipped"
        return
    from ..verify import VerifyOptions, verify

    started = time.perf_counter()
    try:
        report = verify(path, options=VerifyOptions(runtime=point.runtime, localize=False))
    except Exception as exc:  # noqa: BLE001
        out.update(verify="error", error=_stage_error("verify", exc))
        return
    out.update(verify="pass" if report.passed else "fail", verify_s=round(time.perf_counter() - started, 3))
    if not report.passed:
        out["error"] = f"verify: {report.summary()}"


def companions(path: Path, fmt: str) -> list[Path]:
    """The file and the files that travel with it (sidecars)."""
    from ..formats import FORMATS

    return [path, *FORMATS[fmt].companions(path)]


def time_point(point: Point, work: Work, path: Path) -> dict:
    """Benchmark the file, holding the machine's benchmark lock; the numbers, the node and the times."""
    from ..bench import bench

    options = replace(work.options.bench_for(point.runtime), threads=work.threads)
    out: dict[str, Any] = node_facts()
    try:
        with bench_lock() as waited:
            out.update(bench_lock_wait_s=round(waited, 3), bench_started_at=utc_now())
            started = time.perf_counter()
            try:
                report = bench(path, options=options)
            finally:
                out.update(bench_ended_at=utc_now(), bench_s=round(time.perf_counter() - started, 3))
    except Exception as exc:  # noqa: BLE001
        out["error"] = _stage_error("bench", exc)
        return out
    if not report.macs:
        out["error"] = f"bench: {path.name} carries no MACs in its edgekit metadata; the sweep cannot place it"
        return out
    lat = report.latency_ms
    out.update(
        macs=int(report.macs), params=report.params, provider=report.provider, threads=report.threads,
        batch=report.batch, iterations=report.iterations, throughput_items_per_s=round(report.throughput, 2),
        gmacs="" if report.gmacs is None else round(report.gmacs, 3),
        **{f"{k}_ms": round(getattr(lat, k), 4) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
    )
    return out


def run_in_process(points: Sequence[Point], work: Work, on_row: OnRow, emit: Emit) -> None:
    """Every point, one after the other, in this process: export + verify, then the benchmark."""
    keep = work.options.export_dir
    with tempfile.TemporaryDirectory(prefix="edgekit-sweep-") as scratch:
        for point in points:
            folder = (keep or Path(scratch)) / point.folder_name
            emit("export", point, {})
            made = make_point(point, work, folder)
            timed: dict = {}
            if "error" not in made:
                emit("bench", point, {})
                timed = time_point(point, work, Path(made["file"]))
            if keep is None:
                shutil.rmtree(folder, ignore_errors=True)  # a long sweep must not fill the disk with exports
                made.pop("file", None)
            on_row(point, {**made, **timed})
