"""A real labelled image set for judging precision: scikit-learn's handwritten digits as image folders.

Seeded weights cannot judge quantization (their logits mean nothing), and ImageNet is not something a test suite can
download. ``sklearn.datasets.load_digits`` ships with scikit-learn (the ``data`` extra): 1,797 scans of handwritten
digits, 8x8 pixels, 17 grey levels, 10 classes. :func:`write_digits` writes them as ``<root>/<split>/<class>/
<index>.png`` (``train`` 1000, ``calib`` 300, ``test`` 497; stratified, seeded, always the same split), so every
edgekit command reads them as it reads a user's folder: through the one preprocessing of the file's metadata.

Each image is stored as an 8-bit grayscale PNG of 32x32 pixels, the 8x8 scan upscaled x4 by pixel replication (ink
16 -> black 0, background 0 -> white 255): a lossless rendering (every scan pixel is a 4x4 block; nothing is
invented), about 150 bytes a file. ``tools/train_digits.py`` fine-tunes a zoo model on ``train``; the tests
calibrate on ``calib`` and score on ``test``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import require

SPLITS = {"train": 1000, "calib": 300}  # test: the remaining 497
SPLIT_SEED = 0
STORED_SIZE = 32
CLASSES = 10


def split_indices() -> dict[str, list[int]]:
    """The sample indices of each split (stratified by digit, seeded): the same on every machine."""
    require("sklearn", "data", "the digits data set")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    idx = np.arange(len(target))
    train, rest = train_test_split(idx, train_size=SPLITS["train"], stratify=target, random_state=SPLIT_SEED)
    calib, test = train_test_split(rest, train_size=SPLITS["calib"], stratify=target[rest], random_state=SPLIT_SEED)
    return {"train": sorted(train.tolist()), "calib": sorted(calib.tolist()), "test": sorted(test.tolist())}


def write_digits(root: str | os.PathLike, splits: tuple[str, ...] = ("train", "calib", "test")) -> dict[str, Path]:
    """Write the requested splits under ``root`` (missing files only; each written atomically). Returns the split
    folders."""
    require("sklearn", "data", "the digits data set")
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = Path(root)
    folders: dict[str, Path] = {}
    for split, ids in split_indices().items():
        if split not in splits:
            continue
        for i in ids:
            path = root / split / str(int(digits.target[i])) / f"{i:04d}.png"
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = 255 - np.rint(digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
            big = np.kron(pixels, np.ones((STORED_SIZE // 8, STORED_SIZE // 8), np.uint8))
            tmp = path.with_name(f".{path.name}.tmp")
            Image.fromarray(big).save(tmp, format="PNG", optimize=True)
            os.replace(tmp, path)
        folders[split] = root / split
    return folders
