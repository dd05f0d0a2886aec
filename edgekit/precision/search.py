"""Searches over INT8 variants, all from one calibration: ``--scheme auto`` and ``--keep-fp32 auto``.

Both judge a candidate by its top-1 agreement with the fp32 file on held-out images (images of the calibration
source that calibration did not use), and both re-quantize from the calibration cache, so a step costs one
``quantize_static`` (about a second for the zoo's small models), not a calibration.

- ``--scheme auto``: U8S8 and S8S8, per-channel and per-tensor weights; each is timed on the runtime (one after the
  other, same threads, never concurrently, the fp32 file first) and the fastest that meets the agreement target is
  kept. Speed is the point: whether INT8 is faster at all depends on the runtime's kernels (ONNX Runtime's S8S8 QDQ
  convolutions on x86 are slower than fp32 on the main job model), so the report says when none beats fp32.
- ``--keep-fp32 auto``: layers ranked by the noise they add (``layers.layer_errors``), most harmful first, are kept
  in fp32 together with the layers that read them (see ``layers.with_consumers``), one at a time, until the
  held-out agreement reaches the target (or ``max_fp32`` layers stayed fp32).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .int8 import AUTO_SCHEMES, Scheme, quantize_qdq
from .layers import graph_layers, layer_errors, rank_by_added, with_consumers

#: held-out samples the per-layer ranking runs on (every tensor of both graphs is held in memory)
RANKING_SAMPLES = 32
Progress = Callable[[str], None]


def logits(path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The first output of the ONNX file at ``path`` for ``x``, on ONNX Runtime's CPU provider."""
    from ..runtimes import RunOptions, open_runner

    with open_runner(path, "onnxruntime", options=RunOptions(threads=threads)) as runner:
        return np.asarray(runner.run_batched(x, 16), np.float32).reshape(len(x), -1)


def agreement_with(reference: np.ndarray, path: Path, x: np.ndarray, threads: int | None = None) -> float:
    """Top-1 agreement of the file at ``path`` with reference logits on ``x``."""
    if not len(x):
        return float("nan")
    return float((logits(path, x, threads).argmax(1) == reference.argmax(1)).mean())


def median_latency_ms(path: Path, threads: int, iters: int) -> float:
    """p50 latency at batch 1 from edgekit's benchmark (the same timed loop as ``edgekit bench``)."""
    from ..bench import BenchOptions, bench

    return float(bench(path, options=BenchOptions(threads=threads, iters=iters, warmup=10)).latency_ms.p50)


@dataclass(frozen=True)
class SchemeTrial:
    scheme: str
    agreement: float
    latency_ms: float | None
    size_bytes: int
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SchemeSearch:
    fp32_latency_ms: float | None
    trials: list[SchemeTrial]
    chosen: Scheme | None
    target: float
    note: str = ""

    def to_dict(self) -> dict:
        return {"fp32_latency_ms": self.fp32_latency_ms, "target_agreement": self.target,
                "trials": [t.to_dict() for t in self.trials], "chosen": self.chosen.label if self.chosen else None,
                "note": self.note}


def search_schemes(prepared: Path, fp32: Path, cache: Path, method: str, exclude: Sequence[str], work: Path,
                   held_x: np.ndarray, reference: np.ndarray, target: float, threads: int, iters: int,
                   progress: Progress) -> SchemeSearch:
    """Quantize with every scheme of AUTO_SCHEMES, measure agreement and latency, keep the fastest that passes."""
    progress("timing the fp32 file")
    fp32_ms = median_latency_ms(fp32, threads, iters)
    trials: list[SchemeTrial] = []
    for scheme in AUTO_SCHEMES:
        path = quantize_qdq(prepared, work / f"scheme_{scheme.key}.onnx", scheme, method, cache, exclude)
        agree = agreement_with(reference, path, held_x, threads)
        progress(f"timing {scheme.label}")
        ms = median_latency_ms(path, threads, iters)
        trials.append(SchemeTrial(scheme.label, agree, ms, path.stat().st_size, agree >= target))
    passing = [(t, s) for t, s in zip(trials, AUTO_SCHEMES) if t.passed]
    chosen = min(passing, key=lambda p: p[0].latency_ms or np.inf)[1] if passing else None
    note = ""
    if chosen is None:
        tried = ", ".join(f"{t.scheme} {t.agreement:.3f} at {t.latency_ms:.3f} ms" for t in trials)
        note = (f"no scheme reaches the target agreement {target:g} ({tried}; fp32 {fp32_ms:.3f} ms); lower "
                "--target-agreement, keep sensitive layers in fp32 (--keep-fp32 auto), or calibrate on more "
                "representative images")
    else:
        fastest = next(t for t, s in passing if s == chosen)
        if fastest.latency_ms is not None and fastest.latency_ms >= fp32_ms:
            note = (f"none of the INT8 schemes that meet the target is faster than fp32 on this runtime "
                    f"({fastest.latency_ms:.3f} ms for the fastest, {chosen.label}, vs {fp32_ms:.3f} ms fp32); kept "
                    "it for its size; deploy fp32 where speed matters")
    return SchemeSearch(fp32_ms, trials, chosen, target, note)


