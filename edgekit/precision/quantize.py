"""``edgekit quantize``: an fp32 ONNX file -> INT8 (ONNX Runtime static QDQ) or fp16, with proof.

:func:`convert` is the conversion both ``edgekit quantize`` and ``edgekit export --precision int8,fp16`` call (the
export's ONNX writer hands it the fp32 file it just wrote); :func:`quantize` adds what the command reports: the
searches (``--scheme auto``, ``--keep-fp32 auto``), the layers that add the most error, and one closing comparison
of the fp32 and the new file (size, agreement, accuracy, latency measured one after the other).

The written file carries the fp32 file's edgekit metadata with ``precision`` and a ``quantization`` record: scheme,
method, calibration source / count / sha256 of the calibration tensors, the layers kept in fp32, the fp32 file's
sha256 and the onnxruntime version. Next to an export's ``manifest.json`` that lists the input, the manifest gains
the new file (under the folder lock, atomically).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import BadArgument, BadModelFile
from ..metadata import Metadata
from ..options import opt, validate
from .int8 import METHODS, QuantizeFailed, Scheme

Progress = Callable[[str], None]
#: default agreement target of --scheme auto and --keep-fp32 auto (see QuantizeOptions.target_agreement)
DEFAULT_TARGET = 0.95


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize; every field is a flag of ``edgekit quantize`` (``--per-channel/--per-tensor`` set
    ``per_channel``)."""

    to: str = opt("int8", kind="choice", choices=("int8", "fp16"), metavar="PRECISION",
                  help="int8 (ONNX Runtime static QDQ) or fp16")
    calib: str | None = opt(None, kind="path", metavar="SOURCE",
                            help="calibration images: a folder (flat or class sub-folders), an .npz, or 'synthetic' "
                                 "(seeded image-like inputs; accuracy claims need real images)")
    samples: int = opt(300, kind="int", metavar="N", what="--samples", lo=1, hi=100_000, example="--samples 300",
                       help="calibration images to use")
    method: str = opt("minmax", kind="choice", choices=METHODS, metavar="NAME",
                      help="activation calibration: minmax, entropy (KL, 2048 bins), percentile (99.999)")
    act: str = opt("u8", kind="choice", choices=("u8", "s8"), metavar="TYPE",
                   help="activation type: u8 (U8S8) or s8 (S8S8); weights are int8")
    per_channel: bool = opt(True, kind="bool", cli=False, help="int8 weights per output channel (else per tensor)")
    scheme: str | None = opt(None, metavar="NAME",
                             help="auto: try U8S8/S8S8 x per-channel/per-tensor, keep the fastest that meets "
                                  "--target-agreement (default: the scheme --act/--per-channel describe)")
    keep_fp32: tuple[str, ...] = opt((), kind="list", metavar="auto|NAMES",
                                     help="layers to keep in fp32: PyTorch module names (comma-separated), or auto: "
                                          "the most harmful first until --target-agreement is reached")
    target_agreement: float = opt(DEFAULT_TARGET, kind="float", metavar="X", what="--target-agreement", lo=0.0,
                                  lo_open=True, hi=1.0, example="--target-agreement 0.99",
                                  help="top-1 agreement with fp32 on held-out images that --scheme auto and "
                                       "--keep-fp32 auto must reach")
    max_fp32: int = opt(8, kind="int", metavar="N", what="--max-fp32", lo=1, hi=1000, example="--max-fp32 8",
                        help="most layers --keep-fp32 auto may keep in fp32")
    out: str | None = opt(None, kind="path", metavar="FILE", help="output file (default: <stem>_int8.onnx or "
                                                                  "<stem>_fp16.onnx beside the input)")
    eval: str | None = opt(None, kind="path", metavar="DIR",
                           help="labelled images for the closing accuracy comparison (default: the held-out "
                                "calibration images)")
    res: int | None = opt(None, kind="int", metavar="R", what="--res", lo=1, hi=8192, example="--res 224",
                          help="input resolution, for a file without edgekit metadata")
    threads: int | None = opt(None, kind="int", metavar="N", what="--threads", lo=1, hi=256, example="--threads 2",
                              help="intra-op threads for the latency comparison (default: the physical cores)")
    latency: bool = opt(True, kind="bool", help="skip the latency comparison")
    iters: int = opt(200, kind="int", metavar="N", what="--iters", lo=10, hi=100_000, example="--iters 200",
                     help="timed runs per file in the latency comparison")

    def __post_init__(self) -> None:
        validate(self, ("to", "samples", "method", "act", "target_agreement", "max_fp32", "res", "threads",
                        "latency", "iters", "per_channel"))
        keep = self.keep_fp32
        if isinstance(keep, str):
            keep = tuple(k for k in keep.split(","))
        keep = tuple(dict.fromkeys(str(k).strip() for k in keep if str(k).strip()))
        if "auto" in keep and len(keep) > 1:
            raise BadArgument("--keep-fp32 takes auto or module names, not both; e.g. --keep-fp32 auto")
        object.__setattr__(self, "keep_fp32", keep)
        if self.scheme is not None:
            scheme = str(self.scheme).strip().lower()
            if scheme != "auto":
                raise BadArgument(f"unknown scheme {self.scheme!r}; use --scheme auto (or leave it out and choose "
                                  "with --act u8|s8 and --per-channel/--per-tensor)")
            object.__setattr__(self, "scheme", scheme)
        for key in ("calib", "out", "eval"):
            value = getattr(self, key)
            if value is not None:
                if not str(value).strip():
                    raise BadArgument(f"--{key} is empty; pass a path")
                object.__setattr__(self, key, str(value))
        if self.to == "fp16":
            given = [f for f, v in (("--calib", self.calib), ("--scheme", self.scheme), ("--keep-fp32", self.keep_fp32))
                     if v]
            if given:
                raise BadArgument(f"{given[0]} applies to --to int8 only; drop it for fp16")
        elif self.calib is None:
            raise BadArgument("--to int8 needs calibration images: pass --calib DIR (a folder of images), --calib "
                              "FILE.npz, or --calib synthetic (seeded inputs, no accuracy claim)")

    @property
    def auto_fp32(self) -> bool:
        return self.keep_fp32 == ("auto",)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Conversion:
    """What :func:`convert` wrote and how it got there."""

    path: Path
    precision: str
    quantization: dict
    layers: list[dict] = field(default_factory=list)  # int8: the layers that add the most error
    schemes: Any = None  # search.SchemeSearch
    mixed: Any = None  # search.MixedSearch
    nonfinite: list = field(default_factory=list)  # fp16: fp16.NonFinite, execution order
    notes: list[str] = field(default_factory=list)
    calibration: Any = None  # data.CalibrationSet
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"path": str(self.path), "precision": self.precision, "quantization": self.quantization,
                "layers": self.layers, "schemes": self.schemes.to_dict() if self.schemes else None,
                "mixed": self.mixed.to_dict() if self.mixed else None,
                "nonfinite": [n.to_dict() for n in self.nonfinite], "notes": self.notes,
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "seconds": round(self.seconds, 2)}


