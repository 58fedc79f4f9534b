"""Reports that travel: one self-contained HTML file, a PDF with the same content, the JSON record.

Public API (used by the CLI's ``report`` and ``attack --report``, and the GUI's Export)::

    view = load_run("runs/pgd")                      # record.json + arrays of a run folder
    html = render_html([view_a, view_b])            # str; several runs get a comparison table
    write_report("out/report.pdf", ["runs/a", "runs/b"], overwrite=False)

The PDF is drawn by Qt's own PDF writer (PySide6, imported only when a PDF is asked for).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from advexplorer.errors import UserError
from advexplorer.io.atomic import atomic_path, atomic_write_text, check_destination
from advexplorer.report.html import render_html
from advexplorer.report.run import RunView, load_run

__all__ = ["RunView", "load_run", "render_html", "write_report", "REPORT_SUFFIXES"]

REPORT_SUFFIXES = (".html", ".htm", ".pdf", ".json")


def _views(runs) -> list[RunView]:
    if isinstance(runs, (RunView, str, os.PathLike)):
        runs = [runs]
    views = [run if isinstance(run, RunView) else load_run(run) for run in runs]
    if not views:
        raise UserError("No run to report on: give at least one run folder.")
    return views


def write_report(path: str | os.PathLike, run_dirs_or_views: Sequence[RunView | str | os.PathLike]
                 | RunView | str | os.PathLike, *, overwrite: bool = False,
                 title: str | None = None) -> Path:
    """Write an HTML, PDF or JSON report of one or more runs, chosen by ``path``'s suffix.

    The file appears complete or not at all (written to a temporary file, then renamed);
    an existing file is replaced only with ``overwrite=True``, else :class:`UserError`.
    ``.json`` writes the run record (a list of records for several runs).
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise UserError(f"Cannot tell the report format of {path.name}: name it .html, .pdf or .json.")
    # Refuse early, before the (slow) rendering, if the file may not be written.
    check_destination(path, overwrite=overwrite)
    views = _views(run_dirs_or_views)
    if any(path.resolve() in view.input_files() for view in views):
        raise UserError(f"{path} is an input of a run (its record, image, mask or model); a report "
                        "never replaces it. Choose another file name.")
    if suffix in (".html", ".htm"):
        atomic_write_text(path, render_html(views, title=title), overwrite=overwrite)
    elif suffix == ".json":
        records = [v.record for v in views]
        text = json.dumps(records[0] if len(records) == 1 else records, indent=2, allow_nan=True)
        atomic_write_text(path, text + "\n", overwrite=overwrite)
    else:
        from advexplorer.report.pdf import write_pdf  # Qt is imported only for PDFs

        with atomic_path(path, overwrite=overwrite) as temporary:
            write_pdf(temporary, views, title=title)
    return path
