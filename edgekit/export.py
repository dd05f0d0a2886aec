"""Export: build -> fuse Conv-BN -> TorchScript / ONNX / pt2 -> self-check -> manifest, written atomically.

A table of formats (name, suffix, writer) with one small function per format, Ultralytics style. Every artifact is
written into a staging folder inside the destination and moved into place only when the whole export, self-check
included, has succeeded; the moves happen under a lock (two exports to one folder never interleave) with SIGINT
held back, so an interrupted or failed export leaves the folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn

from . import __version__
from .errors import BadArgument, EdgekitError, ExportFailed
from .fuse import FuseReport, fuse
from .metadata import TORCHSCRIPT_EXTRA_FILE, Metadata
from .weights import sha256_file

MANIFEST = "manifest.json"
STAGING_PREFIX = ".edgekit-staging-"


# --- options and results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how; validated once, here."""

    formats: tuple[str, ...] = ("onnx", "torchscript")
    opset: int | None = None  # None: the exporter's default (>= 18)
    dynamic_batch: bool = False
    simplify: bool = True
    verify: bool = True  # the self-check; a failing check fails the export
    weights: str | None = None  # None (seeded), "imagenet", or a state_dict path
    num_classes: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        formats = self.formats
        if isinstance(formats, str):
            formats = tuple(f for f in formats.split(",") if f.strip())
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
                opset = int(self.opset)
            except (TypeError, ValueError):
                raise BadArgument(f"opset must be an integer, got {self.opset!r}; e.g. --opset 18") from None
            if not 18 <= opset <= _max_opset():
                raise BadArgument(
                    f"opset {opset} is not supported by the ONNX exporter; use 18..{_max_opset()} or leave --opset out"
                )
            object.__setattr__(self, "opset", opset)
        for key in ("dynamic_batch", "simplify", "verify"):
            if not isinstance(getattr(self, key), bool):
                raise BadArgument(f"{key} must be true or false, got {getattr(self, key)!r}")
        from .models import check_num_classes
        from .weights import check_seed

        check_num_classes(self.num_classes)
        check_seed(self.seed)
        if self.weights is not None:
            if not isinstance(self.weights, (str, os.PathLike)) or not str(self.weights).strip():
                raise BadArgument(f"weights must be 'imagenet' or a state_dict path, got {self.weights!r}")
            object.__setattr__(self, "weights", str(self.weights))

    def to_dict(self) -> dict:
        return asdict(self)


def _max_opset() -> int:
    import onnx.defs

    return min(onnx.defs.onnx_opset_version(), 23)


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float
    detail: str = ""


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


# --- the format table -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What a format writer gets: the fused model, an example input, the metadata and where to write."""

    fused: nn.Module
    example: torch.Tensor
    metadata: Metadata
    dynamic_batch: bool
    opset: int | None
    simplify: bool
    report: Callable[[StageTime], None]


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    write: Callable[[_Job, Path], dict]  # returns details for the manifest


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters are chatty (progress prints, deprecation and tracer warnings): users see our stage lines."""
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.fx")]
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


def _write_torchscript(job: _Job, path: Path) -> dict:
    # TorchScript is deprecated upstream (torch.export / pt2 is its successor) but it is still what many mobile
    # runtimes load; trace + freeze gives a self-contained module that reloads with torch.jit.load.
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(job.fused, job.example, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        torch.jit.save(frozen, str(path), _extra_files={TORCHSCRIPT_EXTRA_FILE: job.metadata.to_json()})
    return {}


def _write_pt2(job: _Job, path: Path) -> dict:
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if job.dynamic_batch else None
    with _quiet(), torch.no_grad():
        program = torch.export.export(job.fused, (job.example,), dynamic_shapes=_dynamic_for(job.fused, dynamic))
        torch.export.save(program, str(path), extra_files={TORCHSCRIPT_EXTRA_FILE: job.metadata.to_json()})
    return {}


def _dynamic_for(model: nn.Module, dynamic: dict | None) -> dict | None:
    """dynamic_shapes keyed by the name of the model's forward argument (``x`` for torchvision models)."""
    if dynamic is None:
        return None
    import inspect

    params = [p for p in inspect.signature(model.forward).parameters if p != "self"]
    return {params[0]: dynamic["x"]}


