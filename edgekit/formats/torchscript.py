"""TorchScript: traced and frozen, metadata in the archive's ``extra files`` (``edgekit.json``).

TorchScript is deprecated upstream (torch.export is its successor) but it is still what many mobile runtimes load;
trace + freeze gives a self-contained module that reloads with ``torch.jit.load``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from ..errors import BadModelFile, first_line
from ..metadata import TORCHSCRIPT_EXTRA_FILE, Metadata
from . import FileLayer, WriteJob, quiet_exporters

_LAYER_KINDS = {"aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::linear",
                "aten::conv_transpose2d"}


def write(job: WriteJob, path: Path) -> dict:
    import torch

    from ..runtimes.torch import cuda_precision

    buffer = io.BytesIO()
    # Tracing records cuDNN's allow_tf32 flag as a constant of every convolution: traced with PyTorch's default (on),
    # the file would compute its convolutions in TF32 on any GPU, ~1e-3 of the logits' peak away from fp32.
    with quiet_exporters(), torch.no_grad(), cuda_precision(False):
        traced = torch.jit.trace(job.fused, job.example, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        # Serialised in memory, written by Python: torch's own file writer aborts the process on a full disk.
        torch.jit.save(frozen, buffer, _extra_files={TORCHSCRIPT_EXTRA_FILE: job.metadata.to_json()})
    path.write_bytes(buffer.getvalue())
    return {}


def load(path: Path, map_location: Any = "cpu") -> tuple[Any, Metadata | None]:
    """The scripted module (eval mode, on ``map_location``) and its edgekit metadata."""
    import torch

    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError/... for damaged archives
        raise BadModelFile(
            f"{path.name} does not load as TorchScript ({first_line(exc, 100)}); re-export it with 'edgekit export'"
        ) from None
    raw = extra.get(TORCHSCRIPT_EXTRA_FILE) or ""
    metadata = Metadata.from_json(raw, where=path.name) if raw.strip() else None
    return module.eval(), metadata


def read_metadata(path: Path) -> Metadata | None:
    """Read from the archive's extra file directly: no need to deserialise the module."""
    return archive_metadata(path, "TorchScript")


def archive_metadata(path: Path, title: str) -> Metadata | None:
    """edgekit's JSON from a PyTorch zip archive's ``extra/edgekit.json`` (TorchScript and pt2 keep it there)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"extra/{TORCHSCRIPT_EXTRA_FILE}")), None)
            if name is None:
                return None
            if archive.getinfo(name).file_size > Metadata.MAX_BYTES:
                raise BadModelFile(f"the edgekit metadata in {path.name} is implausibly large; re-export it")
            raw = archive.read(name).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError) as exc:
        raise BadModelFile(f"{path.name} does not load as {title} ({first_line(exc, 100)}); re-export it") from None
    return Metadata.from_json(raw, where=path.name) if raw.strip() else None


def module_layers(module: Any) -> list[FileLayer]:
    """Conv/linear weights of a scripted module: by parameter name, or from the frozen graph's constants in order."""
    import torch

    try:
        state = dict(module.state_dict())
    except Exception:  # noqa: BLE001 - frozen modules may refuse
        state = {}
    weights = {k: v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2}
    if weights:
        return named_layers(state)
    graph = getattr(module, "graph", None)
    if graph is None:
        return []
    found: list[FileLayer] = []

    def walk(block: Any) -> None:
        for node in block.nodes():
            for sub in node.blocks():
                walk(sub)
            if node.kind() not in _LAYER_KINDS:
                continue
            values = list(node.inputs())
            weight = bias = None
            if len(values) > 1 and values[1].node().kind() == "prim::Constant":
                w = values[1].toIValue()
                weight = w.detach().float().cpu().numpy() if isinstance(w, torch.Tensor) else None
            if len(values) > 2 and values[2].node().kind() == "prim::Constant":
                b = values[2].toIValue()
                bias = b.detach().float().cpu().numpy() if isinstance(b, torch.Tensor) else None
            if weight is not None:
                found.append(FileLayer(None, weight, bias))

    walk(graph)
    return found


def named_layers(state: dict) -> list[FileLayer]:
    """Layers from a state dict: every ``*weight`` of rank >= 2 with its ``*bias``."""
    found = []
    for key, value in state.items():
        if not (key.endswith("weight") and hasattr(value, "dim") and value.dim() >= 2):
            continue
        owner = key[: -len("weight")].rstrip("._")
        bias = state.get(f"{owner}.bias")
        found.append(FileLayer(key, value.detach().float().cpu().numpy(),
                               None if bias is None else bias.detach().float().cpu().numpy()))
    return found


def layers(path: Path) -> list[FileLayer]:
    return module_layers(load(path)[0])
