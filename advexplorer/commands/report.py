"""``advexplorer report``: HTML, PDF and JSON reports from existing run folders.

Several run folders make one report with a comparison table (e.g. a standard and a
robust model on the same image, or a protect mask against no mask).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run folder(s) written by 'advexplorer attack --out DIR'")
    parser.add_argument("--html", metavar="FILE.html", help="write a self-contained HTML report")
    parser.add_argument("--pdf", metavar="FILE.pdf", help="write a PDF report (needs PySide6)")
    parser.add_argument("--json", metavar="FILE.json",
                        help="write the run record(s) as one JSON file (a list for several runs)")
    parser.add_argument("--title", help="report title (default: image and model, or "
                                        "'Adversarial robustness report' for several runs)")
    parser.add_argument("--overwrite", action="store_true", help="allow replacing existing files")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")


def run(args) -> int:
    from pathlib import Path

    from advexplorer.errors import UserError
    from advexplorer.io.atomic import check_destination
    from advexplorer.report import load_run, write_report

    outputs = [(flag, value, suffixes) for flag, value, suffixes in (
        ("--html", args.html, (".html", ".htm")), ("--pdf", args.pdf, (".pdf",)),
        ("--json", args.json, (".json",))) if value]
    if not outputs:
        raise UserError("Say which report to write: --html FILE.html, --pdf FILE.pdf and/or "
                        "--json FILE.json.")
    names = [Path(value).expanduser().resolve() for _, value, _ in outputs]
    if len(set(names)) != len(names):
        raise UserError("Give each report its own file name.")
    for flag, value, suffixes in outputs:
        if Path(value).suffix.lower() not in suffixes:
            raise UserError(f"{flag} {value}: the file name must end in {' or '.join(suffixes)}.")
        # Check every destination before writing any, so a refusal leaves nothing behind.
        check_destination(value, overwrite=args.overwrite)
    views = [load_run(r) for r in args.runs]
    written = [write_report(value, views, overwrite=args.overwrite, title=args.title)
               for _, value, _ in outputs]
    if not args.quiet:
        for path in written:
            print(f"wrote {path}")
        for view in views:
            for warning in view.warnings:
                print(f"warning: {view.name}: {warning}", file=sys.stderr)
    return 0
