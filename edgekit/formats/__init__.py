"""The export formats: one table, one module per format.

Each :class:`Format` says how to write the format (``write(job, path) -> details``), how to recognise a file of it by
its content (``sniff``), how its edgekit metadata is embedded and read back (``read_metadata``), which runtime runs
it by default, which tolerance preset verifies it, and which export options only it accepts. ``edgekit export``
walks this table and ``verify``/``bench``/``eval`` open files through it, so a new format is one module plus one
:func:`register_format` call (Ultralytics' ``export_formats()`` table, without the 250-line ``__call__``).

Built-in formats are registered with lazy references: nothing heavy (onnx, torch.export, executorch) is imported
until a file of that format is written or read.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BadArgument, BadModelFile

if TYPE_CHECKING:  # pragma: no cover
    from ..metadata import Metadata

#: How many leading bytes :func:`detect_format` reads for the sniffers.
HEAD_BYTES = 64


@dataclass(frozen=True)
class WriteJob:
    """What a format writer gets: the fused eval-mode model, an example input, the metadata, the export options.

    ``report(stage, seconds, detail)`` adds a line to export's progress; a writer that reports nothing gets one line
    named after its format. ``example`` has batch 2 when the batch dimension is symbolic (torch.export specialises
    an example batch of 1).
    """

    fused: Any
    example: Any
    metadata: "Metadata"
    options: Any  # ExportOptions
    report: Callable[[str, float, str], None]
    #: the precision to write (one of the format's ``precisions``); fp32 unless --precision asks for more
    precision: str = "fp32"
    #: the unfused eager model (what calibration and accuracy are measured against)
    reference: Any = None


@dataclass(frozen=True)
class FileHead:
    """What the sniffers see of a file: its path, first bytes and, for a zip archive, the member names."""

    path: Path
    head: bytes
    zip_names: tuple[str, ...] | None


@dataclass(frozen=True)
class FileLayer:
    """A conv/linear layer found in an exported file, for verify's structure check and localisation.

    ``name``: the parameter or initializer name the exporter kept (None in frozen graphs); ``scopes``: module scopes
    recorded on the node, innermost last; ``output``: the graph value to expose for activation comparison (ONNX).
    ``weight`` is in PyTorch layout.
    """

    name: str | None
    weight: Any
    bias: Any = None
    output: str | None = None
    scopes: tuple[str, ...] = ()
    #: how reports say the name was found: "parameter name" (PyTorch archives), "initializer name" (ONNX)
    name_kind: str = "parameter name"


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    title: str  # how reports name it: "ONNX", "TorchScript"
    write: Callable[[Any, Path], dict]  # (ExportJob, path) -> details for the manifest
    read_metadata: Callable[[Path], "Metadata | None"]
    sniff: Callable[[FileHead], bool]
    default_runtime: str
    default_tolerance: str = "fp32"
    #: ExportOptions fields that only formats listing them accept (a non-default value needs one of them selected)
    options: tuple[str, ...] = ()
    #: precisions the writer can produce (``WriteJob.precision``); fp32 files keep the plain name, others get
    #: ``_<precision>`` before the suffix
    precisions: tuple[str, ...] = ("fp32",)
    #: pip extra that installs what this format needs (None: part of the base install)
    extra: str | None = None
    #: top-level package that must import for ``extra`` to count as installed
    requires: str | None = None
    #: file -> conv/linear layers (verify's structure check and localisation); None: not inspectable
    layers: Callable[[Path], list[FileLayer]] | None = None
    #: (file, value names) -> a copy of the file that also outputs those values (activation localisation)
    with_outputs: Callable[[Path, list[str], Path], Path] | None = None
    #: extra files that travel with a file of this format (sidecars), by the file's path
    companions: Callable[[Path], list[Path]] = field(default=lambda path: [])
    #: ExportOptions -> raises BadArgument for options the format cannot honour (checked before any work)
    check_options: Callable[[Any], None] | None = None
    description: str = ""

    def available(self) -> bool:
        if self.requires is None:
            return True
        return importlib.util.find_spec(self.requires) is not None


def lazy(module: str, attr: str) -> Callable[..., Any]:
    """A function that imports ``module`` on its first call and forwards to ``module.attr``."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    call.__name__ = attr
    call.__qualname__ = f"{module}.{attr}"
    return call


FORMATS: dict[str, Format] = {}


