"""Which file, in which precision, on which runtime: one verified table of every artifact on every runtime.

``compare`` answers the deployment question in one run. For a model name it exports what is missing (every format x
the precisions it writes, through ``edgekit.export``); for an export folder it reads the manifest; for files it
takes them as they are. Then, for every artifact on every runtime that runs its format (``runtimes_for``: a new
format or runtime adds rows without an edit here), one after the other, never concurrently:

1. **verify** against the PyTorch reference (``edgekit.verify``, the file's own tolerance preset: fp32, fp16, int8);
2. **time** it with ``edgekit.bench``: same threads, same seeded inputs, same warm-up and run count for every row;
3. with ``data``, **score** it on labelled images (``edgekit.eval``) and the drop against eager PyTorch.

The eager PyTorch reference is timed (and scored) the same way, so each row has its speedup over it. The
recommendation is the fastest row that passed its tolerance (and, with data, lost at most ``max_drop`` top-1
points); a row that failed, broke or was skipped is never recommended. A runtime that is not installed is a
"skipped" row naming the extra to install, and a runtime that cannot run an artifact gives that row an error while
the others go on.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import BadArgument, BadModelFile, EdgekitError, first_line
from .formats import FORMATS, artifact_key, format_of
from .metadata import PRECISIONS
from .options import opt, validate
from .parsing import parse_list
from .runtimes import RuntimeSpec, get_runtime, runtimes_for

#: progress(index, total, row label, stage): stage is export, verify, bench, eval or done
CompareProgress = Callable[[int, int, str, str], None]
#: largest manifest read (a real one is a few KB)
MAX_MANIFEST_BYTES = 16 << 20
EAGER = "PyTorch eager"
#: passing rows this close to the recommendation's p50 are named with it: a difference that small is noise
TIE = 0.10


@dataclass(frozen=True)
class CompareOptions:
    """What to compare and how each row is measured; validated once, here."""

    formats: tuple[str, ...] | None = opt(None, kind="list", metavar="LIST",
                                          help="formats to compare (default: every registered format)")
    precisions: tuple[str, ...] | None = opt(None, kind="list", metavar="LIST",
                                             help="precisions to compare: fp32,fp16,int8 (default: every precision "
                                                  "each format writes)")
    runtimes: tuple[str, ...] | None = opt(None, kind="list", metavar="LIST",
                                           help="runtimes to time on (default: every registered one; one that is not "
                                                "installed is a skipped row)")
    calib: str | None = opt(None, kind="path", metavar="SOURCE",
                            help="int8 calibration images when compare exports int8 (default: synthetic, which "
                                 "proves agreement only; pass images for an accuracy claim)")
    data: str | None = opt(None, kind="path", metavar="DIR", help="labelled images (class sub-folders or an .npz): "
                                                                  "top-1 accuracy and drop per row")
    limit: int | None = opt(None, kind="int", metavar="N", what="--limit", lo=1, hi=10_000_000, example="--limit 500",
                            help="with --data: score at most N images")
    max_drop: float = opt(1.0, kind="float", metavar="POINTS", what="--max-drop", lo=0.0, hi=100.0,
                          example="--max-drop 1.0", help="with --data: largest top-1 drop (points) a recommended "
                                                         "row may have")
    threads: int | None = opt(None, kind="int", metavar="N", what="--threads", lo=1, hi=256, example="--threads 2",
                              help="intra-op threads of every row (default: the physical cores available)")
    warmup: int = opt(10, kind="int", metavar="N", what="--warmup", lo=0, hi=1_000_000, example="--warmup 10",
                      help="warm-up runs before each row's timing")
    iters: int | None = opt(None, kind="int", metavar="N", what="--iters", lo=1, hi=1_000_000, example="--iters 200",
                            help="timed runs per row (default 200)")
    duration_s: float | None = opt(None, kind="float", flag="--duration", metavar="S", what="--duration", lo=0.0,
                                   lo_open=True, hi=3600.0, example="--duration 3",
                                   help="time each row for S seconds instead of a number of runs")
    weights: str | None = opt(None, kind="path", metavar="W", help="with NAME: 'imagenet' or a state_dict file "
                                                                   "(default: seeded)")

    def __post_init__(self) -> None:
        put = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen dataclass)
        for key, what, known, example in (("formats", "format", tuple(FORMATS), "onnx,torchscript"),
                                          ("precisions", "precision", PRECISIONS, "fp32,int8")):
            if getattr(self, key) is not None:
                names = [n.lower() for n in parse_list(getattr(self, key), f"--{key}", f"--{key} {example}")]
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise BadArgument(f"unknown {what} {unknown[0]!r}; known {what}s: {', '.join(known)}")
                put(key, tuple(dict.fromkeys(names)))
        if self.runtimes is not None:
            names = parse_list(self.runtimes, "--runtimes", "--runtimes onnxruntime,openvino")
            put("runtimes", tuple(dict.fromkeys(get_runtime(n).name for n in names)))
        if self.iters is not None and self.duration_s is not None:
            raise BadArgument("pass either --iters or --duration, not both")
        validate(self, ("limit", "max_drop", "threads", "warmup", "iters", "duration_s"))
        if self.data is not None:
            if not Path(str(self.data)).exists():
                raise BadArgument(f"--data {str(self.data)!r} does not exist; pass a folder of labelled images (one "
                                  "sub-folder per class) or an .npz with x and y")
            put("data", str(self.data))
        elif self.limit is not None:
            raise BadArgument("--limit applies to --data; pass --data DIR or drop --limit")

    def to_dict(self) -> dict:
        return asdict(self)

    def bench_options(self, runtime: str, threads: int) -> Any:
        from .bench import BenchOptions

        return BenchOptions(runtime=runtime, threads=threads, warmup=self.warmup, duration_s=self.duration_s,
                            iters=self.iters if self.iters is not None or self.duration_s is not None else 200)


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: str
    precision: str
    size_bytes: int
    note: str = ""  # e.g. the file differs from the manifest's sha256
    error: str = ""  # the artifact cannot be used at all (missing, unreadable)

    @functools.cached_property
    def metadata(self) -> Any:
        """The file's edgekit metadata (read once), None without it or when it cannot be read."""
        from .formats import read_metadata

        try:
            return None if self.error else read_metadata(self.path)
        except EdgekitError:
            return None

    @property
    def model(self) -> str | None:
        """The model its metadata describes ("mobilenet_v2 alpha 0.35 res 64 seed:0"), None without metadata."""
        meta = self.metadata
        return None if meta is None else f"{meta.model} alpha {meta.alpha:g} res {meta.res} {meta.weights}"

    @property
    def synthetic_calibration(self) -> bool:
        """Whether it is an INT8 file calibrated on synthetic inputs (its own quantization record says so)."""
        calibration = ((self.metadata.quantization or {}).get("calibration")
                       if self.precision == "int8" and self.metadata is not None else None)
        return isinstance(calibration, dict) and calibration.get("kind") == "synthetic"


