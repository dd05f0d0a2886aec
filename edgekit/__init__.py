"""edgekit: lightweight CNNs to phones and edge boxes: build, fuse, export, verify, benchmark.

The public API; the CLI (``edgekit ...``) is a thin layer over these functions.
"""

from __future__ import annotations

import os as _os

# Set before torch is imported (the CLI always imports edgekit first; a user's setting wins). OpenMP's default
# busy-wait collapses torch's CPU speed when the cores are shared with anything else: an eager MobileNetV3-0.75
# forward at 192 px measured 23 ms at 1 thread but 290 ms at 2 threads on a loaded 2-core machine, 26 ms with
# passive waiting. edgekit runs short eager passes between exporter and runtime work, so idle threads should sleep.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .bench import BenchOptions, BenchReport, bench
from .complexity import ModelInfo, info
from .errors import EdgekitError
from .export import ExportOptions, ExportResult, export
from .fuse import FuseReport, fuse
from .models import build_model, get_model
from .registry import list_models
from .verify import VerifyOptions, VerifyReport, verify

__all__ = [
    "__version__",
    "get_model",
    "build_model",
    "list_models",
    "info",
    "ModelInfo",
    "EdgekitError",
    "fuse",
    "FuseReport",
    "export",
    "ExportOptions",
    "ExportResult",
    "bench",
    "BenchOptions",
    "BenchReport",
    "verify",
    "VerifyOptions",
    "VerifyReport",
]
