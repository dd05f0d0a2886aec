"""Image sources for calibration (``--calib``), accuracy (``--data``) and statistical verification.

A source is what ``--calib`` and ``--data`` accept:

- a folder of images: flat (unlabelled) or one sub-folder per class (``<root>/<class>/...``, classes sorted by name
  give the label indices, torchvision ``ImageFolder`` style; files inside a class folder are found recursively);
- an ``.npz`` of ready NCHW tensors (``x`` / ``input`` / the model's input name; optional ``y`` / ``labels``);
- ``synthetic`` or ``synthetic:N``: seeded image-like inputs (smooth colour fields, edges, blobs), normalised with
  the model's mean/std. Only a smoke test: it does not represent real data (see REPORT.md for what it costs).

Untrusted folders: hidden entries and files without an image extension are skipped and counted; a file with an
image extension that does not decode is an error naming it (``on_bad="skip"`` skips and records it instead);
symlinks are followed but a directory already visited (a symlink loop) is not entered twice; an empty folder, a
folder with no images, or loose images next to class folders are errors that say what to do.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import BadArgument, first_line
from ..guards import check_npz
from .preprocess import BadImage, Preprocess, is_image_name, load_image

SYNTHETIC = "synthetic"
DEFAULT_SEED = 0
MAX_FILES = 1_000_000  # a walk that finds more than this is pointed at the wrong folder


class BadCalibrationData(BadArgument):
    """A calibration / evaluation source that cannot be used (missing, empty, wrong shapes, unreadable)."""

    exit_code = 1


@dataclass
class Skipped:
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    path: Path | None  # None for tensors from an .npz or synthetic
    label: int | None


@dataclass
class Dataset:
    """A resolved source: either file samples (decoded lazily) or ready tensors."""

    kind: str  # "folder", "npz", "synthetic"
    description: str
    samples: list[Sample]
    classes: list[str] = field(default_factory=list)  # class folder names (label index -> name); [] when flat
    tensors: np.ndarray | None = None  # NCHW float32 for npz / synthetic
    skipped: dict[str, "Skipped"] = field(default_factory=dict)  # reason -> count and a few example paths

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labelled(self) -> bool:
        return bool(self.samples) and all(s.label is not None for s in self.samples)

    def labels(self) -> np.ndarray | None:
        if not self.labelled:
            return None
        return np.asarray([s.label for s in self.samples], dtype=np.int64)

    def subset(self, indices: Sequence[int]) -> "Dataset":
        idx = list(indices)
        return Dataset(self.kind, self.description, [self.samples[i] for i in idx], list(self.classes),
                       None if self.tensors is None else self.tensors[idx], dict(self.skipped))

    def skipped_count(self) -> int:
        return sum(v.count for v in self.skipped.values())

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.description, "samples": len(self), "labelled": self.labelled,
                "classes": self.classes, "skipped": {k: v.count for k, v in self.skipped.items()}}


# ----------------------------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------------------------
def _note(skipped: dict[str, Skipped], reason: str, path: Path, keep: int = 3) -> None:
    entry = skipped.setdefault(reason, Skipped())
    entry.count += 1
    if len(entry.examples) < keep:
        entry.examples.append(str(path))


def _walk_files(root: Path, skipped: dict[str, Skipped], seen_dirs: set[tuple[int, int]]) -> Iterator[Path]:
    """Files under ``root`` in sorted order, following symlinks, entering each real directory once."""
    try:
        st = root.stat()
    except OSError:
        _note(skipped, "unreadable directory", root)
        return
    key = (st.st_dev, st.st_ino)
    if key in seen_dirs:
        _note(skipped, "directory already visited (symlink loop or duplicate link)", root)
        return
    seen_dirs.add(key)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        _note(skipped, "unreadable directory", root)
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            _note(skipped, "hidden", path)
            continue
        try:
            mode = os.stat(path).st_mode  # follows symlinks
        except OSError:
            _note(skipped, "broken symlink or vanished file", path)
            continue
        if stat.S_ISDIR(mode):
            yield from _walk_files(path, skipped, seen_dirs)
        elif stat.S_ISREG(mode):
            yield path
        else:
            _note(skipped, "not a regular file", path)


def _image_files(root: Path, skipped: dict[str, Skipped], seen: set[tuple[int, int]]) -> list[Path]:
    out: list[Path] = []
    for path in _walk_files(root, skipped, seen):
        if is_image_name(path):
            out.append(path)
            if len(out) > MAX_FILES:
                raise BadCalibrationData(f"{root} holds more than {MAX_FILES} images; point at a smaller folder")
        else:
            _note(skipped, "not an image extension", path)
    return out


def scan_folder(root: str | os.PathLike) -> Dataset:
    """Resolve a folder into samples without decoding anything (decoding errors surface when loading)."""
    root = Path(root)
    if not root.exists():
        raise BadCalibrationData(f"calibration folder {str(root)!r} does not exist; pass a folder of images, an .npz "
                                 "or 'synthetic'")
    if not root.is_dir():
        raise BadCalibrationData(f"{str(root)!r} is not a folder; pass a folder of images, an .npz or 'synthetic'")
    skipped: dict[str, Skipped] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise BadCalibrationData(f"cannot list {str(root)!r} ({exc.strerror}); check its permissions") from None
    visible = [e for e in entries if not e.name.startswith(".")]
    if not visible:
        raise BadCalibrationData(f"calibration folder {str(root)!r} is empty; put images (or class sub-folders) in it")
    subdirs = [Path(e.path) for e in visible if Path(e.path).is_dir()]
    loose = [Path(e.path) for e in visible if Path(e.path).is_file() and is_image_name(e.name)]
    # each real directory is entered once (the walk records it; a class folder linking back to the root is a loop)
    seen: set[tuple[int, int]] = set() if not subdirs else {(root.stat().st_dev, root.stat().st_ino)}
    if subdirs and loose:
        raise BadCalibrationData(
            f"{str(root)!r} mixes {len(loose)} loose images with {len(subdirs)} sub-folders (e.g. {loose[0].name!r}, "
            f"{subdirs[0].name!r}/); use either a flat folder of images or one sub-folder per class"
        )
    samples: list[Sample] = []
    classes: list[str] = []
    for entry in entries:
        if entry.name.startswith("."):
            _note(skipped, "hidden", Path(entry.path))
        elif subdirs and Path(entry.path).is_file() and not is_image_name(entry.name):
            _note(skipped, "not an image extension", Path(entry.path))
    if subdirs:
        for label, sub in enumerate(subdirs):
            files = _image_files(sub, skipped, seen)
            classes.append(sub.name)
            samples.extend(Sample(p, label) for p in files)
            if not files:
                _note(skipped, "class folder without images", sub)
        description = f"folder {root} ({len(classes)} class folders)"
    else:
        samples = [Sample(p, None) for p in _image_files(root, skipped, seen)]
        description = f"folder {root} (flat, unlabelled)"
    if not samples:
        extra = f" ({', '.join(f'{k}: {v.count}' for k, v in skipped.items())})" if skipped else ""
        raise BadCalibrationData(
            f"no image files in {str(root)!r}{extra}; expected .png/.jpg/... files, flat or in class sub-folders"
        )
    return Dataset("folder", description, samples, classes, None, skipped)


# ----------------------------------------------------------------------------------------------------------------
# .npz and synthetic
# ----------------------------------------------------------------------------------------------------------------
_INPUT_KEYS = ("x", "input", "inputs", "images", "data")
_LABEL_KEYS = ("y", "label", "labels", "target", "targets")


def load_npz(path: str | os.PathLike, chw: tuple[int, int, int], input_name: str = "input") -> Dataset:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            check_npz(data, f"reading {path.name}")
            arrays = {k: data[k] for k in data.files}
    except BadArgument:
        raise
    except FileNotFoundError:
        raise BadCalibrationData(f"{str(path)!r} does not exist; pass a folder of images, an .npz or "
                                 "'synthetic'") from None
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects), OSError ...
        raise BadCalibrationData(f"cannot read {path.name} as an .npz ({first_line(exc, 80)}); write it with "
                                 "numpy.savez(PATH, x=..., y=...)") from None
    if not arrays:
        raise BadCalibrationData(f"{path.name} holds no arrays; write it with numpy.savez(PATH, x=NCHW_float32)")
    key_x = next((k for k in (input_name, *_INPUT_KEYS) if k in arrays), None)
    if key_x is None and len(arrays) == 1:
        key_x = next(iter(arrays))
    if key_x is None:
        raise BadCalibrationData(f"{path.name} has arrays {sorted(arrays)} but none named {input_name!r} or 'x'; "
                                 "rename the input array to 'x'")
    x = arrays[key_x]
    if x.dtype.kind != "f":
        raise BadCalibrationData(f"{path.name}[{key_x!r}] has dtype {x.dtype}; store preprocessed float32 NCHW tensors")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(chw) or x.shape[0] < 1:
        raise BadCalibrationData(f"{path.name}[{key_x!r}] has shape {list(x.shape)}, but the model takes "
                                 f"[N, {chw[0]}, {chw[1]}, {chw[2]}] (NCHW)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise BadCalibrationData(f"{path.name}[{key_x!r}] contains NaN or Inf; calibration data must be finite")
    labels: list[int | None] = [None] * len(x)
    key_y = next((k for k in _LABEL_KEYS if k in arrays), None)
    if key_y is not None:
        y = arrays[key_y]
        if y.dtype.kind not in "iu" or y.shape != (len(x),) or (y < 0).any():
            raise BadCalibrationData(f"{path.name}[{key_y!r}] must be {len(x)} non-negative integer labels, got "
                                     f"{y.dtype} {list(y.shape)}")
        labels = [int(v) for v in y]
    return Dataset("npz", f"npz {path} [{key_x!r}]", [Sample(None, lab) for lab in labels], [], x, {})


def synthetic_images(n: int, chw: tuple[int, int, int], mean: Sequence[float], std: Sequence[float],
                     seed: int = DEFAULT_SEED) -> np.ndarray:
    """Seeded image-like inputs in [0, 1] before normalisation: smooth colour fields + a bright/dark blob + edge."""
    c, h, w = chw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        base = rng.uniform(0, 1, (c, 1, 1)).astype(np.float32)
        grad = rng.uniform(-0.5, 0.5, (c, 2, 1, 1)).astype(np.float32)
        img = base + grad[:, 0] * (yy - 0.5) + grad[:, 1] * (xx - 0.5)
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3)
        blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
        img += rng.uniform(-0.8, 0.8, (c, 1, 1)).astype(np.float32) * blob
        angle = rng.uniform(0, np.pi)
        edge = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) > rng.uniform(-0.3, 0.3)
        img += rng.uniform(-0.3, 0.3, (c, 1, 1)).astype(np.float32) * edge
        img += rng.normal(0, 0.03, img.shape).astype(np.float32)
        out[i] = np.clip(img, 0, 1)
    m = np.asarray(mean, np.float32).reshape(1, c, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, c, 1, 1)
    return ((out - m) / s).astype(np.float32)


def resolve_source(source: str | os.PathLike, pre: Preprocess, input_name: str = "input",
                   synthetic_count: int = 256, seed: int = DEFAULT_SEED) -> Dataset:
    """``--calib`` / ``--data`` value -> :class:`Dataset`: 'synthetic[:N]', an .npz file, or an image folder."""
    text = os.fspath(source)
    if text == SYNTHETIC or text.startswith(SYNTHETIC + ":"):
        count = synthetic_count
        if ":" in text:
            try:
                count = int(text.split(":", 1)[1])
            except ValueError:
                count = 0
            if count < 1:
                raise BadCalibrationData(f"bad synthetic source {text!r}; use 'synthetic' or 'synthetic:N' with N >= 1")
        x = synthetic_images(count, (3, pre.res, pre.res), pre.mean, pre.std, seed)
        return Dataset("synthetic", f"synthetic ({count} seeded image-like inputs, seed {seed})",
                       [Sample(None, None)] * count, [], x, {})
    path = Path(text)
    if path.suffix.lower() == ".npz" and not path.is_dir():
        return load_npz(path, (3, pre.res, pre.res), input_name)
    return scan_folder(path)


def pick(dataset: Dataset, limit: int | None, seed: int = DEFAULT_SEED) -> Dataset:
    """At most ``limit`` samples: a seeded random subset, in the dataset's order (labels stay spread)."""
    if limit is None or len(dataset) <= limit:
        return dataset
    if limit < 1:
        raise BadArgument(f"the calibration sample count must be >= 1, got {limit}")
    rng = np.random.default_rng(seed)
    return dataset.subset(sorted(rng.choice(len(dataset), size=limit, replace=False).tolist()))