@dataclass(frozen=True)
class CompareRow:
    """One artifact on one runtime (or the eager reference, or a skipped combination). Latencies in ms."""

    artifact: str
    format: str
    precision: str
    runtime: str
    provider: str = ""  # what really ran it, as the runtime reports it
    model: str | None = None  # the model the artifact's metadata describes (speedups and drops are within one)
    path: str | None = None
    size_bytes: int | None = None
    tolerance: str | None = None
    verified: bool | None = None  # None: not verified (the reference itself, skipped, or it did not open)
    max_abs_err: float | None = None
    peak_rel_err: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    accuracy: float | None = None  # top-1 on --data, 0..1
    accuracy_drop: float | None = None  # points below eager PyTorch
    latency_ms: dict | None = None  # min, mean, p50, p90, p99, ... (edgekit.bench's LatencyStats)
    items_per_s: float | None = None
    speedup: float | None = None  # eager p50 / this p50
    verdict: str = ""  # ok, FAIL, error, skipped, reference
    detail: str = ""

    @property
    def p50(self) -> float | None:
        return self.latency_ms["p50"] if self.latency_ms else None

    @property
    def label(self) -> str:
        return f"{self.artifact} on {self.runtime}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CompareResult:
    model: str | None
    rows: tuple[CompareRow, ...]
    recommendation: CompareRow | None
    threads: int
    system: dict
    options: CompareOptions
    notes: tuple[str, ...] = ()
    timestamp: str = ""
    files: dict = field(default_factory=dict)  # what compare wrote: csv, png

    def to_dict(self) -> dict:
        return {"model": self.model, "threads": self.threads, "rows": [r.to_dict() for r in self.rows],
                "recommendation": self.recommendation.to_dict() if self.recommendation else None,
                "recommendation_text": recommendation_text(self), "notes": list(self.notes),
                "system": self.system, "options": self.options.to_dict(), "timestamp": self.timestamp,
                "files": {k: str(v) for k, v in self.files.items()}}

    def to_text(self) -> str:
        from .compare_report import format_result

        return format_result(self)


