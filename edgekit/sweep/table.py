"""The sweep's CSV: one row per point, appended as each point finishes, the fronts rebuilt from the whole file.

Rows are appended with :func:`edgekit.files.append_csv_row` (one write under an exclusive lock), so an interrupted
sweep keeps every finished point and loses at most the ones in flight. ``--resume`` reads the file back and skips
the points it holds (matched on model, alpha, res, precision, runtime and threads, as the CSV writes them). At the
end the whole file is read, the Pareto fronts are computed over every successful row (this run's and earlier
runs'), and the file is replaced atomically with the ``pareto`` and ``family_pareto`` columns filled in.

The front: a configuration is on it when no other one has at least as many MACs (compute, the capacity that buys
accuracy) at no more latency, and is strictly better in one of the two. Lowest latency alone would only ever pick
the smallest model; the front shows where extra latency buys the most compute, and where it is wasted (alpha and
resolution pairs with the same MACs can differ a lot in latency on a given runtime). Rows timed on different CPU
models are not comparable: fronts are computed per CPU model.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from ..errors import BadArgument
from ..files import append_csv_row, atomic_write
from .grid import Point

KEY_COLUMNS = ("model", "alpha", "res", "precision", "runtime", "threads")
CSV_COLUMNS = (
    *KEY_COLUMNS, "family", "format", "macs", "params", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms",
    "max_ms", "throughput_items_per_s", "gmacs", "pareto", "family_pareto", "provider", "batch", "iterations",
    "verify", "error", "export_s", "verify_s", "bench_s", "node_hostname", "node_cpu_model", "node_logical_cpus",
    "node_platform", "ray_node_id", "export_ray_node_id", "export_started_at", "export_ended_at", "bench_started_at",
    "bench_ended_at", "bench_lock_wait_s", "bench_cpus_held", "file", "onnx",
)  # fmt: skip


def pareto_front(latency_ms: Sequence[float], macs: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates, ordered by latency (then by MACs, descending).

    Point j dominates point i when ``latency[j] <= latency[i]`` and ``macs[j] >= macs[i]`` with at least one of the
    two strict: j is as fast and does as much compute, and is better in one. Identical points do not dominate each
    other, so both stay on the front. A pure function.
    """
    if len(latency_ms) != len(macs):
        raise ValueError("latency_ms and macs must have the same length")
    points = list(zip(latency_ms, macs))
    front = []
    for i, (lat_i, mac_i) in enumerate(points):
        dominated = any(
            lat_j <= lat_i and mac_j >= mac_i and (lat_j < lat_i or mac_j > mac_i)
            for j, (lat_j, mac_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def make_row(point: Point, threads: int, fields: dict) -> dict:
    """The CSV row of a point: its key as the CSV writes it, the family, and what its steps returned."""
    from ..registry import get_spec

    row = {k: v for k, v in fields.items() if k in CSV_COLUMNS}
    key = dict(zip(KEY_COLUMNS, point.key(threads)))
    row.update(key, family=get_spec(point.model).family, pareto="", family_pareto="")
    if row.get("file") and row.get("format") == "onnx":
        row["onnx"] = row["file"]
    return row


def ok(row: dict) -> bool:
    """A row with numbers: no error, a latency and MACs."""
    return not row.get("error") and bool(row.get("p50_ms")) and bool(row.get("macs"))


def append(path: Path, row: dict) -> None:
    append_csv_row(path, CSV_COLUMNS, row, flag="the sweep CSV")


def read_rows(path: Path) -> list[dict]:
    """The rows of a sweep CSV; a last line cut short (no newline: not written by :func:`append`) is dropped."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadArgument(f"cannot read {str(path)!r} ({exc}); pass another --out") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    header = next(csv.reader([text.split("\n", 1)[0]]), []) if text else []
    if text and header != list(CSV_COLUMNS):
        raise BadArgument(f"{str(path)!r} holds a table with other columns (an older edgekit's, or not a sweep's); "
                          "pass another --out, or --overwrite to start over")
    return [dict(r) for r in csv.DictReader(io.StringIO(text))]


def repair(path: Path) -> int:
    """Drop a partial last line (a writer killed mid-line) so the next append starts on a line of its own."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        if fh.read(1) == b"\n":
            return 0
    rows = read_rows(path)
    write_rows(path, rows)
    return 1


def done_keys(rows: Sequence[dict]) -> set[tuple[str, ...]]:
    return {tuple(r.get(k, "") for k in KEY_COLUMNS) for r in rows}


def mark_fronts(rows: list[dict]) -> None:
    """Fill ``pareto`` (the overall front) and ``family_pareto`` (each model family's) in place, per CPU model."""
    for row in rows:
        row["pareto"] = row["family_pareto"] = "0" if ok(row) else ""
    good = [r for r in rows if ok(r)]
    groups: dict[tuple, list[dict]] = {}
    for row in good:
        groups.setdefault((row.get("node_cpu_model", ""),), []).append(row)
        groups.setdefault((row.get("node_cpu_model", ""), row.get("family", "")), []).append(row)
    for key, members in groups.items():
        front = pareto_front([float(r["p50_ms"]) for r in members], [float(r["macs"]) for r in members])
        for i in front:
            members[i]["pareto" if len(key) == 1 else "family_pareto"] = "1"


def write_rows(path: Path, rows: Sequence[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, buffer.getvalue().encode(), what=f"the sweep CSV {str(path)!r}")


__all__ = ["CSV_COLUMNS", "KEY_COLUMNS", "pareto_front"]
