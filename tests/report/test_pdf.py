"""The PDF report (Qt's PDF writer): same facts as the record, hostile names as text."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytest.importorskip("PySide6", reason="PDF reports are drawn by Qt (the gui extra)")

from advexplorer.report import write_report  # noqa: E402
from make_run import HOSTILE_CLASS  # noqa: E402
from pdftext import pdf_text, squeeze  # noqa: E402


@pytest.fixture(scope="module")
def protect_pdf(protect_run_dir, tmp_path_factory):
    return write_report(tmp_path_factory.mktemp("pdf") / "report.pdf", [protect_run_dir])


def test_pdf_contains_the_key_numbers(protect_pdf, protect_run_dir):
    data = protect_pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    record = json.loads((protect_run_dir / "record.json").read_text(encoding="utf-8"))
    text = squeeze(pdf_text(protect_pdf))

    def has(value: str) -> bool:
        return squeeze(value) in text

    for prediction in (record["prediction_before"], record["prediction_after"]):
        assert has(prediction["class"])
        assert has(f"{100 * prediction['probability']:.1f} %")
    assert has("16/255")
    assert has(f"{record['norms']['l2']:.4g}")
    assert has(record["image"]["sha256"]) and has(record["model"]["sha256"])
    assert has(record["mask"]["sha256"])
    assert has(record["saliency"]["verdict"])
    assert has(f"{record['saliency']['spearman']:.4g}")
    assert has(f"{record['robustness']['radius_estimate']:.4g}")
    assert has(record["versions"]["torch"])
    assert has("advexplorer reproduce")


def test_pdf_shows_hostile_names_as_text(protect_pdf):
    text = squeeze(pdf_text(protect_pdf))
    assert squeeze(HOSTILE_CLASS) in text
    assert squeeze("Tiny <b>demo</b> CNN") in text
    assert squeeze("tissue <1>.png") in text


@pytest.mark.skipif(shutil.which("pdftotext") is None,
                    reason="poppler's pdftotext is not installed (apt-get install poppler-utils)")
def test_pdftotext_reads_the_same_numbers(protect_pdf, protect_run_dir):
    record = json.loads((protect_run_dir / "record.json").read_text(encoding="utf-8"))
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(protect_pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = squeeze(text)
    assert squeeze(record["image"]["sha256"]) in flat
    assert squeeze(f"{100 * record['prediction_after']['probability']:.1f} %") in flat
    assert squeeze(HOSTILE_CLASS) in flat


def test_pdf_of_several_runs_has_a_comparison(protect_run_dir, plain_run_dir, tmp_path):
    path = write_report(tmp_path / "both.pdf", [protect_run_dir, plain_run_dir])
    text = squeeze(pdf_text(path))
    assert "COMPARISON" in text
    # Runs of one image are told apart by their folder names.
    assert squeeze("1. protect (tissue <1>.png)") in text and squeeze("2. plain (tissue <1>.png)") in text
    assert squeeze("Same for every run: Model Tiny <b>demo</b> CNN") in text


def test_pdf_export_leaves_an_application_widgets_can_use(protect_pdf):
    # The PDF writer may have started Qt; a window opened later in the same process (the GUI,
    # or a GUI test after this one) needs a QApplication, not a bare QGuiApplication.
    from PySide6.QtWidgets import QApplication, QLabel

    assert isinstance(QApplication.instance(), QApplication)
    label = QLabel("after a PDF export")
    assert label.text() == "after a PDF export"