def iter_batches(dataset: Dataset, pre: Preprocess, batch: int = 1,
                 on_bad: str = "error") -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Decoded NCHW float32 batches with their labels (None when unlabelled); images are decoded lazily."""
    if on_bad not in ("error", "skip"):
        raise BadArgument(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    xs: list[np.ndarray] = []
    ys: list[int | None] = []
    for i, sample in enumerate(dataset.samples):
        if dataset.tensors is not None:
            x = dataset.tensors[i]
        else:
            try:
                x = load_image(sample.path, pre)  # type: ignore[arg-type]
            except BadImage:
                if on_bad == "error":
                    raise
                _note(dataset.skipped, "could not be decoded", sample.path)  # type: ignore[arg-type]
                continue
        xs.append(x)
        ys.append(sample.label)
        if len(xs) == batch:
            yield np.stack(xs), (None if any(v is None for v in ys) else np.asarray(ys, np.int64))
            xs, ys = [], []
    if xs:
        yield np.stack(xs), (None if any(v is None for v in ys) else np.asarray(ys, np.int64))


def load_all(dataset: Dataset, pre: Preprocess, on_bad: str = "error") -> tuple[np.ndarray, np.ndarray | None]:
    """Everything at once (fine for calibration-sized sets: 300 images at 224 px are 180 MB)."""
    if dataset.tensors is not None:
        return dataset.tensors, dataset.labels()
    xs, ys = [], []
    for x, y in iter_batches(dataset, pre, batch=64, on_bad=on_bad):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise BadCalibrationData(f"none of the {len(dataset)} images in {dataset.description} could be decoded")
    labels = None if any(y is None for y in ys) else np.concatenate(ys)
    return np.concatenate(xs), labels


# ----------------------------------------------------------------------------------------------------------------
# Class names (--labels) and the class-count check
# ----------------------------------------------------------------------------------------------------------------
MAX_LABEL_LINES = 1_000_000


def read_labels(path: str | os.PathLike) -> list[str]:
    """``--labels FILE``: one class name per line, line i naming class index i (ImageNet's synset list style);
    blank lines and ``#`` comments are skipped. Class folders are matched to these names instead of being sorted."""
    from ..files import check_input_file

    file = check_input_file(path, "--labels file", cls=BadCalibrationData,
                            hint="pass a text file with one class name per line")
    try:
        with open(file, encoding="utf-8") as fh:
            lines = [ln.strip() for _, ln in zip(range(MAX_LABEL_LINES + 1), fh)]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadCalibrationData(f"cannot read --labels {file.name} ({first_line(exc, 80)}); pass a UTF-8 text file "
                                 "with one class name per line") from None
    names = [ln for ln in lines if ln and not ln.startswith("#")]
    if not names or len(lines) > MAX_LABEL_LINES:
        raise BadCalibrationData(f"--labels {file.name} holds {'no' if not names else 'too many'} class names; pass "
                                 "one class name per line")
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(names) < 20_000 else []
    if dupes:
        raise BadCalibrationData(f"--labels {file.name} names {dupes[0]!r} twice; each line must name one class")
    return names


def apply_labels(dataset: Dataset, names: Sequence[str], where: str = "--labels") -> Dataset:
    """The class-folder dataset relabelled by ``names`` (a folder's label = the index of its name)."""
    if dataset.kind != "folder" or not dataset.classes:
        raise BadCalibrationData(f"{where} applies to a folder with one sub-folder per class; {dataset.description} "
                                 "has none")
    index = {n: i for i, n in enumerate(names)}
    missing = [c for c in dataset.classes if c not in index]
    if missing:
        raise BadCalibrationData(f"class folder {missing[0]!r} is not named in {where} ({len(missing)} of "
                                 f"{len(dataset.classes)} folders are not); rename the folders or fix the file")
    samples = [Sample(s.path, index[dataset.classes[s.label]] if s.label is not None else None)
               for s in dataset.samples]
    return Dataset(dataset.kind, dataset.description + f", classes named by {where}", samples, list(names), None,
                   dict(dataset.skipped))


def check_classes(dataset: Dataset, num_classes: int, model_name: str, labels_given: bool = False) -> None:
    """The labelled data must fit the model: as many class folders as outputs (unless --labels maps them), and no
    label beyond the last output."""
    labels = dataset.labels()
    if labels is None:
        return
    if dataset.kind == "folder" and not labels_given and len(dataset.classes) != num_classes:
        raise BadCalibrationData(
            f"the images have {len(dataset.classes)} class folders but {model_name} has {num_classes} classes "
            f"({dataset.description}); pass data with one folder per class of this model, or --labels FILE naming "
            "them")
    if labels_given and len(dataset.classes) != num_classes:
        raise BadCalibrationData(f"--labels names {len(dataset.classes)} classes but {model_name} has {num_classes}; "
                                 "pass the class list of this model")
    if len(labels) and int(labels.max()) >= num_classes:
        raise BadCalibrationData(f"{dataset.description} has labels up to {int(labels.max())} but {model_name} has "
                                 f"{num_classes} classes; pass data for this model")


# ----------------------------------------------------------------------------------------------------------------
# Calibration with a held-out part
# ----------------------------------------------------------------------------------------------------------------
#: Held-out images for agreement during --scheme auto / --keep-fp32 auto and quantize's comparison: the source's
#: images not used for calibration, at most HOLDOUT_MAX; when fewer than HOLDOUT_MIN remain, the last fifth of the
#: calibration images is held out instead (and said so).
HOLDOUT_MAX = 200
HOLDOUT_MIN = 50


@dataclass
class CalibrationSet:
    x: np.ndarray  # calibration tensors, NCHW float32
    held_x: np.ndarray  # held-out tensors (may be empty)
    held_y: np.ndarray | None  # their labels, when the source is labelled
    dataset: Dataset  # the resolved source (all of it)
    notes: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        return self.dataset.description

    def to_dict(self) -> dict:
        return {"source": self.description, "kind": self.dataset.kind, "count": int(len(self.x)),
                "held_out": int(len(self.held_x)), "labelled": self.held_y is not None}


def calibration_set(source: str | os.PathLike, pre: Preprocess, samples: int, input_name: str = "input",
                    holdout: bool = True, seed: int = DEFAULT_SEED) -> CalibrationSet:
    """``samples`` calibration tensors from ``source`` (a seeded subset) and, with ``holdout``, a disjoint held-out
    part for measuring agreement (see HOLDOUT_MAX)."""
    if os.fspath(source) == SYNTHETIC or os.fspath(source).startswith(SYNTHETIC + ":"):
        dataset = resolve_source(source, pre, input_name, synthetic_count=samples, seed=seed)
        held = synthetic_images(HOLDOUT_MIN if holdout else 0, (3, pre.res, pre.res), pre.mean, pre.std,
                                seed + 1) if holdout else np.zeros((0, 3, pre.res, pre.res), np.float32)
        notes = ["synthetic calibration: seeded image-like inputs, not your data; accuracy claims need real images "
                 "(pass --calib DIR)"]
        return CalibrationSet(load_all(dataset, pre)[0], held, None, dataset, notes)
    dataset = resolve_source(source, pre, input_name, seed=seed)
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    notes: list[str] = []
    n_cal = min(samples, len(dataset))
    n_held = min(HOLDOUT_MAX, len(dataset) - n_cal) if holdout else 0
    if holdout and n_held < HOLDOUT_MIN and len(dataset) >= 10:
        n_held = max(n_held, len(dataset) // 5)
        n_cal = min(n_cal, len(dataset) - n_held)
        notes.append(f"{len(dataset)} images: calibrating on {n_cal}, holding {n_held} out to measure agreement "
                     f"(a source with {HOLDOUT_MIN} more images than --samples keeps them all for calibration)")
    if n_cal < 100:
        notes.append(f"calibrated on {n_cal} images: ranges from so few can miss rare large activations (200 or more "
                     "are recommended)")
    calib = dataset.subset(sorted(order[:n_cal]))
    held = dataset.subset(sorted(order[n_cal:n_cal + n_held]))
    x, _ = load_all(calib, pre)
    hx, hy = load_all(held, pre) if len(held) else (np.zeros((0, 3, pre.res, pre.res), np.float32), None)
    return CalibrationSet(x, hx, hy if len(held) else None, dataset, notes)
