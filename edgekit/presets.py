"""Export presets: YAML files a user runs with ``edgekit export --config FILE``.

A file holds one export (a mapping of the keys below) or several: ``exports: [ {...}, {...} ]`` with optional
``defaults: {...}`` applied to each. Unknown keys and bad values are rejected naming the key and the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import BadArgument, BadConfig
from .export import ExportOptions

#: key -> (accepted Python types, description for errors)
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a model name, e.g. mobilenet_v3"),
    "alpha": ((int, float), "a number > 0, e.g. 0.75"),
    "res": ((int,), "an integer number of pixels, e.g. 192"),
    "out": ((str,), "a folder path"),
    "weights": ((str,), "'imagenet' or a state_dict path"),
    "formats": ((list, str), "a list such as [onnx, torchscript]"),
    "opset": ((int,), "an integer such as 18"),
    "dynamic_batch": ((bool,), "true or false"),
    "simplify": ((bool,), "true or false"),
    "verify": ((bool,), "true or false"),
    "num_classes": ((int,), "a positive integer"),
    "seed": ((int,), "a non-negative integer"),
}
_OPTION_KEYS = ("formats", "opset", "dynamic_batch", "simplify", "verify", "weights", "num_classes", "seed")


@dataclass(frozen=True)
class ExportJob:
    """One (model, alpha, res) export with its options, as read from a preset and merged with CLI flags."""

    model: str
    alpha: float = 1.0
    res: int | None = None
    out: str | None = None
    options: ExportOptions = ExportOptions()


def _check_entry(entry: object, where: str) -> dict:
    if not isinstance(entry, dict):
        raise BadConfig(f"{where} must be a mapping of keys ({', '.join(KEYS)}), got {type(entry).__name__}")
    for key, value in entry.items():
        if key not in KEYS:
            raise BadConfig(f"{where}: unknown key {key!r}; valid keys are {', '.join(KEYS)}")
        types, want = KEYS[key]
        bad_bool = isinstance(value, bool) and bool not in types
        if value is None or bad_bool or not isinstance(value, types):
            raise BadConfig(f"{where}: key {key!r} must be {want}, got {value!r}")
        if key == "formats" and isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise BadConfig(f"{where}: key 'formats' must be {want}, got {value!r}")
    return dict(entry)


def load_presets(path: str | Path) -> list[dict]:
    """The raw, validated entries of a preset file (each a dict of known keys with values of the right type)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadConfig(f"preset file {str(path)!r} does not exist; see export_configs/ for examples")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadConfig(f"{path}: not valid YAML{where}; fix the syntax (see export_configs/ for examples)") from None
    if isinstance(data, dict) and "exports" in data:
        extra = set(data) - {"exports", "defaults"}
        if extra:
            raise BadConfig(f"{path}: unknown top-level key {sorted(extra)[0]!r}; use 'exports' and 'defaults'")
        defaults = _check_entry(data.get("defaults") or {}, f"{path}: defaults")
        items = data["exports"]
        if not isinstance(items, list) or not items:
            raise BadConfig(f"{path}: 'exports' must be a non-empty list of exports")
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

        check_res(get_spec(entry["model"]), entry.get("res"))
        check_alpha(entry.get("alpha", 1.0))
        return ExportJob(
            model=entry["model"],
            alpha=entry.get("alpha", 1.0),
            res=entry.get("res"),
            out=entry.get("out"),
            options=ExportOptions(**options),
        )
    except BadArgument as exc:
        raise BadConfig(f"{where}: {exc}") from None


def load_jobs(path: str | Path, overrides: dict | None = None) -> list[ExportJob]:
    """Every export of a preset file, with ``overrides`` (CLI flags) applied on top; errors name the entry."""
    entries = load_presets(path)
    many = len(entries) > 1
    return [
        make_job({**entry, **(overrides or {})}, f"{path}: exports[{i}]" if many else str(path))
        for i, entry in enumerate(entries)
    ]
