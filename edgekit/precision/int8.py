"""INT8 with ONNX Runtime's static post-training quantization: ``quant_pre_process`` + ``quantize_static``, QDQ.

No hand-written quantizer: edgekit prepares the calibration tensors (the one preprocessing), runs ONNX Runtime's
calibrator, and hands its ranges to ``quantize_static``. Three steps, because the middle one is reused:

1. :func:`prepare`: ``quant_pre_process`` (shape inference, ONNX Runtime's basic graph optimisations). The node
   names of its result are what ``nodes_to_exclude`` and the per-layer report refer to.
2. :func:`calibrate`: ONNX Runtime's calibrator (``create_calibrator``) over the calibration tensors, saved as its
   JSON calibration cache. Run here rather than inside ``quantize_static`` because (a) ``quantize_static`` cannot
   set the histogram sizes, and with its fixed 128/128 bins entropy calibration has a single candidate threshold,
   i.e. it *is* min-max; edgekit's ``entropy`` uses the standard 2048 bins / 128 quantized bins (TensorRT's
   setting); and (b) the ranges are independent of the activation type and of per-channel weights, so ``--scheme
   auto`` and the mixed-precision search re-quantize from the cache without calibrating again.
3. :func:`quantize_qdq`: ``quantize_static`` (QDQ format, int8 weights) from the cache.

Schemes: activations ``u8`` (U8S8, asymmetric uint8: ONNX Runtime folds ReLU/ReLU6/Clip into the range) or ``s8``
(S8S8); weights int8 per output channel (default) or per tensor.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import EdgekitError, first_line

ACTIVATION_TYPES = ("u8", "s8")
METHODS = ("minmax", "entropy", "percentile")
#: Standard histogram settings (TensorRT's entropy calibration; percentile keeps 99.999 % of each tensor's values).
HISTOGRAM_BINS = 2048
ENTROPY_QUANTIZED_BINS = 128
PERCENTILE = 99.999


class QuantizeFailed(EdgekitError):
    """ONNX Runtime's quantizer or fp16 converter failed on this model."""


@dataclass(frozen=True)
class Scheme:
    """How the INT8 graph represents numbers: activation type and weight granularity (weights are always int8)."""

    act: str = "u8"
    per_channel: bool = True

    @property
    def label(self) -> str:
        return f"{'U8S8' if self.act == 'u8' else 'S8S8'} {'per-channel' if self.per_channel else 'per-tensor'}"

    @property
    def key(self) -> str:
        return f"{self.act}s8-{'pc' if self.per_channel else 'pt'}"


#: What ``--scheme auto`` tries, in this order (ties on speed keep the earlier one).
AUTO_SCHEMES = (Scheme("u8", True), Scheme("s8", True), Scheme("u8", False), Scheme("s8", False))


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """The quantization tools log through the root logger and print progress; users see edgekit's lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _failed(what: str, name: str, exc: BaseException, fix: str = "") -> QuantizeFailed:
    return QuantizeFailed(f"{what} failed on {name} ({type(exc).__name__}: {first_line(exc, 100)})"
                          + (f"; {fix}" if fix else "; please report this model"))


class CalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over decoded tensors, at the model's batch size.

    Defined without subclassing so importing this module does not import onnxruntime; ONNX Runtime only calls
    ``get_next`` (and ``rewind``/``set_range``/``__len__`` in some calibrators).
    """

    def __init__(self, x: np.ndarray, input_name: str, batch: int = 1, pad: bool = True) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.input_name = input_name
        self.batch = max(1, batch)
        self.pad = pad  # a fixed-batch graph needs full batches; a symbolic one takes the short last one
        self.start, self.end, self.pos = 0, len(self.x), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= self.end:
            return None
        stop = min(self.pos + self.batch, self.end)
        chunk = self.x[self.pos:stop]
        if self.pad and len(chunk) < self.batch:  # a fixed-batch graph: repeat the last sample
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - len(chunk), axis=0)])
        self.pos = stop
        return {self.input_name: chunk}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item

    def __len__(self) -> int:
        return (len(self.x) + self.batch - 1) // self.batch

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index * self.batch, min(end_index * self.batch, len(self.x))
        self.pos = self.start

    def rewind(self) -> None:
        self.start, self.end, self.pos = 0, len(self.x), 0


