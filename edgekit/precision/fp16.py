"""fp16: ONNX Runtime's float16 converter (``onnxruntime.transformers.float16``, the maintained copy of
onnxconverter-common's, shipped inside the onnxruntime wheel edgekit already depends on), fp32 inputs and outputs
kept (``keep_io_types``: a Cast at each end), and where Inf/NaN first appear, by PyTorch module.

The converter keeps in fp32 the ops it lists as unsafe in fp16 (its ``DEFAULT_OP_BLOCK_LIST``); every other float
tensor and initializer becomes fp16, with values beyond fp16's range clamped to +-65504 and tiny ones to its smallest
normal number (warned about, never silent). It appends its input Casts at the end of the node list, which ONNX
Runtime accepts but ``onnx.checker`` does not ("nodes must be topologically sorted"); ONNX Runtime's own
``OnnxModel.topological_sort`` puts them in order.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import first_line
from .int8 import QuantizeFailed, quiet_ort

FP16_MAX = 65504.0


def to_fp16(model: Any, name: str) -> Any:
    """The fp16 ModelProto of an fp32 one (fp32 inputs/outputs), topologically sorted and checked."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    try:
        with quiet_ort(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the float32 number 1e-9 will be truncated to 1e-7": expected rounding
            half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
            wrapped = OnnxModel(half)
            wrapped.topological_sort()
            half = wrapped.model
        onnx.checker.check_model(half, full_check=True)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - the converter and the checker raise many types
        raise QuantizeFailed(f"fp16 conversion of {name} failed ({type(exc).__name__}: {first_line(exc, 100)}); "
                             "please report this model") from None
    return half


@dataclass(frozen=True)
class NonFinite:
    """A layer output holding Inf/NaN in the fp16 graph (the first in execution order is where it breaks)."""

    node: str
    op_type: str
    module: str
    tensor: str
    nonfinite: int  # NaN/Inf values over the samples
    max_abs: float  # largest finite magnitude seen there
    headroom_bits: float  # log2(65504 / max_abs): below ~1 bit fp16 is at risk of overflow

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.module} ({self.op_type}) produces {self.nonfinite} Inf/NaN values "
                f"(largest finite {self.max_abs:.4g}; fp16 tops out at 65504)")


def nonfinite_layers(path: Path, x: np.ndarray, input_name: str) -> list[NonFinite]:
    """Every layer of the fp16 file at ``path`` whose output holds Inf/NaN on ``x``, in execution order, named by
    PyTorch module (the first one is where fp16 breaks: everything after it inherits the Inf/NaN)."""
    import onnx

    from .layers import graph_layers, layer_activations

    model = onnx.load(str(path))
    acts = layer_activations(path, x, input_name, model=model)
    out = []
    for layer in graph_layers(model):
        values = acts.get(layer.output)
        if values is None:
            continue
        finite = np.isfinite(values)
        bad = int((~finite).sum())
        if not bad:
            continue
        peak = float(np.abs(values[finite]).max()) if finite.any() else math.inf
        head = math.log2(FP16_MAX / peak) if 0 < peak < math.inf else -math.inf
        out.append(NonFinite(layer.node, layer.op_type, layer.module, layer.output, bad, peak, head))
    return out


def casts_inserted(path: Path) -> int:
    """How many Cast nodes ONNX Runtime's CPU provider adds to run the fp16 file at ``path``: one pair around every
    node it has no fp16 kernel for (those run in fp32). Read from the graph ONNX Runtime writes after partitioning
    (basic optimisations: at higher levels it folds the Casts into fp32 weights, which says the same)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgekit-fp16-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(Path(tmp) / "partitioned.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        after = sum(n.op_type == "Cast" for n in onnx.load(so.optimized_model_filepath).graph.node)
    before = sum(n.op_type == "Cast" for n in onnx.load(str(path)).graph.node)
    return max(0, after - before)
