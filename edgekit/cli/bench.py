"""Latency and throughput of an exported model on the runtime and execution provider you ask for (or none).

Runs ONNX files on ONNX Runtime, TorchScript .pt and torch.export .pt2 on PyTorch (and any other installed runtime
with --runtime). Reports opening the file (session creation) and first inference apart from the steady state (after
--warmup runs): min, mean, std, p50/p90/p95/p99, max latency, throughput at the batch, achieved GMAC/s (edgekit
exports), peak memory, the provider(s) that really ran it, threads, versions and CPU/GPU. A provider that is missing,
or that ONNX Runtime silently replaces with another (onnxruntime-gpu falls back to CPU without a word), is refused:
exit 1, no numbers. On CUDA, inputs and outputs stay on the GPU (I/O binding); the copy-inclusive latency is
reported apart.

Symbolic input dimensions: --batch sets the batch; --shape NAME:1x3x224x224 sets a whole input (repeat per input).

examples:
  edgekit bench exports/mobilenet_v3_large_a0.75_r192/mobilenet_v3_large_a0.75_r192.onnx --provider cpu
  edgekit bench model.onnx --threads 2 --iters 500 --compare torch
  edgekit bench model.onnx --provider cuda --batch 8 --duration 10 --json
  edgekit bench model.onnx --shape images:1x3x320x320 --csv results.csv
  edgekit bench model.pt2 --json
"""

from __future__ import annotations

import argparse
import sys

from ._args import add_json_arg


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
    "profile": "profiling",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..bench import BenchOptions
    from ..options import add_arguments as add_options

    parser.add_argument("file", metavar="FILE", help="the exported model (.onnx, .pt, .pt2, ...)")
    add_options(parser, BenchOptions, include=["runtime", "providers", "threads", "batch", "shapes", "warmup"])
    group = parser.add_mutually_exclusive_group()
    add_options(group, BenchOptions, include=["iters", "duration_s"])
    parser.add_argument(
        "--compare", choices=["torch"], help="also time the eager PyTorch reference (needs edgekit metadata)"
    )
    add_options(parser, BenchOptions, include=["cudnn_conv_algo_search", "device_id", "inference_precision", "profile", "top"])
    parser.add_argument("--csv", metavar="FILE", help="append one row of results to FILE (header written when new)")
    add_json_arg(parser)


class _Progress:
    """Progress on stderr: one line rewritten in place on a terminal (cleared at the end), else one line per finished
    block of runs. Nothing is printed before the first inference succeeded, so a user error stays one line."""

    _BLOCKS = ("warmup", "measure", "copies-warmup", "copies", "torch-warmup", "torch", "profile")

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
    from ..options import given
    from ..report import to_json

    options = BenchOptions(**given(args, BenchOptions), compare_torch=args.compare == "torch")
    if args.csv:
        check_csv_target(args.csv)  # before the benchmark: a bad --csv must not cost a finished run
    progress = None if args.json else _Progress()
    try:
        report = bench(args.file, options=options, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    print(to_json(report) if args.json else report.to_text(), flush=True)  # the numbers first, whatever follows
    if args.csv:
        written = append_csv(report, args.csv)
        if not args.json:
            print(f"\nappended a row to {written}")
    return 0


def format_report(report: object) -> str:
    """The text report (kept here for code that imported it; the rendering lives with the report)."""
    return report.to_text()  # type: ignore[attr-defined]
