"""A cohort described by a manifest CSV: ``path,label,site,scanner,…``.

* ``path`` (required): the image file, relative to the manifest's folder or absolute.
* ``label`` (optional): the true class, by name (case-insensitive) or index of the card;
  empty = unknown.
* every other column is a **group** (site, scanner, stain batch, sex, …): any number of
  them, any text; an empty cell means "no value" for that image in that column.

Files that do not exist are listed, skipped and counted (``Cohort.missing``), so one moved
slide does not stop a screen of thousands; a manifest without a ``path`` column, with a
duplicated path, or with labels the model does not know is refused with one line.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from advexplorer.errors import UserError
from advexplorer.io.cards import ModelCard
from advexplorer.io.cohort import Cohort, CohortEntry, _few


def read_manifest(path: str | os.PathLike, card: ModelCard) -> Cohort:
    """The cohort a manifest CSV describes, with ``groups`` per image id and ``missing`` files."""
    source = Path(path).expanduser()
    try:
        with open(source, newline="", encoding="utf-8-sig") as handle:
            records = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{source} could not be read as a manifest CSV ({error}).") from None
    records = [r for r in records if any(cell.strip() for cell in r)]
    if not records:
        raise UserError(f"The manifest {source.name} is empty; its first line names the columns "
                        "(path,label,site,…).")
    header = [cell.strip() for cell in records[0]]
    lowered = [cell.lower() for cell in header]
    if "path" not in lowered:
        raise UserError(f"The manifest {source.name} has no 'path' column (it has: "
                        f"{', '.join(header) or 'nothing'}); the first line must name the columns, "
                        "e.g. path,label,site,scanner.")
    path_at = lowered.index("path")
    label_at = lowered.index("label") if "label" in lowered else None
    group_columns = [(i, name) for i, name in enumerate(header) if i not in (path_at, label_at) and name]
    folder = source.resolve().parent
    entries, groups, missing, seen, unknown = [], {}, [], set(), []
    for number, record in enumerate(records[1:], start=2):
        cells = record + [""] * (len(header) - len(record))
        written = cells[path_at].strip()
        if not written:
            raise UserError(f"Line {number} of {source.name} has no path.")
        if written in seen:
            raise UserError(f"{written} is listed twice in {source.name} (line {number}); each image once.")
        seen.add(written)
        file_path = Path(written).expanduser()
        file_path = file_path if file_path.is_absolute() else folder / file_path
        if not file_path.is_file():
            missing.append(written)
            continue
        label = None
        if label_at is not None and cells[label_at].strip():
            try:
                label = card.class_index(cells[label_at].strip())
            except UserError:
                unknown.append(cells[label_at].strip())
                continue
        entries.append(CohortEntry(id=Path(written).as_posix(), path=file_path.resolve(), label=label))
        groups[Path(written).as_posix()] = {name: cells[i].strip() for i, name in group_columns}
    if unknown:
        raise UserError(f"Label(s) {_few(sorted(set(unknown)))} in {source.name} are not classes of the "
                        f"model; the card lists: {', '.join(card.classes)} (names or indices).")
    if not entries:
        raise UserError(f"None of the {len(missing)} file(s) listed in {source.name} exist "
                        f"(e.g. {_few(missing, 3)}); paths are relative to the manifest's folder.")
    notes = []
    if missing:
        notes.append(f"{len(missing)} file(s) listed in {source.name} do not exist and were skipped: "
                     f"{_few(missing)}")
    return Cohort(source=source.resolve(), layout="manifest", entries=entries, card=card,
                  has_labels=label_at is not None and any(e.label is not None for e in entries),
                  notes=notes, groups=groups, missing=missing)
