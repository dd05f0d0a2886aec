"""Every row we cite from the papers is reproduced: MACs within 2.5%, params within 3% (or the printed precision).

The rows, each with its source (paper and table), live in edgekit/papers/; tools/paper_tables.py prints them side
by side with our counts.
"""

from __future__ import annotations

import pytest

import edgekit
from edgekit.papers import MACS_REL_TOL, PARAMS_REL_TOL, all_rows

ROWS = all_rows()


def test_the_tables_cover_every_family():
    families = {edgekit.registry.get_spec(r.model).family for r in ROWS}
    assert {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "shufflenet_v1", "shufflenet_v2", "efficientnet"} <= families
    assert len(ROWS) >= 50
    assert all(r.source for r in ROWS)


def _row_id(row) -> str:
    table = row.source.rsplit(")", 1)[-1].strip().split("(")[0].strip().replace(" ", "")
    return f"{row.model}-a{row.alpha:g}-r{row.res}-{table or 'table'}"


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_paper_row_is_reproduced(row):
    result = edgekit.info(row.model, alpha=row.alpha, res=row.res)
    macs_m = result.macs / 1e6
    params_m = result.params / 1e6
    assert row.matches(row.macs_m, macs_m, MACS_REL_TOL), f"MACs {macs_m:.2f} M vs paper {row.macs_m} M ({row.source})"
    assert row.matches(row.params_m, params_m, PARAMS_REL_TOL), (
        f"params {params_m:.3f} M vs paper {row.params_m} M ({row.source})"
    )


def test_tolerance_rule_follows_the_printed_precision():
    from edgekit.papers import PaperRow

    row = PaperRow("mobilenet_v1", 1.0, 224, "569", "4.2", "test")
    assert row.matches("4.2", 4.24, 0.0) and not row.matches("4.2", 4.26, 0.0)
    truncated = PaperRow("mobilenet_v2", 0.35, 96, "11", "1.66", "test", rounding="truncate")
    assert truncated.matches("11", 11.9, 0.0) and not truncated.matches("11", 10.9, 0.0)
