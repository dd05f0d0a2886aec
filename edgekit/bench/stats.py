"""The timed blocks and their statistics: the one place where latencies are collected and percentiles computed."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: progress(phase, done, total): phase is one of PHASES; total is None when the block runs for a duration rather than
#: a number of iterations. Called between chunks of iterations, never inside a timed window.
ProgressFn = Callable[[str, int, "int | None"], None]

PHASES = ("session", "first", "warmup", "measure", "copies-warmup", "copies", "torch-first", "torch-warmup", "torch",
          "profile")
#: Progress is reported between chunks of about this many seconds of iterations.
_CHUNK_S = 0.25


@dataclass(frozen=True)
class LatencyStats:
    """Latency distribution in milliseconds. Percentiles interpolate linearly (numpy's default, Hyndman-Fan type 7);
    ``std`` is the sample standard deviation (n - 1; 0 for a single sample)."""

    count: int
    min: float
    mean: float
    std: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    def to_dict(self) -> dict:
        return asdict(self)


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Statistics of a list of latencies (ms). A pure function: the one place where percentiles are computed."""
    data = np.asarray(samples_ms, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(data, [50, 90, 95, 99]))
    return LatencyStats(
        count=int(data.size),
        min=float(data.min()),
        mean=float(data.mean()),
        std=float(data.std(ddof=1)) if data.size > 1 else 0.0,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        max=float(data.max()),
    )


def noop_progress(phase: str, done: int, total: int | None) -> None:
    pass


def run_block(
    runner: Any,
    *,
    iters: int | None,
    duration_s: float | None,
    estimate_ns: float,
    phase: str,
    progress: ProgressFn = noop_progress,
) -> tuple[list[int], float]:
    """Run ``iters`` timed calls (or as many as fit in ``duration_s``): per-call nanoseconds and the block's wall time.

    The latency list is preallocated; progress is reported between chunks of about ``_CHUNK_S`` seconds.
    """
    chunk = max(1, min(10_000, int(_CHUNK_S * 1e9 / max(estimate_ns, 1.0))))
    if duration_s is not None:
        capacity = max(64, min(1_000_000, int(1.2 * duration_s * 1e9 / max(estimate_ns, 1.0)) + 64))
        total: int | None = None
    else:
        assert iters is not None
        capacity = iters
        total = iters
    out = [0] * capacity
    done = 0
    progress(phase, 0, total)
    wall0 = time.perf_counter_ns()
    deadline = wall0 + int(duration_s * 1e9) if duration_s is not None else 1 << 62
    while True:
        stop = done + chunk if total is None else min(done + chunk, total)
        if stop > len(out):  # duration mode ran faster than estimated: grow between chunks, outside any timing
            out.extend([0] * max(stop - len(out), len(out)))
        reached = runner.timed(out, done, stop, deadline)
        done = reached
        if (total is not None and done >= total) or reached < stop or time.perf_counter_ns() >= deadline:
            break
        progress(phase, done, total)
    wall_s = (time.perf_counter_ns() - wall0) / 1e9
    progress(phase, done, done)  # the block is over: done == total, also in duration mode
    return out[:done], wall_s


def time_once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def warm(runner: Any, warmup: int, phase: str, progress: ProgressFn, first_ms: float) -> float:
    """Warm-up runs (timed only to size the chunks of the measured block); returns the per-call estimate in ns."""
    if warmup <= 0:
        return first_ms * 1e6
    lat, _ = run_block(runner, iters=warmup, duration_s=None, estimate_ns=first_ms * 1e6, phase=phase, progress=progress)
    return float(np.median(lat)) if lat else first_ms * 1e6


def to_ms(samples_ns: Sequence[int]) -> list[float]:
    return [s / 1e6 for s in samples_ns]


