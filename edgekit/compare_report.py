"""What ``edgekit compare`` prints, appends and plots: every number comes from the one CompareResult (the table, the
JSON, the CSV rows and the plot are the same runs)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .compare import CompareResult, CompareRow

CSV_COLUMNS = (
    "timestamp", "model", "artifact", "format", "precision", "runtime", "provider", "size_bytes", "tolerance",
    "verified", "max_abs_err", "peak_rel_err", "cosine", "top1_agreement", "accuracy", "accuracy_drop", "p50_ms",
    "p90_ms", "min_ms", "mean_ms", "items_per_s", "speedup", "threads", "verdict", "recommended", "detail",
)  # fmt: skip


def _size(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.1f} MB"


def _e(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.1e}"


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _verdict(row: "CompareRow", best: "CompareRow | None") -> str:
    if row is best:
        return "ok *"
    return {"ok": "ok", "FAIL": "FAIL", "error": "error", "skipped": "skipped", "reference": "reference"}.get(
        row.verdict, row.verdict)


def table_rows(result: "CompareResult") -> list[list[str]]:
    data = result.options.data is not None
    rows = []
    for r in result.rows:
        lat = r.latency_ms or {}
        where = r.provider if r.provider.startswith(r.runtime) else f"{r.runtime} {r.provider}".strip()
        cells = [r.artifact, r.format, r.precision, where, _size(r.size_bytes),
                 _e(r.max_abs_err), _f(r.cosine, 6), _f(r.top1_agreement, 2)]
        if data:
            cells += [_f(None if r.accuracy is None else 100 * r.accuracy, 1), _f(r.accuracy_drop, 2)]
        cells += [_f(lat.get("min")), _f(lat.get("p50")), _f(lat.get("p90")), _f(r.items_per_s, 1),
                  "-" if r.speedup is None else f"{r.speedup:.2f}x", _verdict(r, result.recommendation)]
        rows.append(cells)
    return rows


def format_result(result: "CompareResult") -> str:
    from .compare import recommendation_text
    from .report import table

    data = result.options.data is not None
    headers = ["artifact", "format", "prec", "runtime / provider", "size", "max err", "cosine", "top1 agree"]
    headers += ["acc %", "drop"] if data else []
    headers += ["min ms", "p50 ms", "p90 ms", "items/s", "speedup", "verdict"]
    system = result.system
    lines = [f"{result.model or 'files'}  ·  {system.get('cpu_name', '?')} ({system.get('cpu_count', '?')} CPUs)  ·  "
             f"{result.threads} thread{'s' if result.threads != 1 else ''}, batch 1, the same seeded input for every "
             "row, one row at a time", ""]
    lines.append(table(table_rows(result), headers, align="llllrrrr" + ("rr" if data else "") + "rrrrrl"))
    lines.append("")
    lines.append("max err / cosine / top1 agree: worst over verify's inputs against the PyTorch reference; speedup: "
                 "eager PyTorch p50 / row p50; min: the run least disturbed by other processes"
                 + ("; drop: top-1 points below eager PyTorch" if data else ""))
    for r in result.rows:
        if r.verdict in ("FAIL", "error") or (r.verdict == "ok" and r.detail):
            lines.append(f"{r.verdict}: {r.label}: {r.detail}")
        elif r.verdict == "skipped":
            lines.append(f"skipped: {r.label}: {r.detail[len('skipped: '):]}")
    load = system.get("load_average")
    if load and load[0] >= 0.75 * (system.get("cpu_count") or 1):
        lines.append(f"note: load average {load[0]:.2f} on {system.get('cpu_count')} CPUs: other processes competed "
                     "for the cores; compare rows of one run, and rerun on a quiet machine for absolute numbers")
    lines += [f"note: {n}" for n in result.notes]
    lines += ["", "recommendation: " + recommendation_text(result)]
    return "\n".join(lines)


def csv_row(result: "CompareResult", row: "CompareRow") -> dict[str, object]:
    lat = row.latency_ms or {}
    data = row.to_dict()
    return {**{k: ("" if data.get(k) is None else data[k]) for k in CSV_COLUMNS if k in data},
            "timestamp": result.timestamp, "model": row.model or "", "p50_ms": lat.get("p50", ""),
            "p90_ms": lat.get("p90", ""), "min_ms": lat.get("min", ""), "mean_ms": lat.get("mean", ""),
            "threads": result.threads, "recommended": int(row is result.recommendation),
            "verified": "" if row.verified is None else int(row.verified)}


def check_csv(path: str | os.PathLike) -> Path:
    from .files import check_csv_target

    return check_csv_target(path, CSV_COLUMNS)


def append_csv(result: "CompareResult", path: str | os.PathLike) -> Path:
    """One line per row of the table (header first when the file is new), each under the file lock."""
    from .files import append_csv_row

    for row in result.rows:
        append_csv_row(path, CSV_COLUMNS, csv_row(result, row))
    return Path(path)


def plot(result: "CompareResult", path: str | os.PathLike) -> Path:
    """p50 latency against accuracy (with --data) or against the worst error relative to the reference's peak
    logit (log scale): each measured row a point, failing rows crossed, the recommendation circled."""
    from .files import atomic_write
    from .sweep import require_matplotlib

    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = result.options.data is not None
    points = [r for r in result.rows if r.p50 is not None and (data and r.accuracy is not None
                                                                or not data and r.peak_rel_err)]
    fig = Figure(figsize=(8.5, 6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, r in enumerate(points):
        y = 100 * r.accuracy if data else r.peak_rel_err
        ax.scatter([r.p50], [y], marker="o" if r.verdict == "ok" else "x", s=60, color=f"C{i % 10}", zorder=3)
        ax.annotate(f"{r.format} {r.precision} / {r.runtime}", (r.p50, y), textcoords="offset points",
                    xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8)
        if r is result.recommendation:
            ax.scatter([r.p50], [y], s=260, facecolors="none", edgecolors="black", linewidths=1.5, zorder=4)
    eager = next((r for r in result.rows if r.verdict == "reference" and r.p50), None)
    if eager is not None:
        ax.axvline(eager.p50, color="0.5", linestyle="--", linewidth=1)
        ax.text(eager.p50, 0.98, " eager PyTorch", transform=ax.get_xaxis_transform(), fontsize=8, color="0.4",
                va="top")
    if not data:
        ax.set_yscale("log")
    latencies = [r.p50 for r in points] + ([eager.p50] if eager is not None else [])
    if latencies and max(latencies) > 20 * min(latencies):
        ax.set_xscale("log")
    ax.set_xlabel("latency p50 (ms), batch 1")
    ax.set_ylabel("top-1 accuracy (%)" if data else "worst |error| / peak logit vs PyTorch (lower agrees more)")
    ax.set_title(f"{result.model or 'edgekit compare'}: latency vs {'accuracy' if data else 'agreement'}\n"
                 "o passed its tolerance, x failed; circled: the recommendation", fontsize=10)
    ax.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())
