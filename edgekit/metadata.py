"""edgekit's metadata, as written into every exported file and read back by every command that opens one.

ONNX: one ``metadata_props`` entry per field (strings; lists and numbers JSON-encoded), so Netron and
``onnx.load(...).metadata_props`` show them. TorchScript: ``_extra_files={"edgekit.json": <json>}``. pt2: the same
JSON in the ExportedProgram's extra files. ExecuTorch: the same JSON (see ``formats/pte.py``).
:class:`Metadata` is the one schema for all of them.

A file is untrusted input: its metadata may have been edited, truncated or written by someone hostile. Everything
read goes through :meth:`Metadata._validate`, which checks the type and range of every field (a ``res`` of 1e999, an
``input_shape`` of 5, a ``mean`` of "abc", a seed past 64 bits, JSON nested 100,000 deep) and turns any damage into
one :class:`BadModelFile` ("the metadata is damaged"), never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .errors import BadModelFile
from .registry import IMAGENET_MEAN, IMAGENET_STD, MAX_ALPHA, MAX_NUM_CLASSES, MAX_RES

TORCHSCRIPT_EXTRA_FILE = "edgekit.json"
SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")

_MAX_INT = 2**63 - 1
_MAX_TEXT = 4096


class _Damaged(ValueError):
    pass


@dataclass(frozen=True)
class Metadata:
    model: str
    alpha: float
    res: int
    num_classes: int
    weights: str  # WeightsRef.describe(): "seed:0" | "imagenet:<torchvision name>" | "file:<path>" | "module"
    input_name: str = "input"
    output_name: str = "logits"
    input_layout: str = "NCHW"
    input_shape: tuple = (1, 3, 224, 224)  # "batch" in place of 1 when the batch dimension is symbolic
    dynamic_batch: bool = False
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    pixel_range: str = "[0,1] RGB, then (x - mean) / std"
    seed: int | None = None
    weights_sha256: str | None = None
    params: int | None = None
    macs: int | None = None
    fused: bool = True
    bn_folded: int | None = None
    edgekit_version: str = ""
    torch_version: str = ""
    onnx_version: str = ""
    opset: int | None = None
    #: numeric precision of the file's weights/activations: fp32, fp16 or int8
    precision: str = "fp32"
    #: how a reduced-precision file was made (scheme, method, calibration source and count, sha256 of the source)
    quantization: dict | None = None
    schema: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    #: Largest serialised metadata accepted from a file (a real one is about 1 KB).
    MAX_BYTES: ClassVar[int] = 1 << 20

    # --- ONNX metadata_props -------------------------------------------------------------------------------------
    def to_props(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[f"edgekit.{key}"] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "model") -> "Metadata | None":
        """None when the file carries no edgekit metadata at all; BadModelFile when it is damaged."""
        ours = {k[len("edgekit."):]: v for k, v in props.items() if k.startswith("edgekit.")}
        if not ours:
            return None
        known = {f.name: f for f in fields(cls)}
        try:
            if sum(len(v) for v in ours.values()) > cls.MAX_BYTES:
                raise _Damaged("it is implausibly large")
            data: dict = {}
            for key, raw in ours.items():
                if key not in known:
                    continue  # written by a newer edgekit: ignore what we do not know
                data[key] = raw if known[key].type in ("str", "str | None") else json.loads(raw)
            return cls._validate(data)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, MemoryError, OverflowError) as exc:
            raise _damaged(where, exc) from None

    # --- JSON (TorchScript / pt2 / pte, manifest) ----------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "model") -> "Metadata":
        try:
            if len(text) > cls.MAX_BYTES:
                raise _Damaged("it is implausibly large")
            data = json.loads(text)
            if not isinstance(data, dict):
                raise _Damaged("it is not a JSON object")
            known = {f.name for f in fields(cls)}
            return cls._validate({k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, MemoryError, OverflowError) as exc:
            raise _damaged(where, exc) from None

    @classmethod
    def _validate(cls, data: dict) -> "Metadata":
        """Type and range of every field; raises _Damaged naming the first bad one."""
        for key in ("model", "weights"):
            if key not in data:
                raise _Damaged(f"{key!r} is missing")
        out = dict(data)
        out["model"] = _text(data, "model", 200)
        out["weights"] = _text(data, "weights", _MAX_TEXT)
        out["alpha"] = _number(data, "alpha", 0.0, MAX_ALPHA, open_low=True)
        out["res"] = _integer(data, "res", 1, MAX_RES)
        out["num_classes"] = _integer(data, "num_classes", 1, MAX_NUM_CLASSES)
        for key in ("input_name", "output_name", "input_layout", "pixel_range", "edgekit_version", "torch_version",
                    "onnx_version"):
            if key in data:
                out[key] = _text(data, key, 512)
        if "input_shape" in data:
            out["input_shape"] = _shape(data["input_shape"])
        for key in ("dynamic_batch", "fused"):
            if key in data and not isinstance(data[key], bool):
                raise _Damaged(f"{key!r} is {data[key]!r}, not true/false")
        for key in ("mean", "std"):
            if key in data:
                out[key] = _floats(data, key, positive=key == "std")
        for key, hi in (("seed", _MAX_INT), ("params", 10**13), ("macs", 10**16), ("bn_folded", 10**6),
                        ("opset", 1000), ("schema", 1000)):
            if data.get(key) is not None:
                out[key] = _integer(data, key, 0, hi)
        if data.get("weights_sha256") is not None:
            out["weights_sha256"] = _text(data, "weights_sha256", 128)
        if "precision" in data:
            if data["precision"] not in PRECISIONS:
                raise _Damaged(f"'precision' is {data['precision']!r}, not one of {', '.join(PRECISIONS)}")
        for key in ("quantization", "extra"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise _Damaged(f"{key!r} is not a JSON object")
        if "extra" in data and data["extra"] is None:
            out["extra"] = {}
        return cls(**out)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) the file's input expects: from input_shape when it says, else res x res."""
        if len(self.input_shape) == 4 and all(isinstance(d, int) for d in self.input_shape[2:]):
            return int(self.input_shape[2]), int(self.input_shape[3])
        return self.res, self.res