@dataclass(frozen=True)
class MixedStep:
    kept_fp32: tuple[str, ...]  # PyTorch module names kept in fp32 so far
    nodes: tuple[str, ...]  # the graph nodes excluded from quantization (consumers included)
    agreement: float
    size_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MixedSearch:
    target: float
    reached: bool
    steps: list[MixedStep] = field(default_factory=list)
    #: p50 ms of the all-INT8 file and of the chosen one (timed one after the other), when layers stayed fp32
    latency_ms: tuple[float, float] | None = None

    @property
    def final(self) -> MixedStep:
        return self.steps[-1]

    def to_dict(self) -> dict:
        return {"target_agreement": self.target, "reached": self.reached, "steps": [s.to_dict() for s in self.steps],
                "latency_ms": {"all_int8": self.latency_ms[0], "chosen": self.latency_ms[1]} if self.latency_ms
                else None}


def search_mixed(prepared: Path, model: Any, cache: Path, method: str, scheme: Scheme, start: Sequence[str],
                 work: Path, held_x: np.ndarray, reference: np.ndarray, target: float, max_fp32: int,
                 progress: Progress) -> tuple[MixedSearch, Path]:
    """Greedy: keep the most harmful layer (and its consumers) in fp32 until held-out agreement reaches ``target``.
    Returns the search and the path of the last candidate (the chosen file)."""
    base = quantize_qdq(prepared, work / "mixed_0.onnx", scheme, method, cache, start)
    agree = agreement_with(reference, base, held_x)
    search = MixedSearch(target, agree >= target, [MixedStep((), tuple(start), agree, base.stat().st_size)])
    if search.reached:
        return search, base
    ranking = [e for e in rank_by_added(layer_errors(prepared, base, held_x[:RANKING_SAMPLES]))
               if e.op_type != "Input" and e.added_noise > 0]
    kept: list[str] = []
    nodes = list(start)
    path = base
    for step, error in enumerate(ranking[:max_fp32], start=1):
        if error.node in nodes:
            continue
        kept.append(error.module)
        nodes = with_consumers(model, [*nodes, error.node])
        progress(f"keeping {error.module} in fp32 ({len(kept)} of at most {max_fp32})")
        path = quantize_qdq(prepared, work / f"mixed_{step}.onnx", scheme, method, cache, nodes)
        agree = agreement_with(reference, path, held_x)
        search.steps.append(MixedStep(tuple(kept), tuple(nodes), agree, path.stat().st_size))
        if agree >= target:
            search.reached = True
            break
    return search, path


def layer_report(prepared: Path, quantized: Path, x: np.ndarray, top: int = 5) -> list[dict]:
    """The layers that add the most error, most harmful first (for quantize's report and the metadata)."""
    ranked = rank_by_added(layer_errors(prepared, quantized, x[:RANKING_SAMPLES]))
    return [{"module": e.module, "op": e.op_type, "sqnr_db": round(e.sqnr_db, 2), "input_sqnr_db":
             round(e.input_sqnr_db, 2) if np.isfinite(e.input_sqnr_db) else None,
             "added_noise": round(e.added_noise, 5)} for e in ranked[:top]]


def layer_count(model: Any) -> int:
    return len(graph_layers(model))
