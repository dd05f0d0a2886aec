"""Precision: image sources and their preprocessing (one implementation for calibration, eval and verify --data),
INT8/fp16 conversion, per-layer sensitivity and mixed precision.

``data``: what ``--calib`` / ``--data`` accept (an image folder, flat or with class sub-folders; an ``.npz``;
``synthetic``), resolved without decoding, decoded lazily in batches. ``preprocess``: image file -> the file's
input tensor (resize the shorter side to res / 0.875, centre-crop, [0, 1], mean/std from the file's metadata).
"""

from __future__ import annotations

from .data import SYNTHETIC, BadCalibrationData, Dataset, iter_batches, load_all, pick, resolve_source
from .preprocess import BadImage, Preprocess, load_image

__all__ = ["SYNTHETIC", "BadCalibrationData", "Dataset", "iter_batches", "load_all", "pick", "resolve_source",
           "BadImage", "Preprocess", "load_image"]
