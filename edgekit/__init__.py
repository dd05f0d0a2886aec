"""edgekit: lightweight CNNs to phones and edge boxes: build, fuse, export, verify, benchmark.

The public API; the CLI (``edgekit ...``) is a thin layer over these functions. ``import edgekit`` is light: the
API is imported on first use (PEP 562), so torch, ONNX Runtime and the exporters load only when a command needs them.
"""

from __future__ import annotations

import importlib as _importlib
import os as _os
import sys as _sys
import types as _types

# Set before torch is imported (the CLI always imports edgekit first; a user's setting wins). OpenMP's default
# busy-wait collapses torch's CPU speed when the cores are shared with anything else: an eager MobileNetV3-0.75
# forward at 192 px measured 23 ms at 1 thread but 290 ms at 2 threads on a loaded 2-core machine, 26 ms with
# passive waiting. edgekit runs short eager passes between exporter and runtime work, so idle threads should sleep.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

#: public name -> the module that defines it
_API: dict[str, str] = {
    "get_model": "edgekit.models",
    "build_model": "edgekit.models",
    "list_models": "edgekit.registry",
    "info": "edgekit.complexity",
    "ModelInfo": "edgekit.complexity",
    "EdgekitError": "edgekit.errors",
    "fuse": "edgekit.fuse",
    "FuseReport": "edgekit.fuse",
    "export": "edgekit.export",
    "ExportOptions": "edgekit.export",
    "ExportResult": "edgekit.export",
    "bench": "edgekit.bench",
    "BenchOptions": "edgekit.bench",
    "BenchReport": "edgekit.bench",
    "verify": "edgekit.verify",
    "VerifyOptions": "edgekit.verify",
    "VerifyReport": "edgekit.verify",
    "compare": "edgekit.compare",
    "CompareOptions": "edgekit.compare",
    "CompareResult": "edgekit.compare",
    "memory_cost": "edgekit.memory_cost",
    "open_runner": "edgekit.runtimes",
    "RunOptions": "edgekit.runtimes",
    "register_runtime": "edgekit.runtimes",
    "register_format": "edgekit.formats",
}
#: functions named like the module that defines them: the import system must not replace them with the module
_SHADOWED = {"export", "bench", "verify", "fuse", "compare", "memory_cost"}

__all__ = ["__version__", *_API]


#: submodules reachable as attributes (``edgekit.errors.BadWeights``) without importing them first
_SUBMODULES = {"errors", "registry", "models", "weights", "metadata", "formats", "runtimes", "complexity", "guards",
               "presets", "report", "reference", "files", "parsing", "options", "modes", "sweep", "cli"}


def __getattr__(name: str) -> object:
    module = _API.get(name)
    if module is None and name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    if module is None:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    _types.ModuleType.__setattr__(_sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


class _Package(_types.ModuleType):
    """Importing ``edgekit.export`` (the module) binds the package attribute ``export`` to it; the API's function of
    that name must win, as it did when the package imported its API eagerly."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SHADOWED and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
