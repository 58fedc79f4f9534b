"""Atomic writes: a failure mid-write leaves no partial file and an existing file intact."""

from __future__ import annotations

import os

import pytest

from advexplorer.errors import UserError
from advexplorer.io import atomic
from advexplorer.io.atomic import atomic_directory, atomic_path, atomic_write_text
from advexplorer.report import write_report


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "report.html"

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", crash)
    with pytest.raises(OSError):
        atomic_write_text(target, "x" * 100_000)
    assert not target.exists() and leftovers(tmp_path) == []


def test_failure_mid_write_keeps_the_existing_file(tmp_path, monkeypatch, protect_run_dir):
    target = tmp_path / "report.html"
    target.write_text("previous report", encoding="utf-8")

    def crash(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr("advexplorer.report.render_html", crash)
    with pytest.raises(RuntimeError):
        write_report(target, [protect_run_dir], overwrite=True)
    assert target.read_text(encoding="utf-8") == "previous report"
    assert leftovers(tmp_path) == []


def test_pdf_failure_mid_write_leaves_no_partial_pdf(tmp_path, monkeypatch, protect_run_dir):
    pytest.importorskip("PySide6")
    import advexplorer.report.pdf as pdf

    def half_written(path, views, title=None):
        with open(path, "wb") as handle:
            handle.write(b"%PDF-1.4\n half a page")
        raise RuntimeError("Qt crashed")

    monkeypatch.setattr(pdf, "write_pdf", half_written)
    with pytest.raises(RuntimeError):
        write_report(tmp_path / "report.pdf", [protect_run_dir])
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_even_if_the_file_appears_while_writing(tmp_path):
    target = tmp_path / "report.html"
    with pytest.raises(UserError, match="already exists"):
        with atomic_path(target) as temporary:
            temporary.write_text("new", encoding="utf-8")
            target.write_text("someone else's", encoding="utf-8")  # appears meanwhile
    assert target.read_text(encoding="utf-8") == "someone else's"
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_in_one_step(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    inode_before = os.stat(target).st_ino
    atomic_write_text(target, "new", overwrite=True)
    assert target.read_text(encoding="utf-8") == "new"
    assert os.stat(target).st_ino != inode_before  # a rename, not a rewrite in place


def test_directory_is_all_or_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as folder:
            (folder / "record.json").write_text("{}", encoding="utf-8")
            raise RuntimeError("attack interrupted")
    assert not out.exists() and leftovers(tmp_path) == []
    with atomic_directory(out) as folder:
        (folder / "record.json").write_text("{}", encoding="utf-8")
    assert (out / "record.json").exists()
    with pytest.raises(UserError, match="not empty"):
        with atomic_directory(out):
            pass
    assert (out / "record.json").exists() and leftovers(tmp_path) == []
