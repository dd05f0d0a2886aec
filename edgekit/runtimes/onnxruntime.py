"""ONNX Runtime: one session factory, one provider table, and the refusals that keep labels honest.

- The session runs on the provider that was asked for, or nothing runs: an unknown provider, one this ONNX Runtime
  build lacks, a session that silently ends up on another one (``onnxruntime-gpu`` falls back to CPU without a word
  when CUDA libraries are missing) and a provider that is active but was assigned none of the nodes are all refused
  with :class:`ProviderUnavailable`. The label is what ``session.get_providers()`` says after creation.
- On CUDA (and TensorRT) the timed loop keeps inputs and outputs on the device through I/O binding, so the steady
  state is the model and not PCIe copies; ``host_timer`` measures the copy-inclusive latency apart.
  ``run_with_iobinding`` synchronises before it returns, and the loop also calls ``synchronize_outputs()`` before
  reading the clock, so no asynchronous work can leak past a timestamp.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import BadArgument, BadModelFile, ProviderUnavailable, first_line
from . import Runner, RunOptions, RuntimeProfile, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

    from ..formats import Format

#: Short names for the execution providers; any other EP name the installed ONNX Runtime knows passes through.
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "cann": "CANNExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}

#: How to get a provider that the installed build lacks (ONNX Runtime ships one wheel per hardware family).
_GPU_WHEEL = "pip uninstall onnxruntime && pip install onnxruntime-gpu (onnxruntime-gpu replaces onnxruntime; never install both)"
INSTALL_HINTS: dict[str, str] = {
    "CUDAExecutionProvider": f"on a machine with an NVIDIA GPU, CUDA 12 and cuDNN 9: {_GPU_WHEEL}",
    "TensorrtExecutionProvider": f"on a machine with an NVIDIA GPU and TensorRT: {_GPU_WHEEL}",
    "OpenVINOExecutionProvider": "pip uninstall onnxruntime && pip install onnxruntime-openvino (it replaces onnxruntime)",
    "DmlExecutionProvider": "on Windows: pip uninstall onnxruntime && pip install onnxruntime-directml (it replaces onnxruntime)",
    "QNNExecutionProvider": "on a Qualcomm device: pip uninstall onnxruntime && pip install onnxruntime-qnn (it replaces onnxruntime)",
    "CoreMLExecutionProvider": "use the standard onnxruntime wheel on macOS",
    "ROCMExecutionProvider": "use an ONNX Runtime build with ROCm (or MIGraphX) support on an AMD GPU",
}
#: Providers whose inputs/outputs can live on a device: the timed loop then uses I/O binding on that device.
IO_BINDING_DEVICE: dict[str, str] = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-qnn",
                  "onnxruntime-training")

NUMPY_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def _ort() -> "onnxruntime":
    # Imported on first use: `import edgekit` and `edgekit --help` stay fast.
    import onnxruntime

    return onnxruntime


def ort_packages() -> str:
    """The installed ONNX Runtime wheels ("onnxruntime 1.32.0"); two of them means a broken install."""
    found = []
    for dist in _DISTRIBUTIONS:
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return " + ".join(found) or f"onnxruntime {_ort().__version__} (no wheel metadata)"


def resolve_provider(name: str) -> str:
    """A short name (``cpu``, ``cuda``, ...) or an EP name ONNX Runtime knows -> the EP name. Unknown: BadArgument."""
    ort = _ort()
    key = str(name).strip()
    if key.lower() in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[key.lower()]
    known = list(dict.fromkeys([*ort.get_all_providers(), *ort.get_available_providers()]))
    by_lower = {p.lower(): p for p in known}
    for candidate in (key.lower(), key.lower() + "executionprovider"):
        if candidate in by_lower:
            return by_lower[candidate]
    raise BadArgument(
        f"unknown execution provider {name!r}; use one of {', '.join(sorted(set(PROVIDER_ALIASES)))} "
        f"or a full name from onnxruntime.get_all_providers() (installed here: {', '.join(ort.get_available_providers())})"
    )


def available_providers() -> list[str]:
    """The availability check: the one place tests mock to pretend a provider is installed."""
    return list(_ort().get_available_providers())


def check_providers_available(requested: Sequence[str]) -> None:
    available = available_providers()
    for provider in requested:
        if provider not in available:
            hint = INSTALL_HINTS.get(provider, f"use an ONNX Runtime build that includes {provider}")
            raise ProviderUnavailable(
                f"{provider} is not available in the installed ONNX Runtime ({ort_packages()}, which offers "
                f"{', '.join(available)}); to get it: {hint}"
            )


def session_options(threads: int, *, profile: bool = False,
                    profile_dir: str | None = None) -> "onnxruntime.SessionOptions":
    """The settings every edgekit session uses (tools/bench_harness.py builds its bare loop with these).

    ``profile``: ONNX Runtime's profiler on; its trace, and the optimized graph its node names refer to, go into
    ``profile_dir`` (not the current folder).
    """
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: ORT's warnings would interleave with the progress lines
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    if profile:
        so.enable_profiling = True
        if profile_dir is not None:
            so.profile_file_prefix = str(Path(profile_dir) / "ort_profile")
            so.optimized_model_filepath = str(Path(profile_dir) / "optimized.onnx")
    return so


def _provider_list(providers: Sequence[str], options: RunOptions) -> list[Any]:
    out: list[Any] = []
    for provider in providers:
        if provider == "CUDAExecutionProvider":
            out.append((provider, {"device_id": str(options.device_id),
                                   "cudnn_conv_algo_search": options.cudnn_conv_algo_search}))
        elif provider == "TensorrtExecutionProvider":
            out.append((provider, {"device_id": str(options.device_id)}))
        else:
            out.append(provider)
    return out


def create_session(model: str | bytes, providers: Sequence[str], options: RunOptions, *, what: str,
                   threads: int, profile_dir: str | None = None) -> Any:
    """An InferenceSession on exactly ``providers`` (EP names), or ProviderUnavailable.

    Availability is checked first (with the install hint), then ``get_providers()`` after creation: a build that has
    the provider but cannot load it (missing CUDA/cuDNN libraries) silently runs on CPU, and that is refused too.
    """
    ort = _ort()
    check_providers_available(providers)
    so = session_options(threads, profile=options.profile, profile_dir=profile_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Specified provider ... is not in available provider names"
            session = ort.InferenceSession(model, so, providers=_provider_list(providers, options))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/InvalidProtobuf/... types
        raise BadModelFile(f"{what} is not a model ONNX Runtime can load: {first_line(exc, 300)}") from None
    check_session_providers(session, providers)
    check_nodes_assigned(session, providers[0])
    return session


def check_session_providers(session: Any, requested: Sequence[str]) -> tuple[str, ...]:
    actual = tuple(session.get_providers())
    missing = [p for p in requested if p not in actual]
    if missing:
        hint = INSTALL_HINTS.get(missing[0], "")
        shown = ", ".join(actual) or "nothing"
        raise ProviderUnavailable(
            f"{missing[0]} is installed but did not start; the session fell back to {shown} (ONNX Runtime fell back "
            f"silently; for CUDA usually CUDA/cuDNN libraries that do not load or do not match): it runs on {shown}, "
            f"refusing to report {actual[0] if actual else 'those'} numbers as {missing[0]}. Installed: "
            f"{ort_packages()}" + (f"; to get {missing[0]}: {hint}" if hint else "")
        )
    return actual


def nodes_per_provider(session: Any) -> dict[str, int] | None:
    try:
        counts: dict[str, int] = {}
        for subgraph in session.get_provider_graph_assignment_info():
            counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
        return counts or None
    except Exception:  # noqa: BLE001 - older ONNX Runtime: the breakdown is a nicety
        return None


def check_nodes_assigned(session: Any, primary: str) -> None:
    """A provider can be in get_providers() and still run nothing: ONNX Runtime hands every node it cannot take to
    the CPU (the Azure EP takes none of a CNN's). Timing that session would be a CPU number under another label."""
    nodes = nodes_per_provider(session)
    if nodes is None or primary in nodes:
        return
    ran = ", ".join(f"{p} ({n} nodes)" for p, n in nodes.items())
    raise ProviderUnavailable(
        f"{primary} is active but ONNX Runtime assigned it none of the model's nodes: everything runs on {ran}; "
        f"refusing to report those numbers as {primary}"
    )


# --------------------------------------------------------------------------------------------------------------------
# Timers: one call of the model, and the timed loop around it
# --------------------------------------------------------------------------------------------------------------------
class HostTimer:
    """``session.run`` with numpy inputs and outputs: what an application without I/O binding gets (on CPU, all)."""

    io_binding = False

    def __init__(self, session: Any, feeds: Mapping[str, np.ndarray]) -> None:
        self._session = session
        self._feeds = dict(feeds)
        self._names = [o.name for o in session.get_outputs()]

    def once(self) -> list:
        return self._session.run(self._names, self._feeds)

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int,
              clock: Callable[[], int] = time.perf_counter_ns) -> int:
        """Fill ``out[start:stop]`` with per-call nanoseconds; stop early at ``deadline_ns``. Returns the next index.

        Nothing but the call sits between the two clock reads; storing the difference and the deadline check happen
        after the second read, outside the timed window.
        """
        run, names, feeds = self._session.run, self._names, self._feeds
        for i in range(start, stop):
            t0 = clock()
            run(names, feeds)
            t1 = clock()
            out[i] = t1 - t0
            if t1 >= deadline_ns:
                return i + 1
        return stop


