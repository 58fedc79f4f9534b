"""``advexplorer report``: reports from real run folders, refusals on one line."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from make_run import HOSTILE_CLASS, make_inputs, plain_run  # noqa: E402

from advexplorer.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    inputs = make_inputs(tmp_path_factory.mktemp("report_cli_inputs"))
    return plain_run(inputs, tmp_path_factory.mktemp("report_cli") / "run")


def cli(*argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(list(argv))


def test_report_writes_html_pdf_and_json(run_dir, tmp_path, capsys):
    pytest.importorskip("PySide6")
    html, pdf, record = tmp_path / "r.html", tmp_path / "r.pdf", tmp_path / "r.json"
    assert cli("report", str(run_dir), "--html", str(html), "--pdf", str(pdf), "--json", str(record)) == 0
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;" in html.read_text(encoding="utf-8")
    assert HOSTILE_CLASS not in html.read_text(encoding="utf-8")
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert record.read_bytes() != b""
    out = capsys.readouterr().out
    assert str(html) in out and str(pdf) in out


def test_existing_file_is_refused_and_nothing_is_written(run_dir, tmp_path, capsys):
    html, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    pdf.write_bytes(b"an older report")
    assert cli("report", str(run_dir), "--html", str(html), "--pdf", str(pdf)) == 2
    error = capsys.readouterr().err
    assert "already exists" in error and "--overwrite" in error and error.count("\n") == 1
    assert not html.exists() and pdf.read_bytes() == b"an older report"
    assert cli("report", str(run_dir), "--html", str(html), "--json", str(tmp_path / "x.json"),
               "--overwrite") == 0
    assert html.exists()


@pytest.mark.parametrize("argv, message", [
    (["--html", "{tmp}/a.txt"], "must end in .html"),
    ([], "Say which report"),
])
def test_bad_requests_get_one_line(run_dir, tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli("report", str(run_dir), *argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_not_a_run_folder(tmp_path, capsys):
    assert cli("report", str(tmp_path), "--html", str(tmp_path / "r.html")) == 2
    error = capsys.readouterr().err
    assert "not a run folder" in error and error.count("\n") == 1
    assert not (tmp_path / "r.html").exists()
