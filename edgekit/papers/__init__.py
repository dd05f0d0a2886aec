"""The papers' published params and multiply-adds, row by row, with the source of each row.

Used by tests/test_paper_tables.py (every row must be reproduced) and tools/paper_tables.py (side-by-side print).
Numbers are kept as the strings the papers print, so the tolerance can follow the printed precision.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    model: str  # edgekit model name
    alpha: float
    res: int
    macs_m: str  # millions of multiply-adds, exactly as printed ("569", "0.39" would be written "390")
    params_m: str | None  # millions of parameters as printed, None where the table has no params column
    source: str  # "MobileNetV1 (arXiv:1704.04861) Table 6"
    #: "round": the paper rounds to its last printed digit; "truncate": it drops digits (TF-slim's table does:
    #: its 0.35/96 row prints 11 for 11.9 M), so the true value lies in [printed, printed + 1 unit).
    rounding: str = "round"
    note: str = ""
    #: One unit of the paper's last printed MACs digit, in millions, where the paper prints another magnitude than
    #: millions: EfficientNet's "0.39B" is ``macs_m="390"`` printed to 0.01 B, so ``macs_unit_m=10`` ("390" alone
    #: would claim 1 M precision; "9.9B" -> "9900", unit 100). None: the unit of ``macs_m`` as written.
    macs_unit_m: float | None = None

    @staticmethod
    def unit(printed: str) -> float:
        """Value of one unit of the last printed digit, e.g. '4.2' -> 0.1, '569' -> 1."""
        return 10.0 ** -len(printed.split(".")[1]) if "." in printed else 1.0

    def matches(self, printed: str | None, measured_m: float, rel_tol: float, unit: float | None = None) -> bool:
        """Within ``rel_tol`` relative, or within the printed precision (half a unit; [v, v+1u) if truncated).

        ``unit`` overrides the precision read from ``printed`` (see ``macs_unit_m``).
        """
        if printed is None:
            return True
        value = float(printed)
        unit = self.unit(printed) if unit is None else unit
        if abs(measured_m - value) <= rel_tol * value:
            return True
        if self.rounding == "truncate":
            return value <= measured_m < value + unit
        return abs(measured_m - value) <= unit / 2 + 1e-9

    def macs_match(self, measured_macs_m: float) -> bool:
        """Our MACs (millions) reproduce this row's: :data:`MACS_REL_TOL` or the paper's printed precision."""
        return self.matches(self.macs_m, measured_macs_m, MACS_REL_TOL, unit=self.macs_unit_m)

    def params_match(self, measured_params_m: float) -> bool:
        """Our params (millions) reproduce this row's: :data:`PARAMS_REL_TOL` or the paper's printed precision."""
        return self.matches(self.params_m, measured_params_m, PARAMS_REL_TOL)


def all_rows() -> list[PaperRow]:
    """Every published row we reproduce (tests/test_paper_tables.py holds each to the tolerance)."""
    from . import efficientnet, mobilenet, shufflenet

    return [*mobilenet.ROWS, *shufflenet.ROWS, *efficientnet.ROWS]


def not_reproduced() -> list[PaperRow]:
    """Published cells that no faithful build reproduces; each ``note`` gives our count ("ours X M") and why."""
    from . import efficientnet, mobilenet, shufflenet

    return [*mobilenet.NOT_REPRODUCED, *shufflenet.NOT_REPRODUCED, *efficientnet.NOT_REPRODUCED]


MACS_REL_TOL = 0.025
PARAMS_REL_TOL = 0.03
