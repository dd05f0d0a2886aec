"""OpenVINO: ONNX files compiled by the OpenVINO runtime (the ``openvino`` extra), on its CPU plugin or another device.

What it guarantees, beyond the :class:`~edgekit.runtimes.Runner` contract:

- **fp32 means fp32.** On CPUs with AVX512-BF16 or AMX, the CPU plugin's default ``INFERENCE_PRECISION_HINT`` is
  ``bf16``: an fp32 ONNX file silently runs in bfloat16 (max |err| ~2e-2 on MobileNetV3, top-1 flips on small
  models; far outside the fp32 tolerance). The runner asks for ``f32`` unless bf16 is asked for explicitly
  (``RunOptions.precision``), reads the precision back from the compiled model (from the executed graph for
  AUTO/HETERO, which do not report it) and refuses to open when it got another one. A bf16 run is labelled so.
- **The device that really ran.** ``providers`` is the compiled model's ``EXECUTION_DEVICES``: AUTO resolves to a
  real device there, never the name that was asked for.
- **Threads and latency like the other runtimes**: ``INFERENCE_NUM_THREADS`` from ``RunOptions.threads`` (default
  the physical cores), ``PERFORMANCE_HINT=LATENCY`` with one stream, and ``ENABLE_CPU_PINNING=False``: pinned
  worker threads wait for their own core when other processes use it, which doubled latency on a shared 2-core
  machine (measured; see notes/ in the repository history).
- **The timed loop** binds the inputs once (tensors sharing the numpy memory) and calls a bare ``infer()``:
  ``InferRequest.infer(dict)`` costs ~45 us more per call in name lookups and result wrapping.
- **Per-node profile** (``bench --profile``): ``PERF_COUNT`` counters, which the CPU plugin keeps as running means
  since compilation in whole microseconds; :meth:`OpenVINORunner.profile` recovers the mean over its own window.

OpenVINO's errors are ``RuntimeError``s whose first line is a C++ source position; :func:`ov_message` keeps the part
that says what went wrong.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..errors import BadArgument, BadModelFile, ProviderUnavailable
from . import CallTimer, NodeTime, Runner, RunOptions, RuntimeProfile, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    from ..formats import Format

#: ``INFERENCE_PRECISION_HINT`` values edgekit asks for: f32 (the default, what fp32 verification needs) and bf16
#: (an explicit, labelled speed mode on CPUs with AVX512-BF16/AMX)
PRECISIONS = {"fp32": "f32", "f32": "f32", "bf16": "bf16"}
#: device short names (what --provider takes) -> OpenVINO's device names
DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}
_NUMPY = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i8": np.int8, "i16": np.int16, "i32": np.int32,
          "i64": np.int64, "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64, "boolean": np.bool_}
_DEVICE_HINTS = {"GPU": "an Intel GPU with its OpenCL/Level Zero driver (libOpenCL.so.1)",
                 "NPU": "an Intel NPU with its driver and compiler"}
#: runtime-graph node types that carry no work of their own
_NO_WORK = ("Const", "Input", "Output", "Parameter", "Result")


def _ov() -> Any:
    import openvino  # the runtime layer checked that it is installed (RuntimeSpec.requires)

    return openvino


def ov_message(exc: BaseException, limit: int = 300) -> str:
    """OpenVINO's error text without its 'Exception from src/...cpp:NN:' and 'Check ... failed at ...' preambles."""
    text = " ".join(str(exc).split())
    text = re.sub(r"Exception from \S+?:\d+:\s*", "", text)
    text = re.sub(r"Check '.*?' failed at \S+?:\d+:\s*", "", text)
    text = text.replace("FrontEnd API failed with GeneralFailure:", "").strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(element_type: Any) -> str:
    return str(element_type.get_type_name() if hasattr(element_type, "get_type_name") else element_type)


def _spec(port: Any, name: str) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else "?" for d in port.get_partial_shape())
    dtype = _NUMPY.get(_type_name(port.get_element_type()), np.float32)
    return TensorSpec(name, shape, np.dtype(dtype).name)


