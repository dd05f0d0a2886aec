"""ExecuTorch ``.pte``: the fused model lowered to the XNNPACK delegate (fp32, or INT8 through PT2E).

Writing: ``torch.export`` of the fused model -> [INT8: torchao's ``prepare_pt2e``/``convert_pt2e`` with ExecuTorch's
``XNNPACKQuantizer``, per-channel symmetric weights, calibrated on the same image sources and preprocessing as
``quantize``] -> ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`` -> ``to_executorch()``.
The lowering steps themselves (graph rewrites, constant folding, the delegation report) are in ``xnnpack.py``.

edgekit's metadata travels inside the program: a constant method ``edgekit_metadata`` that returns the JSON string
(ExecuTorch's ``constant_methods``; the runtime returns it as a ``str``). Nothing sits next to the file, so a copied
``.pte`` verifies on its own.

Reading: a ``.pte`` is a FlatBuffer with the file identifier ``ET12`` at bytes 4..8, followed at bytes 8..12 by the
extended header ``eh00`` (program size, segment base offset, segment data size). The runtime aborts the process on
some damaged files (a random file of a few MB, a zip renamed to .pte) and reads a truncated one until it fails
somewhere inside, so :func:`check_header` holds every file to its header before the runtime sees it, and the
program is then loaded with the runtime's full FlatBuffer verification (``Verification.InternalConsistency``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import struct
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import BadArgument, BadModelFile, ExportFailed, MissingExtra, first_line
from ..metadata import Metadata
from . import FileHead, WriteJob, quiet_exporters

IDENTIFIER = b"ET12"  # executorch_flatbuffer.Program's file identifier (program.fbs) read by executorch 1.5
EXTENDED_HEADER = b"eh00"
METADATA_METHOD = "edgekit_metadata"
XNNPACK = "XnnpackBackend"
SCHEME = "xnnpack symmetric per-channel, pt2e"
#: fewer calibration samples than this and the activation ranges are noise
MIN_CALIBRATION_SAMPLES = 16
#: below this share of operators on XNNPACK a program is labelled by its portable kernels, never as an XNNPACK one
MOSTLY_DELEGATED = 0.5
CALIBRATION_BATCH = 32


# --------------------------------------------------------------------------------------------------------------------
# Recognising and checking a file
# --------------------------------------------------------------------------------------------------------------------
def sniff(info: FileHead) -> bool:
    """An ExecuTorch program of any schema version (``ET`` + two characters at byte 4, so that a foreign schema is
    named as such), or any other file called ``.pte`` that no format before this one in the table recognised (so
    that it is refused as "not an ExecuTorch program", not parsed as ONNX)."""
    ident = info.head[4:8]
    if len(info.head) >= 8 and ident[:2] == b"ET" and ident[2:4].isalnum() and info.head[:2] != b"PK":
        return True
    return info.path.suffix.lower() == ".pte"


@dataclass(frozen=True)
class Header:
    file_bytes: int
    program_bytes: int  # the FlatBuffer (with the extended header), before the weight segments
    segment_base: int
    segment_bytes: int


def check_header(path: Path) -> Header:
    """The file's extended header, checked against the file: BadModelFile for anything the runtime must not see."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(40)
    except OSError as exc:
        raise BadModelFile(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    ident = head[4:8]
    if len(head) < 8 or ident[:2] != b"ET":
        raise BadModelFile(f"{path.name} is not an ExecuTorch program (no 'ET12' identifier at byte 4); pass a .pte "
                           "written by 'edgekit export --format pte'")
    if ident != IDENTIFIER:
        raise BadModelFile(f"{path.name} is an ExecuTorch program of schema {ident.decode('ascii', 'replace')}, but "
                           f"this runtime ({executorch_version()}) reads {IDENTIFIER.decode()}; re-export it with "
                           "'edgekit export --format pte'")
    if head[8:12] != EXTENDED_HEADER:  # a program without segments: the whole file is the FlatBuffer
        return Header(size, size, 0, 0)
    if len(head) < 32:
        raise BadModelFile(f"{path.name} is a truncated ExecuTorch program ({size} bytes); copy it again or "
                           "re-export it")
    header_len, program, base = struct.unpack_from("<IQQ", head, 12)
    segments = struct.unpack_from("<Q", head, 32)[0] if header_len >= 32 and len(head) >= 40 else 0
    needed = max(program, base + segments if base else 0)
    if header_len < 24 or program < 40 or (base and base < program) or needed > size:
        raise BadModelFile(f"{path.name} is a truncated or damaged ExecuTorch program ({size:,} bytes, its header "
                           f"says {needed:,}); copy it again or re-export it")
    return Header(size, program, base, segments)


def check_options(options: Any) -> None:
    """Export options the format cannot honour, refused before any work."""
    if options.dynamic_batch:
        raise BadArgument(
            "--dynamic-batch does not apply to --format pte: ExecuTorch plans every activation buffer for the largest "
            "batch at export time (a batch up to 4096 would reserve gigabytes) and XNNPACK's reshape at a symbolic "
            "batch leaves the classifier's flatten on portable kernels; export the .pte at a fixed batch (drop "
            "--dynamic-batch, or export pte separately)"
        )


# --------------------------------------------------------------------------------------------------------------------
# The runtime's Python bindings, and the program facts read from the file
# --------------------------------------------------------------------------------------------------------------------
def executorch_version() -> str:
    try:
        return f"executorch {importlib.metadata.version('executorch')}"
    except importlib.metadata.PackageNotFoundError:
        return "executorch (not installed)"


_BINDINGS: Any = None


def bindings() -> Any:
    """ExecuTorch's runtime extension module.

    ``executorch.runtime`` (the documented wrapper) imports ``executorch.exir``, i.e. the whole exporter: +3 s and
    +240 MB of RSS in every process that only runs a program, which ``bench`` would report as the runtime's memory.
    Its ``Runtime``/``Program``/``Method`` are thin shells over this module's objects, so we use them directly.
    """
    global _BINDINGS
    if _BINDINGS is None:
        try:
            import torch  # noqa: F401  (first: the extension resolves libtorch's symbols)
            from executorch.extension.pybindings import _C
        except ImportError as exc:
            raise MissingExtra(f"running a .pte needs ExecuTorch ({first_line(exc, 80)}); install it with: "
                               "pip install -e '.[executorch]'") from None
        with quiet_stderr():  # the first touch of the thread pool logs cpuinfo probing lines from C++
            _C._threadpool_get_thread_count()
        _BINDINGS = _C
    return _BINDINGS


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence the runtime's C++ log lines (written to file descriptor 2, out of Python's reach) for a moment."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_program(path: Path) -> Any:
    """The runtime's program object, after the header check and the runtime's full FlatBuffer verification."""
    check_header(path)
    C = bindings()
    try:
        with quiet_stderr():
            return C._load_program(str(path), program_verification=C.Verification.InternalConsistency)
    except Exception as exc:  # noqa: BLE001 - the bindings raise RuntimeError with an error code
        raise BadModelFile(f"ExecuTorch cannot load {path.name} ({first_line(exc, 100)}); it is damaged or was "
                           "written for another ExecuTorch version; re-export it with 'edgekit export --format pte'"
                           ) from None


