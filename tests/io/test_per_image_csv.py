"""per_image.csv survives a kill mid-write and is safe to open in a spreadsheet."""

from __future__ import annotations

import csv

import pytest

from advexplorer.core.screening import ImageRow
from advexplorer.io.cohort import PerImageWriter, read_per_image_csv

EPS = (0.0, 2 / 255, 8 / 255)
CLASSES = ("Tumour", "Stroma")


def row(file: str, note: str = "", prediction: int = 0) -> ImageRow:
    return ImageRow(file=file, label=0, clean_prediction=0, clean_probability=0.75,
                    adversarial_prediction=[0, 0, prediction], adversarial_probability=[0.75, 0.7, 0.6],
                    flipped=[False, False, prediction != 0], attacked=[False, True, True],
                    linf=[0.0, 2 / 255, 8 / 255], l2=[0.0, 0.1, 0.3],
                    flip_eps=8 / 255 if prediction else None, noise_flipped=[False, False, True],
                    note=note)


def write(path, rows, classes=CLASSES, append=False):
    with PerImageWriter(path, EPS, classes, noise_baseline=True, min_eps=False, append=append) as writer:
        writer.write(rows)


def read(path, classes=CLASSES, notes=None):
    options = {} if notes is None else {"notes": notes}
    return read_per_image_csv(path, EPS, classes, noise_baseline=True, min_eps=False, **options)


def test_a_torn_last_line_is_dropped_with_a_note_not_glued_to_the_next(tmp_path):
    path = tmp_path / "per_image.csv"
    write(path, [row("a.png"), row("b.png")])
    whole = path.read_text(encoding="utf-8")
    write(path, [row("c.png", note="empty allowed region")], append=True)
    # A kill while "c.png" was written: every field is there, the note and newline are not.
    path.write_text(path.read_text(encoding="utf-8")[:-len("region\r\n")], encoding="utf-8")
    assert path.read_text(encoding="utf-8").startswith(whole)
    notes: list[str] = []
    back = read(path, notes=notes)
    assert [r.file for r in back] == ["a.png", "b.png"]
    assert any("cut short" in note and "screened again" in note for note in notes), notes
    # The resumed screen appends the next rows on lines of their own.
    write(path, [row("c.png", note="empty allowed region"), row("d.png")], append=True)
    again = read(path)
    assert [r.file for r in again] == ["a.png", "b.png", "c.png", "d.png"]
    assert again[2].note == "empty allowed region"


def test_a_file_cut_inside_the_header_starts_again(tmp_path):
    path = tmp_path / "per_image.csv"
    path.write_text("file,label,lab", encoding="utf-8")
    notes: list[str] = []
    assert read(path, notes=notes) == [] and notes
    write(path, [row("a.png")], append=True)
    assert [r.file for r in read(path)] == ["a.png"]


DANGEROUS = ["=HYPERLINK(\"http://x\",\"y\").png", "+1.png", "-2.png", "@SUM(A1).png",
             "\tx.png", "\rx.png", "'quoted.png", "plain.png"]


def test_formula_like_names_are_neutralised_and_read_back_as_they_were(tmp_path):
    path = tmp_path / "per_image.csv"
    classes = ("=cmd|' /C calc'!A0", "Stroma")
    write(path, [row(name, note="=1+1", prediction=1) for name in DANGEROUS], classes=classes)
    with open(path, newline="", encoding="utf-8") as handle:
        cells = [cell for record in list(csv.reader(handle))[1:] for cell in record]
    # OWASP: a cell a spreadsheet would evaluate starts with a single quote instead.
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=HYPERLINK(\"http://x\",\"y\").png" in cells and "'=cmd|' /C calc'!A0" in cells
    back = read(path, classes=classes)
    assert [r.file for r in back] == DANGEROUS
    assert all(r.note == "=1+1" and r.clean_prediction == 0 for r in back)
    assert [r.adversarial_prediction for r in back] == [[0, 0, 1]] * len(DANGEROUS)
