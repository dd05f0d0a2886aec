"""Latency and throughput of an ONNX model on ONNX Runtime, on the execution provider you ask for (or none).

Reports session creation and first inference apart from the steady state (after --warmup runs): min, mean, std,
p50/p90/p95/p99, max latency, throughput at the batch, achieved GMAC/s (edgekit exports), peak memory, the
provider(s) the session really used, threads, versions and CPU/GPU. A provider that is missing, or that ONNX Runtime
silently replaces with another (onnxruntime-gpu falls back to CPU without a word), is refused: exit 1, no numbers.
On CUDA, inputs and outputs stay on the GPU (I/O binding); the copy-inclusive latency is reported apart.

Symbolic input dimensions: --batch sets the batch; --shape NAME:1x3x224x224 sets a whole input (repeat per input).

example:
  edgekit bench exports/mobilenet_v3_large_a0.75_r192/mobilenet_v3_large_a0.75_r192.onnx --provider cpu
  edgekit bench model.onnx --threads 2 --iters 500 --compare torch
  edgekit bench model.onnx --provider cuda --batch 8 --duration 10 --json
  edgekit bench model.onnx --shape images:1x3x320x320 --csv results.csv
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ._args import add_json_arg

if TYPE_CHECKING:  # pragma: no cover
    from ..bench import BenchReport, LatencyStats

_PHASE_WORDS = {
    "session": "creating session",
    "first": "first inference",
    "warmup": "warm-up",
    "measure": "measuring",
    "copies-warmup": "warm-up (with copies)",
    "copies": "measuring with host copies",
    "torch-first": "PyTorch first inference",
    "torch-warmup": "PyTorch warm-up",
    "torch": "measuring PyTorch eager",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .onnx model")
    parser.add_argument(
        "--provider",
        action="append",
        metavar="NAME",
        help="execution provider: cpu, cuda, tensorrt, openvino, ... or a full EP name; repeat (or comma-separate) "
        "for a priority list (default cpu)",
    )
    parser.add_argument("--threads", metavar="N", help="intra-op threads (default: the physical cores available)")
    parser.add_argument("--batch", metavar="N", help="size of a symbolic batch dimension (default: 1)")
    parser.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME:DIMS",
        help="full shape of an input, e.g. input:1x3x224x224 (repeat per input; the name may be left out for a "
        "single-input model)",
    )
    parser.add_argument("--warmup", default="10", metavar="N", help="warm-up runs after the first inference (default 10)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--iters", metavar="N", help="timed runs (default 100)")
    group.add_argument("--duration", metavar="S", help="time runs for S seconds instead of a number of runs")
    parser.add_argument(
        "--compare", choices=["torch"], help="also time the eager PyTorch reference (needs edgekit metadata)"
    )
    parser.add_argument(
        "--cudnn-conv-algo-search",
        default="EXHAUSTIVE",
        metavar="MODE",
        help="CUDA: EXHAUSTIVE (default, searched during the first inference), HEURISTIC or DEFAULT",
    )
    parser.add_argument("--device-id", default="0", metavar="N", help="GPU index for CUDA/TensorRT (default 0)")
    parser.add_argument("--csv", metavar="FILE", help="append one row of results to FILE (header written when new)")
    add_json_arg(parser)


class _Progress:
    """Progress on stderr: one line rewritten in place on a terminal (cleared at the end), else one line per finished
    block of runs. Nothing is printed before the first inference succeeded, so a user error stays one line."""

    _BLOCKS = ("warmup", "measure", "copies-warmup", "copies", "torch-warmup", "torch")

    def __init__(self, stream=None) -> None:
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        words = _PHASE_WORDS.get(phase, phase)
        if self._tty:
            count = f" {done}/{total}" if total is not None and total > 1 else (f" {done} runs" if total is None else "")
            self._stream.write(f"\r\033[K{words}{count}")
            self._stream.flush()
        elif phase in self._BLOCKS and total is not None and done >= total and done > 0:
            self._stream.write(f"{words}: {done} runs\n")
            self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\r\033[K")
            self._stream.flush()


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions, append_csv, bench, check_csv_target
    from ..report import to_json

    options = BenchOptions(
        providers=tuple(args.provider or ["cpu"]),
        threads=args.threads,
        batch=args.batch,
        shapes=tuple(args.shape),
        warmup=args.warmup,
        iters=args.iters,
        duration_s=args.duration,
        compare_torch=args.compare == "torch",
        cudnn_conv_algo_search=args.cudnn_conv_algo_search,
        device_id=args.device_id,
    )
    if args.csv:
        check_csv_target(args.csv)  # before the benchmark: a bad --csv must not cost a finished run
    progress = None if args.json else _Progress()
    try:
        report = bench(args.file, options=options, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    print(to_json(report) if args.json else format_report(report), flush=True)  # the numbers first, whatever follows
    if args.csv:
        written = append_csv(report, args.csv)
        if not args.json:
            print(f"\nappended a row to {written}")
    return 0


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
    lines.append(f"runtime   {system.ort_package} · {device} · {system.platform} · Python {system.python}")
    lines.append("")
    lines.append(
        f"session created in {report.session_create_ms:.1f} ms   first inference {report.first_inference_ms:.2f} ms"
        f"   then {report.warmup} warm-up runs"
    )
    where = "inputs/outputs on the device (I/O binding)" if report.io_binding else "numpy inputs/outputs"
    lines.append(f"steady state: {report.iterations} runs in {report.measured_s:.2f} s, {where}")
    lines.append("")
    rows = [_lat_row(f"onnxruntime {_short(report.provider)}", report.latency_ms)]
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
        if t.speedup_p50 >= 1:
            verdict = f"ONNX Runtime is {t.speedup_p50:.2f}x faster than eager PyTorch at p50 ({t.speedup_mean:.2f}x by mean)"
        else:
            verdict = (f"eager PyTorch is {1 / t.speedup_p50:.2f}x faster than ONNX Runtime at p50 "
                       f"(ONNX Runtime speedup {t.speedup_p50:.2f}x, {t.speedup_mean:.2f}x by mean)")
        lines.append(
            f"{verdict}; torch {t.torch_version}, {t.threads} thread{'s' if t.threads != 1 else ''}, "
            f"first inference {t.first_inference_ms:.1f} ms"
        )
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _short(provider: str) -> str:
    return provider.replace("ExecutionProvider", "").lower() or provider
