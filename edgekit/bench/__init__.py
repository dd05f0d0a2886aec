"""Latency and throughput of an exported model on the runtime and device the user asked for.

Numbers people can trust, in the shape of onnxruntime_perf_test's and Polygraphy's reports:

- The file runs on the runtime and provider that were asked for, or nothing runs: the runner refuses an unknown or
  missing provider and a session that silently ended up somewhere else (see ``edgekit/runtimes``). The label in
  the report is what the runtime says after opening the file, never what was requested.
- Opening the file (session creation, program load, compilation) and the first inference (where cuDNN runs its
  convolution-algorithm search) are reported apart from the steady state, which is measured after ``warmup`` runs.
- The timed loop does nothing per iteration but the call and the clock: latencies go into a preallocated list of
  ``perf_counter_ns`` differences, and progress is reported between chunks of iterations, outside any timed window.
- ``compare_torch`` times the eager PyTorch reference (rebuilt from the file's edgekit metadata, same input, same
  thread count) after the runner has been closed, never concurrently: they would fight for the cores.
"""

from __future__ import annotations

import gc
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BadArgument, BadModelFile, ProviderUnavailable, first_line
from ..metadata import Metadata
from ..options import opt, validate
from ..runtimes import Runner, RunOptions, get_runtime, open_runner
from ..runtimes.onnxruntime import (
    CUDNN_CONV_ALGO_SEARCH,
    GPU_PROVIDERS,
    HostTimer,
    IOBindingTimer,
    check_nodes_assigned,
    check_provider_options,
    check_providers_available,
    check_session_providers,
    make_timer,
    resolve_provider,
    session_options,
)
from ..runtimes.torch import TorchTimer
from .inputs import fmt_shape, is_fixed, parse_shape, resolve_input_shapes, synthesize_inputs
from .report import CSV_COLUMNS, BenchReport, InputSpec, TorchComparison, append_csv, check_csv_target, csv_row
from .stats import PHASES, LatencyStats, ProgressFn, latency_stats, noop_progress, run_block, time_once, to_ms, warm
from .system import SystemInfo, allowed_cpus, default_threads, load_average, peak_rss_mib, rss_now_mib, system_info

#: The loop classes' first names, kept for code that imported them from here.
HostRunner, IOBindingRunner, TorchRunner, make_runner = HostTimer, IOBindingTimer, TorchTimer, make_timer

DEFAULT_WARMUP = 10
DEFAULT_ITERS = 100
MAX_ITERS = 10_000_000
MAX_THREADS = 256
MAX_BATCH = 4096


