"""Published numbers (being written)."""

from . import PaperRow

ROWS: list[PaperRow] = []