def method_names(program: Any) -> list[str]:
    return [program.get_method_name(i) for i in range(program.num_methods())]


def program_metadata(program: Any, name: str) -> Metadata | None:
    """edgekit's metadata from a loaded program's ``edgekit_metadata`` method (None when it has none)."""
    if METADATA_METHOD not in method_names(program):
        return None
    try:
        with quiet_stderr():
            values = program.load_method(METADATA_METHOD)([])
    except Exception as exc:  # noqa: BLE001
        raise BadModelFile(f"the edgekit metadata of {name} does not load ({first_line(exc, 80)}); re-export it") \
            from None
    if len(values) != 1 or not isinstance(values[0], str):
        raise BadModelFile(f"{name}: its {METADATA_METHOD} method does not return one string; re-export it")
    return Metadata.from_json(values[0], where=name)


def read_metadata(path: Path) -> Metadata | None:
    return program_metadata(load_program(path), path.name)


@dataclass(frozen=True)
class ProgramFacts:
    """What the ``forward`` method of a program executes, read from the file: one delegate call per lowered
    subgraph (with the XNNPACK nodes inside each) and one kernel call per operator left on ExecuTorch's own
    (portable) CPU kernels."""

    delegates: tuple[tuple[str, int | None], ...]  # (backend id, XNNPACK nodes in its blob; None when unreadable)
    kernels: dict[str, int] = field(default_factory=dict)  # portable kernel calls by operator name
    input_dynamism: tuple[str, ...] = ()

    @property
    def xnnpack_nodes(self) -> int:
        return sum(n or 0 for backend, n in self.delegates if backend == XNNPACK)

    @property
    def kernel_calls(self) -> int:
        return sum(self.kernels.values())

    @property
    def delegated_share(self) -> float:
        total = self.xnnpack_nodes + self.kernel_calls
        return self.xnnpack_nodes / total if total else 0.0

    def label(self) -> str:
        """What runs the program, in the words of every report: ``XNNPACK (163/163 ops delegated)``, or the portable
        kernels first when they run most of it."""
        total = self.xnnpack_nodes + self.kernel_calls
        if self.xnnpack_nodes and self.delegated_share >= MOSTLY_DELEGATED:
            return f"XNNPACK ({self.xnnpack_nodes}/{total} ops delegated)"
        if self.xnnpack_nodes:
            return f"portable CPU kernels ({self.kernel_calls}/{total} ops; XNNPACK took {self.xnnpack_nodes})"
        return f"portable CPU kernels ({self.kernel_calls} ops, no XNNPACK delegate)"

    def to_dict(self) -> dict:
        return {"delegate_calls": len(self.delegates), "backends": sorted({b for b, _ in self.delegates}),
                "xnnpack_nodes": self.xnnpack_nodes, "portable_kernel_calls": self.kernel_calls,
                "portable_kernels": dict(sorted(self.kernels.items()))}