# ----------------------------------------------------------------------------------------------------------------
# the source file
# ----------------------------------------------------------------------------------------------------------------
def source_metadata(path: Path, proto: Any, res: int | None) -> Metadata:
    """The fp32 file's edgekit metadata; a file without it needs ``--res`` (its preprocessing is otherwise unknown),
    and gets a minimal record (ImageNet mean/std, weights 'module': edgekit cannot rebuild its reference)."""
    from ..formats.onnx import props_of
    from .int8 import graph_input, is_quantized

    meta = Metadata.from_props(props_of(proto), where=path.name)
    if (meta is not None and meta.precision != "fp32") or is_quantized(proto):
        what = meta.precision if meta is not None and meta.precision != "fp32" else "quantized or fp16"
        raise BadArgument(f"{path.name} is already {what}; quantize the fp32 file it was made from")
    if meta is not None:
        if res is not None and res != meta.res:
            raise BadArgument(f"--res {res} disagrees with {path.name}'s metadata (res {meta.res}); drop --res (it is "
                              "for files without edgekit metadata)")
        return meta
    if res is None:
        raise BadArgument(f"{path.name} carries no edgekit metadata, so its preprocessing is unknown; pass --res R "
                          "(ImageNet mean/std are assumed), or export it with 'edgekit export'")
    name, batch = graph_input(proto)
    out = proto.graph.output[0].type.tensor_type.shape.dim
    classes = out[-1].dim_value if out and out[-1].HasField("dim_value") and out[-1].dim_value > 0 else 1000
    return Metadata(model=path.stem, alpha=1.0, res=res, num_classes=classes, weights="module", input_name=name,
                    output_name=proto.graph.output[0].name, input_shape=(batch or "batch", 3, res, res),
                    dynamic_batch=batch is None, extra={"source": "a file without edgekit metadata"})


