"""The runtimes: one :class:`Runner` interface, one module per runtime, one table.

A runner is an exported file opened on one runtime (Polygraphy's runner: open, infer, close). ``verify`` feeds it
inputs and compares the outputs, ``bench`` drives its timed loop, ``eval`` classifies images with it, ``compare``
does all three for every artifact x runtime. A new runtime is one module plus one :func:`register_runtime` call, and
every command gains it.

The contract every runner keeps:

- ``inputs``/``outputs``: names, shapes (ints; a str or None for symbolic dimensions) and numpy dtypes.
- ``run(feeds)``: numpy in, numpy out, on the host.
- ``timer(feeds)``: an object with ``once()`` and ``timed(out, start, stop, deadline_ns, clock)`` that fills
  ``out[start:stop]`` with per-call nanoseconds and puts nothing but the call between the two clock reads.
- ``providers``: what really runs the model, read back from the runtime after it was opened (never what was asked
  for); ``assignment()``: nodes per provider/delegate where the runtime can tell. A runner whose runtime silently
  put the model somewhere else than requested refuses to open (:class:`~edgekit.errors.ProviderUnavailable`).
- ``close()``: release the session and its threads before anything else is timed on these cores.
- ``profile(feeds, runs=, warmup=)`` (runtimes whose spec says ``profiles=True``, opened with
  ``RunOptions(profile=True)``): per-node times from the runtime's own profiler, each node with the file's nodes it
  computes (:class:`NodeTime`); ``bench --profile`` ties them to PyTorch modules. Others raise a one-line error.

Optional runtimes (openvino, executorch) are imported lazily inside their module; without them, opening a file on
them raises :class:`~edgekit.errors.MissingExtra` naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import numpy as np

from ..errors import BadArgument, MissingExtra

if TYPE_CHECKING:  # pragma: no cover
    from ..formats import Format
    from ..metadata import Metadata


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints; a str or None where the dimension is symbolic
    dtype: str  # numpy dtype name: "float32", "float16", "int64", ...

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class RunOptions:
    """How to open a file. ``providers``: device names in priority order, interpreted by each runtime (ONNX Runtime
    execution providers or their short names, ``cpu``/``cuda`` for PyTorch, OpenVINO device names). ``threads``:
    intra-op threads (None: the runtime's default for this machine)."""

    providers: tuple[str, ...] = ("cpu",)
    threads: int | None = None
    device_id: int = 0
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    #: open for ``Runner.profile`` (ONNX Runtime's profiler, OpenVINO's PERF_COUNT)
    profile: bool = False
    #: the precision a runtime computes in where it has a choice (OpenVINO: f32, the default, or bf16)
    precision: str | None = None


@dataclass(frozen=True)
class NodeTime:
    """One node a runtime executed, as its own profiler saw it; ``time_us`` per run.

    ``region``: the nodes of the file it computes (a fused conv + bias + activation is one runtime node); empty for
    what the runtime added itself (layout reorders) or cannot name. ``neighbours``: runtime nodes it feeds or drains,
    in the order such a node should be attributed to them.
    """

    name: str
    op_type: str
    impl: str  # the kernel / implementation (OpenVINO's exec type, ONNX Runtime's op domain)
    provider: str  # the execution provider or device that ran it
    time_us: float
    order: int
    precision: str = ""
    region: tuple[str, ...] = ()
    neighbours: tuple[str, ...] = ()
    inserted: bool = False  # a layout or precision conversion the runtime inserted


@dataclass(frozen=True)
class RuntimeProfile:
    """What a runtime's profiler measured over ``runs`` runs: per-node times (``statistic`` per node: "median" or
    "mean" over the runs), and the wall time of each profiled run (ms)."""

    nodes: tuple[NodeTime, ...]
    wall_ms: tuple[float, ...]
    statistic: str
    runs: int
    #: the runtime's own time per run for the whole model, where it reports one (ONNX Runtime's model_run), ms
    runtime_ms: tuple[float, ...] = ()
    #: per run, the sum of that run's node times (ms), where the profiler reports single runs
    node_sums_ms: tuple[float, ...] = ()
    #: the profiler itself adds time to every node it times (ONNX Runtime's does; OpenVINO's counters do not)
    costs_per_node: bool = False
    notes: tuple[str, ...] = ()


class Runner:
    """An exported file opened on one runtime. Subclasses set the attributes and implement ``_run``."""

    runtime: ClassVar[str] = "?"
    path: Path | None = None
    format: str = "?"
    metadata: "Metadata | None" = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    providers: tuple[str, ...] = ()
    version: str = ""
    label: str = "?"
    #: True when ``inputs``/``outputs`` are read from the file itself (not copied from its metadata), so verify can
    #: hold the metadata to them
    shapes_from_file: bool = False
    #: milliseconds the runtime took to open the file, and the options it was opened with (set by open_runner)
    open_ms: float = 0.0
    run_options: RunOptions = RunOptions()

    # --- running -----------------------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        """Outputs for ``feeds`` (a dict by input name, or one array for a single-input model) as numpy arrays."""
        if isinstance(feeds, np.ndarray):
            if len(self.inputs) != 1:
                raise BadArgument(f"{self.label} has {len(self.inputs)} inputs; pass a dict of arrays by input name")
            feeds = {self.inputs[0].name: feeds}
        return [np.asarray(o) for o in self._run(self._cast(feeds))]

    def run_batched(self, x: np.ndarray, batch: int = 16) -> np.ndarray:
        """The first output for ``x`` (a single-input model; any number of samples) in chunks of ``batch``. A file
        with a fixed batch runs at its own: the last chunk is padded with its last sample and the padding dropped."""
        shape = self.input_shape
        fixed = shape[0] if shape and isinstance(shape[0], int) else None
        step = fixed or max(1, batch)
        outs = []
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            n = len(chunk)
            if fixed is not None and n < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
            outs.append(np.asarray(self.run(chunk)[0])[:n])
        return np.concatenate(outs) if outs else np.zeros((0,))

    def _cast(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        types = {i.name: i.dtype for i in self.inputs}
        return {k: np.ascontiguousarray(v, dtype=types.get(k, v.dtype)) for k, v in feeds.items()}

    def _run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        raise NotImplementedError

    def timer(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """The timed loop the benchmark drives (default: ``run`` with host arrays)."""
        return CallTimer(lambda f=self._cast(feeds): self._run(f))

    def host_timer(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """A timer with host inputs and outputs: what ``bench`` reports apart when ``timer`` keeps them on a device."""
        return CallTimer(lambda f=self._cast(feeds): self._run(f))

    # --- facts -------------------------------------------------------------------------------------------------
    def assignment(self) -> dict[str, int] | None:
        """Nodes (or operators) per provider / delegate, where the runtime can tell."""
        return None

    def file_layers(self) -> list | None:
        """Conv/linear layers of the opened file, when the runner already holds them (else the format reads them)."""
        return None

    def notes(self) -> list[str]:
        """Facts a report should carry (a partial fallback, a mostly undelegated program, ...)."""
        return []

    def profile(self, feeds: Mapping[str, np.ndarray], *, runs: int, warmup: int) -> "RuntimeProfile":
        """Per-node times from the runtime's own profiler over ``runs`` runs (open with ``RunOptions(profile=True)``)."""
        raise no_profiler(self.runtime)

    @property
    def input_shape(self) -> tuple | None:
        return self.inputs[0].shape if len(self.inputs) == 1 else None

    @property
    def dynamic_batch(self) -> bool | None:
        shape = self.input_shape
        if not shape:
            return None
        return not isinstance(shape[0], int)

    def close(self) -> None:
        """Release the runtime's session, threads and memory."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CallTimer:
    """A timed loop around any zero-argument call: nothing but the call between the two clock reads."""

    io_binding = False

    def __init__(self, call: Callable[[], Any]) -> None:
        self._call = call

    def once(self) -> Any:
        return self._call()

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int,
              clock: Callable[[], int] = time.perf_counter_ns) -> int:
        call = self._call
        for i in range(start, stop):
            t0 = clock()
            call()
            t1 = clock()
            out[i] = t1 - t0
            if t1 >= deadline_ns:
                return i + 1
        return stop


# --------------------------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    title: str  # "ONNX Runtime"
    formats: tuple[str, ...]  # the export formats it opens
    open: Callable[[Path, RunOptions, "Format"], Runner]
    #: top-level package that must be importable (None: part of the base install)
    requires: str | None = None
    #: pip extra that installs it
    extra: str | None = None
    #: short names of the devices it can run on, for help texts and errors
    devices: tuple[str, ...] = ("cpu",)
    #: whether ``bench --profile`` can read per-node times from it
    profiles: bool = False
    description: str = ""

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def install_hint(self) -> str:
        return f"pip install -e '.[{self.extra}]'" if self.extra else f"pip install {self.requires}"


RUNTIMES: dict[str, RuntimeSpec] = {}
_ALIASES = {"ort": "onnxruntime", "pytorch": "torch", "ov": "openvino", "et": "executorch", "xnnpack": "executorch"}


def register_runtime(spec: RuntimeSpec, *, replace: bool = False) -> RuntimeSpec:
    if spec.name in RUNTIMES and not replace:
        raise ValueError(f"runtime {spec.name!r} is registered twice")
    RUNTIMES[spec.name] = spec
    return spec


def unregister_runtime(name: str) -> None:
    RUNTIMES.pop(name, None)


def get_runtime(name: str) -> RuntimeSpec:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in RUNTIMES:
        raise BadArgument(f"unknown runtime {name!r}; use one of: {', '.join(RUNTIMES)}")
    return RUNTIMES[key]


def runtimes_for(format_name: str) -> list[RuntimeSpec]:
    return [r for r in RUNTIMES.values() if format_name in r.formats]


def no_profiler(runtime: str) -> BadArgument:
    able = ", ".join(r.name for r in RUNTIMES.values() if r.profiles) or "none"
    return BadArgument(f"the {runtime} runtime has no per-node profiler edgekit can read; --profile works with: "
                       f"{able} (drop --profile, or pass --runtime with one of those)")


def lazy_open(module: str, attr: str) -> Callable[[Path, RunOptions, "Format"], Runner]:
    def call(path: Path, options: RunOptions, fmt: "Format") -> Runner:
        return getattr(importlib.import_module(module), attr)(path, options, fmt)

    call.__name__ = attr
    return call


def open_runner(
    path: str | os.PathLike,
    runtime: str | None = None,
    *,
    options: RunOptions | None = None,
    what: str = "model file",
) -> Runner:
    """Open ``path`` on ``runtime`` (default: its format's runtime). Refuses, in one line, a file that is not there,
    a format the runtime does not run, a runtime that is not installed, or a device it cannot really use."""
    from ..files import check_input_file
    from ..formats import format_of

    options = options or RunOptions()
    file = check_input_file(path, what, hint="pass the path of an exported .onnx, .pt, .pt2 or .pte file")
    fmt = format_of(file, what)
    spec = get_runtime(runtime or fmt.default_runtime)
    if fmt.name not in spec.formats:
        able = ", ".join(r.name for r in runtimes_for(fmt.name)) or "none"
        raise BadArgument(
            f"the {spec.name} runtime cannot run {fmt.title} files like {file.name}; runtimes for {fmt.title}: {able}"
        )
    if not spec.available():
        raise MissingExtra(
            f"the {spec.name} runtime is not installed (no module {spec.requires!r}); install it with: "
            f"{spec.install_hint()}"
        )
    started = time.perf_counter()
    runner = spec.open(file, options, fmt)
    runner.open_ms = (time.perf_counter() - started) * 1e3
    runner.run_options = options
    return runner


def _builtin() -> None:
    register_runtime(RuntimeSpec(
        "onnxruntime", "ONNX Runtime", ("onnx",), lazy_open("edgekit.runtimes.onnxruntime", "open_onnxruntime"),
        devices=("cpu", "cuda", "tensorrt", "openvino", "dml", "coreml", "xnnpack", "qnn", "dnnl", "rocm"),
        profiles=True, description="ONNX Runtime sessions on any installed execution provider",
    ))
    register_runtime(RuntimeSpec(
        "openvino", "OpenVINO", ("onnx",), lazy_open("edgekit.runtimes.openvino", "open_openvino"),
        requires="openvino", extra="openvino", devices=("cpu", "gpu", "npu", "auto"), profiles=True,
        description="ONNX files compiled by OpenVINO (fp32 forced and read back; the device that really ran)",
    ))
    register_runtime(RuntimeSpec(
        "torch", "PyTorch", ("torchscript", "pt2"), lazy_open("edgekit.runtimes.torch", "open_torch"),
        devices=("cpu", "cuda"), description="TorchScript and torch.export programs on PyTorch (CPU or CUDA)",
    ))
    register_runtime(RuntimeSpec(
        "executorch", "ExecuTorch", ("pte",), lazy_open("edgekit.runtimes.executorch", "open_executorch"),
        requires="executorch", extra="executorch", devices=("cpu", "xnnpack"),
        description="ExecuTorch programs (.pte) on the CPU: the XNNPACK delegate and portable kernels",
    ))


_builtin()

__all__ = ["Runner", "TensorSpec", "RunOptions", "NodeTime", "RuntimeProfile", "RuntimeSpec", "CallTimer", "RUNTIMES", "register_runtime",
           "unregister_runtime", "get_runtime", "runtimes_for", "open_runner"]