def _device(options: RunOptions, core: Any) -> str:
    wanted = str(options.providers[0] if options.providers else "cpu").strip()
    name = DEVICES.get(wanted.lower(), wanted.upper())
    base = re.split(r"[:.]", name, maxsplit=1)[0]
    available = list(core.available_devices)
    if base not in ("AUTO", "HETERO", "MULTI") and base not in {d.split(".", 1)[0] for d in available}:
        hint = _DEVICE_HINTS.get(base, "a device OpenVINO can see")
        raise ProviderUnavailable(
            f"OpenVINO device {wanted!r} is not available here (available: {', '.join(available) or 'none'}); use "
            f"--provider cpu, or run on a machine with {hint}"
        )
    return name


def _read(path: Path) -> Any:
    """The ONNX frontend only: ``Core.read_model`` tries every frontend on a bad file (TensorFlow's prints parse
    errors to stderr) and ends with a generic 'Unable to read the model'."""
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("onnx")
    try:
        return frontend.convert(frontend.load(str(path)))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError/GeneralFailure/OpConversionFailure ...
        raise BadModelFile(f"OpenVINO cannot read {path.name}: {ov_message(exc)}; check it with onnx.checker and "
                           "re-export it") from None


class OpenVINORunner(Runner):
    runtime = "openvino"
    shapes_from_file = True

    def __init__(self, path: Path, options: RunOptions) -> None:
        from ..bench.system import default_threads
        from ..formats import onnx as onnx_format
        from ..metadata import Metadata

        ov = _ov()
        self.path, self.format, self.options = path, "onnx", options
        proto = onnx_format.read(path)  # one-line errors for files that are not ONNX, before OpenVINO's own
        self.metadata = Metadata.from_props(onnx_format.props_of(proto), where=path.name)
        self.precision_asked = PRECISIONS.get(str(options.precision or "f32").lower())
        if self.precision_asked is None:
            raise BadArgument(f"OpenVINO computes in f32 (default) or bf16, not {options.precision!r}; pass "
                              "--inference-precision f32 or bf16")
        core = ov.Core()
        self.device = _device(options, core)
        self.threads = options.threads or default_threads()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.precision_asked}
        if self.device.split(":", 1)[0] == "CPU":
            config.update(INFERENCE_NUM_THREADS=self.threads, NUM_STREAMS=1, ENABLE_CPU_PINNING=False)
        if options.profile:
            config["PERF_COUNT"] = True
        self.config = config
        model = _read(path)
        # The file's own tensor names: compilation can merge a neighbour's name into a port (an fp16 file's input
        # port becomes {'input', 'graph_input_cast_0'} once its Cast is fused) and get_any_name() may pick either.
        names = ([p.get_any_name() if p.get_names() else "" for p in model.inputs],
                 [p.get_any_name() if p.get_names() else "" for p in model.outputs])
        self.compiled = self._compile(core, model, config)
        self.request = self.compiled.create_infer_request()
        self.providers = tuple(str(d) for d in self.compiled.get_property("EXECUTION_DEVICES"))
        self.precision = self._precision()
        if self.precision != self.precision_asked:
            raise ProviderUnavailable(
                f"asked OpenVINO for {self.precision_asked} inference on {self.device} but the compiled model uses "
                f"{self.precision} (this device lacks {self.precision_asked} support); refusing to report it as "
                f"{self.precision_asked}; use --inference-precision f32"
            )
        if self.precision != "f32":  # what runs is labelled with it everywhere a provider is shown
            self.providers = tuple(f"{d} {self.precision}" for d in self.providers)
        self.version = f"openvino {ov.__version__.split('-', 1)[0]}"
        self.inputs = tuple(_spec(p, n) for p, n in zip(self.compiled.inputs, names[0]))
        self.outputs = tuple(_spec(p, n) for p, n in zip(self.compiled.outputs, names[1]))
        self.label = (f"{path.name} (ONNX opset {onnx_format.opset_of(proto) or '?'}, openvino "
                      f"{', '.join(self.providers)}, {self.precision})")
        self._inferences = 0  # since compilation: OpenVINO's profiling counters are running means over all of them

    def _compile(self, core: Any, model: Any, config: dict[str, Any]) -> Any:
        try:
            return core.compile_model(model, self.device, config)
        except Exception as exc:  # noqa: BLE001
            msg = ov_message(exc)
            if "Unsupported property" in msg or "Wrong value" in msg or "device id" in msg:
                raise BadArgument(f"OpenVINO {self.device} refused the configuration: {msg}; pass the device without "
                                  "an index, e.g. --provider cpu") from None
            if "Cannot load library" in msg or "not registered" in msg or "compiler loading failed" in msg:
                raise ProviderUnavailable(f"OpenVINO device {self.device!r} cannot be used here: {msg}; use "
                                          "--provider cpu") from None
            raise BadModelFile(f"OpenVINO cannot compile {self.path.name} for {self.device}: {msg}") from None

    def _precision(self) -> str:
        """The compiled model's inference precision, read back; AUTO/HETERO do not report it: the executed graph's
        floating-point nodes then say what runs."""
        supported = {str(k) for k in self.compiled.get_property("SUPPORTED_PROPERTIES")}
        if "INFERENCE_PRECISION_HINT" in supported:
            return _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        found = {str(op.get_rt_info()["runtimePrecision"].astype(str))
                 for op in self.compiled.get_runtime_model().get_ordered_ops()
                 if "runtimePrecision" in op.get_rt_info()}
        return next((p for p in ("bf16", "f16", "f32") if p in found), "unknown")

    # --- running ---------------------------------------------------------------------------------------------------
    def _bind(self, request: Any, feeds: Mapping[str, np.ndarray]) -> None:
        ov = _ov()
        try:
            for i, spec in enumerate(self.inputs):
                request.set_input_tensor(i, ov.Tensor(feeds[spec.name], shared_memory=True))
        except KeyError as exc:
            raise BadArgument(f"no value for input {exc.args[0]!r} of {self.path.name}") from None
        except Exception as exc:  # noqa: BLE001
            shapes = {k: list(v.shape) for k, v in feeds.items()}
            raise BadArgument(f"OpenVINO refused the inputs {shapes}: {ov_message(exc)}; feed the declared shapes "
                              f"{[list(s.shape) for s in self.inputs]}") from None

    def _run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        self._bind(self.request, feeds)
        try:
            self.request.infer()
        except Exception as exc:  # noqa: BLE001
            raise BadArgument(f"OpenVINO could not run {self.path.name}: {ov_message(exc)}") from None
        self._inferences += 1
        return [np.array(self.request.get_output_tensor(i).data, copy=True) for i in range(len(self.outputs))]

    def timer(self, feeds: Mapping[str, np.ndarray]) -> "_BoundTimer":
        request = self.compiled.create_infer_request()
        arrays = self._cast(feeds)
        self._bind(request, arrays)
        return _BoundTimer(self, request, arrays)

    host_timer = timer

    # --- facts -----------------------------------------------------------------------------------------------------
    def _executed(self) -> list[Any]:
        return [op for op in self.compiled.get_runtime_model().get_ordered_ops()
                if str(op.get_rt_info()["layerType"].astype(str)) not in _NO_WORK]

    def assignment(self) -> dict[str, int] | None:
        """Executed runtime nodes per device (the CPU plugin's runtime graph has no per-node device: with a single
        execution device every node is on it)."""
        return {", ".join(self.providers): len(self._executed())}

    def notes(self) -> list[str]:
        notes = []
        if self.precision != "f32":
            notes.append(f"OpenVINO computes in {self.precision} here (asked for explicitly): faster on CPUs with "
                         "AVX512-BF16/AMX, and not fp32 numerics")
        if any(not isinstance(d, int) for s in self.inputs for d in s.shape):
            notes.append("compiled with a symbolic batch: OpenVINO runs it ~10-15% slower than a fixed-batch export")
        return notes

    # --- profile ---------------------------------------------------------------------------------------------------
    def profile(self, feeds: Mapping[str, np.ndarray], *, runs: int, warmup: int) -> RuntimeProfile:
        """Per-node mean times over ``runs`` inferences (opened with ``RunOptions(profile=True)``).

        ``get_profiling_info()`` reports, per node, the running mean of every inference since compilation, in whole
        microseconds, shared by all requests of the compiled model. The mean over this window is recovered from two
        reads, ``(n1 * avg1 - n0 * avg0) / (n1 - n0)`` (rounding error below ``(n0 + n1) / 2 / (n1 - n0)`` us per
        node). Medians cannot be had: a window other processes preempted shows it in every node. Each node's
        region comes from the runtime graph's ``originalLayersNames`` (the file's nodes fused into it).
        """
        from ..formats.onnx import graph_index

        if not self.options.profile:
            raise BadArgument("this OpenVINO runner was opened without profiling; open it with RunOptions(profile=True)")
        timer = self.timer(feeds)
        for _ in range(warmup):
            timer.once()
        n0, before = self._inferences, self._counters(timer.request)
        walls = [0] * runs
        timer.timed(walls, 0, runs, 1 << 62)
        n1, after = self._inferences, self._counters(timer.request)
        index = graph_index(self.path)
        ops = {op.get_friendly_name(): op for op in self.compiled.get_runtime_model().get_ordered_ops()}
        nodes = []
        for position, (name, (avg1, node_type, exec_type, status)) in enumerate(after.items()):
            if status != "EXECUTED":  # fused into a neighbour (its time is inside that one) or optimised out
                continue
            avg0 = before.get(name, (0.0,))[0]
            op = ops.get(name)
            info = _rt_info(op)
            originals = [n for n in info.get("originalLayersNames", "").split(",") if n]
            region = tuple(dict.fromkeys(r for r in map(index.resolve, originals) if r))
            neighbours = () if op is None else tuple(dict.fromkeys(
                [t.get_node().get_friendly_name() for out in op.outputs() for t in out.get_target_inputs()]
                + [v.get_node().get_friendly_name() for v in op.input_values()]))
            order = int(info["execOrder"]) if info.get("execOrder", "").lstrip("-").isdigit() else position
            nodes.append(NodeTime(name, node_type, exec_type, ", ".join(self.providers),
                                  max(0.0, (n1 * avg1 - n0 * avg0) / (n1 - n0)), order,
                                  info.get("runtimePrecision", ""), region, neighbours,
                                  inserted=not originals and node_type in ("Reorder", "Convert")))
        nodes.sort(key=lambda n: n.order)
        return RuntimeProfile(tuple(nodes), tuple(w / 1e6 for w in walls), "mean", runs, notes=(
            "OpenVINO keeps running means: per-node times are means over the profiled runs, not medians, so "
            "preemption by other processes shows in every node",))

    def _counters(self, request: Any) -> dict[str, tuple[float, str, str, str]]:
        return {rec.node_name: (rec.real_time.total_seconds() * 1e6, rec.node_type, rec.exec_type,
                                str(rec.status).rsplit(".", 1)[-1]) for rec in request.get_profiling_info()}

    def close(self) -> None:
        self.request = None
        self.compiled = None


def _rt_info(op: Any) -> dict[str, str]:
    if op is None:
        return {}
    info = op.get_rt_info()
    return {key: str(info[key].astype(str)) for key in ("originalLayersNames", "runtimePrecision", "execOrder")
            if key in info}


class _BoundTimer(CallTimer):
    """Inputs bound once to a request of its own (tensors sharing the numpy memory), a bare ``infer()`` per call;
    counts the inferences, since OpenVINO's profiling counters average over all of them."""

    def __init__(self, runner: OpenVINORunner, request: Any, arrays: dict[str, np.ndarray]) -> None:
        super().__init__(request.infer)
        self.runner, self.request, self._arrays = runner, request, arrays  # the arrays: the memory the tensors share

    def once(self) -> list:
        self.request.infer()
        self.runner._inferences += 1
        return [self.request.get_output_tensor(i).data for i in range(len(self.runner.outputs))]

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int,
              clock: Callable[[], int] = time.perf_counter_ns) -> int:
        reached = super().timed(out, start, stop, deadline_ns, clock)
        self.runner._inferences += reached - start
        return reached


def open_openvino(path: Path, options: RunOptions, fmt: "Format") -> OpenVINORunner:
    return OpenVINORunner(path, options)
