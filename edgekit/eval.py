"""Accuracy on labelled images: top-1/top-5 of any file a runtime can run, with the file's own preprocessing.

``evaluate`` opens the file through the runtime layer, streams the images through
``edgekit.precision`` (the one preprocessing implementation, driven by the file's metadata) in batches, and
counts. It is what ``edgekit eval``, ``quantize``'s comparison and ``compare --data`` use.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import BadArgument, BadModelFile
from .options import opt, validate
from .runtimes import Runner, RunOptions, open_runner

if TYPE_CHECKING:  # pragma: no cover
    from .metadata import Metadata
    from .precision.data import Dataset

#: progress(done, total): images scored so far
EvalProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = opt(None, kind="int", metavar="N", what="--limit", lo=1, hi=10_000_000, example="--limit 500",
                            help="score at most N images (a seeded random subset, classes kept spread)")
    batch: int = opt(16, kind="int", metavar="B", what="--batch", lo=1, hi=1024, example="--batch 16",
                     help="images per inference (a fixed-batch file runs at its own batch)")
    runtime: str | None = opt(None, metavar="NAME", help="runtime (default: the file's format's own)")
    provider: str = opt("cpu", metavar="NAME", help="device / execution provider")
    threads: int | None = opt(None, kind="int", metavar="N", what="--threads", lo=1, hi=256, example="--threads 2",
                              help="intra-op threads (default: the physical cores available)")
    labels: str | None = opt(None, kind="path", metavar="FILE",
                             help="class names, one per line in class-index order; class folders are matched to them "
                                  "(default: sorted folder names are the class indices)")
    seed: int = opt(0, kind="int", cli=False, what="seed", lo=0, hi=2**32 - 1, help="seed of the --limit subset")

    def __post_init__(self) -> None:
        validate(self, ("limit", "batch", "threads", "seed"))
        if self.labels is not None:
            object.__setattr__(self, "labels", str(self.labels))
        if self.runtime is not None:
            from .runtimes import get_runtime

            object.__setattr__(self, "runtime", get_runtime(self.runtime).name)


@dataclass(frozen=True)
class EvalReport:
    path: str
    data: str  # what was scored, in words
    runtime: str
    providers: tuple[str, ...]
    images: int
    classes: int
    top1: float
    top5: float | None  # None when the model has fewer than 5 classes
    images_per_s: float
    seconds: float
    predictions: list[int] = field(repr=False, default_factory=list)  # top-1 class per image, in data order
    labels: list[int] = field(repr=False, default_factory=list)
    precision: str = "fp32"

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("predictions")
        data.pop("labels")
        return data


def load_dataset(data: "str | os.PathLike | Dataset", meta: "Metadata", options: EvalOptions,
                 name: str) -> "Dataset":
    """The labelled images to score, resolved with the file's preprocessing, relabelled by --labels, checked against
    the model's classes, reduced to --limit."""
    from .precision import pick, resolve_source
    from .precision.data import Dataset, apply_labels, check_classes, read_labels

    if isinstance(data, Dataset):
        dataset = data
    else:
        from .precision import Preprocess

        dataset = resolve_source(data, Preprocess.from_metadata(meta), input_name=meta.input_name)
    if options.labels is not None:
        dataset = apply_labels(dataset, read_labels(options.labels))
    if dataset.labels() is None:
        raise BadArgument(f"{dataset.description} has no labels; pass a folder with one sub-folder per class "
                          "(sorted names = class indices) or an .npz with labels y")
    check_classes(dataset, meta.num_classes, name, labels_given=options.labels is not None)
    return pick(dataset, options.limit, options.seed)


def evaluate(path: str | os.PathLike, data: "str | os.PathLike | Dataset", *, options: EvalOptions | None = None,
             progress: EvalProgress | None = None) -> EvalReport:
    """Top-1/top-5 accuracy of the file at ``path`` on the labelled image source ``data`` (a path, or an already
    resolved :class:`~edgekit.precision.data.Dataset`)."""
    options = options or EvalOptions()
    runner = open_runner(path, options.runtime, options=RunOptions(providers=(options.provider,),
                                                                    threads=options.threads), what="model file")
    return evaluate_runner(runner, data, options=options, progress=progress)


def evaluate_runner(runner: Runner, data: "str | os.PathLike | Dataset", *, options: EvalOptions | None = None,
                    progress: EvalProgress | None = None) -> EvalReport:
    """Like :func:`evaluate`, on a runner that is already open (``compare`` scores the eager PyTorch reference this
    way, with the file's metadata); the runner is closed afterwards."""
    from .precision import Preprocess, iter_batches

    options = options or EvalOptions()
    path = runner.path or runner.label
    try:
        meta = runner.metadata
        if meta is None:
            raise BadModelFile(f"{Path(path).name} carries no edgekit metadata, so its preprocessing (res, mean, "
                               "std) is unknown; export it with 'edgekit export'")
        pre = Preprocess.from_metadata(meta)
        dataset = load_dataset(data, meta, options, Path(path).name)
        labels = dataset.labels()
        assert labels is not None
        preds: list[np.ndarray] = []
        top5_hits = 0
        started = time.perf_counter()
        done = 0
        for x, y in iter_batches(dataset, pre, batch=options.batch):
            logits = np.asarray(runner.run_batched(x, options.batch), dtype=np.float32)
            preds.append(np.argmax(logits, axis=1))
            if logits.shape[1] >= 5:
                top5 = np.argsort(-logits, axis=1)[:, :5]
                top5_hits += int((top5 == np.asarray(y)[:, None]).any(axis=1).sum())
            done += len(x)
            if progress is not None:
                progress(done, len(dataset))
        seconds = time.perf_counter() - started
    finally:
        runner.close()
    predictions = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    images = len(predictions)
    return EvalReport(
        path=str(path), data=dataset.description, runtime=runner.runtime, providers=tuple(runner.providers),
        images=images, classes=meta.num_classes, top1=float((predictions == labels[:images]).mean()) if images else 0.0,
        top5=top5_hits / images if images and meta.num_classes >= 5 else None,
        images_per_s=images / seconds if seconds > 0 else 0.0, seconds=seconds,
        predictions=[int(p) for p in predictions], labels=[int(v) for v in labels[:images]],
        precision=meta.precision,
    )


@dataclass(frozen=True)
class EvalComparison:
    """Two files scored on the same images: both accuracies, the drop, and how often they decide alike."""

    a: EvalReport
    b: EvalReport
    agreement: float  # share of images whose top-1 class is the same in both
    agreement_lo: float  # Wilson 95% interval
    agreement_hi: float

    @property
    def drop_points(self) -> float:
        """Accuracy of A minus accuracy of B, in percentage points (positive: B is worse)."""
        return 100 * (self.a.top1 - self.b.top1)

    def to_dict(self) -> dict:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "top1_drop_points": self.drop_points,
                "agreement": self.agreement, "agreement_ci95": [self.agreement_lo, self.agreement_hi]}


def compare(a: EvalReport, b: EvalReport) -> EvalComparison:
    """The comparison of two evaluations of the same images (same data, same order, same --limit subset)."""
    from .verify.agreement import wilson_interval

    if a.labels != b.labels or not a.labels:
        raise BadArgument("the two evaluations scored different images; evaluate both files on the same --data with "
                          "the same --limit")
    same = int(sum(p == q for p, q in zip(a.predictions, b.predictions)))
    lo, hi = wilson_interval(same, len(a.predictions))
    return EvalComparison(a, b, same / len(a.predictions), lo, hi)
