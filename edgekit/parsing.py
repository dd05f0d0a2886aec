"""Parsing numbers that users type: one place, one wording, and every number has a range.

CLI flags arrive as strings, preset keys as YAML scalars, API arguments as Python numbers; all of them go through
:func:`parse_int` / :func:`parse_float`, which accept any of those, refuse booleans, NaN and infinities, and check the
documented range. The message names the option, what was given and what to pass instead.
"""

from __future__ import annotations

import math
import numbers as _numbers

from .errors import BadArgument

#: Longest numeric text accepted: Python's int() of a 100,000-digit string is slow and means nothing here.
_MAX_TEXT = 64


def _to_float(value: object) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, _numbers.Real):
        try:
            return float(value)
        except (OverflowError, ValueError):  # an int beyond float range
            return math.inf if value > 0 else -math.inf
    text = str(value).strip()
    if not text or len(text) > _MAX_TEXT:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _words(kind: str, lo: float | None, hi: float | None, lo_open: bool) -> str:
    if kind == "int":
        base = "a positive whole number" if lo == 1 else (f"a whole number >= {lo:g}" if lo is not None else "a whole number")
    else:
        base = ("a number > " if lo_open else "a number >= ") + f"{lo:g}" if lo is not None else "a finite number"
    return base + (f" up to {hi:g}" if hi is not None else "")


def parse_int(
    value: object,
    what: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    example: str = "",
    too_big: str | None = None,
) -> int:
    """``value`` as an int within ``[lo, hi]``; ``too_big`` replaces the advice when ``hi`` is exceeded."""
    number = _to_float(value)
    if isinstance(value, _numbers.Integral) and not isinstance(value, bool):
        number = value  # exact, also past float precision
    advice = f"pass {_words('int', lo, hi, False)}" + (f", e.g. {example}" if example else "")
    if not isinstance(number, int) and (not math.isfinite(number) or number != int(number)):
        raise BadArgument(f"{what} must be a whole number, got {value!r}; {advice}")
    number = int(number)
    if lo is not None and number < lo:
        raise BadArgument(f"{what} must be >= {lo}, got {value!r}; {advice}")
    if hi is not None and number > hi:
        raise BadArgument(f"{what} must be <= {hi}, got {value!r}; {too_big or advice}")
    return number


def parse_float(
    value: object,
    what: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    example: str = "",
    unit: str = "",
) -> float:
    """``value`` as a finite float within the range (``lo_open``: strictly above ``lo``)."""
    number = _to_float(value)
    advice = f"pass {_words('float', lo, hi, lo_open)}" + (f", e.g. {example}" if example else "")
    if not math.isfinite(number):
        raise BadArgument(f"{what} must be a finite number, got {value!r}; {advice}")
    if lo is not None and (number <= lo if lo_open else number < lo):
        raise BadArgument(f"{what} must be {'>' if lo_open else '>='} {lo:g}{unit}, got {value!r}; {advice}")
    if hi is not None and number > hi:
        raise BadArgument(f"{what} must be <= {hi:g}{unit}, got {value!r}; {advice}")
    return number


def parse_list(values: object, what: str, example: str) -> list[str]:
    """A comma-separated string, a number or a sequence -> the non-empty items as stripped strings."""
    if isinstance(values, str):
        items = [v.strip() for v in values.split(",")]
    elif isinstance(values, (int, float)) and not isinstance(values, bool):
        items = [str(values)]
    elif isinstance(values, (list, tuple)):
        items = [str(v).strip() for v in values]
    else:
        raise BadArgument(f"{what} must be a list or a comma-separated string, got {values!r}; pass e.g. {example}")
    items = [v for v in items if v]
    if not items:
        raise BadArgument(f"{what} is empty; pass e.g. {example}")
    return items


def parse_bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise BadArgument(f"{what} must be true or false, got {value!r}")


def parse_choice(value: object, what: str, choices: tuple[str, ...] | list[str]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise BadArgument(f"unknown {what} {value!r}; use one of: {', '.join(choices)}")
    return text
