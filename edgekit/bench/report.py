"""What ``edgekit bench`` measured, how it reads as text, and its CSV row."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .stats import LatencyStats
from .system import SystemInfo


@dataclass(frozen=True)
class InputSpec:
    name: str
    declared_shape: tuple  # as the model declares it: ints, symbolic names, None
    shape: tuple[int, ...]  # what was fed
    dtype: str  # numpy name

    def to_dict(self) -> dict:
        return {"name": self.name, "declared_shape": list(self.declared_shape), "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class TorchComparison:
    """Eager PyTorch on the same input and thread count, timed after ONNX Runtime, never concurrently."""

    torch_version: str
    threads: int
    first_inference_ms: float
    warmup: int
    latency_ms: LatencyStats
    throughput: float  # items/s
    speedup_p50: float  # torch p50 / ORT p50: how many times faster ONNX Runtime is
    speedup_mean: float
    reference: str  # what was timed, in words

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BenchReport:
    """What ``edgekit bench`` measured. ``latency_ms`` is the steady state; ``throughput`` is items/s at ``batch``
    (batch / mean latency); ``gmacs`` is achieved GMAC/s (MACs per item from the file's metadata x batch / mean
    latency), None when the MACs are unknown or the input resolution differs from the one they were counted at."""

    path: str
    model: str | None
    alpha: float | None
    res: int | None
    macs: int | None  # per item
    params: int | None
    providers_requested: tuple[str, ...]
    providers: tuple[str, ...]  # session.get_providers() after creation: what actually ran
    nodes_per_provider: dict[str, int] | None
    threads: int
    batch: int
    inputs: tuple[InputSpec, ...]
    io_binding: bool  # inputs/outputs resident on the device during the steady state
    cudnn_conv_algo_search: str | None
    warmup: int
    iterations: int
    measured_s: float  # wall time of the steady-state block
    session_create_ms: float
    first_inference_ms: float
    latency_ms: LatencyStats
    throughput: float
    gmacs: float | None
    latency_with_copies_ms: LatencyStats | None  # numpy in, numpy out (only measured with I/O binding)
    peak_rss_mib: float  # peak resident memory of this process after the ONNX Runtime block (Python, libraries included)
    rss_before_session_mib: float
    system: SystemInfo
    torch: TorchComparison | None = None
    notes: tuple[str, ...] = ()
    timestamp: str = ""
    runtime: str = "onnxruntime"  # the runtime that ran it (edgekit.runtimes)
    format: str = "onnx"
    #: the runtime's own per-node profile, when asked for (bench --profile)
    profile: dict | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["inputs"] = [i.to_dict() for i in self.inputs]
        data["throughput_unit"] = "items/s"
        return data

    @property
    def provider(self) -> str:
        """The provider that did the work: the first one the session reports."""
        return self.providers[0] if self.providers else ""

    def to_text(self) -> str:
        return format_report(self)



CSV_COLUMNS = (
    "timestamp", "path", "model", "alpha", "res", "provider", "providers", "threads", "batch", "input_shapes",
    "warmup", "iterations", "session_create_ms", "first_inference_ms",
    "min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
    "throughput_items_per_s", "gmacs", "macs", "params", "io_binding", "copies_p50_ms",
    "torch_p50_ms", "speedup_p50", "peak_rss_mib", "ort_version", "cpu_name", "gpu_name", "runtime", "format",
)  # fmt: skip


def csv_row(report: BenchReport) -> dict[str, object]:
    lat = report.latency_ms

    def r(value: float | None, digits: int = 4) -> object:
        return "" if value is None else round(value, digits)

    return {
        "timestamp": report.timestamp,
        "path": report.path,
        "model": report.model or "",
        "alpha": "" if report.alpha is None else report.alpha,
        "res": "" if report.res is None else report.res,
        "provider": report.provider,
        "providers": ";".join(report.providers),
        "threads": report.threads,
        "batch": report.batch,
        "input_shapes": ";".join(f"{i.name}:{'x'.join(map(str, i.shape))}" for i in report.inputs),
        "warmup": report.warmup,
        "iterations": report.iterations,
        "session_create_ms": r(report.session_create_ms, 2),
        "first_inference_ms": r(report.first_inference_ms),
        "min_ms": r(lat.min),
        "mean_ms": r(lat.mean),
        "std_ms": r(lat.std),
        "p50_ms": r(lat.p50),
        "p90_ms": r(lat.p90),
        "p95_ms": r(lat.p95),
        "p99_ms": r(lat.p99),
        "max_ms": r(lat.max),
        "throughput_items_per_s": r(report.throughput, 2),
        "gmacs": r(report.gmacs, 3),
        "macs": "" if report.macs is None else report.macs,
        "params": "" if report.params is None else report.params,
        "io_binding": int(report.io_binding),
        "copies_p50_ms": r(report.latency_with_copies_ms.p50 if report.latency_with_copies_ms else None),
        "torch_p50_ms": r(report.torch.latency_ms.p50 if report.torch else None),
        "speedup_p50": r(report.torch.speedup_p50 if report.torch else None, 3),
        "peak_rss_mib": r(report.peak_rss_mib, 1),
        "ort_version": report.system.ort_version,
        "cpu_name": report.system.cpu_name,
        "gpu_name": report.system.gpu_name or "",
        "runtime": report.runtime,
        "format": report.format,
    }




def check_csv_target(path: str | os.PathLike) -> Path:
    """Refuse a ``--csv`` target that cannot take our row, before a benchmark is spent on it."""
    from ..files import check_csv_target as check

    return check(path, CSV_COLUMNS)


def append_csv(report: BenchReport, path: str | os.PathLike) -> Path:
    """Append one row to ``path`` (header first when the file is new), under a lock; returns the path."""
    from ..files import append_csv_row

    return append_csv_row(path, CSV_COLUMNS, csv_row(report))


# --------------------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------------------
def _lat_row(label: str, stats: "LatencyStats") -> list[str]:
    cells = [stats.min, stats.mean, stats.std, stats.p50, stats.p90, stats.p95, stats.p99, stats.max]
    return [label, str(stats.count), *(f"{v:.3f}" for v in cells)]


def format_report(report: "BenchReport") -> str:
    from ..report import human, table

    lines: list[str] = []
    title = report.model or "(no edgekit metadata)"
    if report.alpha is not None:
        title += f"  alpha {report.alpha:g}  res {report.res}"
    lines.append(f"{title}  ·  {report.path}")
    facts = []
    if report.macs:
        facts.append(f"MACs {human(report.macs)} per item")
    if report.params:
        facts.append(f"params {human(report.params)}")
    facts.extend(f"input {i.name} {list(i.shape)} {i.dtype}" for i in report.inputs)
    lines.append("   ".join(facts))
    provider = report.provider
    if report.nodes_per_provider:
        provider = ", ".join(f"{p} ({n} nodes)" for p, n in report.nodes_per_provider.items())
    lines.append(f"provider  {provider}   threads {report.threads}   batch {report.batch}")
    system = report.system
    device = f"GPU {system.gpu_name} · CPU {system.cpu_name}" if system.gpu_name else f"CPU {system.cpu_name} ({system.cpu_count} CPUs)"
    version = system.ort_package if report.runtime == "onnxruntime" else system.runtime_version
    lines.append(f"runtime   {version} · {device} · {system.platform} · Python {system.python}")
    lines.append("")
    lines.append(
        f"session created in {report.session_create_ms:.1f} ms   first inference {report.first_inference_ms:.2f} ms"
        f"   then {report.warmup} warm-up runs"
    )
    where = "inputs/outputs on the device (I/O binding)" if report.io_binding else "numpy inputs/outputs"
    lines.append(f"steady state: {report.iterations} runs in {report.measured_s:.2f} s, {where}")
    lines.append("")
    rows = [_lat_row(f"{report.runtime} {_short(report.provider)}", report.latency_ms)]
    if report.latency_with_copies_ms is not None:
        rows.append(_lat_row("  incl. host copies", report.latency_with_copies_ms))
    if report.torch is not None:
        rows.append(_lat_row("pytorch eager", report.torch.latency_ms))
    headers = ["latency (ms)", "runs", "min", "mean", "std", "p50", "p90", "p95", "p99", "max"]
    lines.append(table(rows, headers, align="l" + "r" * 9))
    lines.append("")
    summary = [f"throughput {report.throughput:,.1f} items/s (batch {report.batch})"]
    if report.gmacs is not None:
        summary.append(f"achieved {report.gmacs:.2f} GMAC/s")
    summary.append(f"peak RSS {report.peak_rss_mib:,.0f} MiB")
    lines.append("   ".join(summary))
    if report.torch is not None:
        t = report.torch
        name = runtime_title(report.runtime) if report.runtime != "torch" else f"the {report.format} file on PyTorch"
        if t.speedup_p50 >= 1:
            verdict = f"{name} is {t.speedup_p50:.2f}x faster than eager PyTorch at p50 ({t.speedup_mean:.2f}x by mean)"
        else:
            verdict = (f"eager PyTorch is {1 / t.speedup_p50:.2f}x faster than {name} at p50 "
                       f"({name} speedup {t.speedup_p50:.2f}x, {t.speedup_mean:.2f}x by mean)")
        lines.append(
            f"{verdict}; torch {t.torch_version}, {t.threads} thread{'s' if t.threads != 1 else ''}, "
            f"first inference {t.first_inference_ms:.1f} ms"
        )
    for note in report.notes:
        lines.append(f"note: {note}")
    if report.profile:
        from .profile import format_profile

        lines += ["", format_profile(report.profile)]
    return "\n".join(lines)


def _short(provider: str) -> str:
    short = provider.replace("ExecutionProvider", "").lower() or provider
    return short[len("torch "):] if short.startswith("torch ") else short


def runtime_title(name: str) -> str:
    from ..runtimes import RUNTIMES

    spec = RUNTIMES.get(name)
    return spec.title if spec is not None else name
