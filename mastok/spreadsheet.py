"""Cells a spreadsheet would run as formulas, made inert: every CSV mastok writes uses it."""

from __future__ import annotations

from typing import Any

# A text cell starting with one of these would be run as a formula by a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(cell: Any) -> Any:
    """A text cell a spreadsheet would run, with a leading `'`; numbers and text that reads
    as a number (`-1.5`) as they are."""
    if not isinstance(cell, str) or not cell.startswith(FORMULA_STARTS):
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell
