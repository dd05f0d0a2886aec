"""Precision: image sources and their preprocessing (one implementation for calibration, eval and verify --data),
INT8/fp16 conversion, per-layer sensitivity and mixed precision.

``data``: what ``--calib`` / ``--data`` accept (an image folder, flat or with class sub-folders; an ``.npz``;
``synthetic``), resolved without decoding, decoded lazily in batches; ``--labels``; the calibration / held-out split.
``preprocess``: image file -> the file's input tensor (resize the shorter side to res / 0.875, centre-crop, [0, 1],
mean/std from the file's metadata). ``int8``: ONNX Runtime's static QDQ quantization in three steps (prepare,
calibrate to a cache, quantize). ``fp16``: ONNX Runtime's float16 converter and where Inf/NaN appear. ``layers``:
ONNX nodes named by PyTorch module, per-layer error, activation coverage. ``search``: ``--scheme auto`` and
``--keep-fp32 auto``. ``quantize``: the conversion shared with ``export --precision`` and the ``quantize`` command.
``compare``: the command's closing comparison. ``digits``: scikit-learn's digits as image folders (the real data the
tests judge precision on).
"""

from __future__ import annotations

from .data import SYNTHETIC, BadCalibrationData, Dataset, iter_batches, load_all, pick, resolve_source
from .preprocess import BadImage, Preprocess, load_image

__all__ = ["SYNTHETIC", "BadCalibrationData", "Dataset", "iter_batches", "load_all", "pick", "resolve_source",
           "BadImage", "Preprocess", "load_image"]