class IOBindingTimer:
    """Inputs and outputs resident on ``device_type`` (``"cuda"``): the timing is the model, not PCIe copies.

    Inputs are copied to the device once (``OrtValue.ortvalue_from_numpy(..., device_type, device_id)``) and bound;
    outputs are bound to the device, and after the first run rebound to the buffers that run allocated, so the
    steady state allocates nothing. ``run_with_iobinding`` synchronises the device before returning; the explicit
    ``synchronize_outputs()`` inside the timed window guarantees it whatever the run options say.
    """

    io_binding = True

    def __init__(self, session: Any, feeds: Mapping[str, np.ndarray], device_type: str, device_id: int = 0) -> None:
        ort = _ort()
        self._session = session
        self.device_type = device_type
        self._binding = session.io_binding()
        self._inputs = {
            name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device_type, device_id)
            for name, array in feeds.items()
        }  # kept referenced: the binding does not own them
        for name, value in self._inputs.items():
            self._binding.bind_ortvalue_input(name, value)
        self._output_names = [o.name for o in session.get_outputs()]
        for name in self._output_names:
            self._binding.bind_output(name, device_type, device_id)
        self._binding.synchronize_inputs()
        self._outputs: list = []
        self._preallocated = False

    def once(self) -> list:
        self._session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()
        if not self._preallocated:
            # Rebind the outputs to the device buffers this run allocated: the timed loop then reuses them.
            self._outputs = list(self._binding.get_outputs())
            for name, value in zip(self._output_names, self._outputs):
                self._binding.bind_ortvalue_output(name, value)
            self._preallocated = True
        return self._outputs

    def outputs_to_cpu(self) -> list[np.ndarray]:
        return list(self._binding.copy_outputs_to_cpu())

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int,
              clock: Callable[[], int] = time.perf_counter_ns) -> int:
        if not self._preallocated:
            self.once()
        run, binding, sync = self._session.run_with_iobinding, self._binding, self._binding.synchronize_outputs
        for i in range(start, stop):
            t0 = clock()
            run(binding)
            sync()
            t1 = clock()
            out[i] = t1 - t0
            if t1 >= deadline_ns:
                return i + 1
        return stop


def make_timer(session: Any, feeds: Mapping[str, np.ndarray], providers: Sequence[str],
               device_id: int = 0) -> HostTimer | IOBindingTimer:
    """I/O binding on the device for CUDA/TensorRT sessions, plain ``session.run`` otherwise."""
    device = IO_BINDING_DEVICE.get(providers[0]) if providers else None
    if device is not None:
        return IOBindingTimer(session, feeds, device, device_id)
    return HostTimer(session, feeds)


# --------------------------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------------------------
def _declared(value: Any) -> tuple:
    return tuple(d if isinstance(d, int) and d > 0 else (d or "?") for d in value.shape)


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"
    shapes_from_file = True

    def __init__(self, path: Path, options: RunOptions, *, model: str | bytes | None = None,
                 threads: int | None = None) -> None:
        from ..bench.system import default_threads
        from ..formats import onnx as onnx_format
        from ..metadata import Metadata

        self.path = path
        self.format = "onnx"
        self.options = options
        requested = tuple(dict.fromkeys(resolve_provider(p) for p in options.providers)) or ("CPUExecutionProvider",)
        proto = onnx_format.read(path)  # one-line errors for files that are not ONNX, before ORT's own
        self.proto = proto
        self.metadata = Metadata.from_props(onnx_format.props_of(proto), where=path.name)
        self.threads = threads or options.threads or default_threads()
        #: the profiler's trace and the optimized graph it names (only when opened for profiling)
        self.profile_dir = tempfile.mkdtemp(prefix="edgekit-ort-profile-") if options.profile else None
        try:
            self.session = create_session(model if model is not None else str(path), requested, options,
                                          what=repr(str(path)), threads=self.threads, profile_dir=self.profile_dir)
        except BaseException:
            self.close()
            raise
        self.requested = requested
        self.providers = tuple(self.session.get_providers())
        self.version = f"onnxruntime {_ort().__version__}"
        self.inputs = tuple(TensorSpec(i.name, _declared(i), np.dtype(NUMPY_DTYPES.get(i.type, np.float32)).name)
                            for i in self.session.get_inputs())
        self.outputs = tuple(TensorSpec(o.name, _declared(o), np.dtype(NUMPY_DTYPES.get(o.type, np.float32)).name)
                             for o in self.session.get_outputs())
        self.opset = onnx_format.opset_of(proto)
        self.label = f"{path.name} (ONNX opset {self.opset or '?'}, onnxruntime {', '.join(self.providers)})"
        self._names = [o.name for o in self.session.get_outputs()]

    def _run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        return self.session.run(self._names, feeds)

    def timer(self, feeds: Mapping[str, np.ndarray]) -> HostTimer | IOBindingTimer:
        return make_timer(self.session, self._cast(feeds), self.providers, self.options.device_id)

    def host_timer(self, feeds: Mapping[str, np.ndarray]) -> HostTimer:
        return HostTimer(self.session, self._cast(feeds))

    def assignment(self) -> dict[str, int] | None:
        return nodes_per_provider(self.session)

    def notes(self) -> list[str]:
        nodes = self.assignment()
        if nodes and len(nodes) > 1:
            others = {p: n for p, n in nodes.items() if p != self.providers[0]}
            return ["some nodes run on " + ", ".join(f"{p} ({n})" for p, n in others.items())
                    + f", not {self.providers[0]}"]
        return []

    def end_profiling(self) -> str:
        """The path of ONNX Runtime's profiling JSON (only when opened with ``RunOptions(profile=True)``)."""
        return self.session.end_profiling()

    def profile(self, feeds: Mapping[str, np.ndarray], *, runs: int, warmup: int) -> RuntimeProfile:
        """Per-node medians over ``runs`` runs after ``warmup`` (dropped from the trace), from ONNX Runtime's own
        profiler; each kernel mapped to the file's nodes through the optimized graph this session saved."""
        from ..formats.onnx import graph_index
        from .ort_profile import profile_from_trace

        if self.profile_dir is None:
            raise BadArgument("this ONNX Runtime session was opened without profiling; open it with "
                              "RunOptions(profile=True)")
        timer = self.timer(feeds)
        for _ in range(warmup):
            timer.once()
        walls = [0] * runs
        timer.timed(walls, 0, runs, 1 << 62)
        trace = self.end_profiling()
        return profile_from_trace(trace, str(Path(self.profile_dir) / "optimized.onnx"), graph_index(self.path),
                                  skip_runs=warmup, walls_ms=[w / 1e6 for w in walls])

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        if self.profile_dir is not None:
            shutil.rmtree(self.profile_dir, ignore_errors=True)
            self.profile_dir = None


def open_onnxruntime(path: Path, options: RunOptions, fmt: "Format") -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(path, options)


def check_provider_options(providers: Sequence[str]) -> tuple[str, ...]:
    """Resolve and de-duplicate provider names; an empty list is a usage error."""
    names = [p.strip() for item in providers for p in str(item).split(",") if p.strip()]
    if not names:
        raise BadArgument("no execution provider given; pass e.g. --provider cpu")
    return tuple(dict.fromkeys(resolve_provider(n) for n in names))