def default_output(path: Path, precision: str) -> Path:
    return path.with_name(f"{path.stem}_{precision}{path.suffix or '.onnx'}")


def _finish(proto: Any, meta: Metadata, dst: Path) -> Path:
    """Metadata into the converted graph, written atomically to ``dst``."""
    from ..files import atomic_write
    from ..formats.onnx import set_metadata

    set_metadata(proto, meta)
    return atomic_write(dst, proto.SerializeToString(), what=f"the {meta.precision} file {dst.name}")


def _record(options: QuantizeOptions, src: Path, data: Any, scheme: Scheme | None, excluded: list[str],
            excluded_nodes: list[str]) -> dict:
    import onnxruntime

    from ..files import sha256_file
    from .int8 import tensors_sha256

    record: dict = {"fp32_sha256": sha256_file(src), "onnxruntime": onnxruntime.__version__}
    if options.to == "fp16":
        record.update(converter="onnxruntime.transformers.float16", io="fp32 (Cast at each end)")
        return record
    assert scheme is not None
    record.update(scheme=scheme.label, format="QDQ", activations=scheme.act, weights="s8",
                  per_channel=scheme.per_channel, method=options.method,
                  calibration={"source": data.description, "kind": data.dataset.kind, "count": int(len(data.x)),
                               "sha256": tensors_sha256(data.x)},
                  fp32_layers=excluded, fp32_nodes=excluded_nodes)
    return record


# ----------------------------------------------------------------------------------------------------------------
# the conversion (shared with export --precision)
# ----------------------------------------------------------------------------------------------------------------
def convert(src: Path, dst: Path, options: QuantizeOptions, *, metadata: Metadata | None = None,
            progress: Progress | None = None, holdout: bool = True, report_layers: bool = True) -> Conversion:
    """Write the ``options.to`` version of the fp32 ONNX file ``src`` to ``dst`` (atomically; nothing is written
    when anything fails). ``holdout``: keep part of the calibration source apart to measure agreement (export's
    writer calibrates on all of it); ``report_layers``: rank the layers that add the most error."""
    from ..formats.onnx import read

    progress = progress or (lambda _message: None)
    started = time.perf_counter()
    proto = read(src)
    meta = metadata or source_metadata(src, proto, options.res)
    if options.to == "int8" and meta.precision != "fp32":
        raise BadArgument(f"{src.name} is already {meta.precision}; quantize the fp32 file it was made from")
    try:
        with tempfile.TemporaryDirectory(prefix=".edgekit-quantize-", dir=dst.parent) as tmp:
            if options.to == "fp16":
                result = _convert_fp16(src, dst, proto, meta, options, Path(tmp), progress)
            else:
                result = _convert_int8(src, dst, meta, options, Path(tmp), progress, holdout, report_layers)
    except OSError as exc:
        from ..files import write_error

        raise write_error(exc, f"the {options.to} file next to {dst.name}", QuantizeFailed) from None
    result.seconds = time.perf_counter() - started
    return result


def _convert_int8(src: Path, dst: Path, meta: Metadata, options: QuantizeOptions, work: Path, progress: Progress,
                  holdout: bool, report_layers: bool) -> Conversion:
    import onnx

    from .data import calibration_set, check_classes
    from .int8 import calibrate, prepare, quantize_qdq
    from .layers import module_names, nodes_for_modules, with_consumers
    from .preprocess import Preprocess
    from .search import layer_report, logits, search_mixed, search_schemes

    searching = options.scheme == "auto" or options.auto_fp32
    progress(f"reading calibration images from {options.calib}")
    data = calibration_set(options.calib, Preprocess.from_metadata(meta), options.samples, meta.input_name,
                           holdout=holdout or searching)
    check_classes(data.dataset, meta.num_classes, src.name)
    if searching and not len(data.held_x):
        raise BadArgument(f"--scheme auto / --keep-fp32 auto measure agreement on held-out images, and "
                          f"{data.description} has too few; pass at least 10 images")
    prepared = prepare(src, work / "prepared.onnx")
    model = onnx.load(str(prepared))
    progress(f"calibrating ({options.method}) on {len(data.x)} images")
    cache = calibrate(prepared, data.x, options.method, work / "calibration.json")
    exclude: list[str] = []
    if options.keep_fp32 and not options.auto_fp32:
        nodes, unknown = nodes_for_modules(model, options.keep_fp32)
        if unknown:
            example = next((m for m in module_names(model, [n.name for n in model.graph.node]) if "." in m), "")
            raise BadArgument(f"--keep-fp32: {src.name} has no layer named {unknown[0]!r}; pass PyTorch module names "
                              f"(e.g. {example}; quantize's per-layer report lists them)")
        exclude = with_consumers(model, nodes)
    held = data.held_x
    reference = logits(src, held, options.threads) if len(held) else np.zeros((0, 0), np.float32)
    scheme, schemes, mixed = Scheme(options.act, options.per_channel), None, None
    if options.scheme == "auto":
        from ..bench.system import default_threads

        schemes = search_schemes(prepared, src, cache, options.method, exclude, work, held, reference,
                                 options.target_agreement, options.threads or default_threads(), options.iters,
                                 progress)
        if schemes.chosen is None:
            raise QuantizeFailed(f"--scheme auto: {schemes.note}; nothing was written")
        scheme = schemes.chosen
    if options.auto_fp32:
        mixed, path = search_mixed(prepared, model, cache, options.method, scheme, exclude, work, held, reference,
                                   options.target_agreement, options.max_fp32, progress)
        if not mixed.reached:
            best = max(mixed.steps, key=lambda s: s.agreement)
            raise QuantizeFailed(f"--keep-fp32 auto did not reach agreement {options.target_agreement:g} with up to "
                                 f"{options.max_fp32} layers in fp32 (best {best.agreement:.4f} with "
                                 f"{len(best.kept_fp32)}); raise --max-fp32, lower --target-agreement, or calibrate "
                                 "on more representative images; nothing was written")
        exclude = list(mixed.final.nodes)
        if options.latency and len(mixed.steps) > 1:
            from ..bench.system import default_threads
            from .search import median_latency_ms

            progress("timing the all-INT8 file against the mixed one")
            threads = options.threads or default_threads()
            mixed.latency_ms = (median_latency_ms(work / "mixed_0.onnx", threads, options.iters),
                                median_latency_ms(path, threads, options.iters))
    else:
        path = quantize_qdq(prepared, work / "int8.onnx", scheme, options.method, cache, exclude)
    layers: list[dict] = []
    if report_layers:
        progress("per-layer error of the INT8 graph against the fp32 graph")
        layers = layer_report(prepared, path, held if len(held) else data.x)
    kept = list(dict.fromkeys(module_names(model, exclude)))
    record = _record(options, src, data, scheme, kept, exclude)
    _finish(onnx.load(str(path)), replace(meta, precision="int8", quantization=record), dst)
    return Conversion(dst, "int8", record, layers, schemes, mixed, [], list(data.notes), data)


