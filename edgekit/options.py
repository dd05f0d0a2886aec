"""Options declared once: a field of an options dataclass carries its CLI flag, help, range and preset key.

``ExportOptions``, ``VerifyOptions``, ``BenchOptions`` ... declare each option as ``field = opt(default, help=...,
kind="int", lo=1, hi=64)``. From that one declaration:

- :func:`validate` parses and range-checks the value where the dataclass is built (strings from the CLI, YAML
  scalars from presets and Python values from the API all land there);
- :func:`add_arguments` generates the argparse flags (OnnxSlim's "CLI generated from option dataclasses");
- :func:`given` collects the flags the user actually passed;
- :func:`preset_types` gives the YAML types a preset key accepts.

A new option is one edit: its field.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

from .parsing import parse_bool, parse_float, parse_int

_KEY = "edgekit"


@dataclass(frozen=True)
class Opt:
    help: str
    kind: str = "str"  # str, int, float, bool, list, choice, path
    flag: str | None = None  # default: --name-with-dashes
    metavar: str | None = None
    what: str | None = None  # how errors name it (default: the field name)
    example: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    cli: bool = True
    preset: bool = True
    append: bool = False  # repeatable flag (a list)
    nargs: str | None = None
    too_big: str | None = None  # advice when hi is exceeded

    def range_text(self) -> str:
        if self.lo is None and self.hi is None:
            return ""
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        return ", ".join(p for p in (lo, hi) if p)


def opt(default: Any = None, **spec: Any) -> Any:
    """A dataclass field with its option declaration (``default_factory`` for list/dict defaults)."""
    return dataclasses.field(default=default, metadata={_KEY: Opt(**spec)})


def declared(cls: type) -> dict[str, tuple[dataclasses.Field, Opt]]:
    return {f.name: (f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata}


def flag_of(name: str, spec: Opt) -> str:
    return spec.flag or "--" + name.replace("_", "-")


def validate(obj: Any, names: Iterable[str] | None = None) -> None:
    """Parse and range-check the declared int/float/bool/choice fields of a frozen dataclass in place.

    None stays None (meaning "default"/"not given"); other kinds are left to the class's own checks.
    """
    fields = declared(type(obj))
    for name in names if names is not None else fields:
        field, spec = fields[name]
        value = getattr(obj, name)
        if value is None:
            continue
        what = spec.what or name
        if spec.kind == "int":
            value = parse_int(value, what, lo=None if spec.lo is None else int(spec.lo),
                              hi=None if spec.hi is None else int(spec.hi), example=spec.example, too_big=spec.too_big)
        elif spec.kind == "float":
            value = parse_float(value, what, lo=spec.lo, hi=spec.hi, lo_open=spec.lo_open, example=spec.example)
        elif spec.kind == "bool":
            if not isinstance(value, bool):
                from .errors import BadArgument

                raise BadArgument(f"{what} must be true or false, got {value!r}")
        elif spec.kind == "choice":
            from .parsing import parse_choice

            value = parse_choice(value, what, spec.choices)
        else:
            continue
        object.__setattr__(obj, name, value)


def _help(field: dataclasses.Field, spec: Opt) -> str:
    text = spec.help
    extra = []
    if spec.choices:
        extra.append("one of " + ", ".join(spec.choices))
    if spec.range_text():
        extra.append(spec.range_text())
    default = field.default
    if default not in (None, dataclasses.MISSING, False, (), "") and spec.kind != "bool":
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        extra.append(f"default {shown}")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def add_arguments(parser: Any, cls: type, *, include: Iterable[str] | None = None,
                  exclude: Iterable[str] = (), overrides: dict[str, dict] | None = None) -> None:
    """argparse flags for the declared fields of ``cls`` (values stay strings: edgekit names the problems)."""
    fields = declared(cls)
    names = list(include) if include is not None else list(fields)
    skip = set(exclude)
    for name in names:
        field, spec = fields[name]
        if not spec.cli or name in skip:
            continue
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": _help(field, spec)}
        flag = flag_of(name, spec)
        if spec.kind == "bool" and field.default is True:
            flag = spec.flag or "--no-" + name.replace("_", "-")
            kwargs.update(action="store_false")
        elif spec.kind == "bool":
            kwargs.update(action="store_true")
        else:
            kwargs["metavar"] = spec.metavar or name.upper()
            if spec.append:
                kwargs["action"] = "append"
            if spec.nargs:
                kwargs["nargs"] = spec.nargs
        kwargs.update((overrides or {}).get(name, {}))
        parser.add_argument(flag, **kwargs)


def given(args: argparse.Namespace, cls: type, *, include: Iterable[str] | None = None) -> dict[str, Any]:
    """The declared options the user passed on the command line (None means not given)."""
    fields = declared(cls)
    names = list(include) if include is not None else list(fields)
    return {n: getattr(args, n) for n in names if n in fields and getattr(args, n, None) is not None}


def preset_types(cls: type) -> dict[str, tuple[tuple[type, ...], str]]:
    """Preset key -> (accepted YAML types, description) for the declared fields of ``cls``."""
    out: dict[str, tuple[tuple[type, ...], str]] = {}
    for name, (_field, spec) in declared(cls).items():
        if not spec.preset:
            continue
        types: tuple[type, ...] = {
            "int": (int,), "float": (int, float), "bool": (bool,), "list": (list, str), "choice": (str,),
            "path": (str,), "str": (str,),
        }[spec.kind]
        want = {"int": "an integer", "float": "a number", "bool": "true or false", "list": "a list",
                "choice": "one of " + ", ".join(spec.choices), "path": "a path", "str": "a string"}[spec.kind]
        if spec.range_text():
            want += f" ({spec.range_text()})"
        if spec.example:
            want += f", e.g. {spec.example.split()[-1]}"
        out[name] = (types, want)
    return out


def to_bool(value: object, what: str) -> bool:
    return parse_bool(value, what)