def _parse_shapes(shapes: object) -> tuple[tuple[str | None, tuple[int, ...]], ...]:
    items = shapes.items() if isinstance(shapes, Mapping) else shapes
    parsed: dict[str | None, tuple[int, ...]] = {}
    for item in items:  # type: ignore[union-attr]
        if isinstance(item, str):
            name, dims = parse_shape(item)
        else:
            name, dims = item
            if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
                raise BadArgument(f"shape {list(dims)} for input {name!r} must be positive whole numbers")
            dims = tuple(int(d) for d in dims)
        if name in parsed:
            raise BadArgument(f"shape given twice for input {name or '(unnamed)'!r}; pass one --shape per input")
        parsed[name] = dims
    if None in parsed and len(parsed) > 1:
        raise BadArgument("an unnamed --shape only works alone; name each input: --shape NAME:1x3x224x224")
    return tuple(parsed.items())


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark; validated once, here (every flag of ``edgekit bench`` is declared on a field).

    ``runtime``: which runtime runs the file (default: its format's own). ``providers``: device names in priority
    order (ONNX Runtime: short names or EP names, stored resolved). ``threads``: intra-op threads (and torch's for
    ``compare_torch``); None means the physical cores this process may use, resolved when the benchmark runs and
    reported. ``batch``: the size given to a symbolic batch dimension (default: the model's fixed batch, else 1).
    ``shapes``: input name -> full shape for other symbolic dimensions. Either ``iters`` or ``duration_s``.
    """

    providers: tuple[str, ...] = opt(("cpu",), flag="--provider", metavar="NAME", append=True,
                                     help="execution provider / device: cpu, cuda, tensorrt, openvino, ... or a full "
                                          "EP name; repeat (or comma-separate) for a priority list")
    threads: int | None = opt(None, kind="int", metavar="N", what="threads", lo=1, hi=MAX_THREADS,
                              example="--threads 2", help="intra-op threads (default: the physical cores available)")
    batch: int | None = opt(None, kind="int", metavar="N", what="batch", lo=1, hi=MAX_BATCH, example="--batch 1",
                            help="size of a symbolic batch dimension (default: 1)")
    shapes: tuple = opt((), flag="--shape", metavar="NAME:DIMS", append=True,
                        help="full shape of an input, e.g. input:1x3x224x224 (repeat per input; the name may be left "
                             "out for a single-input model)")
    warmup: int = opt(DEFAULT_WARMUP, kind="int", metavar="N", what="warmup", lo=0, hi=1_000_000,
                      example="--warmup 10", help="warm-up runs after the first inference")
    iters: int | None = opt(None, kind="int", metavar="N", what="iters", lo=1, hi=MAX_ITERS, example="--iters 100",
                            too_big="edgekit keeps every latency; for a long run pass --duration SECONDS",
                            help=f"timed runs (default {DEFAULT_ITERS})")
    duration_s: float | None = opt(None, kind="float", flag="--duration", metavar="S", what="duration", lo=0.0,
                                   lo_open=True, hi=86_400.0, example="--duration 5",
                                   help="time runs for S seconds instead of a number of runs")
    compare_torch: bool = opt(False, kind="bool", cli=False, help="also time the eager PyTorch reference")
    cudnn_conv_algo_search: str = opt("EXHAUSTIVE", metavar="MODE",
                                      help="CUDA: EXHAUSTIVE (searched during the first inference), HEURISTIC or "
                                           "DEFAULT")
    device_id: int = opt(0, kind="int", metavar="N", what="device id", lo=0, hi=64, example="--device-id 0",
                         help="GPU index for CUDA/TensorRT")
    seed: int = opt(0, kind="int", cli=False, what="seed", lo=0, hi=2**32 - 1, help="seed of the synthesised inputs")
    runtime: str | None = opt(None, metavar="NAME", help="runtime: onnxruntime, torch, openvino, executorch (default: "
                                                         "the file's format's own)")
    profile: bool = opt(False, kind="bool", help="after the plain run, per-node times from the runtime's own "
                                                 "profiler, by operator type, PyTorch module and stage, against MACs "
                                                 "and bytes moved")
    top: int = opt(10, kind="int", metavar="K", what="--top", lo=1, hi=10_000, example="--top 10",
                   help="rows of each --profile table")
    inference_precision: str | None = opt(None, metavar="P",
                                help="OpenVINO: compute in f32 (default, read back) or bf16 (faster on CPUs with "
                                     "AVX512-BF16/AMX, not fp32 numerics); torch on CUDA: fp32 (default) or tf32 "
                                     "(PyTorch's own default for convolutions, not fp32 numerics); labelled in the "
                                     "report")

    def __post_init__(self) -> None:
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen dataclass)
        if self.runtime is not None:
            set_("runtime", get_runtime(self.runtime).name)
        providers = (self.providers,) if isinstance(self.providers, str) else tuple(self.providers)
        if self.runtime in (None, "onnxruntime"):
            set_("providers", check_provider_options(providers))
        else:
            names = [p.strip().lower() for item in providers for p in str(item).split(",") if p.strip()]
            if not names:
                raise BadArgument("no device given; pass e.g. --provider cpu")
            set_("providers", tuple(dict.fromkeys(names)))
        set_("shapes", _parse_shapes(self.shapes))
        if self.iters is not None and self.duration_s is not None:
            raise BadArgument("pass either --iters or --duration, not both")
        validate(self, ("threads", "batch", "warmup", "iters", "duration_s", "device_id", "seed", "profile", "top"))
        if self.duration_s is None and self.iters is None:
            set_("iters", DEFAULT_ITERS)
        search = str(self.cudnn_conv_algo_search).upper()
        if search not in CUDNN_CONV_ALGO_SEARCH:
            raise BadArgument(f"cudnn_conv_algo_search must be one of {', '.join(CUDNN_CONV_ALGO_SEARCH)}, got "
                              f"{self.cudnn_conv_algo_search!r}")
        set_("cudnn_conv_algo_search", search)
        set_("compare_torch", bool(self.compare_torch))

    def run_options(self, threads: int | None = None, *, profile: bool = False) -> RunOptions:
        """How to open the file; ``profile`` for the second, profiled run (the measured run is never profiled)."""
        return RunOptions(providers=self.providers, threads=threads or self.threads, device_id=self.device_id,
                          cudnn_conv_algo_search=self.cudnn_conv_algo_search, profile=profile,
                          precision=self.inference_precision)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shapes"] = {name or "": list(dims) for name, dims in self.shapes}
        return data


def _open(file: Path, options: BenchOptions, threads: int, progress: ProgressFn) -> Runner:
    progress("session", 0, 1)
    runner = open_runner(file, options.runtime, options=options.run_options(threads), what="model file")
    progress("session", 1, 1)
    return runner


def _feeds(runner: Runner, options: BenchOptions) -> tuple[dict, dict, int, tuple[InputSpec, ...]]:
    metadata = runner.metadata
    if options.compare_torch:
        _check_torch_comparable(metadata, runner)
    declared = [(i.name, list(i.shape)) for i in runner.inputs]
    shapes, batch = resolve_input_shapes(declared, batch=options.batch, shapes=dict(options.shapes), metadata=metadata)
    feeds = synthesize_inputs([(i.name, i.dtype) for i in runner.inputs], shapes, seed=options.seed)
    specs = tuple(InputSpec(name, tuple(decl), shapes[name], str(feeds[name].dtype)) for name, decl in declared)
    return feeds, shapes, batch, specs


def _check_metadata_fits(runner: Runner, shapes: dict) -> list[str]:
    """A file whose metadata describes another input than the file has: its name, MACs and reference are not this
    file's, so they are not reported (a hand-edited or mislabelled file would otherwise borrow another's numbers)."""
    meta = runner.metadata
    if meta is None or not runner.shapes_from_file or len(runner.inputs) != 1:
        return []
    declared = runner.inputs[0].shape
    problems = []
    if runner.inputs[0].name != meta.input_name:
        problems.append(f"input is named {runner.inputs[0].name!r}, the metadata says {meta.input_name!r}")
    if len(declared) == 4 and all(isinstance(d, int) for d in declared[2:]) and tuple(declared[2:]) != meta.input_hw:
        problems.append(f"the input is {declared[2]}x{declared[3]}, the metadata says {meta.input_hw[0]}x"
                        f"{meta.input_hw[1]}")
    if problems:
        raise BadModelFile(
            f"the edgekit metadata of {runner.path.name if runner.path else 'the file'} does not describe it "
            f"({'; '.join(problems)}); re-export it, or strip the metadata to bench it as an unknown model"
        )
    return []


def bench(path: str | os.PathLike, *, options: BenchOptions, progress: ProgressFn | None = None) -> BenchReport:
    """Benchmark the exported model at ``path`` on ``options.runtime`` / ``options.providers``."""
    progress = progress or noop_progress
    threads = options.threads or default_threads()
    load, rss_before = load_average(), rss_now_mib()
    return _measure(_open(Path(path), options, threads, progress), Path(path), options, threads, progress, load,
                    rss_before)


def bench_runner(runner: Runner, *, options: BenchOptions, progress: ProgressFn | None = None) -> BenchReport:
    """Benchmark a runner that is already open (``compare`` times the eager PyTorch reference this way, with the
    same loop, threads and seeded inputs as every file); the runner is closed afterwards."""
    progress = progress or noop_progress
    threads = options.threads or default_threads()
    return _measure(runner, Path(runner.path or runner.label), options, threads, progress, load_average(),
                    rss_now_mib())


def _measure(runner: Runner, file: Path, options: BenchOptions, threads: int, progress: ProgressFn,
             load: tuple[float, float, float] | None, rss_before: float) -> BenchReport:
    notes: list[str] = []
    cpus = len(allowed_cpus())
    if load is not None and load[0] >= 0.75 * cpus:
        notes.append(f"load average {load[0]:.2f} on {cpus} CPUs before the run: other processes compete for the "
                     "cores, expect noisy numbers")
    try:
        if options.profile:  # before anything is measured
            from .profile import check_profiler

            check_profiler(runner.runtime)
        timed = _time_runner(runner, options, threads, progress, notes)
    finally:
        runner.close()
    gc.collect()
    metadata, stats = runner.metadata, timed["stats"]
    if options.profile:  # a second session with the profiler on, after the plain one is closed
        from .profile import collect_profile

        timed["profile"] = collect_profile(Path(runner.path or file), options, threads, timed["feeds"], stats,
                                           timed["batch"], progress, notes)
        gc.collect()
    torch_result: TorchComparison | None = None
    if options.compare_torch:
        torch_result = _compare_torch(metadata, Path(runner.path or file), timed["feeds"], threads, options, stats,
                                      timed["batch"], runner.providers, progress)
    return BenchReport(
        path=str(file), model=metadata.model if metadata else None, alpha=metadata.alpha if metadata else None,
        res=metadata.res if metadata else None, macs=metadata.macs if metadata else None,
        params=metadata.params if metadata else None, providers_requested=options.providers,
        providers=runner.providers, nodes_per_provider=timed["nodes"], threads=threads, batch=timed["batch"],
        inputs=timed["inputs"], io_binding=timed["copies"] is not None,
        cudnn_conv_algo_search=options.cudnn_conv_algo_search if "CUDAExecutionProvider" in runner.providers else None,
        warmup=options.warmup, iterations=stats.count, measured_s=timed["measured_s"],
        session_create_ms=runner.open_ms, first_inference_ms=timed["first_ms"], latency_ms=stats,
        throughput=timed["batch"] / (stats.mean / 1e3), gmacs=timed["gmacs"], latency_with_copies_ms=timed["copies"],
        peak_rss_mib=timed["peak_rss"], rss_before_session_mib=rss_before,
        system=system_info(runner.providers, options.device_id, load, runtime=runner.runtime,
                           runtime_version=runner.version),
        torch=torch_result, notes=tuple(notes), timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        runtime=runner.runtime, format=runner.format, profile=timed.get("profile"),
    )


def _time_runner(runner: Runner, options: BenchOptions, threads: int, progress: ProgressFn,
                 notes: list[str]) -> dict[str, Any]:
    """First run, warm-up and the measured block(s) on an open runner; everything bench reports about them."""
    feeds, shapes, batch, inputs = _feeds(runner, options)
    _check_metadata_fits(runner, shapes)
    timer = runner.timer(feeds)
    progress("first", 0, 1)
    try:
        first_ms = time_once(timer.once)
    except Exception as exc:  # noqa: BLE001 - the runtime refuses the shapes, or the graph fails at run time
        fed = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())
        raise BadArgument(f"the model does not run with input {fed}: {first_line(exc, 300)}") from None
    progress("first", 1, 1)
    if runner.providers[0] == "CUDAExecutionProvider" and options.cudnn_conv_algo_search == "EXHAUSTIVE":
        notes.append("first inference includes cuDNN's exhaustive convolution-algorithm search")
    estimate = warm(timer, options.warmup, "warmup", progress, first_ms)
    samples, measured_s = run_block(timer, iters=options.iters, duration_s=options.duration_s, estimate_ns=estimate,
                                    phase="measure", progress=progress)
    stats = latency_stats(to_ms(samples))
    if stats.count > 1 and stats.std > 0.25 * stats.mean:
        notes.append(f"latency varies a lot (std {100 * stats.std / stats.mean:.0f}% of the mean): compare p50s, or "
                     "rerun on a quieter machine, with fewer --threads or a longer --duration")
    copies: LatencyStats | None = None
    if timer.io_binding:
        host = runner.host_timer(feeds)
        host_estimate = warm(host, options.warmup, "copies-warmup", progress, time_once(host.once))
        host_samples, _ = run_block(host, iters=len(samples), duration_s=None, estimate_ns=host_estimate,
                                    phase="copies", progress=progress)
        copies = latency_stats(to_ms(host_samples))
    gmacs = _gmacs(runner.metadata, shapes, batch, stats, notes)
    notes.extend(runner.notes())
    out = {"feeds": feeds, "batch": batch, "inputs": inputs, "first_ms": first_ms, "stats": stats,
           "measured_s": measured_s, "copies": copies, "gmacs": gmacs, "nodes": runner.assignment(),
           "peak_rss": peak_rss_mib()}  # before PyTorch builds its reference model
    return out


def _gmacs(metadata: Metadata | None, shapes: dict, batch: int, stats: LatencyStats, notes: list[str]) -> float | None:
    macs = metadata.macs if metadata is not None else None
    if not macs or metadata is None:
        return None
    fed = shapes.get(metadata.input_name)
    if fed is not None and list(fed[1:]) == [int(d) if is_fixed(d) else d for d in metadata.input_shape[1:]]:
        return macs * batch / (stats.mean / 1e3) / 1e9
    notes.append(f"the metadata's MACs were counted for input {fmt_shape(metadata.input_shape)}; GMAC/s not reported")
    return None


# --------------------------------------------------------------------------------------------------------------------
# --compare torch
# --------------------------------------------------------------------------------------------------------------------
def _check_torch_comparable(metadata: Metadata | None, runner: Runner) -> None:
    if metadata is None:
        raise BadModelFile(
            f"--compare torch needs edgekit metadata (model, alpha, weights) in {str(runner.path)!r} to rebuild the "
            f"PyTorch reference, and this file has none; export it with 'edgekit export' or drop --compare"
        )
    if len(runner.inputs) != 1:
        raise BadArgument("--compare torch supports single-input models only")


def _compare_torch(metadata: Metadata | None, model_path: Path, feeds: Mapping[str, np.ndarray], threads: int,
                   options: BenchOptions, other: LatencyStats, batch: int, providers: Sequence[str],
                   progress: ProgressFn) -> TorchComparison:
    """Eager PyTorch on the device the runtime used (CPU, or the same GPU for CUDA/TensorRT), same input."""
    import torch

    from ..reference import resolve_reference

    assert metadata is not None
    spec = resolve_reference(metadata, path=model_path)
    model = spec.build()
    (array,) = feeds.values()
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    sync = None
    device = "cpu"
    if providers and (providers[0] in GPU_PROVIDERS or "cuda" in providers[0]):
        if not torch.cuda.is_available():
            raise ProviderUnavailable("--compare torch on a GPU provider needs a CUDA build of PyTorch that sees the "
                                      "GPU; torch.cuda.is_available() is False here")
        device = f"cuda:{options.device_id}"
        model, x = model.to(device), x.to(device)
        sync = torch.cuda.synchronize
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from ..runtimes.torch import cuda_precision

        # the eager reference computes in fp32 like the file (TF32 only when the user asked it of the file)
        tf32 = (options.inference_precision or "").lower() == "tf32"
        timer = TorchTimer(model, (x,), sync, plain=lambda: cuda_precision(tf32))
        progress("torch-first", 0, 1)
        first_ms = time_once(timer.once)
        progress("torch-first", 1, 1)
        estimate = warm(timer, options.warmup, "torch-warmup", progress, first_ms)
        samples, _ = run_block(timer, iters=options.iters, duration_s=options.duration_s, estimate_ns=estimate,
                               phase="torch", progress=progress)
    finally:
        torch.set_num_threads(previous)
    stats = latency_stats(to_ms(samples))
    return TorchComparison(
        torch_version=torch.__version__, threads=threads, first_inference_ms=first_ms, warmup=options.warmup,
        latency_ms=stats, throughput=batch / (stats.mean / 1e3), speedup_p50=stats.p50 / other.p50,
        speedup_mean=stats.mean / other.mean,
        reference=(f"eager {metadata.model} alpha {metadata.alpha:g} ({metadata.weights}, unfused as built), "
                   f"torch.inference_mode, {device}"),
    )


__all__ = [
    "BenchOptions", "BenchReport", "LatencyStats", "TorchComparison", "SystemInfo", "InputSpec", "bench", "bench_runner",
    "latency_stats", "resolve_provider", "parse_shape", "resolve_input_shapes", "synthesize_inputs",
    "session_options", "append_csv", "check_csv_target", "csv_row", "CSV_COLUMNS", "default_threads", "run_block",
    "check_session_providers", "check_nodes_assigned", "check_providers_available", "PHASES",
]