def _damaged(where: str, exc: BaseException) -> BadModelFile:
    reason = str(exc) if isinstance(exc, _Damaged) else f"{type(exc).__name__}: {str(exc)[:80]}"
    if isinstance(exc, RecursionError):
        reason = "it is nested too deeply"
    return BadModelFile(
        f"edgekit metadata in {where} is damaged ({reason}); re-export it, or pass --model/--alpha/--res"
    )


def _text(data: dict, key: str, limit: int) -> str:
    value = data[key]
    if not isinstance(value, str) or len(value) > limit:
        raise _Damaged(f"{key!r} is not a string of at most {limit} characters")
    return value


def _number(data: dict, key: str, lo: float, hi: float, open_low: bool = False) -> float:
    if key not in data:
        raise _Damaged(f"{key!r} is missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Damaged(f"{key!r} is {value!r}, not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _Damaged(f"{key!r} is {value!r}, not a number") from None
    if not math.isfinite(number) or number > hi or (number <= lo if open_low else number < lo):
        raise _Damaged(f"{key!r} is {value!r}, outside {'(' if open_low else '['}{lo:g}, {hi:g}]")
    return number


def _integer(data: dict, key: str, lo: int, hi: int) -> int:
    if key not in data:
        raise _Damaged(f"{key!r} is missing")
    value = data[key]
    if isinstance(value, bool):
        raise _Damaged(f"{key!r} is {value!r}, not a whole number")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _Damaged(f"{key!r} is {value!r}, not a whole number")
        value = int(value)
    elif isinstance(value, str):
        if not value.strip().isdigit() or len(value) > 20:
            raise _Damaged(f"{key!r} is {value!r}, not a whole number")
        value = int(value)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise _Damaged(f"{key!r} is {data[key]!r}, outside [{lo}, {hi}]")
    return value


def _shape(value: Any) -> tuple:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 8:
        raise _Damaged(f"'input_shape' is {value!r}, not a list of dimensions")
    dims: list = []
    for i, dim in enumerate(value):
        if i == 0 and isinstance(dim, str) and len(dim) <= 64:
            dims.append(dim)
            continue
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 1 << 20:
            raise _Damaged(f"'input_shape' dimension {i} is {dim!r}, not a size")
        dims.append(dim)
    return tuple(dims)


def _floats(data: dict, key: str, positive: bool) -> tuple[float, ...]:
    value = data[key]
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 16:
        raise _Damaged(f"{key!r} is {value!r}, not a list of numbers")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise _Damaged(f"{key!r} holds {item!r}, not a finite number")
        if positive and item <= 0:
            raise _Damaged(f"{key!r} holds {item!r}, which must be > 0")
        out.append(float(item))
    return tuple(out)
