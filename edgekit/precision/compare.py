"""The closing comparison of ``edgekit quantize``: fp32 vs the new file, size, agreement, accuracy and latency.

Agreement and accuracy come from ``--eval DIR`` (scored with ``edgekit eval``'s own code) or, by default, from the
held-out calibration images; latency from edgekit's benchmark loop, the two files timed one after the other on the
same runtime and threads (two alternating rounds, the better of each file's two medians: a burst of load on a
shared machine hits one round, not both), never concurrently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

Progress = Callable[[str], None]
#: seeded image-like inputs used for agreement when there are no images (fp16 without --eval)
SYNTHETIC_SAMPLES = 100


@dataclass(frozen=True)
class FileFacts:
    path: str
    precision: str
    size_bytes: int
    accuracy: float | None = None
    latency_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    fp32: FileFacts
    other: FileFacts
    samples: int
    data: str  # what agreement/accuracy were measured on
    agreement: float | None = None
    agreement_lo: float | None = None
    agreement_hi: float | None = None
    threads: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"fp32": self.fp32.to_dict(), "other": self.other.to_dict(), "samples": self.samples,
                "data": self.data, "agreement": self.agreement, "agreement_ci95": [self.agreement_lo,
                                                                                    self.agreement_hi],
                "threads": self.threads, "notes": self.notes}

    def lines(self) -> list[str]:
        from ..report import table

        def size(f: FileFacts) -> str:
            return f"{f.size_bytes / 1e6:.2f} MB"

        def acc(f: FileFacts) -> str:
            return "-" if f.accuracy is None else f"{100 * f.accuracy:.2f}%"

        def lat(f: FileFacts) -> str:
            return "-" if f.latency_ms is None else f"{f.latency_ms:.3f}"

        rows = [[f.precision, Path(f.path).name, size(f), acc(f), lat(f)] for f in (self.fp32, self.other)]
        ratio = []
        if self.fp32.latency_ms and self.other.latency_ms:
            ratio = [f"{self.other.precision} / fp32: size {self.other.size_bytes / self.fp32.size_bytes:.2f}x, "
                     f"latency {self.other.latency_ms / self.fp32.latency_ms:.2f}x"]
        agree = ("-" if self.agreement is None else
                 f"{self.agreement:.4f} (95% CI {self.agreement_lo:.4f}-{self.agreement_hi:.4f})")
        drop = ""
        if self.fp32.accuracy is not None and self.other.accuracy is not None:
            drop = f", accuracy change {100 * (self.other.accuracy - self.fp32.accuracy):+.2f} points"
        out = [table(rows, ["precision", "file", "size", "top-1", "p50 ms"], align="lllrr"),
               f"top-1 agreement with fp32 {agree} on {self.samples} {self.data}{drop}"]
        if self.threads:
            out.append(f"latency: batch 1, {self.threads} threads, ONNX Runtime CPU, timed one after the other")
        return out + ratio + [f"note: {n}" for n in self.notes]


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    from ..verify.agreement import wilson_interval

    same = int((np.asarray(a) == np.asarray(b)).sum())
    lo, hi = wilson_interval(same, len(a))
    return same / len(a), lo, hi


def _scores(src: Path, dst: Path, conversion: Any, options: Any, meta: Any,
            progress: Progress) -> tuple[dict, int, str, tuple]:
    """(accuracy by file, samples, what they were, agreement) from --eval, the held-out images, or seeded inputs."""
    from .search import logits

    if options.eval is not None:
        from ..eval import EvalOptions, compare, evaluate

        progress(f"scoring both files on {options.eval}")
        a = evaluate(src, options.eval, options=EvalOptions(threads=options.threads))
        b = evaluate(dst, options.eval, options=EvalOptions(threads=options.threads))
        c = compare(a, b)
        return ({"fp32": a.top1, "other": b.top1}, a.images, f"images of {options.eval}",
                (c.agreement, c.agreement_lo, c.agreement_hi))
    data = conversion.calibration
    if data is not None and len(data.held_x):
        x, y, what = data.held_x, data.held_y, "held-out calibration images"
    else:
        from .data import synthetic_images

        x = synthetic_images(SYNTHETIC_SAMPLES, (3, *meta.input_hw), meta.mean, meta.std, seed=1)
        y, what = None, "seeded image-like inputs (pass --eval DIR for real images)"
    p32, pq = logits(src, x, options.threads).argmax(1), logits(dst, x, options.threads).argmax(1)
    acc = {"fp32": float((p32 == y).mean()), "other": float((pq == y).mean())} if y is not None else {}
    return acc, len(x), what, _agreement(p32, pq)


def compare_files(src: Path, dst: Path, conversion: Any, options: Any, meta: Any, progress: Progress) -> Comparison:
    from .search import median_latency_ms

    acc, n, what, (agree, lo, hi) = _scores(src, dst, conversion, options, meta, progress)
    latency: dict[str, list[float]] = {"fp32": [], "other": []}
    threads = None
    if options.latency:
        from ..bench.system import default_threads

        threads = options.threads or default_threads()
        for round_ in (1, 2):
            for key, path in (("fp32", src), ("other", dst)):
                progress(f"timing the {'fp32' if key == 'fp32' else conversion.precision} file (round {round_} of 2)")
                latency[key].append(median_latency_ms(path, threads, options.iters))
    facts = {key: FileFacts(str(path), "fp32" if key == "fp32" else conversion.precision, path.stat().st_size,
                            acc.get(key), min(latency[key]) if latency[key] else None)
             for key, path in (("fp32", src), ("other", dst))}
    result = Comparison(facts["fp32"], facts["other"], n, what, agree, lo, hi, threads)
    result.notes.extend(_speed_notes(result, dst, searched=options.scheme == "auto"))
    return result


def _speed_notes(c: Comparison, dst: Path, searched: bool) -> list[str]:
    fast, slow = c.fp32.latency_ms, c.other.latency_ms
    if not fast or not slow or slow < fast:
        return []
    if c.other.precision == "fp16":
        from .fp16 import casts_inserted

        casts = casts_inserted(dst)
        why = (f"ONNX Runtime inserted {casts} Cast nodes to run fp16 layers in fp32: its CPU provider has no fp16 "
               "kernels for them here" if casts else "ONNX Runtime's CPU provider has no faster fp16 kernels here")
        return [f"the fp16 file runs no faster than fp32 ({slow:.3f} vs {fast:.3f} ms): {why}; fp16 halves the file, "
                "the speed needs a GPU or NPU provider"]
    other = "another runtime" if searched else "--scheme auto, another runtime"
    return [f"the {c.other.precision} file is SLOWER than fp32 on this runtime ({slow:.3f} vs {fast:.3f} ms, "
            f"{slow / fast:.2f}x): its INT8 kernels are not faster on this CPU for this model; try {other}, or deploy "
            "fp32 where speed matters"]
