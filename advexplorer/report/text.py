"""Plain text of one value as every report writes it: a budget, a share, a number, yes or no.

Shared by the run report (:mod:`advexplorer.report.content`), the model-card rows
(:mod:`advexplorer.report.card_text`) and the cohort report, so a value reads the same in each.
"""

from __future__ import annotations

import math
from typing import Any

from advexplorer.config import format_budget
from advexplorer.report.run import finite

Rows = list[tuple[str, str]]


def budget(value: float | None) -> str:
    """'8/255 (0.03137)': both the /255 form people use and the raw pixel-unit number."""
    if not finite(value):
        return "—"
    # Six digits, not format_budget's four: the report is where a run is checked exactly.
    return f"{format_budget(value)} ({float(value):.6g})"


def percent(value: float | None, digits: int = 1) -> str:
    if not finite(value):
        return "—"
    return f"{100.0 * float(value):.{digits}f} %"


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if isinstance(value, float):
        if math.isnan(value):
            return "not measured"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    if value is None:
        return "—"
    return str(value)


def yes_no(value: Any) -> str:
    return "—" if value is None else ("yes" if value else "no")
