"""Latency and throughput of an ONNX model on the ONNX Runtime execution provider the user asked for.

Numbers people can trust, in the shape of onnxruntime_perf_test's and Polygraphy's reports:

- The session runs on the provider that was asked for, or nothing runs: an unknown provider, one this ONNX Runtime
  build lacks, or a session that silently ends up on another one (``onnxruntime-gpu`` falls back to CPU without a
  word when CUDA libraries are missing) is refused with :class:`ProviderUnavailable`. The label in the report is what
  ``session.get_providers()`` says after creation, never what was requested.
- Session creation and the first inference (where cuDNN runs its convolution-algorithm search) are reported apart
  from the steady state, which is measured after ``warmup`` more runs.
- The timed loop does nothing per iteration but the call and the clock: latencies go into a preallocated list of
  ``perf_counter_ns`` differences, and progress is reported between chunks of iterations, outside any timed window.
- On CUDA (and TensorRT) inputs and outputs live on the device through I/O binding, so the steady state is the model
  and not PCIe copies; the copy-inclusive latency (numpy in, numpy out) is measured in a separate block.
  ``run_with_iobinding`` synchronises the device before it returns, and the loop also calls
  ``synchronize_outputs()`` before reading the clock, so no asynchronous work can leak past a timestamp.
- ``compare_torch`` times the eager PyTorch reference (rebuilt from the file's edgekit metadata, same input, same
  thread count) after the ONNX Runtime session has been released, never concurrently: they fight for the cores.
"""

from __future__ import annotations

import csv
import gc
import importlib.metadata
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .errors import BadArgument, BadModelFile, EdgekitError, ProviderUnavailable, ResourceLimit
from .metadata import Metadata

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

#: progress(phase, done, total): phase is one of PHASES; total is None when the block runs for a duration rather than
#: a number of iterations. Called between chunks of iterations, never inside a timed window.
ProgressFn = Callable[[str, int, "int | None"], None]

PHASES = ("session", "first", "warmup", "measure", "copies-warmup", "copies", "torch-first", "torch-warmup", "torch")
DEFAULT_WARMUP = 10
DEFAULT_ITERS = 100
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
#: Progress is reported between chunks of about this many seconds of iterations.
_CHUNK_S = 0.25
#: Refuse synthesised inputs larger than this share of the memory available now.
_SHARE_OF_AVAILABLE = 0.5

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
_INSTALL_HINTS: dict[str, str] = {
    "CUDAExecutionProvider": f"on a machine with an NVIDIA GPU, CUDA 12 and cuDNN 9: {_GPU_WHEEL}",
    "TensorrtExecutionProvider": f"on a machine with an NVIDIA GPU and TensorRT: {_GPU_WHEEL}",
    "OpenVINOExecutionProvider": "pip uninstall onnxruntime && pip install onnxruntime-openvino (it replaces onnxruntime)",
    "DmlExecutionProvider": "on Windows: pip uninstall onnxruntime && pip install onnxruntime-directml (it replaces onnxruntime)",
    "QNNExecutionProvider": "on a Qualcomm device: pip uninstall onnxruntime && pip install onnxruntime-qnn (it replaces onnxruntime)",
    "CoreMLExecutionProvider": "use the standard onnxruntime wheel on macOS",
    "ROCMExecutionProvider": "use an ONNX Runtime build with ROCm (or MIGraphX) support on an AMD GPU",
}
#: Providers whose inputs/outputs can live on a device: the timed loop then uses I/O binding on that device.
_IO_BINDING_DEVICE: dict[str, str] = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_ORT_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-directml",
    "onnxruntime-qnn",
    "onnxruntime-training",
)

_NUMPY_DTYPES: dict[str, Any] = {
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


# --------------------------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------------------------


def _as_int(value: object, what: str, example: str) -> int:
    if isinstance(value, bool):
        raise BadArgument(f"{what} must be a whole number, got {value!r}; pass e.g. {example}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        raise BadArgument(f"{what} must be a whole number, got {value!r}; pass e.g. {example}")
    return int(number)


def _as_float(value: object, what: str, example: str) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise BadArgument(f"{what} must be a finite number, got {value!r}; pass e.g. {example}")
    return number


def parse_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``"input:1x3x224x224"``, ``"input:[1,3,224,224]"`` or ``"1x3x224x224"`` -> (name or None, dims).

    The name is split at the last ':' so TensorFlow-style names (``"x:0:1x3x8x8"``) work.
    """
    raw = str(text).strip()
    name: str | None = None
    dims_text = raw
    if ":" in raw:
        name, dims_text = raw.rsplit(":", 1)
        name = name.strip() or None
    dims_text = dims_text.strip().strip("[]()")
    parts = [p for p in dims_text.replace(",", "x").replace("X", "x").split("x")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise BadArgument(
            f"shape {text!r} is not a list of positive dimensions; pass e.g. --shape input:1x3x224x224"
        )
    return name, dims


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


MAX_ITERS = 10_000_000


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark; validated once, here.

    ``providers``: short names or EP names, in priority order (stored resolved to EP names). ``threads``: ONNX
    Runtime intra-op threads (and torch's for ``compare_torch``); None means the physical cores this process may
    use, resolved when the benchmark runs and reported. ``batch``: the size given to a symbolic batch dimension
    (default: the model's own fixed batch, else 1). ``shapes``: input name -> full shape, for symbolic dimensions
    other than the batch (``{None: shape}`` for a single-input model). Either ``iters`` or ``duration_s``
    (default ``iters=100``).
    """

    providers: tuple[str, ...] = ("cpu",)
    threads: int | None = None
    batch: int | None = None
    shapes: tuple[tuple[str | None, tuple[int, ...]], ...] = ()
    warmup: int = DEFAULT_WARMUP
    iters: int | None = None
    duration_s: float | None = None
    compare_torch: bool = False
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    device_id: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen dataclass)
        providers = (self.providers,) if isinstance(self.providers, str) else tuple(self.providers)
        names = [p.strip() for item in providers for p in str(item).split(",") if p.strip()]
        if not names:
            raise BadArgument("no execution provider given; pass e.g. --provider cpu")
        set_("providers", tuple(dict.fromkeys(resolve_provider(n) for n in names)))
        if self.threads is not None:
            threads = _as_int(self.threads, "threads", "--threads 2")
            if threads < 1:
                raise BadArgument(f"threads must be >= 1, got {self.threads!r}; pass e.g. --threads 2")
            set_("threads", threads)
        if self.batch is not None:
            batch = _as_int(self.batch, "batch", "--batch 1")
            if batch < 1:
                raise BadArgument(f"batch must be >= 1, got {self.batch!r}; pass e.g. --batch 1")
            set_("batch", batch)
        shapes = self.shapes.items() if isinstance(self.shapes, Mapping) else self.shapes
        parsed: dict[str | None, tuple[int, ...]] = {}
        for item in shapes:
            if isinstance(item, str):
                name, dims = parse_shape(item)
            else:
                name, dims = item
                if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
                    raise BadArgument(f"shape {list(dims)} for input {name!r} must be positive whole numbers")
                dims = tuple(int(d) for d in dims)
            if name in parsed:
                raise BadArgument(f"shape given twice for input {name or '(unnamed)'!r}; pass one --shape per input")
            parsed[name] = dims
        if None in parsed and len(parsed) > 1:
            raise BadArgument("an unnamed --shape only works alone; name each input: --shape NAME:1x3x224x224")
        set_("shapes", tuple(parsed.items()))
        warmup = _as_int(self.warmup, "warmup", "--warmup 10")
        if warmup < 0:
            raise BadArgument(f"warmup must be >= 0, got {self.warmup!r}; pass e.g. --warmup 10")
        set_("warmup", warmup)
        if self.iters is not None and self.duration_s is not None:
            raise BadArgument("pass either --iters or --duration, not both")
        if self.duration_s is not None:
            duration = _as_float(self.duration_s, "duration", "--duration 5")
            if duration <= 0:
                raise BadArgument(f"duration must be > 0 seconds, got {self.duration_s!r}; pass e.g. --duration 5")
            set_("duration_s", duration)
        else:
            iters = _as_int(DEFAULT_ITERS if self.iters is None else self.iters, "iters", "--iters 100")
            if iters < 1:
                raise BadArgument(f"iters must be >= 1, got {self.iters!r}; pass e.g. --iters 100")
            if iters > MAX_ITERS:  # every latency is kept (8 bytes each): 1e9 runs would want 8 GB before starting
                raise BadArgument(
                    f"iters {iters:,} is more than edgekit keeps ({MAX_ITERS:,}); for a long run pass --duration SECONDS"
                )
            set_("iters", iters)
        search = str(self.cudnn_conv_algo_search).upper()
        if search not in CUDNN_CONV_ALGO_SEARCH:
            raise BadArgument(
                f"cudnn_conv_algo_search must be one of {', '.join(CUDNN_CONV_ALGO_SEARCH)}, got {self.cudnn_conv_algo_search!r}"
            )
        set_("cudnn_conv_algo_search", search)
        device_id = _as_int(self.device_id, "device id", "0")
        if device_id < 0:
            raise BadArgument(f"device id must be >= 0, got {self.device_id!r}")
        set_("device_id", device_id)
        set_("compare_torch", bool(self.compare_torch))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shapes"] = {name or "": list(dims) for name, dims in self.shapes}
        return data


# --------------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Latency distribution in milliseconds. Percentiles interpolate linearly (numpy's default, Hyndman-Fan type 7);
    ``std`` is the sample standard deviation (n - 1; 0 for a single sample)."""

    count: int
    min: float
    mean: float
    std: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    def to_dict(self) -> dict:
        return asdict(self)


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Statistics of a list of latencies (ms). A pure function: the one place where percentiles are computed."""
    data = np.asarray(samples_ms, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(data, [50, 90, 95, 99]))
    return LatencyStats(
        count=int(data.size),
        min=float(data.min()),
        mean=float(data.mean()),
        std=float(data.std(ddof=1)) if data.size > 1 else 0.0,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        max=float(data.max()),
    )


@dataclass(frozen=True)
class InputSpec:
    name: str
    declared_shape: tuple  # as the model declares it: ints, symbolic names, None
    shape: tuple[int, ...]  # what was fed
    dtype: str  # numpy name

    def to_dict(self) -> dict:
        return {"name": self.name, "declared_shape": list(self.declared_shape), "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class SystemInfo:
    ort_version: str
    ort_package: str  # the installed wheel(s), e.g. "onnxruntime 1.32.0"
    available_providers: tuple[str, ...]
    cpu_name: str
    cpu_count: int  # logical CPUs this process may run on
    gpu_name: str | None
    platform: str
    python: str
    numpy_version: str
    load_average: tuple[float, float, float] | None = None  # 1, 5, 15 minutes, read before the session was created

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TorchComparison:
    """Eager PyTorch on the same input and thread count, timed after ONNX Runtime, never concurrently."""

    torch_version: str
    threads: int
    first_inference_ms: float
    warmup: int
    latency_ms: LatencyStats
    throughput: float  # items/s
    speedup_p50: float  # torch p50 / ORT p50: how many times faster ONNX Runtime is
    speedup_mean: float
    reference: str  # what was timed, in words

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BenchReport:
    """What ``edgekit bench`` measured. ``latency_ms`` is the steady state; ``throughput`` is items/s at ``batch``
    (batch / mean latency); ``gmacs`` is achieved GMAC/s (MACs per item from the file's metadata x batch / mean
    latency), None when the MACs are unknown or the input resolution differs from the one they were counted at."""

    path: str
    model: str | None
    alpha: float | None
    res: int | None
    macs: int | None  # per item
    params: int | None
    providers_requested: tuple[str, ...]
    providers: tuple[str, ...]  # session.get_providers() after creation: what actually ran
    nodes_per_provider: dict[str, int] | None
    threads: int
    batch: int
    inputs: tuple[InputSpec, ...]
    io_binding: bool  # inputs/outputs resident on the device during the steady state
    cudnn_conv_algo_search: str | None
    warmup: int
    iterations: int
    measured_s: float  # wall time of the steady-state block
    session_create_ms: float
    first_inference_ms: float
    latency_ms: LatencyStats
    throughput: float
    gmacs: float | None
    latency_with_copies_ms: LatencyStats | None  # numpy in, numpy out (only measured with I/O binding)
    peak_rss_mib: float  # peak resident memory of this process after the ONNX Runtime block (Python, libraries included)
    rss_before_session_mib: float
    system: SystemInfo
    torch: TorchComparison | None = None
    notes: tuple[str, ...] = ()
    timestamp: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["inputs"] = [i.to_dict() for i in self.inputs]
        data["throughput_unit"] = "items/s"
        return data

    @property
    def provider(self) -> str:
        """The provider that did the work: the first one the session reports."""
        return self.providers[0] if self.providers else ""


# --------------------------------------------------------------------------------------------------------------------
# System facts
# --------------------------------------------------------------------------------------------------------------------


def _cpuinfo() -> list[dict[str, str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def default_threads() -> int:
    """Physical cores this process may run on (ONNX Runtime's and PyTorch's own default), logical CPUs if unknown."""
    allowed = _allowed_cpus()
    cores = {
        (b.get("physical id", "0"), b.get("core id"))
        for b in _cpuinfo()
        if b.get("processor", "").isdigit() and int(b["processor"]) in allowed and "core id" in b
    }
    return len(cores) or len(allowed) or 1


def cpu_name() -> str:
    for block in _cpuinfo():
        for key in ("model name", "Model", "Hardware", "cpu model"):
            if block.get(key):
                return block[key]
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5, check=False
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name(device_id: int = 0) -> str | None:
    """The NVIDIA GPU's name from nvidia-smi (or torch, when it already sees CUDA); None when neither can tell."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader", "-i", str(device_id)],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                name, _, driver = out.stdout.strip().splitlines()[0].partition(",")
                return f"{name.strip()} (driver {driver.strip()})" if driver.strip() else name.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device_id))
    except Exception:  # noqa: BLE001 - a broken CUDA install must not break the report
        pass
    return None


def ort_packages() -> str:
    """The installed ONNX Runtime wheels ("onnxruntime 1.32.0"); two of them means a broken install."""
    found = []
    for dist in _ORT_DISTRIBUTIONS:
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return " + ".join(found) or f"onnxruntime {_ort().__version__} (no wheel metadata)"


def load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def system_info(
    providers: Sequence[str] = (), device_id: int = 0, load: tuple[float, float, float] | None = None
) -> SystemInfo:
    ort = _ort()
    uses_gpu = any(p in _GPU_PROVIDERS for p in providers)
    return SystemInfo(
        ort_version=ort.__version__,
        ort_package=ort_packages(),
        available_providers=tuple(ort.get_available_providers()),
        cpu_name=cpu_name(),
        cpu_count=len(_allowed_cpus()),
        gpu_name=gpu_name(device_id) if uses_gpu else None,
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        python=platform.python_version(),
        numpy_version=np.__version__,
        load_average=load,
    )


def _rss_now_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mib()


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _available_memory_bytes() -> int | None:
    from .guards import available_memory_bytes

    return available_memory_bytes()


# --------------------------------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------------------------------


def _available_providers() -> list[str]:
    """The availability check: the one place tests mock to pretend a provider is installed."""
    return list(_ort().get_available_providers())


def check_providers_available(requested: Sequence[str]) -> None:
    available = _available_providers()
    for provider in requested:
        if provider not in available:
            hint = _INSTALL_HINTS.get(provider, f"use an ONNX Runtime build that includes {provider}")
            raise ProviderUnavailable(
                f"{provider} is not available in the installed ONNX Runtime ({ort_packages()}, which offers "
                f"{', '.join(available)}); to get it: {hint}"
            )


def _provider_list(options: BenchOptions) -> list[Any]:
    out: list[Any] = []
    for provider in options.providers:
        if provider == "CUDAExecutionProvider":
            out.append(
                (provider, {"device_id": str(options.device_id), "cudnn_conv_algo_search": options.cudnn_conv_algo_search})
            )
        elif provider == "TensorrtExecutionProvider":
            out.append((provider, {"device_id": str(options.device_id)}))
        else:
            out.append(provider)
    return out


def session_options(threads: int) -> "onnxruntime.SessionOptions":
    """The settings every edgekit benchmark session uses (tools/bench_harness.py builds its bare loop with these)."""
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: ORT's warnings would interleave with the progress lines
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    return so


def check_model_file(path: str | os.PathLike) -> Path:
    """Missing, a folder, empty: one clear BadModelFile before ONNX Runtime gets a chance to say something cryptic."""
    file = Path(path)
    if not file.exists():
        raise BadModelFile(f"{str(file)!r} does not exist; pass the path of an .onnx file (e.g. one 'edgekit export' wrote)")
    if file.is_dir():
        raise BadModelFile(f"{str(file)!r} is a folder; pass the .onnx file inside it")
    if file.stat().st_size == 0:
        raise BadModelFile(f"{str(file)!r} is empty (0 bytes); re-export it")
    return file


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def create_session(path: str | os.PathLike, options: BenchOptions, threads: int | None = None) -> "onnxruntime.InferenceSession":
    """An InferenceSession on exactly the requested providers, or ProviderUnavailable.

    Availability is checked first (with the install hint), then ``get_providers()`` after creation: a build that has
    the provider but cannot load it (missing CUDA/cuDNN libraries) silently runs on CPU, and that is refused too.
    """
    ort = _ort()
    file = check_model_file(path)
    check_providers_available(options.providers)
    so = session_options(threads or options.threads or default_threads())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Specified provider ... is not in available provider names"
            session = ort.InferenceSession(str(file), so, providers=_provider_list(options))
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad file from the user's point of view
        raise BadModelFile(f"{str(file)!r} is not a model ONNX Runtime can load: {_first_line(exc)}") from None
    check_session_providers(session, options.providers)
    check_nodes_assigned(session, options.providers[0])
    return session


def check_nodes_assigned(session: Any, primary: str) -> None:
    """A provider can be in get_providers() and still run nothing: ONNX Runtime hands every node it cannot take to
    the CPU (the Azure EP takes none of a CNN's). Timing that session would be a CPU number under another label."""
    nodes = _nodes_per_provider(session)
    if nodes is None or primary in nodes:
        return
    ran = ", ".join(f"{p} ({n} nodes)" for p, n in nodes.items())
    raise ProviderUnavailable(
        f"{primary} is active but ONNX Runtime assigned it none of the model's nodes: everything runs on {ran}; "
        f"refusing to report those numbers as {primary}"
    )


def check_session_providers(session: Any, requested: Sequence[str]) -> tuple[str, ...]:
    actual = tuple(session.get_providers())
    missing = [p for p in requested if p not in actual]
    if missing:
        hint = _INSTALL_HINTS.get(missing[0], "")
        raise ProviderUnavailable(
            f"asked for {', '.join(requested)} but the session runs on {', '.join(actual) or 'nothing'}: ONNX Runtime "
            f"fell back silently (for CUDA usually CUDA/cuDNN libraries that do not load or do not match); refusing to "
            f"report {actual[0] if actual else 'those'} numbers as {missing[0]}. Installed: {ort_packages()}"
            + (f"; to get {missing[0]}: {hint}" if hint else "")
        )
    return actual


def _nodes_per_provider(session: Any) -> dict[str, int] | None:
    try:
        counts: dict[str, int] = {}
        for subgraph in session.get_provider_graph_assignment_info():
            counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
        return counts or None
    except Exception:  # noqa: BLE001 - older ONNX Runtime: the breakdown is a nicety
        return None


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------


def _is_fixed(dim: object) -> bool:
    return isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim > 0


def _fmt_shape(shape: Sequence[object]) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def resolve_input_shapes(
    declared: Sequence[tuple[str, Sequence[object]]],
    *,
    batch: int | None,
    shapes: Mapping[str | None, tuple[int, ...]],
    metadata: Metadata | None = None,
) -> tuple[dict[str, tuple[int, ...]], int]:
    """Concrete shapes for the model's inputs and the batch they carry. Pure: tested without ONNX Runtime.

    The first dimension is the batch: a symbolic one takes ``batch`` (default 1), a fixed one must equal ``batch``
    when it is given. Other symbolic dimensions come from ``shapes`` or, for the input named in edgekit metadata,
    from the metadata's input shape. An explicit shape must fit the declared one: same rank, same fixed dimensions.
    """
    names = [name for name, _ in declared]
    shapes = dict(shapes)
    if None in shapes:
        if len(declared) != 1:
            raise BadArgument(
                f"the model has {len(declared)} inputs ({', '.join(names)}); name each one: --shape NAME:1x3x224x224"
            )
        shapes[names[0]] = shapes.pop(None)
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise BadArgument(f"--shape names input {unknown[0]!r}, but the model's inputs are {', '.join(names) or 'none'}")
    out: dict[str, tuple[int, ...]] = {}
    batches: list[int] = []
    for name, decl in declared:
        decl = list(decl)
        if name in shapes:
            given = tuple(shapes[name])
            if len(given) != len(decl):
                raise BadArgument(
                    f"shape {'x'.join(map(str, given))} for input {name!r} has {len(given)} dimensions but the model "
                    f"declares {len(decl)}: {_fmt_shape(decl)}"
                )
            for i, (g, d) in enumerate(zip(given, decl)):
                if _is_fixed(d) and g != d:
                    raise BadArgument(
                        f"shape {'x'.join(map(str, given))} does not fit input {name!r} {_fmt_shape(decl)}: dimension "
                        f"{i} is fixed at {d}; re-export the model for that shape or pass --shape {name}:"
                        + "x".join(str(x if _is_fixed(x) else g2) for x, g2 in zip(decl, given))
                    )
            if batch is not None and given and given[0] != batch:
                raise BadArgument(f"--batch {batch} contradicts --shape {name}:{'x'.join(map(str, given))}; drop one")
            out[name] = given
            if given:
                batches.append(given[0])
            continue
        dims: list[int] = []
        for i, d in enumerate(decl):
            if i == 0:
                if _is_fixed(d):
                    if batch is not None and batch != d:
                        raise BadArgument(
                            f"input {name!r} has a fixed batch of {d} {_fmt_shape(decl)}, so --batch {batch} does not fit; "
                            f"re-export with a symbolic batch (edgekit export ... --dynamic-batch) or drop --batch"
                        )
                    dims.append(int(d))
                else:
                    dims.append(batch or 1)
                continue
            if _is_fixed(d):
                dims.append(int(d))
                continue
            meta_shape = metadata.input_shape if metadata is not None and metadata.input_name == name else None
            if meta_shape is not None and len(meta_shape) == len(decl) and _is_fixed(meta_shape[i]):
                dims.append(int(meta_shape[i]))
                continue
            example = "x".join(str(x) if _is_fixed(x) else ("1" if j == 0 else "224") for j, x in enumerate(decl))
            raise BadArgument(
                f"input {name!r} {_fmt_shape(decl)} has a symbolic dimension {d!r} at position {i}; give its size with "
                f"--shape {name}:{example}"
            )
        out[name] = tuple(dims)
        if dims:
            batches.append(dims[0])
    return out, (batches[0] if batches else (batch or 1))


def synthesize_inputs(
    declared: Sequence[tuple[str, str]], shapes: Mapping[str, tuple[int, ...]], seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded data of each input's type: N(0, 1) floats (a normalised image), zeros for integers, False for bools."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for name, type_str in declared:
        dtype = _NUMPY_DTYPES.get(type_str)
        if dtype is None:
            raise BadModelFile(f"input {name!r} has type {type_str}, which edgekit cannot synthesise data for")
        shape = shapes[name]
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        else:
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds


def _check_input_memory(shapes: Mapping[str, tuple[int, ...]], declared: Sequence[tuple[str, str]]) -> None:
    available = _available_memory_bytes()
    if available is None:
        return
    types = dict(declared)
    needed = sum(
        int(np.prod(shape, dtype=np.float64)) * np.dtype(_NUMPY_DTYPES.get(types.get(n, ""), np.float32)).itemsize
        for n, shape in shapes.items()
    )
    if needed > _SHARE_OF_AVAILABLE * available:
        gib = 1024**3
        raise ResourceLimit(
            f"the inputs alone would need {needed / gib:.1f} GiB but only {available / gib:.1f} GiB is available; "
            f"use a smaller --batch or --shape"
        )


# --------------------------------------------------------------------------------------------------------------------
# Runners: one call of the model, and the timed loop around it
# --------------------------------------------------------------------------------------------------------------------


class HostRunner:
    """``session.run`` with numpy inputs and outputs: what an application without I/O binding gets (on CPU, all)."""

    io_binding = False

    def __init__(self, session: Any, feeds: Mapping[str, np.ndarray]) -> None:
        self._session = session
        self._feeds = dict(feeds)
        self._names = [o.name for o in session.get_outputs()]

    def once(self) -> list:
        return self._session.run(self._names, self._feeds)

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int, clock: Callable[[], int] = time.perf_counter_ns) -> int:
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


class IOBindingRunner:
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

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int, clock: Callable[[], int] = time.perf_counter_ns) -> int:
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


class TorchRunner:
    """An eager PyTorch module under ``inference_mode``, in the same loop shape as the ONNX Runtime runners.

    ``sync`` (``torch.cuda.synchronize`` on a GPU) runs inside the timed window: CUDA kernels are asynchronous.
    """

    io_binding = False

    def __init__(self, module: Any, inputs: Sequence[Any], sync: Callable[[], None] | None = None) -> None:
        self._module = module
        self._inputs = tuple(inputs)
        self._sync = sync

    def once(self) -> Any:
        import torch

        with torch.inference_mode():
            out = self._module(*self._inputs)
            if self._sync is not None:
                self._sync()
            return out

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int, clock: Callable[[], int] = time.perf_counter_ns) -> int:
        import torch

        module, inputs, sync = self._module, self._inputs, self._sync
        with torch.inference_mode():
            if sync is None:
                for i in range(start, stop):
                    t0 = clock()
                    module(*inputs)
                    t1 = clock()
                    out[i] = t1 - t0
                    if t1 >= deadline_ns:
                        return i + 1
            else:
                for i in range(start, stop):
                    t0 = clock()
                    module(*inputs)
                    sync()
                    t1 = clock()
                    out[i] = t1 - t0
                    if t1 >= deadline_ns:
                        return i + 1
        return stop


def make_runner(session: Any, feeds: Mapping[str, np.ndarray], providers: Sequence[str], device_id: int = 0) -> HostRunner | IOBindingRunner:
    """I/O binding on the device for CUDA/TensorRT sessions, plain ``session.run`` otherwise."""
    device = _IO_BINDING_DEVICE.get(providers[0]) if providers else None
    if device is not None:
        return IOBindingRunner(session, feeds, device, device_id)
    return HostRunner(session, feeds)


def _noop_progress(phase: str, done: int, total: int | None) -> None:
    pass


def run_block(
    runner: Any,
    *,
    iters: int | None,
    duration_s: float | None,
    estimate_ns: float,
    phase: str,
    progress: ProgressFn = _noop_progress,
) -> tuple[list[int], float]:
    """Run ``iters`` timed calls (or as many as fit in ``duration_s``): per-call nanoseconds and the block's wall time.

    The latency list is preallocated; progress is reported between chunks of about ``_CHUNK_S`` seconds.
    """
    chunk = max(1, min(10_000, int(_CHUNK_S * 1e9 / max(estimate_ns, 1.0))))
    if duration_s is not None:
        capacity = max(64, min(1_000_000, int(1.2 * duration_s * 1e9 / max(estimate_ns, 1.0)) + 64))
        total: int | None = None
    else:
        assert iters is not None
        capacity = iters
        total = iters
    out = [0] * capacity
    done = 0
    progress(phase, 0, total)
    wall0 = time.perf_counter_ns()
    deadline = wall0 + int(duration_s * 1e9) if duration_s is not None else 1 << 62
    while True:
        stop = done + chunk if total is None else min(done + chunk, total)
        if stop > len(out):  # duration mode ran faster than estimated: grow between chunks, outside any timing
            out.extend([0] * max(stop - len(out), len(out)))
        reached = runner.timed(out, done, stop, deadline)
        done = reached
        if (total is not None and done >= total) or reached < stop or time.perf_counter_ns() >= deadline:
            break
        progress(phase, done, total)
    wall_s = (time.perf_counter_ns() - wall0) / 1e9
    progress(phase, done, done)  # the block is over: done == total, also in duration mode
    return out[:done], wall_s


def _time_once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def _warm(runner: Any, warmup: int, phase: str, progress: ProgressFn, first_ms: float) -> float:
    """Warm-up runs (timed only to size the chunks of the measured block); returns the per-call estimate in ns."""
    if warmup <= 0:
        return first_ms * 1e6
    lat, _ = run_block(runner, iters=warmup, duration_s=None, estimate_ns=first_ms * 1e6, phase=phase, progress=progress)
    return float(np.median(lat)) if lat else first_ms * 1e6


def _ms(samples_ns: Sequence[int]) -> list[float]:
    return [s / 1e6 for s in samples_ns]


# --------------------------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------------------------


def bench(path: str | os.PathLike, *, options: BenchOptions, progress: ProgressFn | None = None) -> BenchReport:
    """Benchmark the ONNX model at ``path`` on ``options.providers`` and return what was measured."""
    progress = progress or _noop_progress
    file = check_model_file(path)
    threads = options.threads or default_threads()
    notes: list[str] = []

    progress("session", 0, 1)
    load = load_average()
    cpus = len(_allowed_cpus())
    if load is not None and load[0] >= 0.75 * cpus:
        notes.append(
            f"load average {load[0]:.2f} on {cpus} CPUs before the run: other processes compete for the cores, "
            f"expect noisy numbers"
        )
    rss_before = _rss_now_mib()
    t0 = time.perf_counter_ns()
    session = create_session(file, options, threads=threads)
    session_ms = (time.perf_counter_ns() - t0) / 1e6
    providers = tuple(session.get_providers())
    progress("session", 1, 1)

    metadata = Metadata.from_props(dict(session.get_modelmeta().custom_metadata_map), where=str(file))
    if options.compare_torch:
        _check_torch_comparable(metadata, session, file)
    declared_shapes = [(i.name, list(i.shape)) for i in session.get_inputs()]
    declared_types = [(i.name, i.type) for i in session.get_inputs()]
    shapes, batch = resolve_input_shapes(
        declared_shapes, batch=options.batch, shapes=dict(options.shapes), metadata=metadata
    )
    _check_input_memory(shapes, declared_types)
    feeds = synthesize_inputs(declared_types, shapes, seed=options.seed)
    inputs = tuple(
        InputSpec(name, tuple(decl), shapes[name], str(feeds[name].dtype)) for name, decl in declared_shapes
    )

    runner = make_runner(session, feeds, providers, options.device_id)
    progress("first", 0, 1)
    try:
        first_ms = _time_once(runner.once)
    except Exception as exc:  # noqa: BLE001 - ORT refuses the shapes, or the graph fails at run time
        fed = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())
        raise BadArgument(f"the model does not run with input {fed}: {_first_line(exc)}") from None
    progress("first", 1, 1)
    if providers[0] == "CUDAExecutionProvider" and options.cudnn_conv_algo_search == "EXHAUSTIVE":
        notes.append("first inference includes cuDNN's exhaustive convolution-algorithm search")

    estimate = _warm(runner, options.warmup, "warmup", progress, first_ms)
    samples, measured_s = run_block(
        runner, iters=options.iters, duration_s=options.duration_s, estimate_ns=estimate, phase="measure", progress=progress
    )
    stats = latency_stats(_ms(samples))
    if stats.count > 1 and stats.std > 0.25 * stats.mean:
        notes.append(
            f"latency varies a lot (std {100 * stats.std / stats.mean:.0f}% of the mean): compare p50s, or rerun on "
            f"a quieter machine, with fewer --threads or a longer --duration"
        )

    copies: LatencyStats | None = None
    if runner.io_binding:
        host = HostRunner(session, feeds)
        host_first = _time_once(host.once)
        host_estimate = _warm(host, options.warmup, "copies-warmup", progress, host_first)
        host_samples, _ = run_block(
            host, iters=len(samples), duration_s=None, estimate_ns=host_estimate, phase="copies", progress=progress
        )
        copies = latency_stats(_ms(host_samples))
        del host

    macs = metadata.macs if metadata is not None else None
    gmacs: float | None = None
    if macs and metadata is not None:
        fed = shapes.get(metadata.input_name)
        if fed is not None and list(fed[1:]) == [int(d) if _is_fixed(d) else d for d in metadata.input_shape[1:]]:
            gmacs = macs * batch / (stats.mean / 1e3) / 1e9
        else:
            notes.append(
                f"the metadata's MACs were counted for input {_fmt_shape(metadata.input_shape)}; GMAC/s not reported"
            )

    nodes = _nodes_per_provider(session)
    if nodes and len(nodes) > 1:
        others = {p: n for p, n in nodes.items() if p != providers[0]}
        notes.append(
            "some nodes run on " + ", ".join(f"{p} ({n})" for p, n in others.items()) + f", not {providers[0]}"
        )
    peak_rss = _peak_rss_mib()  # before PyTorch builds its reference model
    # Release the session (and its spinning thread pool) before anything else runs on these cores.
    del runner, session
    gc.collect()

    torch_result: TorchComparison | None = None
    if options.compare_torch:
        assert metadata is not None
        torch_result = _compare_torch(metadata, file, feeds, threads, options, stats, batch, providers, progress)

    return BenchReport(
        path=str(file),
        model=metadata.model if metadata else None,
        alpha=metadata.alpha if metadata else None,
        res=metadata.res if metadata else None,
        macs=macs,
        params=metadata.params if metadata else None,
        providers_requested=options.providers,
        providers=providers,
        nodes_per_provider=nodes,
        threads=threads,
        batch=batch,
        inputs=inputs,
        io_binding=bool(copies is not None),
        cudnn_conv_algo_search=options.cudnn_conv_algo_search if "CUDAExecutionProvider" in providers else None,
        warmup=options.warmup,
        iterations=stats.count,
        measured_s=measured_s,
        session_create_ms=session_ms,
        first_inference_ms=first_ms,
        latency_ms=stats,
        throughput=batch / (stats.mean / 1e3),
        gmacs=gmacs,
        latency_with_copies_ms=copies,
        peak_rss_mib=peak_rss,
        rss_before_session_mib=rss_before,
        system=system_info(providers, options.device_id, load),
        torch=torch_result,
        notes=tuple(notes),
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


# --------------------------------------------------------------------------------------------------------------------
# --compare torch
# --------------------------------------------------------------------------------------------------------------------


def _check_torch_comparable(metadata: Metadata | None, session: Any, file: Path) -> None:
    if metadata is None:
        raise BadModelFile(
            f"--compare torch needs edgekit metadata (model, alpha, weights) in {str(file)!r} to rebuild the PyTorch "
            f"reference, and this file has none; export it with 'edgekit export' or drop --compare"
        )
    if len(session.get_inputs()) != 1:
        raise BadArgument("--compare torch supports single-input models only")


def _reference_model(metadata: Metadata, model_path: Path) -> Any:
    from .models import build_model
    from .weights import resolve_weights_path

    kind, _, rest = metadata.weights.partition(":")
    if kind == "seed":
        seed = metadata.seed if metadata.seed is not None else _as_int(rest or 0, "seed in metadata", "seed:0")
        model, _ = build_model(metadata.model, alpha=metadata.alpha, num_classes=metadata.num_classes, seed=seed)
    elif kind == "imagenet":
        model, _ = build_model(metadata.model, alpha=metadata.alpha, num_classes=metadata.num_classes, weights="imagenet")
    elif kind == "file":
        try:  # where the metadata says, or next to the model file (as verify looks)
            weights = resolve_weights_path(rest, model_path)
        except EdgekitError:
            raise BadModelFile(
                f"the metadata says the weights came from {rest!r}, which is neither there nor next to "
                f"{model_path.name}; --compare torch needs that file"
            ) from None
        model, _ = build_model(metadata.model, alpha=metadata.alpha, num_classes=metadata.num_classes, weights=weights)
    else:
        raise BadModelFile(f"edgekit metadata names weights {metadata.weights!r}, which edgekit cannot rebuild")
    return model.eval()


def _compare_torch(
    metadata: Metadata,
    model_path: Path,
    feeds: Mapping[str, np.ndarray],
    threads: int,
    options: BenchOptions,
    ort_stats: LatencyStats,
    batch: int,
    providers: Sequence[str],
    progress: ProgressFn,
) -> TorchComparison:
    """Eager PyTorch on the device ONNX Runtime used (CPU, or the same GPU for CUDA/TensorRT), same input."""
    import torch

    model = _reference_model(metadata, model_path)
    (array,) = feeds.values()
    x = torch.from_numpy(np.ascontiguousarray(array))
    sync: Callable[[], None] | None = None
    device = "cpu"
    if providers and providers[0] in _GPU_PROVIDERS:
        if not torch.cuda.is_available():
            raise ProviderUnavailable(
                "--compare torch on a GPU provider needs a CUDA build of PyTorch that sees the GPU; "
                "torch.cuda.is_available() is False here"
            )
        device = f"cuda:{options.device_id}"
        model, x = model.to(device), x.to(device)
        sync = torch.cuda.synchronize
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runner = TorchRunner(model, (x,), sync)
        progress("torch-first", 0, 1)
        first_ms = _time_once(runner.once)
        progress("torch-first", 1, 1)
        estimate = _warm(runner, options.warmup, "torch-warmup", progress, first_ms)
        samples, _ = run_block(
            runner, iters=options.iters, duration_s=options.duration_s, estimate_ns=estimate, phase="torch", progress=progress
        )
    finally:
        torch.set_num_threads(previous)
    stats = latency_stats(_ms(samples))
    return TorchComparison(
        torch_version=torch.__version__,
        threads=threads,
        first_inference_ms=first_ms,
        warmup=options.warmup,
        latency_ms=stats,
        throughput=batch / (stats.mean / 1e3),
        speedup_p50=stats.p50 / ort_stats.p50,
        speedup_mean=stats.mean / ort_stats.mean,
        reference=(
            f"eager {metadata.model} alpha {metadata.alpha:g} ({metadata.weights}, unfused as built), "
            f"torch.inference_mode, {device}"
        ),
    )


# --------------------------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "timestamp", "path", "model", "alpha", "res", "provider", "providers", "threads", "batch", "input_shapes",
    "warmup", "iterations", "session_create_ms", "first_inference_ms",
    "min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
    "throughput_items_per_s", "gmacs", "macs", "params", "io_binding", "copies_p50_ms",
    "torch_p50_ms", "speedup_p50", "peak_rss_mib", "ort_version", "cpu_name", "gpu_name",
)  # fmt: skip


def csv_row(report: BenchReport) -> dict[str, object]:
    lat = report.latency_ms

    def r(value: float | None, digits: int = 4) -> object:
        return "" if value is None else round(value, digits)

    return {
        "timestamp": report.timestamp,
        "path": report.path,
        "model": report.model or "",
        "alpha": "" if report.alpha is None else report.alpha,
        "res": "" if report.res is None else report.res,
        "provider": report.provider,
        "providers": ";".join(report.providers),
        "threads": report.threads,
        "batch": report.batch,
        "input_shapes": ";".join(f"{i.name}:{'x'.join(map(str, i.shape))}" for i in report.inputs),
        "warmup": report.warmup,
        "iterations": report.iterations,
        "session_create_ms": r(report.session_create_ms, 2),
        "first_inference_ms": r(report.first_inference_ms),
        "min_ms": r(lat.min),
        "mean_ms": r(lat.mean),
        "std_ms": r(lat.std),
        "p50_ms": r(lat.p50),
        "p90_ms": r(lat.p90),
        "p95_ms": r(lat.p95),
        "p99_ms": r(lat.p99),
        "max_ms": r(lat.max),
        "throughput_items_per_s": r(report.throughput, 2),
        "gmacs": r(report.gmacs, 3),
        "macs": "" if report.macs is None else report.macs,
        "params": "" if report.params is None else report.params,
        "io_binding": int(report.io_binding),
        "copies_p50_ms": r(report.latency_with_copies_ms.p50 if report.latency_with_copies_ms else None),
        "torch_p50_ms": r(report.torch.latency_ms.p50 if report.torch else None),
        "speedup_p50": r(report.torch.speedup_p50 if report.torch else None, 3),
        "peak_rss_mib": r(report.peak_rss_mib, 1),
        "ort_version": report.system.ort_version,
        "cpu_name": report.system.cpu_name,
        "gpu_name": report.system.gpu_name or "",
    }


def check_csv_target(path: str | os.PathLike) -> Path:
    """Refuse a ``--csv`` target that cannot take our row, before a benchmark is spent on it."""
    file = Path(path)
    if file.is_dir():
        raise BadArgument(f"--csv {str(file)!r} is a folder; pass a file name, e.g. --csv bench.csv")
    folder = file.parent if str(file.parent) else Path(".")
    if not folder.is_dir():
        raise BadArgument(f"--csv {str(file)!r}: folder {str(folder)!r} does not exist; create it or pass another file")
    if not os.access(file if file.exists() else folder, os.W_OK):
        raise BadArgument(f"--csv {str(file)!r} is not writable; pass another file")
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            first_line = fh.readline()
    except FileNotFoundError:
        return file
    except (OSError, UnicodeDecodeError) as exc:
        raise BadArgument(f"--csv {str(file)!r} cannot be read ({exc}); pass another file") from None
    if first_line and next(csv.reader([first_line]), []) != list(CSV_COLUMNS):
        raise BadArgument(
            f"--csv {str(file)!r} already holds a table with other columns; append to a new file instead"
        )
    return file


def append_csv(report: BenchReport, path: str | os.PathLike) -> Path:
    """Append one row to ``path`` (header first when the file is new or empty); returns the path.

    The row is written with one ``write`` on a file opened for appending and held under an exclusive lock, so
    concurrent benchmarks appending to the same file do not interleave. A file with other columns is refused.
    """
    import io

    file = check_csv_target(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    try:
        with open(file, "a+", newline="", encoding="utf-8") as fh:
            _lock(fh)
            fh.seek(0)
            first_line = fh.readline()
            if not first_line:
                writer.writeheader()
            elif next(csv.reader([first_line]), []) != list(CSV_COLUMNS):
                raise BadArgument(
                    f"--csv {str(file)!r} already holds a table with other columns; append to a new file instead"
                )
            writer.writerow(csv_row(report))
            fh.seek(0, os.SEEK_END)
            fh.write(buffer.getvalue())
            fh.flush()
    except OSError as exc:
        raise EdgekitError(f"cannot append to {str(file)!r}: {exc.strerror or exc}") from None
    return file


def _lock(fh: Any) -> None:
    try:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    except (ImportError, OSError):  # not POSIX: a single append write is the best we can do
        pass


__all__ = [
    "BenchOptions",
    "BenchReport",
    "LatencyStats",
    "TorchComparison",
    "SystemInfo",
    "InputSpec",
    "bench",
    "latency_stats",
    "resolve_provider",
    "parse_shape",
    "resolve_input_shapes",
    "synthesize_inputs",
    "create_session",
    "session_options",
    "append_csv",
    "check_csv_target",
    "csv_row",
    "CSV_COLUMNS",
    "default_threads",
]