# program.fbs / XNNPACK schema.fbs field offsets (vtable slot 4 + 2 * field index) and union tags, executorch 1.5.
# Read with the flatbuffers package's Table: ExecuTorch's generated readers for these tables live in executorch.exir,
# whose import loads the whole exporter (see bindings()), so the few fields needed are named here.
_PROGRAM_PLANS, _PROGRAM_INLINE, _PROGRAM_SEGMENTS = 6, 10, 12
_PLAN_NAME, _PLAN_VALUES, _PLAN_INPUTS, _PLAN_CHAINS, _PLAN_OPERATORS, _PLAN_DELEGATES = 4, 8, 10, 14, 16, 18
_CHAIN_INSTRUCTIONS, _INSTRUCTION_TYPE, _INSTRUCTION_ARGS = 8, 4, 6
_KERNEL_CALL, _EVALUE_TENSOR = 1, 5
_DYNAMISM = {0: "static", 1: "dynamic_bound", 2: "dynamic_unbound"}
_XNN_HEADER, _XNN_GRAPH_NODES = b"XH00", 6


class _Reader:
    """Field access on one FlatBuffer table (flatbuffers.table.Table underneath)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        import flatbuffers

        self.fb = flatbuffers
        self.tab = flatbuffers.table.Table(buf, pos)

    def _at(self, slot: int) -> int:
        return self.tab.Offset(slot)

    def string(self, slot: int) -> str | None:
        o = self._at(slot)
        return self.tab.String(o + self.tab.Pos).decode("utf-8", "replace") if o else None

    def scalar(self, slot: int, flags: Any, default: int = 0) -> int:
        o = self._at(slot)
        return self.tab.Get(flags, o + self.tab.Pos) if o else default

    def table(self, slot: int) -> "_Reader | None":
        o = self._at(slot)
        return _Reader(self.tab.Bytes, self.tab.Indirect(o + self.tab.Pos)) if o else None

    def tables(self, slot: int) -> list["_Reader"]:
        o = self._at(slot)
        if not o:
            return []
        start = self.tab.Vector(o)
        return [_Reader(self.tab.Bytes, self.tab.Indirect(start + 4 * i)) for i in range(self.tab.VectorLen(o))]

    def ints(self, slot: int) -> list[int]:
        o = self._at(slot)
        if not o:
            return []
        start = self.tab.Vector(o)
        return [self.tab.Get(self.fb.number_types.Int32Flags, start + 4 * i) for i in range(self.tab.VectorLen(o))]

    def vector_len(self, slot: int) -> int:
        o = self._at(slot)
        return self.tab.VectorLen(o) if o else 0

    def blob(self, slot: int) -> bytes:
        o = self._at(slot)
        if not o:
            return b""
        start = self.tab.Vector(o)
        return bytes(self.tab.Bytes[start:start + self.tab.VectorLen(o)])


def program_facts(data: bytes, header: Header, segment: Callable[[int, int], bytes],
                  method: str = "forward") -> ProgramFacts:
    """The delegates and portable kernel calls of ``method`` in a program the runtime has verified. ``data``: the
    FlatBuffer (the file's first ``header.program_bytes``); ``segment(offset, size)``: bytes of the segment data
    (where the delegate blobs are; the weights there are never read)."""
    import flatbuffers

    types = flatbuffers.number_types
    program = _Reader(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    plan = next((p for p in program.tables(_PROGRAM_PLANS) if p.string(_PLAN_NAME) == method), None)
    if plan is None:
        raise BadModelFile(f"the program has no method {method!r}; re-export it with 'edgekit export --format pte'")
    operators = []
    for op in plan.tables(_PLAN_OPERATORS):
        operators.append(f"{op.string(4)}.{op.string(6) or 'default'}")
    kernels: Counter[str] = Counter()
    for chain in plan.tables(_PLAN_CHAINS):
        for instruction in chain.tables(_CHAIN_INSTRUCTIONS):
            if instruction.scalar(_INSTRUCTION_TYPE, types.Uint8Flags) == _KERNEL_CALL:
                index = instruction.table(_INSTRUCTION_ARGS).scalar(4, types.Int32Flags)  # type: ignore[union-attr]
                kernels[operators[index] if 0 <= index < len(operators) else f"operator #{index}"] += 1
    segments = [(s.scalar(4, types.Uint64Flags), s.scalar(6, types.Uint64Flags))
                for s in program.tables(_PROGRAM_SEGMENTS)]
    inline = program.tables(_PROGRAM_INLINE)
    delegates = []
    for delegate in plan.tables(_PLAN_DELEGATES):
        backend = delegate.string(4) or "?"
        payload = b""
        ref = delegate.table(6)
        if ref is not None:
            location, index = ref.scalar(4, types.Int8Flags), ref.scalar(6, types.Uint32Flags)
            if location == 1 and index < len(segments):  # a segment after the FlatBuffer
                payload = segment(*segments[index])
            elif location == 0 and index < len(inline):
                payload = inline[index].blob(4)
        delegates.append((backend, _xnnpack_nodes(payload) if backend == XNNPACK else None))
    values = plan.tables(_PLAN_VALUES)
    dynamism = []
    for index in plan.ints(_PLAN_INPUTS):
        value = values[index] if 0 <= index < len(values) else None
        tensor = value.table(6) if value is not None and value.scalar(4, types.Uint8Flags) == _EVALUE_TENSOR else None
        dynamism.append(_DYNAMISM.get(tensor.scalar(20, types.Int8Flags), "?") if tensor is not None else "?")
    return ProgramFacts(tuple(delegates), dict(kernels), tuple(dynamism))


def _xnnpack_nodes(payload: bytes) -> int | None:
    """Nodes in an XNNPACK delegate blob (an ``XH00`` header, then the ``XN01`` FlatBuffer of the XNNGraph)."""
    import flatbuffers

    try:
        if payload[4:8] == _XNN_HEADER:
            offset, size = struct.unpack_from("<II", payload, 10)
            payload = payload[offset:offset + size]
        if payload[4:8] != b"XN01":
            return None
        graph = _Reader(payload, flatbuffers.encode.Get(flatbuffers.packer.uoffset, payload, 0))
        return graph.vector_len(_XNN_GRAPH_NODES)
    except (struct.error, IndexError, ValueError):
        return None


def read_facts(path: Path, header: Header) -> ProgramFacts:
    """:func:`program_facts` of a file: reads its FlatBuffer and its delegate blobs, not its weights."""
    try:
        with open(path, "rb") as fh:
            def segment(offset: int, size: int) -> bytes:
                fh.seek(header.segment_base + offset)
                return fh.read(size)

            return program_facts(fh.read(header.program_bytes), header, segment)
    except OSError as exc:
        raise BadModelFile(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except BadModelFile:
        raise
    except Exception as exc:  # noqa: BLE001 - struct.error/IndexError from a file the verifier let through
        raise BadModelFile(f"{path.name}: its program does not parse ({type(exc).__name__}); re-export it") from None


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------
def write(job: WriteJob, path: Path) -> dict:
    import torch

    meta = job.metadata
    stage = "pte" if job.precision == "fp32" else f"pte_{job.precision}"
    details: dict = {"backend": XNNPACK, "versions": _versions()}
    started = time.perf_counter()
    with quiet_exporters(), torch.no_grad():  # progress is reported between the quiet blocks (they hide stdout)
        from . import xnnpack

        if job.precision == "int8":
            calibration, info = calibration_data(job)
            program = xnnpack.quantize_int8(job.fused, job.example, calibration, batch=CALIBRATION_BATCH)
        else:
            program = torch.export.export(job.fused, (job.example,))
    if job.precision == "int8":
        meta = replace(meta, precision="int8", quantization={
            "scheme": SCHEME, "weights": "int8 symmetric per output channel (PerChannelMinMaxObserver)",
            "activations": "int8 per-tensor affine (HistogramObserver)", "calibration": info})
        details["quantization"] = meta.quantization
        job.report("int8 ptq", time.perf_counter() - started,
                   f"{SCHEME}, calibrated on {info['samples']} images: {info['source']}")
        started = time.perf_counter()
    with quiet_exporters(), torch.no_grad():
        edge = xnnpack.lower(program)
        delegation = xnnpack.delegation(edge.exported_program())
    job.report("pte lower" if job.precision == "fp32" else f"{job.precision} lower", time.perf_counter() - started,
               xnnpack.describe(delegation))
    started = time.perf_counter()
    meta = replace(meta, extra={**meta.extra, "executorch": {"backend": XNNPACK, "delegation": delegation,
                                                              **details["versions"]}})
    with quiet_exporters(), torch.no_grad():
        buffer = bytes(xnnpack.to_executorch(edge, {METADATA_METHOD: meta.to_json()}))
    header = _header_of(buffer)
    facts = program_facts(buffer[:header.program_bytes], header,
                          lambda offset, size: buffer[header.segment_base + offset:header.segment_base + offset + size])
    if facts.xnnpack_nodes == 0:
        raise ExportFailed(f"XNNPACK took no operator of {meta.model} (the .pte would run entirely on portable "
                           "kernels, which is not what --format pte promises); please report this model")
    path.write_bytes(buffer)
    details.update({"delegation": delegation, "program": facts.to_dict()})
    job.report(stage, time.perf_counter() - started, describe_facts(facts) + f", {len(buffer) / 1e6:.1f} MB")
    return details


def _header_of(buffer: bytes) -> Header:
    if buffer[8:12] != EXTENDED_HEADER:
        return Header(len(buffer), len(buffer), 0, 0)
    _, program, base = struct.unpack_from("<IQQ", buffer, 12)
    return Header(len(buffer), program, base, len(buffer) - base if base else 0)


def describe_facts(facts: ProgramFacts) -> str:
    """``XNNPACK (163/163 ops delegated), 1 delegate call; portable kernels: none`` and the like."""
    calls = len(facts.delegates)
    text = f"{facts.label()}, {calls} delegate call{'s' if calls != 1 else ''}"
    if not facts.kernels:
        return text + "; portable kernels: none"
    listed = ", ".join(f"{op} x{n}" for op, n in sorted(facts.kernels.items(), key=lambda kv: -kv[1])[:6])
    return text + f"; portable kernels: {listed}"


def calibration_data(job: WriteJob) -> tuple[Any, dict]:
    """The INT8 calibration tensors: ``--calib`` through edgekit.precision (the sources and preprocessing of
    ``quantize``), at most ``--calib-samples`` of them; and what the metadata records about them."""
    import hashlib

    import numpy as np

    from ..precision import Preprocess, load_all, pick, resolve_source

    meta = job.metadata
    pre = Preprocess.from_metadata(meta)
    source = job.options.calib
    dataset = pick(resolve_source(source, pre, input_name=meta.input_name, synthetic_count=job.options.calib_samples),
                   job.options.calib_samples)
    x, _ = load_all(dataset, pre)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < MIN_CALIBRATION_SAMPLES:
        raise BadArgument(f"--calib {source} gave {len(x)} images; INT8 calibration needs at least "
                          f"{MIN_CALIBRATION_SAMPLES} (100-300 recommended)")
    info = {"source": dataset.description, "kind": dataset.kind, "samples": int(len(x)),
            "sha256": hashlib.sha256(x.tobytes()).hexdigest()}
    return x, info


def _versions() -> dict:
    out = {}
    for dist in ("executorch", "torchao"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
