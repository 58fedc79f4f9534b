"""The parts of a report about all its runs at once: the header at its top and the table
comparing the runs. Plain text, like :mod:`advexplorer.report.content`, which gives each run's part."""

from __future__ import annotations

from dataclasses import dataclass

from advexplorer.config import NORM_LABELS, method_label, over_255
from advexplorer.report.content import _class_text, _prediction, run_content, run_label
from advexplorer.report.run import RunView
from advexplorer.report.text import Rows, number, percent, yes_no


COMPARISON_COLUMNS = ("Run", "Model", "Mask", "Attack", "Before", "After", "Flipped", "L∞", "L2",
                      "Pixels changed", "8-bit PNG flips", "Explanation", "R\u00a0≈\u00a0m/2L")


@dataclass
class Comparison:
    """The comparison table: columns that differ between runs, and what all runs share."""

    columns: list[str]
    rows: list[list[str]]
    flipped: list[bool]
    shared: Rows


def comparison(views: list[RunView]) -> Comparison:
    """One row per run; a column with the same value for every run moves to ``shared``."""
    rows = []
    for number_, view in enumerate(views, start=1):
        record = view.record
        card = (record.get("model") or {}).get("card") or {}
        attack = record.get("attack") or {}
        norms = record.get("norms") or {}
        mask = record.get("mask") or {}
        saliency = record.get("saliency") or {}
        robustness = record.get("robustness") or {}
        exported = record.get("exported_png") or {}
        mode = mask.get("mode", "none")
        rows.append([
            run_label(view, number_), str(card.get("name", "—")),
            mode if mode == "none" else f"{mode} ({percent(mask.get('allowed_fraction'), 0)} free)",
            f"{method_label(attack.get('method'))} "
            f"{NORM_LABELS.get(attack.get('norm'), '')} ε={over_255(attack.get('eps'))}",
            _class_text(_prediction(record.get("prediction_before"))),
            _class_text(_prediction(record.get("prediction_after"))),
            yes_no(record.get("flipped")), over_255(norms.get("linf")), number(norms.get("l2"), 3),
            number(norms.get("l0_pixels")), yes_no(exported.get("still_flips")),
            str(saliency.get("verdict", "—")),
            over_255(robustness.get("radius_estimate")) if robustness else "—",
        ])
    keep = [0] + [c for c in range(1, len(COMPARISON_COLUMNS))
                  if len(views) == 1 or len({row[c] for row in rows}) > 1]
    shared = [(COMPARISON_COLUMNS[c], rows[0][c]) for c in range(1, len(COMPARISON_COLUMNS)) if c not in keep]
    return Comparison(columns=[COMPARISON_COLUMNS[c] for c in keep],
                      rows=[[row[c] for c in keep] for row in rows],
                      flipped=[bool(v.record.get("flipped")) for v in views], shared=shared)


@dataclass(frozen=True)
class ReportHeader:
    """What the top of every report says, worked out once for the HTML and the PDF."""

    contents: list
    title: str
    count: str
    generated: str
    version: str


def report_header(views, title: str | None = None) -> ReportHeader:
    """The per-run contents plus title, run count, generation time and version of a report."""
    from datetime import datetime, timezone

    import advexplorer

    several = len(views) > 1
    contents = [run_content(v, n if several else None) for n, v in enumerate(views, start=1)]
    if title is None:
        title = "Adversarial robustness report" if several else contents[0].title
    return ReportHeader(contents=contents, title=title,
                        count=f"{len(views)} runs" if several else "1 run",
                        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        version=advexplorer.__version__)