def recommendation_text(result: CompareResult) -> str:
    best = result.recommendation
    if best is None:
        return "no recommendation: no row passed its tolerance" + (" within --max-drop" if result.options.data else "")
    why = "the fastest artifact that passes its tolerance"
    if result.options.data:
        why += f" and loses at most {result.options.max_drop:g} top-1 points"
    speed = f", {best.speedup:.2f}x eager PyTorch" if best.speedup else ""
    text = (f"ship {best.artifact} ({best.format} {best.precision}) on {best.runtime} {best.provider}: p50 "
            f"{best.p50:.3f} ms{speed}; {why}")
    close = [r for r in result.rows if r is not best and r.verdict == "ok" and r.p50 is not None
             and r.p50 <= (1 + TIE) * best.p50]
    if close:
        text += (f" (within {100 * TIE:.0f}%: " + ", ".join(f"{r.artifact} on {r.runtime} at {r.p50:.3f} ms"
                                                           for r in close) + "; a tie at this machine's noise)")
    return text


# --------------------------------------------------------------------------------------------------------------------
# Artifacts: from a model name (exported here), an export folder's manifest, or files
# --------------------------------------------------------------------------------------------------------------------
def _wanted(options: CompareOptions) -> list[tuple[str, str]]:
    """(format, precision) pairs to compare, in table order; a precision a format lacks is left out."""
    formats = options.formats or tuple(FORMATS)
    return [(f, p) for f in formats for p in FORMATS[f].precisions
            if options.precisions is None or p in options.precisions]


def read_manifest(folder: Path) -> list[Artifact]:
    """The artifacts an export folder's manifest lists (untrusted input: every field checked, names stay inside)."""
    from .staging import MANIFEST

    path = folder / MANIFEST
    if not path.is_file():
        raise BadArgument(f"{str(folder)!r} has no {MANIFEST}, so it is not an edgekit export folder; pass the files "
                          "themselves (edgekit compare FILE...) or a model name to export")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError("it is implausibly large")
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["files"] if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError("it has no list of files")
        return [a for a in (_manifest_entry(folder, e) for e in entries[:1000]) if a is not None]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BadModelFile(f"{str(path)!r} is damaged ({first_line(exc, 80)}); re-export the folder") from None


def _manifest_entry(folder: Path, entry: Any) -> Artifact | None:
    if not isinstance(entry, dict):
        raise ValueError("a file entry is not an object")
    name, fmt, precision = entry.get("name"), entry.get("format"), entry.get("precision", "fp32")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"file name {name!r} is not a plain file name")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        return None  # a sidecar ('onnx sidecar') or a format this edgekit does not know
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} of {name} is not one of {', '.join(PRECISIONS)}")
    file = folder / name
    if not file.is_file():
        return Artifact(file, fmt, precision, 0, error="listed in the manifest but not in the folder")
    note = ""
    sha = entry.get("sha256")
    if isinstance(sha, str) and _sha256(file) != sha:
        note = "the file differs from the manifest (sha256): it changed after the export"
    return Artifact(file, fmt, precision, file.stat().st_size, note)


def _sha256(path: Path) -> str:
    from .files import sha256_file

    return sha256_file(path)


def _from_files(paths: Sequence[str | os.PathLike]) -> list[Artifact]:
    from .files import check_input_file
    from .formats import read_metadata

    out = []
    for item in paths:
        file = check_input_file(item, "file", cls=BadArgument, hint="pass exported model files, an export folder "
                                                                   "or a model name")
        try:
            fmt = format_of(file)
            meta = read_metadata(file)
            out.append(Artifact(file, fmt.name, meta.precision if meta else "fp32", file.stat().st_size))
        except EdgekitError as exc:
            out.append(Artifact(file, "?", "?", file.stat().st_size, error=str(exc)))
    return out


