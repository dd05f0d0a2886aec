"""Export presets: YAML files a user runs with ``edgekit export --config FILE``.

A file holds one export (a mapping of the keys below) or several: ``exports: [ {...}, {...} ]`` with optional
``defaults: {...}`` applied to each. The keys are the fields of :class:`ExportJob` and
:class:`~edgekit.export.ExportOptions` (the same declarations the CLI flags come from). Unknown keys and bad values
are rejected naming the key and the file, and the whole file is checked (every entry's model, numbers, weights file
and output folder, and folders two entries would share) before the first export, so a bad second entry never
leaves the first one written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import BadArgument, BadConfig, EdgekitError
from .export import ExportOptions, default_out_dir, stem_for
from .options import opt, preset_types

#: Largest preset file read (a real one is a few KB).
MAX_PRESET_BYTES = 1 << 20
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class ExportJob:
    """One (model, alpha, res) export with its options, as read from a preset and merged with CLI flags."""

    model: str = opt(None, cli=False, help="a model name, e.g. mobilenet_v3")
    alpha: float = opt(1.0, kind="float", metavar="A", lo=0.0, lo_open=True, hi=4.0,
                       help="width multiplier (default 1.0)")
    res: int | None = opt(None, kind="int", metavar="R", lo=1, hi=2048,
                          help="input resolution (default: the published one)")
    out: str | None = opt(None, kind="path", metavar="DIR", help="output folder (default exports/<name>_a<alpha>_r<res>/)")
    options: ExportOptions = ExportOptions()


def keys() -> dict[str, tuple[tuple[type, ...], str]]:
    """Every preset key -> (accepted YAML types, description)."""
    return {**preset_types(ExportJob), **preset_types(ExportOptions)}


#: key -> (accepted Python types, description for errors); derived from the option declarations
KEYS: dict[str, tuple[tuple[type, ...], str]] = keys()
_OPTION_KEYS = tuple(preset_types(ExportOptions))


def _check_entry(entry: object, where: str) -> dict:
    if not isinstance(entry, dict):
        raise BadConfig(f"{where} must be a mapping of keys ({', '.join(KEYS)}), got {type(entry).__name__}")
    for key, value in entry.items():
        if key not in KEYS:
            raise BadConfig(f"{where}: unknown key {key!r}; valid keys are {', '.join(KEYS)}")
        types, want = KEYS[key]
        bad_bool = isinstance(value, bool) and bool not in types
        if value is None or bad_bool or not isinstance(value, types):
            raise BadConfig(f"{where}: key {key!r} must be {want}, got {_short(value)}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise BadConfig(f"{where}: key {key!r} must be {want}, got {_short(value)}")
    return dict(entry)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _read_yaml(path: Path) -> object:
    import yaml

    from .files import check_input_file

    path = check_input_file(path, "preset file", cls=BadConfig, allow_empty=True,
                            hint="see export_configs/ for examples")
    if path.stat().st_size > MAX_PRESET_BYTES:
        raise BadConfig(f"{path}: {path.stat().st_size:,} bytes is not a preset (at most {MAX_PRESET_BYTES:,})")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadConfig(f"{path}: not valid YAML{where}; fix the syntax (see export_configs/ for examples)") from None
    except RecursionError:
        raise BadConfig(f"{path}: the YAML is nested too deeply to be a preset; see export_configs/ for examples") from None
    except OSError as exc:
        raise BadConfig(f"{path}: cannot be read ({exc.strerror or exc})") from None


def load_presets(path: str | Path) -> list[dict]:
    """The raw, validated entries of a preset file (each a dict of known keys with values of the right type)."""
    data = _read_yaml(Path(path))
    if isinstance(data, dict) and "exports" in data:
        extra = set(data) - {"exports", "defaults"}
        if extra:
            raise BadConfig(f"{path}: unknown top-level key {sorted(map(str, extra))[0]!r}; use 'exports' and 'defaults'")
        defaults = _check_entry(data.get("defaults") or {}, f"{path}: defaults")
        items = data["exports"]
        if not isinstance(items, list) or not items:
            raise BadConfig(f"{path}: 'exports' must be a non-empty list of exports")
        if len(items) > MAX_ENTRIES:
            raise BadConfig(f"{path}: {len(items)} exports is more than {MAX_ENTRIES}; split the file")
        return [{**defaults, **_check_entry(item, f"{path}: exports[{i}]")} for i, item in enumerate(items)]
    if data is None:
        raise BadConfig(f"{path}: the file is empty; see export_configs/ for examples")
    return [_check_entry(data, str(path))]


def make_job(entry: dict, where: str = "export") -> ExportJob:
    """Turn one (merged) entry into a validated job; a missing model or a bad value names the key."""
    if "model" not in entry:
        raise BadConfig(f"{where}: no model given; add 'model: <name>' or pass NAME on the command line")
    options = {k: entry[k] for k in _OPTION_KEYS if k in entry}
    if "formats" in options and isinstance(options["formats"], list):
        options["formats"] = tuple(options["formats"])
    try:
        # Model, alpha and res are checked now, so that a bad later entry of a multi-model file stops the run
        # before the first export rather than after the earlier ones were written.
        from .models import check_alpha, check_res
        from .registry import get_spec

        spec = get_spec(entry["model"])
        res = check_res(spec, entry.get("res"))
        alpha = check_alpha(entry.get("alpha", 1.0))
        out = entry.get("out")
        if out is not None and not str(out).strip():
            raise BadArgument("out (--out) is empty; pass a folder path (use '.' for the current folder)")
        return ExportJob(model=spec.name, alpha=alpha, res=res, out=out, options=ExportOptions(**options))
    except BadArgument as exc:
        raise BadConfig(f"{where}: {exc}") from None


def check_jobs(jobs: list[ExportJob], names: list[str]) -> None:
    """Everything about a multi-export run that can fail late, checked before the first export: each weights file
    loads and fits its model, and no two entries (or an entry and an existing export of another model) share a
    folder."""
    from .models import build_model

    folders: dict[str, str] = {}
    for job, where in zip(jobs, names):
        stem = stem_for(job.model, job.alpha, job.res)  # type: ignore[arg-type]
        folder = Path(job.out) if job.out is not None else default_out_dir(job.model, job.alpha, job.res)  # type: ignore[arg-type]
        key = os.path.normpath(os.path.abspath(folder))
        if key in folders and folders[key] != stem:
            raise BadConfig(f"{where}: exports {stem} into {str(folder)!r}, where another entry exports "
                            f"{folders[key]}; give each model its own 'out'")
        folders[key] = stem
        weights = job.options.weights
        if weights is not None and weights.lower() != "imagenet":
            try:
                build_model(job.model, alpha=job.alpha, num_classes=job.options.num_classes, weights=weights)
            except EdgekitError as exc:
                raise BadConfig(f"{where}: {exc}") from None
        from .export import _read_manifest

        old = _read_manifest(folder) if folder.is_dir() else None
        if old:
            old_stem = old.get("stem")
            if isinstance(old_stem, str) and old_stem != stem:
                raise BadConfig(f"{where}: {str(folder)!r} holds the export of {old_stem}; give {stem} another 'out'")


def load_jobs(path: str | Path, overrides: dict | None = None) -> list[ExportJob]:
    """Every export of a preset file, with ``overrides`` (CLI flags) applied on top; errors name the entry."""
    entries = load_presets(path)
    many = len(entries) > 1
    names = [f"{path}: exports[{i}]" if many else str(path) for i in range(len(entries))]
    jobs = [make_job({**entry, **(overrides or {})}, where) for entry, where in zip(entries, names)]
    if many:
        check_jobs(jobs, names)
    return jobs
