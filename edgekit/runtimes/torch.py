"""PyTorch: TorchScript archives, torch.export programs and eager modules, on CPU or CUDA.

The eager reference of ``verify``, ``bench --compare torch`` and ``eval`` runs through the same runner
(:meth:`TorchRunner.from_module`), so every comparison in edgekit is runner against runner.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import BadArgument, ProviderUnavailable
from ..modes import flatten_outputs
from . import Runner, RunOptions, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    from ..formats import Format
    from ..metadata import Metadata

DEVICES = ("cpu", "cuda")


def _tf32(options: RunOptions, device: Any) -> bool:
    """Whether CUDA convolutions and matmuls may use TF32. PyTorch lets cuDNN use it by default, which moves
    MobileNetV3's logits by ~1e-3 of their peak: not fp32. edgekit computes fp32 files in fp32 (what verify holds
    them to) unless the user asks for ``tf32`` (bench --inference-precision tf32), which the label then says."""
    precision = (options.precision or "fp32").lower()
    if precision not in ("fp32", "f32", "tf32"):
        raise BadArgument(f"the torch runtime computes in fp32 or tf32 (CUDA), not {options.precision!r}")
    if precision == "tf32" and device.type != "cuda":
        raise BadArgument("tf32 is a CUDA compute mode; drop --inference-precision or use --provider cuda")
    return precision == "tf32"


@contextlib.contextmanager
def cuda_precision(tf32: bool) -> Any:
    """TF32 on or off for CUDA matmuls and cuDNN convolutions for the block; the previous flags come back."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _device(options: RunOptions, what: str) -> Any:
    import torch

    wanted = str(options.providers[0] if options.providers else "cpu").strip().lower()
    wanted = {"cpuexecutionprovider": "cpu", "cudaexecutionprovider": "cuda"}.get(wanted, wanted)
    if wanted not in DEVICES:
        raise BadArgument(f"the torch runtime runs on cpu or cuda, not {options.providers[0]!r}; pass --provider cpu")
    if wanted == "cuda":
        if not torch.cuda.is_available():
            raise ProviderUnavailable(
                f"--provider cuda: torch {torch.__version__} sees no CUDA device here, so the {what} cannot run on "
                "one; install a CUDA build of torch on a machine with an NVIDIA GPU (onnxruntime-gpu for ONNX), "
                "or use --provider cpu"
            )
        return torch.device(f"cuda:{options.device_id}")
    return torch.device("cpu")


