"""torch.export ``.pt2``: the ExportedProgram of the fused model, metadata in its extra files (``edgekit.json``)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from ..errors import BadModelFile, first_line
from ..metadata import TORCHSCRIPT_EXTRA_FILE, Metadata
from . import FileLayer, WriteJob, dynamic_batch_shapes, quiet_exporters
from .torchscript import archive_metadata, named_layers


def write(job: WriteJob, path: Path) -> dict:
    import torch

    buffer = io.BytesIO()
    with quiet_exporters(), torch.no_grad():
        program = torch.export.export(job.fused, (job.example,),
                                      dynamic_shapes=dynamic_batch_shapes(job.fused, job.options.dynamic_batch))
        torch.export.save(program, buffer, extra_files={TORCHSCRIPT_EXTRA_FILE: job.metadata.to_json()})
    path.write_bytes(buffer.getvalue())
    return {}


def load(path: Path) -> tuple[Any, Metadata | None]:
    """The ExportedProgram and its edgekit metadata."""
    import torch

    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # noqa: BLE001
        raise BadModelFile(
            f"{path.name} does not load as a torch.export program ({first_line(exc, 100)}); re-export it"
        ) from None
    raw = extra.get(TORCHSCRIPT_EXTRA_FILE) or ""
    return program, (Metadata.from_json(raw, where=path.name) if raw.strip() else None)


def read_metadata(path: Path) -> Metadata | None:
    return archive_metadata(path, "a torch.export program")


def program_layers(program: Any) -> list[FileLayer]:
    import torch

    return named_layers({k: v for k, v in program.state_dict.items() if isinstance(v, torch.Tensor)})


def layers(path: Path) -> list[FileLayer]:
    return program_layers(load(path)[0])
