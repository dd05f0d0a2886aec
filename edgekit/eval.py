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
from typing import Callable

import numpy as np

from .errors import BadArgument, BadModelFile
from .options import opt, validate
from .runtimes import Runner, RunOptions, open_runner

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
    seed: int = opt(0, kind="int", cli=False, what="seed", lo=0, hi=2**32 - 1, help="seed of the --limit subset")

    def __post_init__(self) -> None:
        validate(self, ("limit", "batch", "threads", "seed"))
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

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("predictions")
        data.pop("labels")
        return data


def evaluate(path: str | os.PathLike, data: str | os.PathLike, *, options: EvalOptions | None = None,
             progress: EvalProgress | None = None) -> EvalReport:
    """Top-1/top-5 accuracy of the file at ``path`` on the labelled image source ``data``."""
    options = options or EvalOptions()
    runner = open_runner(path, options.runtime, options=RunOptions(providers=(options.provider,),
                                                                    threads=options.threads), what="model file")
    return evaluate_runner(runner, data, options=options, progress=progress)


def evaluate_runner(runner: Runner, data: str | os.PathLike, *, options: EvalOptions | None = None,
                    progress: EvalProgress | None = None) -> EvalReport:
    """Like :func:`evaluate`, on a runner that is already open (``compare`` scores the eager PyTorch reference this
    way, with the file's metadata); the runner is closed afterwards."""
    from .precision import Preprocess, iter_batches, pick, resolve_source

    options = options or EvalOptions()
    path = runner.path or runner.label
    try:
        meta = runner.metadata
        if meta is None:
            raise BadModelFile(f"{Path(path).name} carries no edgekit metadata, so its preprocessing (res, mean, "
                               "std) is unknown; export it with 'edgekit export'")
        pre = Preprocess.from_metadata(meta)
        dataset = pick(resolve_source(data, pre, input_name=meta.input_name), options.limit, options.seed)
        labels = dataset.labels()
        if labels is None:
            raise BadArgument(f"{dataset.description} has no labels; pass a folder with one sub-folder per class "
                              "(sorted names = class indices) or an .npz with labels y")
        if int(labels.max()) >= meta.num_classes:
            raise BadArgument(f"{dataset.description} has labels up to {int(labels.max())} but {Path(path).name} has "
                              f"{meta.num_classes} classes; pass data for this model")
        fixed = runner.input_shape[0] if runner.input_shape and isinstance(runner.input_shape[0], int) else None
        batch = fixed or options.batch
        preds: list[np.ndarray] = []
        top5_hits = 0
        started = time.perf_counter()
        done = 0
        for x, y in iter_batches(dataset, pre, batch=batch):
            n = len(x)
            if fixed is not None and n < fixed:  # a fixed-batch file: pad the last batch, score the real rows
                x = np.concatenate([x, np.repeat(x[-1:], fixed - n, axis=0)])
            logits = np.asarray(runner.run(x)[0], dtype=np.float32)[:n]
            preds.append(np.argmax(logits, axis=1))
            if logits.shape[1] >= 5:
                top5 = np.argsort(-logits, axis=1)[:, :5]
                top5_hits += int((top5 == np.asarray(y)[:, None]).any(axis=1).sum())
            done += n
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
    )
