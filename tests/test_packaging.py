"""The `test` extra installs every optional dependency, so CI exercises all of them."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_test_extra_installs_every_other_extra():
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    test = set(extras["test"])
    for name, requirements in extras.items():
        if name != "test":
            assert set(requirements) <= test, f"extra {name!r}: {sorted(set(requirements) - test)} not in the test extra"