def _from_name(name: str, alpha: float | None, res: int | None, out_dir: str | os.PathLike | None,
               options: CompareOptions, notes: list[str], progress: CompareProgress) -> list[Artifact]:
    """Artifacts of the model's export folder, exporting first when the folder lacks any that were asked for.

    Exporting replaces a folder's export as a whole, so a re-export asks for what the folder had plus what is
    missing: nothing that was there is lost.
    """
    from .export import ExportOptions, default_out_dir, export
    from .models import check_alpha, check_res, get_spec

    spec = get_spec(name)
    alpha, res = check_alpha(1.0 if alpha is None else alpha), check_res(spec, res)
    folder = Path(out_dir) if out_dir is not None else default_out_dir(spec.name, alpha, res)
    wanted = [(f, p) for f, p in _wanted(options) if FORMATS[f].available()]
    have = _existing(folder, spec.name, alpha, res, options.weights)
    missing = [(f, p) for f, p in wanted if artifact_key(f, p) not in have]
    if missing:
        pairs = wanted + [(a.format, a.precision) for a in have.values()]
        precisions = tuple(dict.fromkeys(p for _, p in pairs))
        calib = options.calib
        if "int8" in precisions and calib is None:
            calib = "synthetic"
        progress(0, 0, f"{spec.name} alpha {alpha:g} res {res}", "export")
        export(spec.name, alpha=alpha, res=res, out_dir=folder, options=ExportOptions(
            formats=tuple(dict.fromkeys(f for f, _ in pairs)), precision=precisions, calib=calib,
            weights=options.weights))
        have = {artifact_key(a.format, a.precision): a for a in read_manifest(folder)}
    return [have[artifact_key(f, p)] for f, p in wanted if artifact_key(f, p) in have]


def _existing(folder: Path, model: str, alpha: float, res: int, weights: str | None) -> dict[str, Artifact]:
    """The folder's artifacts when it holds this model's export with these weights (else nothing: re-export)."""
    from .staging import MANIFEST, stem_for

    if weights is not None:  # a weights file may have changed since: export again
        return {}
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("stem") != stem_for(model, alpha, res) or manifest.get("weights") != "seed:0":
            return {}
        return {artifact_key(a.format, a.precision): a for a in read_manifest(folder) if not a.error and not a.note}
    except (OSError, ValueError, AttributeError, EdgekitError):
        return {}


def _is_name(targets: Sequence[str | os.PathLike]) -> bool:
    """One target that is no existing path and does not look like one: a model name."""
    text = os.fspath(targets[0]) if targets else ""
    return len(targets) == 1 and not Path(text).exists() and Path(text).suffix == "" and os.sep not in str(text)


def _artifacts(targets: Sequence[str | os.PathLike], alpha: float | None, res: int | None,
               out_dir: str | os.PathLike | None, options: CompareOptions, notes: list[str],
               progress: CompareProgress) -> list[Artifact]:
    if not targets:
        raise BadArgument("nothing to compare; pass a model name, an export folder or files")
    first = Path(os.fspath(targets[0]))
    if _is_name(targets):
        return _from_name(str(targets[0]), alpha, res, out_dir, options, notes, progress)
    if alpha is not None or res is not None or out_dir is not None or options.weights is not None:
        raise BadArgument("--alpha, --res, --out and --weights describe a model to export; an export folder and "
                          "files carry their own")
    if len(targets) == 1 and first.is_dir():
        found = read_manifest(first)
    else:
        found = _from_files(targets)
    keep = [a for a in found if a.error or ((options.formats is None or a.format in options.formats)
                                            and (options.precisions is None or a.precision in options.precisions))]
    if not keep:
        raise BadArgument(f"none of the artifacts in {str(targets[0])!r} matches --formats/--precisions")
    return keep


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------
def _plan(artifacts: Sequence[Artifact], options: CompareOptions) -> list[tuple[Artifact, RuntimeSpec | None, str]]:
    """(artifact, runtime, why skipped) for every row, in table order; runtime None for an unusable artifact."""
    rows: list[tuple[Artifact, RuntimeSpec | None, str]] = []
    for artifact in artifacts:
        if artifact.error:
            rows.append((artifact, None, ""))
            continue
        for spec in runtimes_for(artifact.format):
            if options.runtimes is not None and spec.name not in options.runtimes:
                continue
            rows.append((artifact, spec, "" if spec.available() else f"skipped: {spec.install_hint()}"))
    return rows


def _skipped_formats(options: CompareOptions) -> list[CompareRow]:
    """A format whose optional dependency is missing: one row saying what to install."""
    return [CompareRow(f"({name})", name, ",".join(fmt.precisions), "-", verdict="skipped",
                       detail=f"skipped: pip install -e '.[{fmt.extra}]'")
            for name, fmt in FORMATS.items()
            if (options.formats is None or name in options.formats) and not fmt.available()]


def _measure_row(artifact: Artifact, spec: RuntimeSpec, options: CompareOptions, threads: int,
                 progress: Callable[[str], None]) -> CompareRow:
    """Verify, time and (with data) score one artifact on one runtime; a failure is the row's verdict."""
    from .bench import bench
    from .verify import VerifyOptions, verify

    row = CompareRow(artifact.path.name, artifact.format, artifact.precision, spec.name, model=artifact.model,
                     path=str(artifact.path), size_bytes=artifact.size_bytes, detail=artifact.note)
    try:
        progress("verify")
        report = verify(artifact.path, options=VerifyOptions(runtime=spec.name))
        outs = [o for c in report.cases for o in c.outputs]
        row = replace(row, provider=", ".join(report.active_providers), tolerance=report.tolerance.name,
                      verified=report.passed, max_abs_err=max((o.max_abs_err for o in outs), default=None),
                      peak_rel_err=max((o.peak_rel_err for o in outs), default=None),
                      cosine=min((o.cosine for o in outs), default=None),
                      top1_agreement=min((o.top1 for o in outs if o.top1 is not None), default=None),
                      detail="; ".join(x for x in (artifact.note, "" if report.passed else report.summary()) if x))
        progress("bench")
        timing = bench(artifact.path, options=options.bench_options(spec.name, threads))
        row = replace(row, latency_ms=timing.latency_ms.to_dict(), items_per_s=timing.throughput,
                      provider=", ".join(timing.providers))
        if options.data is not None:
            progress("eval")
            row = replace(row, accuracy=_score(artifact.path, spec.name, options, threads))
    except EdgekitError as exc:
        return replace(row, verdict="error", detail=str(exc))
    except Exception as exc:  # noqa: BLE001 - a runtime that crashes on one artifact must not stop the others
        return replace(row, verdict="error", detail=f"{type(exc).__name__}: {first_line(exc)}")
    return replace(row, verdict="ok" if row.verified else "FAIL")


def _score(path: Path, runtime: str, options: CompareOptions, threads: int) -> float:
    from .eval import EvalOptions, evaluate

    return evaluate(path, options.data, options=EvalOptions(runtime=runtime, threads=threads, limit=options.limit)).top1


def _eager_row(artifact: Artifact, options: CompareOptions, threads: int) -> CompareRow:
    """The eager PyTorch reference of ``artifact``'s model, timed (and scored) through the same loops as the files."""
    from .bench import bench_runner
    from .formats import read_metadata
    from .reference import resolve_reference
    from .runtimes import RunOptions
    from .runtimes.torch import TorchRunner

    metadata = read_metadata(artifact.path)
    spec = resolve_reference(metadata, path=artifact.path)
    row = CompareRow(EAGER, "eager", "fp32", "torch", provider="torch cpu", model=artifact.model,
                     verdict="reference", detail=spec.describe())

    def runner() -> TorchRunner:
        made = TorchRunner.from_module(spec.build(), label=EAGER, res=spec.res,
                                       options=RunOptions(threads=threads), output_names=(metadata.output_name,))
        made.metadata = metadata  # the preprocessing eval needs: the same as the files'
        return made

    try:
        timing = bench_runner(runner(), options=options.bench_options("torch", threads))
        row = replace(row, latency_ms=timing.latency_ms.to_dict(), items_per_s=timing.throughput)
        if options.data is not None:
            from .eval import EvalOptions, evaluate_runner

            report = evaluate_runner(runner(), options.data, options=EvalOptions(threads=threads, limit=options.limit))
            row = replace(row, accuracy=report.top1)
    except EdgekitError as exc:
        return replace(row, verdict="error", detail=str(exc))
    return row


