"""edgekit: lightweight CNNs to phones and edge boxes: build, fuse, export, verify, benchmark.

The public API; the CLI (``edgekit ...``) is a thin layer over these functions.
"""

from __future__ import annotations

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
