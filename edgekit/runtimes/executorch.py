"""ExecuTorch: ``.pte`` programs on ExecuTorch's runtime, on the CPU: the XNNPACK delegate and portable kernels.

- What ran it, from the file itself (never from what export intended): each lowered subgraph is one delegate call
  (with the XNNPACK nodes inside it), each operator left outside is one call of ExecuTorch's portable CPU kernels.
  ``providers`` says ``XNNPACK (163/163 ops delegated)``, or names the portable kernels first when they run most
  of the program, so a mostly undelegated program is never presented as an XNNPACK number (``notes`` says so).
- Threads: XNNPACK runs on ExecuTorch's one process-wide thread pool (``_unsafe_reset_threadpool``). Resizing it
  while a loaded method is alive can crash the process later (measured: 8 of 8 runs segfault at exit after a
  resize under a live method, none after a resize with nothing loaded), so the pool is resized only while no
  program is open here, and opening one at another size while others are open is refused in one line.
- Inputs are handed over as contiguous torch tensors of the program's dtype and shape: the runtime reads any
  tensor as contiguous (a transposed view gives wrong numbers silently) and answers a wrong shape with an error
  code and a C++ log line, so both are checked here first.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..errors import BadArgument, BadModelFile, ProviderUnavailable, first_line
from . import CallTimer, Runner, RunOptions, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    from ..formats import Format

_DEVICES = ("cpu", "cpuexecutionprovider", "xnnpack", "xnnpackexecutionprovider")
# ScalarType codes (ExecuTorch's scalar_type.h) -> numpy
_DTYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16, 6: np.float32,
           7: np.float64, 11: np.bool_}

_lock = threading.Lock()
_open = 0  # programs open in this process (the thread pool is resized only when none is)


def _set_threads(C: Any, threads: int | None, name: str) -> int:
    """Size the process-wide pool for a program about to be opened (caller holds ``_lock``)."""
    current = C._threadpool_get_thread_count()
    if threads is None or threads == current:
        return current
    if _open:
        raise BadArgument(
            f"ExecuTorch's thread pool is shared by the whole process and {_open} program(s) are open with {current} "
            f"thread(s); close them before opening {name} with {threads} (resizing the pool under a loaded program "
            "can crash the process)"
        )
    from ..formats.pte import quiet_stderr

    with quiet_stderr():
        C._unsafe_reset_threadpool(int(threads))
    return C._threadpool_get_thread_count()


class ExecuTorchRunner(Runner):
    runtime = "executorch"
    shapes_from_file = True

    def __init__(self, path: Path, options: RunOptions) -> None:
        from ..formats import pte

        device = str(options.providers[0] if options.providers else "cpu").strip().lower()
        if device not in _DEVICES:
            raise ProviderUnavailable(
                f"ExecuTorch runs {path.name} on the CPU (the XNNPACK delegate and portable kernels), not on "
                f"{options.providers[0]!r}; pass --provider cpu"
            )
        self.path, self.format = path, "pte"
        header = pte.check_header(path)
        C = pte.bindings()
        global _open
        with _lock:
            self.threads = _set_threads(C, options.threads, path.name)
            self._program = pte.load_program(path)
            self.metadata = pte.program_metadata(self._program, path.name)
            self.facts = pte.read_facts(path, header)
            missing = sorted({b for b, _ in self.facts.delegates if not C._is_available(b)})
            if missing:
                raise ProviderUnavailable(
                    f"{path.name} is delegated to {', '.join(missing)}, which this ExecuTorch runtime "
                    f"({pte.executorch_version()}) does not have (it has "
                    f"{', '.join(C._get_registered_backend_names())}); re-export it with 'edgekit export --format pte'"
                )
            try:
                with pte.quiet_stderr():
                    self._method = self._program.load_method("forward")
            except Exception as exc:  # noqa: BLE001 - the delegate refused the program (XNNPACK's own checks)
                raise BadModelFile(f"ExecuTorch cannot load the forward method of {path.name} "
                                   f"({first_line(exc, 100)}); re-export it") from None
            _open += 1
        self._closed = False
        self._specs()
        self.version = pte.executorch_version()
        self.providers = (self.facts.label(),)
        what = f"ExecuTorch {self.metadata.precision}" if self.metadata is not None else "ExecuTorch, no edgekit metadata"
        self.label = f"{path.name} ({what}, {self.version}, {self.providers[0]})"

    def _specs(self) -> None:
        meta = self.metadata
        method_meta = self._method.method_meta()
        n_in, n_out = method_meta.num_inputs(), method_meta.num_outputs()
        inputs, outputs, bounds = [], [], []
        for i in range(n_in):
            info = method_meta.input_tensor_meta(i)
            shape = tuple(info.sizes())
            bounds.append(shape[0] if shape else 1)
            if i < len(self.facts.input_dynamism) and self.facts.input_dynamism[i] != "static" and shape:
                shape = ("batch", *shape[1:])  # sizes() are the upper bound of a dynamic dimension
            name = (meta.input_name if meta is not None else "input") if n_in == 1 else f"input{i}"
            inputs.append(TensorSpec(name, shape, np.dtype(_dtype(info)).name))
        for i in range(n_out):
            info = method_meta.output_tensor_meta(i)
            name = (meta.output_name if meta is not None else "output") if n_out == 1 else f"output{i}"
            outputs.append(TensorSpec(name, tuple(info.sizes()), np.dtype(_dtype(info)).name))
        self.inputs, self.outputs, self._bounds = tuple(inputs), tuple(outputs), tuple(bounds)

    # --- running -----------------------------------------------------------------------------------------------
    def _tensors(self, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        import torch

        name = self.path.name if self.path else "the program"
        if self._closed:
            raise BadArgument(f"{name} is closed; open it again")
        names = [i.name for i in self.inputs]
        if len(feeds) != len(names) or (len(names) > 1 and set(feeds) != set(names)):
            raise BadArgument(f"{name} takes inputs {names}, got {sorted(feeds)}")
        arrays = list(feeds.values()) if len(names) == 1 else [feeds[n] for n in names]
        tensors = []
        for spec, bound, array in zip(self.inputs, self._bounds, arrays):
            shape, fixed = tuple(array.shape), isinstance(spec.shape[0], int)
            same_item = len(shape) == len(spec.shape) and shape[1:] == tuple(spec.shape[1:])
            if not same_item or (fixed and shape[0] != spec.shape[0]) or not 1 <= shape[0] <= bound:
                why = (f"its batch is fixed at {bound} at export" if fixed else f"its batch may be 1 to {bound}")
                raise BadArgument(f"input {spec.name!r} has shape {list(shape)}, but {name} takes "
                                  f"{list(spec.shape)} ({why})")
            tensors.append(torch.from_numpy(np.ascontiguousarray(array, dtype=spec.dtype)))
        return tensors

    def _run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        from ..formats.pte import quiet_stderr

        tensors = self._tensors(feeds)
        try:
            with quiet_stderr():  # a failing kernel logs C++ lines before the exception says the same
                outs = self._method(tensors)
        except Exception as exc:  # noqa: BLE001 - the runtime refused the inputs or failed inside a kernel
            raise BadArgument(f"ExecuTorch failed running {self.path.name if self.path else 'the program'} "
                              f"({first_line(exc, 120)})") from None
        return [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in outs]

    def timer(self, feeds: Mapping[str, np.ndarray]) -> CallTimer:
        tensors = self._tensors(self._cast(feeds))
        method = self._method
        return CallTimer(lambda: method(tensors))

    host_timer = timer

    # --- facts -------------------------------------------------------------------------------------------------
    def assignment(self) -> dict[str, int] | None:
        out = {"XNNPACK": self.facts.xnnpack_nodes} if self.facts.xnnpack_nodes else {}
        if self.facts.kernel_calls:
            out["portable CPU kernels"] = self.facts.kernel_calls
        return out or None

    def notes(self) -> list[str]:
        from ..formats import pte

        facts = self.facts
        notes = []
        if facts.delegated_share < pte.MOSTLY_DELEGATED:
            notes.append(f"most of this program is NOT delegated to XNNPACK ({facts.kernel_calls} of "
                         f"{facts.xnnpack_nodes + facts.kernel_calls} ops run on ExecuTorch's portable CPU kernels): "
                         "these numbers are not XNNPACK numbers")
        if facts.kernels:
            listed = ", ".join(f"{op} x{n}" for op, n in sorted(facts.kernels.items(), key=lambda kv: -kv[1])[:5])
            where = self._modules()
            notes.append(f"portable CPU kernels run {listed}" + (f" (in {where})" if where else ""))
        return notes

    def _modules(self) -> str:
        """The PyTorch modules of the operators left outside XNNPACK, as export recorded them (when it did)."""
        extra = (self.metadata.extra or {}) if self.metadata is not None else {}
        report = (extra.get("executorch") or {}).get("delegation") if isinstance(extra, dict) else None
        if not isinstance(report, dict) or not isinstance(report.get("not_delegated"), list):
            return ""
        modules = [d.get("module") for d in report["not_delegated"] if isinstance(d, dict) and d.get("module")]
        unique = list(dict.fromkeys(str(m) for m in modules))
        return ", ".join(unique[:4]) + (f", ... ({len(unique) - 4} more)" if len(unique) > 4 else "")

    def close(self) -> None:
        global _open
        with _lock:
            if not self._closed:
                self._closed = True
                self._method = None
                self._program = None
                _open -= 1


def _dtype(info: Any) -> Any:
    code = info.dtype()
    if isinstance(code, int):
        return _DTYPES.get(code, np.float32)
    name = str(code).rsplit(".", 1)[-1]
    return {"Float": np.float32, "Half": np.float16, "Double": np.float64, "Long": np.int64, "Int": np.int32,
            "Char": np.int8, "Byte": np.uint8, "Bool": np.bool_}.get(name, np.float32)


def open_executorch(path: Path, options: RunOptions, fmt: "Format") -> ExecuTorchRunner:
    return ExecuTorchRunner(path, options)