class TorchRunner(Runner):
    """A TorchScript / pt2 file or an eager module. ``kind``: torchscript, pt2 or pytorch (eager)."""

    runtime = "torch"

    def __init__(self, module: Any, *, kind: str, label: str, options: RunOptions,
                 metadata: "Metadata | None" = None, path: Path | None = None, program: Any = None) -> None:
        import torch

        self.format = kind
        self.path = path
        self.metadata = metadata
        self.program = program
        self.device = _device(options, f"{kind} model")
        self.module = module.to(self.device) if self.device.type != "cpu" else module
        self.threads = options.threads
        self.version = f"torch {torch.__version__}"
        self.tf32 = _tf32(options, self.device)
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            self.providers = (f"torch cuda ({name}){' tf32' if self.tf32 else ''}",)
        else:
            self.providers = ("torch cpu",)
        self.label = label
        if metadata is not None:
            shape = tuple(metadata.input_shape)
            self.inputs = (TensorSpec(metadata.input_name, shape, "float32"),)
            self.outputs = (TensorSpec(metadata.output_name, (shape[0], metadata.num_classes), "float32"),)
        else:
            self.inputs = (TensorSpec("input", ("batch", 3, None, None), "float32"),)
            self.outputs = ()
        self._sync: Callable[[], None] | None = torch.cuda.synchronize if self.device.type == "cuda" else None

    @classmethod
    def from_module(cls, module: Any, *, label: str, res: int, options: RunOptions | None = None,
                    output_names: Sequence[str] = ("output",)) -> "TorchRunner":
        runner = cls(module.eval(), kind="pytorch", label=label, options=options or RunOptions())
        runner.inputs = (TensorSpec("input", ("batch", 3, res, res), "float32"),)
        runner.outputs = tuple(TensorSpec(n, ("batch", None), "float32") for n in output_names)
        return runner

    def _threads(self) -> contextlib.AbstractContextManager:
        import torch

        if not self.threads:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def scoped() -> Any:
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                yield
            finally:
                torch.set_num_threads(previous)

        return scoped()

    def _plain(self) -> contextlib.AbstractContextManager:
        import torch

        # TorchScript: run the saved (frozen) graph as written. The profiling executor would re-specialise it on the
        # first runs of every new shape, which costs seconds and checks a graph the file does not contain.
        return torch.jit.optimized_execution(False) if self.format == "torchscript" else contextlib.nullcontext()

    def _run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        import torch

        arrays = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device) for a in feeds.values()]
        with torch.inference_mode(), warnings.catch_warnings(), self._plain(), self._threads(), \
                cuda_precision(self.tf32):
            warnings.simplefilter("ignore")
            out = self.module(*arrays)
            if self._sync is not None:
                self._sync()
        outs = [o.detach().float().cpu().numpy() for o in flatten_outputs(out)]
        if len(self.outputs) != len(outs):
            names = [f"output{i}" for i in range(len(outs))] if len(outs) > 1 else ["output"]
            self.outputs = tuple(TensorSpec(n, tuple(o.shape), "float32") for n, o in zip(names, outs))
        return outs

    def file_layers(self) -> list | None:
        if self.format == "torchscript":
            from ..formats.torchscript import module_layers

            return module_layers(self.module)
        if self.format == "pt2" and self.program is not None:
            from ..formats.pt2 import program_layers

            return program_layers(self.program)
        return None

    def timer(self, feeds: Mapping[str, np.ndarray]) -> "TorchTimer":
        import torch

        arrays = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device) for a in feeds.values()]
        return TorchTimer(self.module, arrays, self._sync, plain=self._timed_context)

    def _timed_context(self) -> contextlib.AbstractContextManager:
        """What the timed loop runs under: the plain executor, and the threads asked for (same as other runtimes)."""
        stack = contextlib.ExitStack()
        stack.enter_context(self._plain())
        stack.enter_context(self._threads())
        stack.enter_context(cuda_precision(self.tf32))
        return stack

    host_timer = timer

    def close(self) -> None:
        self.module = None
        self.program = None


class TorchTimer:
    """A PyTorch module under ``inference_mode`` in the shape of every other timed loop.

    ``sync`` (``torch.cuda.synchronize`` on a GPU) runs inside the timed window: CUDA kernels are asynchronous.
    """

    io_binding = False

    def __init__(self, module: Any, inputs: Sequence[Any], sync: Callable[[], None] | None = None,
                 plain: Callable[[], contextlib.AbstractContextManager] | None = None) -> None:
        self._module = module
        self._inputs = tuple(inputs)
        self._sync = sync
        self._plain = plain or contextlib.nullcontext

    def once(self) -> Any:
        import torch

        with torch.inference_mode(), self._plain():
            out = self._module(*self._inputs)
            if self._sync is not None:
                self._sync()
            return out

    def timed(self, out: list[int], start: int, stop: int, deadline_ns: int,
              clock: Callable[[], int] = time.perf_counter_ns) -> int:
        import torch

        module, inputs, sync = self._module, self._inputs, self._sync
        with torch.inference_mode(), self._plain():
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


def open_torch(path: Path, options: RunOptions, fmt: "Format") -> TorchRunner:
    import torch

    if fmt.name == "torchscript":
        from ..formats.torchscript import load

        # Loaded onto the device: a frozen graph keeps its weights as constants, which .to() does not move.
        module, metadata = load(path, map_location=_device(options, "TorchScript model"))
        return TorchRunner(module, kind="torchscript", label=f"{path.name} (TorchScript, torch {torch.__version__})",
                           options=options, metadata=metadata, path=path)
    from ..formats.pt2 import load as load_pt2

    program, metadata = load_pt2(path)
    return TorchRunner(program.module(), kind="pt2", label=f"{path.name} (torch.export pt2, torch {torch.__version__})",
                       options=options, metadata=metadata, path=path, program=program)