def _convert_fp16(src: Path, dst: Path, proto: Any, meta: Metadata, options: QuantizeOptions, work: Path,
                  progress: Progress) -> Conversion:
    from ..verify.inputs import make_inputs
    from .fp16 import nonfinite_layers, to_fp16

    progress("converting to fp16")
    half = to_fp16(proto, src.name)
    record = _record(options, src, None, None, [], [])
    staged = _finish(half, replace(meta, precision="fp16", quantization=record), work / dst.name)
    progress("looking for Inf/NaN on verify's inputs")
    chw = (3, *meta.input_hw)
    cases = make_inputs(chw, meta.mean, meta.std, (1,))
    x = np.concatenate([c.array for c in cases])
    nonfinite = nonfinite_layers(staged, x, meta.input_name)
    os.replace(staged, dst)
    notes = []
    if nonfinite:
        notes.append(f"fp16 overflows: {nonfinite[0].describe()} on verify's inputs; keep that layer in fp32 or "
                     "use int8")
    return Conversion(dst, "fp16", record, [], None, None, nonfinite, notes, None)


# ----------------------------------------------------------------------------------------------------------------
# the command: conversion + report + comparison + manifest
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class QuantizeReport:
    source: str
    conversion: Conversion
    comparison: Any = None  # compare.Comparison
    manifest: str | None = None  # the export manifest that now lists the file
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.conversion.path

    def to_dict(self) -> dict:
        return {"source": self.source, **self.conversion.to_dict(),
                "comparison": self.comparison.to_dict() if self.comparison is not None else None,
                "manifest": self.manifest, "notes": self.notes}

    def to_text(self) -> str:
        from ..report import table

        c = self.conversion
        q = c.quantization
        lines = [f"wrote {c.path} ({c.precision}, {c.path.stat().st_size / 1e6:.2f} MB) in {c.seconds:.1f} s"]
        if c.precision == "int8":
            cal = q["calibration"]
            lines.append(f"scheme     {q['scheme']}, QDQ, {q['method']} calibration on {cal['count']} images: "
                         f"{cal['source']}")
        if c.schemes is not None:
            s = c.schemes
            rows = [[t.scheme, f"{t.agreement:.4f}", f"{t.latency_ms:.3f}" if t.latency_ms else "-",
                     f"{t.latency_ms / s.fp32_latency_ms:.2f}x" if t.latency_ms and s.fp32_latency_ms else "-",
                     "yes" if t.passed else "no"] for t in s.trials]
            rows.insert(0, ["fp32 (reference)", "1.0000", f"{s.fp32_latency_ms:.3f}", "1.00x", "-"])
            lines += ["", f"--scheme auto (agreement on held-out images, target {s.target:g}):",
                      table(rows, ["scheme", "agreement", "p50 ms", "vs fp32", "meets target"], align="lrrrl"),
                      f"kept: {s.chosen.label if s.chosen else '-'} (the fastest that meets the target)"]
            lines += [f"note: {s.note}"] if s.note else []
        if c.mixed is not None:
            rows = [[len(st.kept_fp32), ", ".join(st.kept_fp32[-1:]) or "(none)", f"{st.agreement:.4f}",
                     f"{st.size_bytes / 1e6:.2f} MB"] for st in c.mixed.steps]
            lines += ["", f"--keep-fp32 auto (target agreement {c.mixed.target:g} on held-out images):",
                      table(rows, ["fp32 layers", "added", "agreement", "size"], align="rlrr")]
            first, last = c.mixed.steps[0], c.mixed.steps[-1]
            if len(c.mixed.steps) > 1:
                cost = f"cost of the fp32 layers: size {first.size_bytes / 1e6:.2f} -> {last.size_bytes / 1e6:.2f} MB"
                if c.mixed.latency_ms:
                    cost += f", latency {c.mixed.latency_ms[0]:.3f} -> {c.mixed.latency_ms[1]:.3f} ms (p50)"
                lines.append(cost)
        if c.precision == "int8":
            kept = q.get("fp32_layers") or []
            lines.append(f"fp32 layers {', '.join(kept) if kept else 'none'}")
        if c.layers:
            rows = [[i + 1, e["module"], e["op"], f"{e['sqnr_db']:.1f}", f"{e['added_noise']:.4f}"]
                    for i, e in enumerate(c.layers)]
            lines += ["", "layers that add the most error (INT8 vs fp32 activations, held-out images):",
                      table(rows, ["#", "module", "op", "SQNR dB", "added noise"], align="rllrr")]
        if c.precision == "fp16":
            lines.append("Inf/NaN    " + ("; ".join(n.describe() for n in c.nonfinite[:3]) if c.nonfinite else
                                          "none on verify's inputs"))
        if self.comparison is not None:
            lines += ["", *self.comparison.lines()]
        if self.manifest:
            lines.append(f"manifest   {self.manifest} lists {c.path.name}")
        lines += [f"note: {n}" for n in [*c.notes, *self.notes]]
        return "\n".join(lines)


