"""Export: build -> fuse Conv-BN -> every requested format -> self-check -> manifest, written atomically.

Orchestration only: each format is a module in ``edgekit/formats`` registered in one table, and this module walks
the table. Every artifact is written into a staging folder inside the destination and moved into place only when
the whole export, self-check included, has succeeded; the moves happen under a lock (two exports to one folder never
interleave) with SIGINT/SIGTERM held back, so an interrupted, killed-by-signal or failed export (a full disk
included) leaves the folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__
from .errors import BadArgument, EdgekitError, ExportFailed, Terminated, first_line
from .files import check_output_folder, sha256_file, write_error
from .formats import FORMATS, Format, WriteJob, artifact_key, artifact_name
from .fuse import FuseReport, fuse
from .metadata import Metadata
from .options import opt, validate
from .staging import (  # noqa: F401  (_commit and friends: the export's own steps, imported here for tests)
    MANIFEST,
    STAGING_PREFIX,
    _commit,
    _prepare_out_dir,
    _read_manifest,
    _remove_stale_staging,
    interrupts_remembered,
    stem_for,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn



# --- options and results --------------------------------------------------------------------------------------


def _max_opset() -> int:
    from .formats.onnx import max_opset

    return max_opset()


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how; validated once, here. Every field is a CLI flag and a preset key."""

    formats: tuple[str, ...] = opt(("onnx", "torchscript"), kind="list", flag="--format", metavar="LIST",
                                   help="comma-separated export formats (see 'edgekit export --help')")
    opset: int | None = opt(None, kind="int", metavar="N", help="ONNX opset (default: the exporter's, >= 18)")
    dynamic_batch: bool = opt(False, kind="bool", help="symbolic batch dimension")
    simplify: bool = opt(True, kind="bool", help="skip onnxsim")
    verify: bool = opt(True, kind="bool", help="skip the self-check")
    weights: str | None = opt(None, kind="path", metavar="W",
                              help="'imagenet' or a state_dict file (default: seeded)")
    num_classes: int = opt(1000, kind="int", metavar="N", what="num_classes", lo=1, hi=100_000,
                           example="--num-classes 10", help="classifier size")
    seed: int = opt(0, kind="int", cli=False, what="seed", lo=0, hi=2**63 - 1, help="seed of seeded weights")
    precision: tuple[str, ...] = opt(("fp32",), kind="list", metavar="LIST",
                                     help="comma-separated precisions to write for each format that has them: "
                                          "fp32, fp16, int8 (default fp32)")
    calib: str | None = opt(None, kind="path", metavar="SOURCE",
                            help="calibration images for int8: a folder (flat or class subfolders), an .npz, or "
                                 "'synthetic' (seeded image-like inputs; accuracy claims need real images)")
    calib_samples: int = opt(300, kind="int", metavar="N", what="--calib-samples", lo=1, hi=100_000,
                             example="--calib-samples 300", help="calibration images to use")

    def __post_init__(self) -> None:
        formats = self.formats
        if isinstance(formats, str):
            formats = tuple(f for f in formats.split(",") if f.strip())
        if not isinstance(formats, (tuple, list)):
            raise BadArgument(f"formats must be a list such as [onnx, torchscript], got {formats!r}")
        formats = tuple(dict.fromkeys(str(f).strip().lower() for f in formats))
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise BadArgument(
                f"unknown export format {', '.join(map(repr, unknown)) or '(none given)'}; "
                f"choose from {','.join(FORMATS)} (e.g. --format onnx,torchscript)"
            )
        object.__setattr__(self, "formats", formats)
        if self.opset is not None:
            try:
                validate(self, ("opset",))
            except BadArgument:
                raise BadArgument(f"opset must be an integer, got {self.opset!r}; e.g. --opset 18") from None
            if not 18 <= self.opset <= _max_opset():
                raise BadArgument(
                    f"opset {self.opset} is not supported by the ONNX exporter; use 18..{_max_opset()} or leave "
                    "--opset out"
                )
        for key in ("dynamic_batch", "simplify", "verify"):
            if not isinstance(getattr(self, key), bool):
                raise BadArgument(f"{key} must be true or false, got {getattr(self, key)!r}")
        validate(self, ("num_classes", "seed"))
        if self.weights is not None:
            if not isinstance(self.weights, (str, os.PathLike)) or not str(self.weights).strip():
                raise BadArgument(f"weights must be 'imagenet' or a state_dict path, got {self.weights!r}")
            object.__setattr__(self, "weights", str(self.weights))
        self._check_precisions()
        self._check_format_options()

    def _check_precisions(self) -> None:
        from .metadata import PRECISIONS

        precision = self.precision
        if isinstance(precision, str):
            precision = tuple(p for p in precision.split(",") if p.strip())
        if not isinstance(precision, (tuple, list)) or not precision:
            raise BadArgument(f"precision must be a list such as fp32,int8, got {self.precision!r}")
        precision = tuple(dict.fromkeys(str(p).strip().lower() for p in precision))
        unknown = [p for p in precision if p not in PRECISIONS]
        if unknown:
            raise BadArgument(f"unknown precision {unknown[0]!r}; choose from {','.join(PRECISIONS)} "
                              "(e.g. --precision fp32,int8)")
        object.__setattr__(self, "precision", precision)
        for p in precision:
            if not any(p in FORMATS[f].precisions for f in self.formats):
                able = [f.name for f in FORMATS.values() if p in f.precisions] or ["none"]
                raise BadArgument(f"--precision {p} is not available for --format {','.join(self.formats)}; formats "
                                  f"that write {p}: {', '.join(able)}")
        if "int8" in precision and self.calib is None:
            raise BadArgument("--precision int8 needs calibration images: pass --calib DIR (a folder of images), "
                              "--calib FILE.npz, or --calib synthetic (seeded inputs, no accuracy claim)")
        if self.calib is not None:
            if not str(self.calib).strip():
                raise BadArgument("--calib is empty; pass a folder of images, an .npz or 'synthetic'")
            object.__setattr__(self, "calib", str(self.calib))
        validate(self, ("calib_samples",))

    def _check_format_options(self) -> None:
        """An option only some formats accept is refused, naming them, when none of those formats is selected.

        A switch that only turns a format's step off (``simplify: false`` with no ONNX selected) asks for nothing
        that cannot happen, so it is accepted: presets shared between format sets keep working.
        """
        defaults = {f.name: f.default for f in ExportOptions.__dataclass_fields__.values()}
        for name, default in defaults.items():
            owners = [f.name for f in FORMATS.values() if name in f.options]
            value = getattr(self, name)
            if not owners or value == default or (default is True and value is False):
                continue
            if not any(fmt in owners for fmt in self.formats):
                flag = {"simplify": "--no-simplify"}.get(name, "--" + name.replace("_", "-"))
                raise BadArgument(
                    f"{flag} applies to the {'/'.join(owners)} format only, and --format {','.join(self.formats)} "
                    f"does not include it; add {owners[0]} to --format or drop {flag}"
                )
        for name in self.formats:  # options a selected format cannot honour (pte: --dynamic-batch)
            if FORMATS[name].check_options is not None:
                FORMATS[name].check_options(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float
    detail: str = ""

    def to_text(self) -> str:
        """One progress line: the stage, its time, what it did."""
        return f"{self.name:<12} {self.seconds:6.2f}s" + (f"  {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class CheckResult:
    file: str
    format: str
    batch: int
    max_abs_err: float
    max_ref: float
    ok: bool
    detail: str = ""  # verify's one-line verdict for this file

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    files: dict[str, Path]  # format -> path (the manifest under "manifest")
    stages: tuple[StageTime, ...]
    fuse_report: FuseReport
    checks: tuple[CheckResult, ...]
    manifest: dict = field(repr=False)

    def to_dict(self) -> dict:
        return self.manifest

    def to_text(self) -> str:
        """The summary after the stage lines: where it wrote, and each file with its size."""
        lines = [f"{'done':<12} {self.manifest['total_seconds']:6.2f}s  wrote {self.out_dir}/"]
        lines += [f"  {entry['name']}  ({entry['bytes'] / 1e6:.1f} MB)" for entry in self.manifest["files"]]
        return "\n".join(lines)


# --- self-check ---------------------------------------------------------------------------------------------------


def self_check(files: dict[str, Path], reference: "nn.Module", metadata: Metadata,
               batches: tuple[int, ...]) -> tuple[CheckResult, ...]:
    """Verify each artifact against the unfused eager reference with ``edgekit verify``'s own code and tolerances.

    One result per (file, batch): the worst max|err| over verify's input cases at that batch, ``ok`` only when
    verify passes the whole file (metadata and structure checks included), ``detail`` its one-line verdict.
    """
    from .verify import VerifyOptions, verify

    results = []
    for fmt, path in files.items():
        report = verify(path, options=VerifyOptions(batches=batches), reference=reference)
        if report.statistical is not None:  # int8: one statistical verdict over many samples (verify's int8 preset)
            st = report.statistical.stats
            results.append(CheckResult(path.name, fmt, 1, st.max_abs_err, 0.0, report.passed, report.summary()))
            continue
        for batch in batches:
            outputs = [o for c in report.cases if c.batch == batch for o in c.outputs]
            ran = all(c.error is None for c in report.cases if c.batch == batch)
            err = max((o.max_abs_err for o in outputs), default=float("inf")) if ran else float("inf")
            peak = max((o.ref_peak for o in outputs), default=0.0)
            results.append(CheckResult(path.name, fmt, batch, err, peak, report.passed, report.summary()))
    return tuple(results)


# --- the main entry point -----------------------------------------------------------------------------------------


def default_out_dir(name: str, alpha: float, res: int) -> Path:
    return Path("exports") / stem_for(name, alpha, res)


def export(
    name_or_module: "str | nn.Module",
    *,
    alpha: float = 1.0,
    res: int | None = None,
    out_dir: str | os.PathLike | None = None,
    options: ExportOptions | None = None,
    on_progress: Callable[[StageTime], None] | None = None,
) -> ExportResult:
    """Build (or take) a model, fold Conv-BN, write every requested format, self-check, write the manifest.

    Nothing is left behind on failure: files appear in ``out_dir`` only when everything succeeded. A module passed
    in is exported in eval mode and handed back in the mode it came in.
    """
    import torch.nn as nn

    from .modes import eval_mode

    with interrupts_remembered() as interrupted:
        if isinstance(name_or_module, nn.Module):
            with eval_mode(name_or_module):
                return _export(name_or_module, alpha, res, out_dir, options, on_progress, interrupted)
        return _export(name_or_module, alpha, res, out_dir, options, on_progress, interrupted)


@dataclass
class _Built:
    """The model to export and everything the metadata and manifest say about it."""

    reference: Any
    name: str
    alpha: float
    res: int
    num_classes: int
    mean: tuple
    std: tuple
    weights: str
    seed: int | None
    weights_sha: str | None
    params: int
    macs: int


def _build(name_or_module: Any, alpha: float, res: int | None, options: ExportOptions) -> _Built:
    import torch
    import torch.nn as nn

    from .complexity import count_complexity, info
    from .guards import check_memory
    from .models import build_model, check_alpha, check_res
    from .registry import IMAGENET_MEAN, IMAGENET_STD, get_spec

    alpha = check_alpha(alpha)
    if isinstance(name_or_module, nn.Module):
        if res is None:
            raise BadArgument("exporting a module needs res=<pixels>")
        if isinstance(res, bool) or not isinstance(res, int) or res < 1:
            raise BadArgument(f"res must be a positive number of pixels, got {res!r}")
        reference = name_or_module
        with torch.no_grad():  # the module's own class count; options.num_classes only sizes models we build
            num_classes = int(reference(torch.zeros(1, 3, res, res)).shape[-1])
        params, macs, _ = count_complexity(reference, res, with_stages=False)
        return _Built(reference, type(reference).__name__.lower(), alpha, res, num_classes, IMAGENET_MEAN,
                      IMAGENET_STD, "module", None, None, params, macs)
    spec = get_spec(name_or_module)
    res = check_res(spec, res)
    check_memory(spec.name, alpha, res, 2 if options.dynamic_batch else 1, what=f"exporting {spec.name}",
                 num_classes=options.num_classes)
    reference, source = build_model(spec.name, alpha=alpha, num_classes=options.num_classes, weights=options.weights,
                                    seed=options.seed)
    model_info = info(spec.name, alpha=alpha, res=res, num_classes=options.num_classes)
    return _Built(reference, spec.name, alpha, res, options.num_classes, spec.mean, spec.std, source.describe(),
                  source.seed, source.sha256, model_info.params, model_info.macs)


def _metadata(built: _Built, options: ExportOptions, bn_folded: int) -> Metadata:
    import torch

    from .formats.onnx import onnx_version

    return Metadata(
        model=built.name, alpha=built.alpha, res=built.res, num_classes=built.num_classes, weights=built.weights,
        seed=built.seed, weights_sha256=built.weights_sha,
        input_shape=("batch" if options.dynamic_batch else 1, 3, built.res, built.res),
        dynamic_batch=options.dynamic_batch, mean=tuple(built.mean), std=tuple(built.std), params=built.params,
        macs=built.macs, bn_folded=bn_folded, edgekit_version=__version__, torch_version=torch.__version__,
        onnx_version=onnx_version(),
    )


def _write_formats(job: WriteJob, staging: Path, stem: str, options: ExportOptions,
                   stage: Callable[[StageTime], None]) -> tuple[dict[str, Path], dict[str, dict]]:
    """Each selected format's writer, in table order, once per requested precision it has (fp32 first).

    Keys of the result are artifact keys (``onnx``, ``onnx_int8``); a writer that fails is one line naming it.
    """
    written: dict[str, Path] = {}
    details: dict[str, dict] = {}
    for name in options.formats:
        fmt: Format = FORMATS[name]
        for precision in (p for p in options.precision if p in fmt.precisions):
            key = artifact_key(name, precision)
            started = time.perf_counter()
            path = staging / artifact_name(stem, fmt, precision)
            reported: list[str] = []

            def report(stage_name: str, seconds: float, detail: str = "", _seen: list = reported) -> None:
                _seen.append(stage_name)
                stage(StageTime(stage_name, seconds, detail))

            try:
                details[key] = fmt.write(replace(job, report=report, precision=precision), path) or {}
            except (EdgekitError, KeyboardInterrupt):
                raise
            except OSError as exc:
                raise write_error(exc, f"the {key} file", ExportFailed) from None
            except Exception as exc:  # noqa: BLE001 - an exporter failure is a one-line error naming the format
                raise ExportFailed(f"{key} export of {job.metadata.model} failed: {first_line(exc)}; try --format "
                                   f"without {name}") from exc
            details[key].setdefault("precision", precision)
            details[key]["format"] = name
            written[key] = path
            for companion in fmt.companions(path):
                details[key].setdefault("companions", []).append(companion.name)
            if not reported:
                stage(StageTime(key, time.perf_counter() - started, path.name))
        skipped = [p for p in options.precision if p not in fmt.precisions]
        if skipped:  # said, not silent: another selected format writes these (the options checked that)
            stage(StageTime("skipped", 0.0, f"{name} {', '.join(skipped)}: {fmt.title} is written at "
                                            f"{', '.join(fmt.precisions)} only"))
    return written, details


def _manifest(built: _Built, stem: str, options: ExportOptions, written: dict[str, Path], details: dict[str, dict],
              fuse_report: FuseReport, checks: tuple[CheckResult, ...], stages: list[StageTime],
              total_started: float, metadata: Metadata) -> dict:
    import torch

    from .formats.onnx import onnx_version

    files = []
    for key, p in written.items():
        info = details.get(key, {})
        fmt = info.get("format", key)
        extra = {k: v for k, v in info.items() if k not in ("companions", "format")}
        files.append({"format": fmt, "name": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p), **extra})
        for companion in info.get("companions", []):
            c = p.parent / companion
            files.append({"format": f"{fmt} sidecar", "name": companion, "bytes": c.stat().st_size,
                          "sha256": sha256_file(c)})
    return {
        "generator": f"edgekit {__version__}",
        "stem": stem,
        "model": built.name,
        "alpha": built.alpha,
        "res": built.res,
        "num_classes": built.num_classes,
        "input": {"name": metadata.input_name, "shape": list(metadata.input_shape), "layout": "NCHW",
                  "mean": list(built.mean), "std": list(built.std)},
        "weights": built.weights,
        "seed": built.seed,
        "params": built.params,
        "macs": built.macs,
        "files": files,
        "fusion": fuse_report.to_dict(),
        "checks": [c.to_dict() for c in checks],
        "options": options.to_dict(),
        "stages": [{"name": s.name, "seconds": round(s.seconds, 3), "detail": s.detail} for s in stages],
        "total_seconds": round(time.perf_counter() - total_started, 3),
        "versions": {"edgekit": __version__, "torch": torch.__version__, "onnx": onnx_version(),
                     "onnxruntime": _ort_version(), "python": platform.python_version()},
    }


def _export(
    name_or_module: Any,
    alpha: float,
    res: int | None,
    out_dir: str | os.PathLike | None,
    options: ExportOptions | None,
    on_progress: Callable[[StageTime], None] | None,
    interrupted: list[int],
) -> ExportResult:
    import torch

    options = options or ExportOptions()
    stages: list[StageTime] = []

    def report(stage: StageTime) -> None:
        if interrupted:  # a signal that a finalizer swallowed during this stage
            raise Terminated() if signal.SIGTERM in interrupted else KeyboardInterrupt
        stages.append(stage)
        if on_progress is not None:
            on_progress(stage)

    total_started = started = time.perf_counter()
    _check_formats_available(options.formats)
    built = _build(name_or_module, alpha, res, options)
    out = check_output_folder(out_dir, "--out") if out_dir is not None else default_out_dir(built.name, built.alpha,
                                                                                         built.res)
    stem = stem_for(built.name, built.alpha, built.res)
    report(StageTime("build", time.perf_counter() - started,
                     f"{built.name} alpha {built.alpha:g} res {built.res}, weights {built.weights}"))

    created = _prepare_out_dir(out, stem)
    staging: Path | None = None
    try:
        _remove_stale_staging(out)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
        started = time.perf_counter()
        fused, fuse_report = fuse(built.reference, res=built.res)
        report(StageTime("fuse", time.perf_counter() - started, fuse_report.describe()))

        batch = 2 if options.dynamic_batch else 1  # batch 2: torch.export specialises an example batch of 1
        example = torch.randn(batch, 3, built.res, built.res, generator=torch.Generator().manual_seed(0))
        metadata = _metadata(built, options, fuse_report.bn_folded)
        job = WriteJob(fused, example, metadata, options, lambda *a: None, reference=built.reference)
        written, details = _write_formats(job, staging, stem, options, report)

        checks = _check(written, built, metadata, options, report) if options.verify else ()

        manifest = _manifest(built, stem, options, written, details, fuse_report, checks, stages, total_started,
                             metadata)
        try:
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        except OSError as exc:
            raise write_error(exc, f"the manifest in {str(out)!r}", ExportFailed) from None
        names = [p.name for p in written.values()] + [
            c for d in details.values() for c in d.get("companions", [])] + [MANIFEST]
        if interrupted:
            raise Terminated() if signal.SIGTERM in interrupted else KeyboardInterrupt
        _commit(staging, out, names)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first; rmdir refuses a folder someone else put files in meanwhile
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    files = {fmt: out / p.name for fmt, p in written.items()}
    files["manifest"] = out / MANIFEST
    return ExportResult(out, files, tuple(stages), fuse_report, checks, manifest)


def _check(written: dict[str, Path], built: _Built, metadata: Metadata, options: ExportOptions,
           report: Callable[[StageTime], None]) -> tuple[CheckResult, ...]:
    """The self-check stage: every written file against the unfused reference; a failure fails the export."""
    started = time.perf_counter()
    checks = self_check(written, built.reference, metadata, (1, 4) if options.dynamic_batch else (1,))
    exact = [c for c in checks if not any(c.format.endswith(f"_{p}") for p in ("int8", "fp16"))]
    reduced = sorted({c.format for c in checks} - {c.format for c in exact})
    parts = []
    if exact:
        worst = max(exact, key=lambda c: c.max_abs_err)
        parts.append(f"worst max|err| {worst.max_abs_err:.2e} ({worst.format}, batch {worst.batch})")
    if reduced:
        parts.append(f"{', '.join(reduced)} within {'their presets' if len(reduced) > 1 else 'its preset'}")
    report(StageTime("check", time.perf_counter() - started,
                     f"{'ok' if all(c.ok for c in checks) else 'FAILED'}: {'; '.join(parts)}"))
    failed = [c for c in checks if not c.ok]
    if failed:
        c = failed[0]
        raise ExportFailed(f"self-check of the {c.format} file failed ({c.detail}); nothing was written")
    return checks


def _check_formats_available(formats: tuple[str, ...]) -> None:
    """A format whose optional dependency is missing fails before any work, naming the extra."""
    from .errors import MissingExtra

    for name in formats:
        fmt = FORMATS[name]
        if not fmt.available():
            raise MissingExtra(f"--format {name} needs the optional package {fmt.requires!r}, which is not "
                               f"installed; install it with: pip install -e '.[{fmt.extra}]'")


def _ort_version() -> str:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "not installed"


__all__ = ["export", "ExportOptions", "ExportResult", "StageTime", "CheckResult", "FORMATS", "Format", "MANIFEST",
           "STAGING_PREFIX", "self_check", "stem_for", "default_out_dir", "Terminated", "interrupts_remembered"]