def _finish(rows: list[CompareRow], eager: CompareRow | None, options: CompareOptions) -> list[CompareRow]:
    """Speedups over eager PyTorch, accuracy drops and the --max-drop verdicts."""
    out = []
    base_p50 = eager.p50 if eager is not None else None
    base_acc = eager.accuracy if eager is not None else None
    for row in rows:
        if eager is None or row.model != eager.model:  # another model than the reference: nothing to compare with
            out.append(row)
            continue
        if row.p50 and base_p50:
            row = replace(row, speedup=base_p50 / row.p50)
        if row.accuracy is not None and base_acc is not None:
            row = replace(row, accuracy_drop=100 * (base_acc - row.accuracy))
            if row.verdict == "ok" and row.accuracy_drop > options.max_drop + 1e-9:
                row = replace(row, verdict="FAIL", detail=f"top-1 drop {row.accuracy_drop:.2f} points > --max-drop "
                                                          f"{options.max_drop:g}")
        out.append(row)
    return out


def _recommend(rows: Sequence[CompareRow]) -> CompareRow | None:
    passing = [r for r in rows if r.verdict == "ok" and r.verified and r.p50 is not None]
    return min(passing, key=lambda r: r.p50) if passing else None  # type: ignore[arg-type,return-value]


def compare(targets: Sequence[str | os.PathLike] | str, *, alpha: float | None = None, res: int | None = None,
            out_dir: str | os.PathLike | None = None, options: CompareOptions | None = None,
            progress: CompareProgress | None = None) -> CompareResult:
    """Verify, time and (with ``options.data``) score every artifact on every runtime; see the module docstring.

    ``targets``: a registered model name (exported into ``out_dir``, default ``exports/<stem>``, when artifacts
    are missing), an export folder (its manifest), or exported files.
    """
    from .bench.system import default_threads, load_average, system_info

    options = options or CompareOptions()
    progress = progress or (lambda *_: None)
    targets = [targets] if isinstance(targets, (str, os.PathLike)) else list(targets)
    notes: list[str] = []
    load = load_average()
    artifacts = _artifacts(targets, alpha, res, out_dir, options, notes, progress)
    if any(a.synthetic_calibration for a in artifacts) and options.data is None:
        notes.append("int8 was calibrated on synthetic inputs: its rows prove agreement with PyTorch, not accuracy; "
                     "pass --calib IMAGES (and --data) for that")
    threads = options.threads or default_threads()
    plan = _plan(artifacts, options)
    rows: list[CompareRow] = []
    for i, (artifact, spec, skipped) in enumerate(plan, 1):
        label = f"{artifact.path.name} on {spec.name if spec else '-'}"
        if artifact.error or spec is None:
            rows.append(CompareRow(artifact.path.name, artifact.format, artifact.precision, "-", path=str(artifact.path),
                                   verdict="error", detail=artifact.error))
        elif skipped:
            rows.append(CompareRow(artifact.path.name, artifact.format, artifact.precision, spec.name,
                                   path=str(artifact.path), size_bytes=artifact.size_bytes, verdict="skipped",
                                   detail=skipped))
        else:
            rows.append(_measure_row(artifact, spec, options, threads,
                                     lambda stage, i=i, label=label: progress(i, len(plan) + 1, label, stage)))
        progress(i, len(plan) + 1, label, "done")
    eager = _eager(artifacts, options, threads, progress, len(plan) + 1)
    rows = _finish(rows + (_skipped_formats(options) if _is_name(targets) else []), eager, options)
    if eager is not None:
        rows.append(eager)
    models = {r.model for r in rows if r.model}
    if len(models) > 1:
        notes.append(f"the files hold {len(models)} different models; speedups and drops are against "
                     f"{eager.model if eager else 'none'} only")
    first = next((a.model for a in artifacts if a.model), None)
    return CompareResult(model=eager.model if eager else first, rows=tuple(rows),
                         recommendation=_recommend(rows),
                         threads=threads, system=system_info(load=load, runtime="compare").to_dict(),
                         options=options, notes=tuple(notes),
                         timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _eager(artifacts: Sequence[Artifact], options: CompareOptions, threads: int, progress: CompareProgress,
           index: int) -> CompareRow | None:
    """The eager row, for the model of the first artifact with edgekit metadata (None when none has any)."""
    first = next((a for a in artifacts if a.model is not None), None)
    if first is None:
        return None
    progress(index, index, EAGER, "bench")
    row = _eager_row(first, options, threads)
    progress(index, index, EAGER, "done")
    return row


__all__ = ["compare", "CompareOptions", "CompareResult", "CompareRow", "Artifact", "read_manifest",
           "recommendation_text"]