def _write_onnx(job: _Job, path: Path) -> dict:
    import onnx

    started = time.perf_counter()
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if job.dynamic_batch else None
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            job.fused,
            (job.example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=[job.metadata.input_name],
            output_names=[job.metadata.output_name],
            opset_version=job.opset,
            dynamic_shapes=_dynamic_for(job.fused, dynamic),
            optimize=True,
        )
    model = onnx.load(str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    onnx.checker.check_model(model, full_check=True)
    job.report(StageTime("onnx", time.perf_counter() - started, f"opset {opset}, {len(model.graph.node)} nodes"))

    details: dict = {"opset": opset, "nodes_exported": len(model.graph.node)}
    if job.simplify:
        started = time.perf_counter()
        model, outcome = _simplify(model, job)
        details["simplify"] = outcome
        job.report(StageTime("simplify", time.perf_counter() - started, outcome))
    bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    if bn:
        raise ExportFailed(f"{bn} BatchNormalization nodes survived fusion in the ONNX graph; please report this model")
    metadata = replace(job.metadata, opset=opset)
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    details["nodes"] = len(model.graph.node)
    return details


def _simplify(model, job: _Job):  # -> (ModelProto, str)
    """onnxsim, re-checked; a simplification that fails or changes nothing is reported, never fatal."""
    import onnx
    import onnxsim

    before = len(model.graph.node)
    shape = [1, *job.example.shape[1:]]
    try:
        with _quiet():
            simplified, ok = onnxsim.simplify(model, test_input_shapes={job.metadata.input_name: shape})
        if not ok:
            return model, "skipped: onnxsim's own check failed, kept the exported graph"
        onnx.checker.check_model(simplified, full_check=True)
    except Exception as exc:  # onnxsim raises many types; a failed optimisation must not fail the export
        return model, f"skipped: onnxsim failed ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"
    after = len(simplified.graph.node)
    if after == before:
        return simplified, f"no change ({before} nodes)"
    return simplified, f"{before} -> {after} nodes"


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", ".onnx", _write_onnx),
    "torchscript": Format("torchscript", ".pt", _write_torchscript),
    "pt2": Format("pt2", ".pt2", _write_pt2),
}


# --- self-check ---------------------------------------------------------------------------------------------------


def self_check(
    files: dict[str, Path], reference: nn.Module, metadata: Metadata, batches: tuple[int, ...]
) -> tuple[CheckResult, ...]:
    """Verify each artifact against the unfused eager reference with ``edgekit verify``'s own code and tolerances.

    One result per (file, batch): the worst max|err| over verify's input cases at that batch, ``ok`` only when
    verify passes the whole file (metadata and structure checks included), ``detail`` its one-line verdict.
    """
    from .verify import VerifyOptions, verify

    results = []
    for fmt, path in files.items():
        report = verify(path, options=VerifyOptions(batches=batches), reference=reference)
        for batch in batches:
            outputs = [o for c in report.cases if c.batch == batch for o in c.outputs]
            ran = all(c.error is None for c in report.cases if c.batch == batch)
            err = max((o.max_abs_err for o in outputs), default=float("inf")) if ran else float("inf")
            peak = max((o.ref_peak for o in outputs), default=0.0)
            results.append(CheckResult(path.name, fmt, batch, err, peak, report.passed, report.summary()))
    return tuple(results)


# --- atomic writes ------------------------------------------------------------------------------------------------


def _prepare_out_dir(out_dir: Path, stem: str) -> list[Path]:
    """Create ``out_dir`` if needed or explain why it cannot be used; returns the folders created, deepest first.

    A folder holding another export's manifest (another model, alpha or res) is refused: writing there would
    replace that export's manifest and leave its files undescribed. Re-exporting the same stem replaces it.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise BadArgument(f"output path {str(out_dir)!r} is a file, not a folder; choose another --out")
    manifest = out_dir / MANIFEST
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
            ours = old.get("generator", "").startswith("edgekit")
            old_stem = old.get("stem") or stem_for(old["model"], float(old["alpha"]), int(old["res"]))
        except (ValueError, OSError, AttributeError, KeyError, TypeError):
            ours, old_stem = False, None
        if not ours:
            raise BadArgument(
                f"{str(out_dir)!r} already holds a {MANIFEST} that edgekit did not write; choose another --out"
            )
        if old_stem != stem:
            raise BadArgument(
                f"{str(out_dir)!r} holds the export of {old_stem}; export {stem} to another --out "
                f"(or delete that folder first)"
            )
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=STAGING_PREFIX, delete=True)
        probe.close()
    except OSError as exc:
        raise ExportFailed(
            f"cannot write to output folder {str(out_dir)!r} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    return created


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive POSIX lock on the output folder itself while files are moved into place (no lock file left)."""
    try:
        import fcntl
    except ImportError:  # Windows: renames are still atomic one by one
        yield
        return
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while files are renamed into place, so a Ctrl-C cannot leave a mixed set.

    Python-level handlers that only record the signal: ``pthread_sigmask`` would block it for this thread alone, and
    a signal delivered to one of ONNX Runtime's or OpenMP's threads still interrupts the main one. A held signal is
    raised again, to the handler that was there before, once the renames are done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: installed outside Python, cannot be restored; leave it alone
            previous[signum] = signal.signal(signum, lambda s, _frame: held.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        signal.raise_signal(held[0])


@contextlib.contextmanager
def _interrupts_remembered() -> Iterator[list[int]]:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered.

    Python swallows an exception raised inside a finalizer (``__del__``, weakref callbacks: the exporters run many),
    so a KeyboardInterrupt can vanish there; the export checks the remembered flag between stages and before it
    commits, so a Ctrl-C is never lost. Only Python's own default handler is wrapped; a caller's handler is left alone.
    """
    remembered: list[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield remembered
        return

    def handler(signum: int, frame: object) -> None:
        remembered.append(signum)
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield remembered
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _remove_stale_staging(out_dir: Path) -> None:
    """Staging folders of exports that were killed outright (SIGKILL, power loss) and could not clean up."""
    for path in out_dir.glob(f"{STAGING_PREFIX}*"):
        pid_text = path.name[len(STAGING_PREFIX):].split("-", 1)[0]
        try:
            os.kill(int(pid_text), 0)
            continue  # that export is still running
        except (ValueError, ProcessLookupError):
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, owned by someone else


def _commit(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Move staged files into place, manifest last: the manifest always describes a complete set.

    Files the replaced export listed in its manifest but this one did not write (another format set) are removed
    after the new manifest is in place, so the folder never holds a stale model the manifest does not describe.
    Files edgekit did not list are never touched.
    """
    with _folder_lock(out_dir), _no_interrupt():
        stale: set[str] = set()
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
            old = json.loads((out_dir / MANIFEST).read_text())
            stale = {Path(str(f["name"])).name for f in old.get("files", [])} - set(names) - {MANIFEST}
        for name in names:
            os.replace(staging / name, out_dir / name)
        for name in stale:
            with contextlib.suppress(OSError):
                (out_dir / name).unlink()


# --- the main entry point -----------------------------------------------------------------------------------------


def default_out_dir(name: str, alpha: float, res: int) -> Path:
    return Path("exports") / stem_for(name, alpha, res)


def stem_for(name: str, alpha: float, res: int) -> str:
    return f"{name}_a{alpha:g}_r{res}"


def export(
    name_or_module: str | nn.Module,
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
    with _interrupts_remembered() as interrupted:
        if isinstance(name_or_module, nn.Module):
            modes = {m: m.training for m in name_or_module.modules()}
            try:
                return _export(name_or_module.eval(), alpha, res, out_dir, options, on_progress, interrupted)
            finally:
                for module, training in modes.items():
                    module.training = training
        return _export(name_or_module, alpha, res, out_dir, options, on_progress, interrupted)


def _export(
    name_or_module: str | nn.Module,
    alpha: float,
    res: int | None,
    out_dir: str | os.PathLike | None,
    options: ExportOptions | None,
    on_progress: Callable[[StageTime], None] | None,
    interrupted: list[int],
) -> ExportResult:
    from .complexity import count_complexity
    from .guards import check_memory
    from .models import build_model, check_alpha, check_res
    from .registry import get_spec

    options = options or ExportOptions()
    stages: list[StageTime] = []

    def report(stage: StageTime) -> None:
        if interrupted:  # a Ctrl-C that a finalizer swallowed during this stage
            raise KeyboardInterrupt
        stages.append(stage)
        if on_progress is not None:
            on_progress(stage)

    total_started = time.perf_counter()
    started = time.perf_counter()
    if isinstance(name_or_module, nn.Module):
        if res is None:
            raise BadArgument("exporting a module needs res=<pixels>")
        reference = name_or_module
        name = type(reference).__name__.lower()
        alpha = check_alpha(alpha)
        if isinstance(res, bool) or not isinstance(res, int) or res < 1:
            raise BadArgument(f"res must be a positive number of pixels, got {res!r}")
        with torch.no_grad():  # the module's own class count; options.num_classes only sizes models we build
            num_classes = int(reference(torch.zeros(1, 3, res, res)).shape[-1])
        mean, std = Metadata.__dataclass_fields__["mean"].default, Metadata.__dataclass_fields__["std"].default
        weights_desc, seed, weights_sha = "module", None, None
        params, macs, _ = count_complexity(reference, res, with_stages=False)
    else:
        spec = get_spec(name_or_module)
        name = spec.name
        num_classes = options.num_classes
        alpha = check_alpha(alpha)
        res = check_res(spec, res)
        check_memory(name, alpha, res, 2 if options.dynamic_batch else 1, what=f"exporting {name}")
        mean, std = spec.mean, spec.std
        reference, source = build_model(
            name, alpha=alpha, num_classes=options.num_classes, weights=options.weights, seed=options.seed
        )
        weights_desc, seed, weights_sha = source.describe(), source.seed, source.sha256
        from .complexity import info

        model_info = info(name, alpha=alpha, res=res, num_classes=options.num_classes)
        params, macs = model_info.params, model_info.macs
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(name, alpha, res)
    stem = stem_for(name, alpha, res)
    report(StageTime("build", time.perf_counter() - started, f"{name} alpha {alpha:g} res {res}, weights {weights_desc}"))

    created = _prepare_out_dir(out_dir, stem)
    staging: Path | None = None
    try:
        _remove_stale_staging(out_dir)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
        started = time.perf_counter()
        fused, fuse_report = fuse(reference, res=res)
        report(StageTime("fuse", time.perf_counter() - started, fuse_report.describe()))

        batch = 2 if options.dynamic_batch else 1  # batch 2: torch.export specialises an example batch of 1
        example = torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(0))
        import onnx

        metadata = Metadata(
            model=name,
            alpha=alpha,
            res=res,
            num_classes=num_classes,
            weights=weights_desc,
            seed=seed,
            weights_sha256=weights_sha,
            input_shape=("batch" if options.dynamic_batch else 1, 3, res, res),
            dynamic_batch=options.dynamic_batch,
            mean=tuple(mean),
            std=tuple(std),
            params=params,
            macs=macs,
            bn_folded=fuse_report.bn_folded,
            edgekit_version=__version__,
            torch_version=torch.__version__,
            onnx_version=onnx.__version__,
        )
        job = _Job(fused, example, metadata, options.dynamic_batch, options.opset, options.simplify, report)
        written: dict[str, Path] = {}
        details: dict[str, dict] = {}
        for fmt in options.formats:
            started = time.perf_counter()
            spec_fmt = FORMATS[fmt]
            path = staging / f"{stem}{spec_fmt.suffix}"
            try:
                details[fmt] = spec_fmt.write(job, path)
            except EdgekitError:
                raise
            except Exception as exc:
                first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
                raise ExportFailed(f"{fmt} export of {name} failed: {first}; try --format without {fmt}") from exc
            written[fmt] = path
            if fmt != "onnx":  # the ONNX writer reports its own stages (onnx, simplify)
                report(StageTime(fmt, time.perf_counter() - started, path.name))

        checks: tuple[CheckResult, ...] = ()
        if options.verify:
            started = time.perf_counter()
            checks = self_check(written, reference, metadata, (1, 4) if options.dynamic_batch else (1,))
            worst = max(checks, key=lambda c: c.max_abs_err)
            report(StageTime("check", time.perf_counter() - started,
                             f"{'ok' if all(c.ok for c in checks) else 'FAILED'}: worst max|err| {worst.max_abs_err:.2e} ({worst.format}, batch {worst.batch})"))
            failed = [c for c in checks if not c.ok]
            if failed:
                c = failed[0]
                raise ExportFailed(f"self-check of the {c.format} file failed ({c.detail}); nothing was written")

        manifest = {
            "generator": f"edgekit {__version__}",
            "stem": stem,
            "model": name,
            "alpha": alpha,
            "res": res,
            "num_classes": num_classes,
            "input": {"name": metadata.input_name, "shape": list(metadata.input_shape), "layout": "NCHW",
                      "mean": list(mean), "std": list(std)},
            "weights": weights_desc,
            "seed": seed,
            "params": params,
            "macs": macs,
            "files": [
                {"format": fmt, "name": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p), **details.get(fmt, {})}
                for fmt, p in written.items()
            ],
            "fusion": fuse_report.to_dict(),
            "checks": [c.to_dict() for c in checks],
            "options": options.to_dict(),
            "stages": [{"name": s.name, "seconds": round(s.seconds, 3), "detail": s.detail} for s in stages],
            "total_seconds": round(time.perf_counter() - total_started, 3),
            "versions": {"edgekit": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": _ort_version(), "python": platform.python_version()},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        names = [p.name for p in written.values()] + [MANIFEST]
        if interrupted:
            raise KeyboardInterrupt
        _commit(staging, out_dir, names)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first; rmdir refuses a folder someone else put files in meanwhile
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    files = {fmt: out_dir / p.name for fmt, p in written.items()}
    files["manifest"] = out_dir / MANIFEST
    return ExportResult(out_dir, files, tuple(stages), fuse_report, checks, manifest)


def _ort_version() -> str:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "not installed"
