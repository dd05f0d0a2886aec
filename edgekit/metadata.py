"""edgekit's metadata, as written into every exported file and read back by ``verify`` and ``bench``.

ONNX: one ``metadata_props`` entry per field (strings; lists and numbers JSON-encoded), so Netron and
``onnx.load(...).metadata_props`` show them. TorchScript: ``_extra_files={"edgekit.json": <json>}``. pt2: the same
JSON in the ExportedProgram's extra files. :class:`Metadata` is the one schema for all three.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .errors import BadModelFile

TORCHSCRIPT_EXTRA_FILE = "edgekit.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Metadata:
    model: str
    alpha: float
    res: int
    num_classes: int
    weights: str  # "seed:0" | "imagenet:<torchvision name>" | "file:<path>"
    input_name: str = "input"
    output_name: str = "logits"
    input_layout: str = "NCHW"
    input_shape: tuple = (1, 3, 224, 224)  # "batch" in place of 1 when the batch dimension is symbolic
    dynamic_batch: bool = False
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
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
    schema: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

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
        data: dict = {}
        try:
            for key, raw in ours.items():
                if key not in known:
                    continue  # written by a newer edgekit: ignore what we do not know
                data[key] = raw if known[key].type in ("str", "str | None") else json.loads(raw)
            return cls._coerce(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise BadModelFile(
                f"edgekit metadata in {where} is damaged ({exc}); re-export it, or pass --model/--alpha/--res"
            ) from None

    # --- JSON (TorchScript / pt2 extra files, manifest) ---------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "model") -> "Metadata":
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            return cls._coerce({k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadModelFile(
                f"edgekit metadata in {where} is damaged ({exc}); re-export it, or pass --model/--alpha/--res"
            ) from None

    @classmethod
    def _coerce(cls, data: dict) -> "Metadata":
        for key in ("input_shape", "mean", "std"):
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        data["alpha"] = float(data["alpha"])
        data["res"] = int(data["res"])
        data["num_classes"] = int(data["num_classes"])
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)