def _update_manifest(src: Path, dst: Path, conversion: Conversion) -> Path | None:
    """Add the new file to the export manifest beside ``src`` (when it lists ``src`` and ``dst`` is in that
    folder), under the folder lock, atomically."""
    from ..files import atomic_write, sha256_file
    from ..staging import MANIFEST, _folder_lock, _no_interrupt, _read_manifest

    folder = src.parent
    if dst.parent.resolve() != folder.resolve():
        return None
    with _folder_lock(folder), _no_interrupt():
        manifest = _read_manifest(folder)
        if not manifest or not any(f.get("name") == src.name for f in manifest.get("files", []) if isinstance(f, dict)):
            return None
        entry = {"format": "onnx", "name": dst.name, "bytes": dst.stat().st_size, "sha256": sha256_file(dst),
                 "precision": conversion.precision, "from": src.name, "quantization": conversion.quantization}
        files = [f for f in manifest["files"] if not (isinstance(f, dict) and f.get("name") == dst.name)]
        manifest["files"] = [*files, entry]
        return atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n", what=f"{folder / MANIFEST}")


def quantize(path: str | os.PathLike, *, options: QuantizeOptions, progress: Progress | None = None) -> QuantizeReport:
    """Quantize the fp32 ONNX file at ``path`` as ``options`` say, and compare the result with it."""
    from ..files import check_input_file
    from ..formats import format_of
    from ..formats.onnx import read
    from .compare import compare_files

    progress = progress or (lambda _message: None)
    src = check_input_file(path, "model file", hint="pass an fp32 .onnx file written by 'edgekit export'")
    if format_of(src).name != "onnx":
        raise BadModelFile(f"{src.name} is not an ONNX file; quantize takes an fp32 .onnx (other formats: "
                           "'edgekit export NAME --format ... --precision int8')")
    meta = source_metadata(src, read(src), options.res)
    dst = Path(options.out) if options.out is not None else default_output(src, options.to)
    if dst.resolve() == src.resolve():
        raise BadArgument(f"--out {dst} is the input file; pass another name")
    if dst.exists() and dst.is_dir():
        raise BadArgument(f"--out {dst} is a folder; pass a file name")
    if not dst.parent.is_dir():
        raise BadArgument(f"--out {dst}: folder {str(dst.parent)!r} does not exist; create it first")
    if options.eval is not None:
        from ..eval import EvalOptions, load_dataset

        load_dataset(options.eval, meta, EvalOptions(), src.name)  # bad --eval data: refused before any work
    conversion = convert(src, dst, options, metadata=meta, progress=progress)
    report = QuantizeReport(str(src), conversion)
    try:
        report.comparison = compare_files(src, dst, conversion, options, meta, progress)
    except BaseException:
        dst.unlink(missing_ok=True)  # a failed or interrupted comparison leaves nothing half-reported
        raise
    manifest = _update_manifest(src, dst, conversion)
    report.manifest = str(manifest) if manifest else None
    return report