def graph_input(model: Any) -> tuple[str, int | None]:
    """(name, fixed batch or None) of the single graph input of an ONNX model."""
    from ..errors import BadModelFile

    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise BadModelFile(f"the model has {len(inputs)} inputs; edgekit quantizes single-input image models")
    dim = inputs[0].type.tensor_type.shape.dim
    batch = dim[0].dim_value if dim and dim[0].HasField("dim_value") and dim[0].dim_value > 0 else None
    return inputs[0].name, batch


def prepare(src: Path, dst: Path) -> Path:
    """``quant_pre_process`` of ``src`` written to ``dst``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with quiet_ort():
            quant_pre_process(str(src), str(dst))
    except Exception as exc:  # noqa: BLE001 - ORT raises many types; one line naming the step
        raise _failed("onnxruntime's quantization pre-processing", src.name, exc) from None
    return dst


def _method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def calibrate(prepared: Path, x: np.ndarray, method: str, cache: Path) -> Path:
    """Activation ranges of the prepared graph on ``x`` (NCHW float32), saved as ONNX Runtime's calibration cache."""
    import onnx
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    name, batch = graph_input(onnx.load(str(prepared), load_external_data=False))
    extra: dict = {"symmetric": False}
    if method == "entropy":
        extra.update(num_bins=HISTOGRAM_BINS, num_quantized_bins=ENTROPY_QUANTIZED_BINS)
    elif method == "percentile":
        extra.update(num_bins=HISTOGRAM_BINS, percentile=PERCENTILE)
    ops = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    with tempfile.TemporaryDirectory(prefix="edgekit-calib-", dir=cache.parent) as tmp:
        try:
            with quiet_ort():
                calibrator = create_calibrator(prepared, ops, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                               calibrate_method=_method(method), extra_options=extra)
                calibrator.collect_data(CalibrationReader(x, name, batch or 16, pad=batch is not None))
                ranges = calibrator.compute_data()
                del calibrator
        except (EdgekitError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise _failed(f"{method} calibration", prepared.name, exc) from None
    save_tensors_data(ranges, str(cache))
    return cache


def quantize_qdq(prepared: Path, dst: Path, scheme: Scheme, method: str, cache: Path,
                 exclude: Sequence[str] = ()) -> Path:
    """``quantize_static`` (QDQ, int8 weights) of the prepared graph from the calibration cache, to ``dst``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    try:
        with quiet_ort():
            quantize_static(
                str(prepared), str(dst), None,
                quant_format=QuantFormat.QDQ,
                per_channel=scheme.per_channel,
                activation_type=QuantType.QUInt8 if scheme.act == "u8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=_method(method),
                nodes_to_exclude=list(exclude),
                calibration_cache_path=str(cache),
            )
    except (EdgekitError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise _failed("onnxruntime's static quantization", prepared.name, exc,
                      "try --per-tensor, or keep the failing layer in fp32 with --keep-fp32 NAME") from None
    return dst


def is_quantized(model: Any) -> bool:
    """Does the graph already hold quantized or half-precision arithmetic (QDQ nodes, QLinear ops, fp16 tensors)?"""
    import onnx

    quantized = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger")
    if any(n.op_type in quantized or n.op_type.startswith("QLinear") for n in model.graph.node):
        return True
    half = onnx.TensorProto.FLOAT16
    return any(t.data_type == half for t in model.graph.initializer)


def tensors_sha256(x: np.ndarray) -> str:
    """Digest of the calibration tensors as fed (float32 NCHW, C order): what the metadata records."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def file_size(path: str | os.PathLike) -> int:
    return Path(path).stat().st_size