def register_format(fmt: Format, *, replace: bool = False) -> Format:
    """Add a format to the table; registering a name twice is a programming error unless ``replace``."""
    if fmt.name in FORMATS and not replace:
        raise ValueError(f"export format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    FORMATS.pop(name, None)


def get_format(name: str) -> Format:
    key = str(name).strip().lower()
    if key not in FORMATS:
        raise BadArgument(f"unknown export format {name!r}; choose from {','.join(FORMATS)}")
    return FORMATS[key]


def artifact_name(stem: str, fmt: Format, precision: str) -> str:
    """The file name of one artifact: ``<stem>.onnx`` for fp32, ``<stem>_int8.onnx`` for another precision."""
    return f"{stem}{fmt.suffix}" if precision == "fp32" else f"{stem}_{precision}{fmt.suffix}"


def artifact_key(fmt_name: str, precision: str) -> str:
    """How ExportResult.files and the manifest name one artifact: ``onnx``, ``onnx_int8``, ``pte_int8``."""
    return fmt_name if precision == "fp32" else f"{fmt_name}_{precision}"


def _zip_names(path: Path) -> tuple[str, ...] | None:
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            return tuple(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _read_head(path: Path) -> FileHead:
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise BadModelFile(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return FileHead(path, head, _zip_names(path) if head[:2] == b"PK" else None)


def detect_format(path: str | os.PathLike) -> Format | None:
    """The registered format a file is in, judged by its content (the suffix only breaks ties); None if unknown."""
    info = _read_head(Path(path))
    for fmt in FORMATS.values():
        if fmt.sniff(info):
            return fmt
    return None


def format_of(path: str | os.PathLike, what: str = "model file") -> Format:
    """Like :func:`detect_format`, but an unrecognised file is a one-line :class:`BadModelFile` saying what it is."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt is not None:
        return fmt
    info = _read_head(path)
    if info.zip_names is not None:
        if any(n.endswith("data.pkl") for n in info.zip_names):
            raise BadModelFile(
                f"{path.name} is a PyTorch checkpoint (torch.save), not an exported model; verify the eager model "
                "with 'edgekit verify EXPORT --weights THIS_FILE', or export it with 'edgekit export'"
            )
        raise BadModelFile(f"{path.name} is a zip archive but neither TorchScript nor a torch.export .pt2")
    if info.head[:1] == b"\x80":
        raise BadModelFile(f"{path.name} is a pickled PyTorch checkpoint, not an exported model")
    known = ", ".join(f"{f.title} ({f.suffix})" for f in FORMATS.values())
    raise BadModelFile(f"{what} {path.name} is not a model file edgekit knows; pass one of: {known}")


def read_metadata(path: str | os.PathLike) -> "Metadata | None":
    """edgekit's metadata of an exported file of any registered format (None when it carries none)."""
    return format_of(path).read_metadata(Path(path))


def _is_torchscript(info: FileHead) -> bool:
    # archive/code/__torch__/... and archive/constants.pkl: a torch.save checkpoint has neither (its top folder is
    # named after the file, so a checkpoint saved as code.pth has "code/data.pkl": match the second segment only)
    names = info.zip_names or ()
    has_code = any(n.split("/")[1:2] == ["code"] for n in names)
    has_constants = any(n.split("/")[1:] == ["constants.pkl"] for n in names)
    return has_code and has_constants and not _is_pt2(info)


def _is_pt2(info: FileHead) -> bool:
    return any(n.endswith("/archive_format") or n == "archive_format" for n in (info.zip_names or ()))


_TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".ptl", ".torchscript")


def _is_onnx(info: FileHead) -> bool:
    # Protobuf has no magic number: a file that is no zip archive, no pickle and no other known container, and does
    # not carry a PyTorch suffix, is taken for ONNX and parsed (which gives a precise error when it is not).
    if info.zip_names is not None or info.head[:2] == b"PK" or info.head[:1] == b"\x80":
        return False
    if info.path.suffix.lower() in _TORCH_SUFFIXES:
        return False
    others = [f for f in FORMATS.values() if f.name != "onnx" and f.sniff is not _is_onnx]
    return not any(f.sniff(info) for f in others)


def _builtin() -> None:
    register_format(Format(
        "onnx", ".onnx", "ONNX", lazy("edgekit.formats.onnx", "write"), lazy("edgekit.formats.onnx", "read_metadata"),
        _is_onnx, default_runtime="onnxruntime", options=("opset", "simplify"), precisions=("fp32", "fp16", "int8"),
        layers=lazy("edgekit.formats.onnx", "layers"), with_outputs=lazy("edgekit.formats.onnx", "with_outputs"),
        description="ONNX (dynamo exporter, one self-contained file, onnxsim), metadata in metadata_props",
    ))
    register_format(Format(
        "torchscript", ".pt", "TorchScript", lazy("edgekit.formats.torchscript", "write"),
        lazy("edgekit.formats.torchscript", "read_metadata"), _is_torchscript, default_runtime="torch",
        layers=lazy("edgekit.formats.torchscript", "layers"),
        description="TorchScript (traced, frozen), metadata in the archive's extra files",
    ))
    register_format(Format(
        "pt2", ".pt2", "torch.export pt2", lazy("edgekit.formats.pt2", "write"),
        lazy("edgekit.formats.pt2", "read_metadata"), _is_pt2, default_runtime="torch",
        layers=lazy("edgekit.formats.pt2", "layers"),
        description="torch.export ExportedProgram (.pt2), metadata in its extra files",
    ))
    register_format(Format(
        "pte", ".pte", "ExecuTorch", lazy("edgekit.formats.pte", "write"), lazy("edgekit.formats.pte", "read_metadata"),
        lazy("edgekit.formats.pte", "sniff"), default_runtime="executorch", precisions=("fp32", "int8"),
        extra="executorch", requires="executorch", check_options=lazy("edgekit.formats.pte", "check_options"),
        description="ExecuTorch program lowered to the XNNPACK delegate (fp32, or INT8 through PT2E), metadata in "
                    "its edgekit_metadata method",
    ))


_builtin()

__all__ = ["Format", "FileHead", "FileLayer", "FORMATS", "register_format", "unregister_format", "get_format",
           "detect_format", "format_of", "read_metadata", "lazy"]


# --- helpers the torch-based writers share ------------------------------------------------------------------------
import contextlib  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import warnings  # noqa: E402
from typing import Iterator  # noqa: E402

#: Largest symbolic batch the exported graphs accept (torch.export needs an upper bound for a Dim).
MAX_EXPORT_BATCH = 4096


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """The exporters are chatty (progress prints, deprecation and tracer warnings): users see our stage lines."""
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.fx",
                                              "executorch", "torchao")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def dynamic_batch_shapes(model: Any, dynamic_batch: bool) -> dict | None:
    """``dynamic_shapes`` for torch.export / torch.onnx.export: a symbolic batch on the forward's first argument."""
    if not dynamic_batch:
        return None
    import inspect

    import torch

    params = [p for p in inspect.signature(model.forward).parameters if p != "self"]
    return {params[0]: {0: torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)}}
