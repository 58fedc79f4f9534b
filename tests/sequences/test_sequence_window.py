"""The sequence window, driven through its actions as a user would (pytest-qt, offscreen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QPoint, Qt

from advexplorer.io.sequences import SAMPLE_FASTA


@pytest.fixture
def errors(monkeypatch):
    """Record error dialogs instead of blocking on them."""
    from PySide6.QtWidgets import QMessageBox

    shown = []

    def fake_exec(box):
        shown.append((box.windowTitle(), box.text()))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return shown


@pytest.fixture
def window(qtbot, errors, demo_model):
    from advexplorer.gui.app import application
    from advexplorer.gui.sequence_window import SequenceWindow

    application()
    win = SequenceWindow(model=demo_model, fasta=SAMPLE_FASTA)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.stop_and_wait(10000)


def _drag(qtbot, track, first: int, last: int, button=Qt.MouseButton.LeftButton) -> None:
    """Drag along the allowed-region row from position first to last (0-based)."""
    y = track.RULER + track.RESIDUES + 6
    qtbot.mousePress(track, button, pos=QPoint(track.x_of(first) + 4, y))
    qtbot.mouseMove(track, QPoint(track.x_of(last) + 4, y))
    qtbot.mouseRelease(track, button, pos=QPoint(track.x_of(last) + 4, y))


def test_paint_probe_and_save(qtbot, window, errors, tmp_path):
    assert window.can_run() and window.current_record().name == "demo_dehydrogenase_loop"
    assert window.positions_edit.text() == "40-55"       # the card's suggested loop
    window.clear_region_action.trigger()
    assert window.positions_edit.text() == "" and not any(window.allowed())
    _drag(qtbot, window.track, 43, 50)                     # allow 44–51
    _drag(qtbot, window.track, 50, 50, Qt.MouseButton.RightButton)  # forbid 51 again
    assert window.positions_edit.text() == "44-50"

    updates = []
    window.runner.step.connect(updates.append)
    with qtbot.waitSignal(window.probe_finished, timeout=60000):
        window.run_action.trigger()
    assert not errors
    assert any(u.phase == "scan" for u in updates) and any(u.phase == "search" for u in updates)
    assert window.results_table.rowCount() == 1
    assert window.results_table.item(0, 0).text() == "Y49H"
    assert window.results_table.item(0, 1).text() == "2"
    assert "metalloprotease" in window.verdict_label.text() and "HExxH" in window.verdict_label.text()
    assert window.track.substitutions == {48: "H"}
    assert ("created" in {kind for _, _, kind in window.track.motif_spans})
    length = len(window.current_record().sequence)
    assert window.heat_delta.shape == (20, length)
    assert len(window.before_bars.opts["height"]) == len(window.after_bars.opts["height"]) == length

    # A second probe with another region goes into the history; the first can be shown again.
    window.set_positions("1-20")
    qtbot.waitUntil(window.can_run, timeout=10000)  # the worker has ended, not only returned
    with qtbot.waitSignal(window.probe_finished, timeout=60000):
        window.run_action.trigger()
    assert window.history_combo.count() == 2 and window.positions_edit.text() == "1-20"
    window.show_history(0)
    assert window.positions_edit.text() == "44-50"
    assert window.results_table.item(0, 0).text() == "Y49H"

    saved = window.save_run(tmp_path / "run")
    record = json.loads((saved / "record.json").read_text())
    assert record["results"][0]["allowed_positions"] == "44-50"
    assert (saved / "report.html").is_file()


def test_bad_input_shows_a_message_and_keeps_the_window(qtbot, window, errors, tmp_path):
    window.clear_region_action.trigger()
    window.run_action.trigger()
    assert errors and "allowed region is empty" in errors[-1][1]
    assert not window.running

    bad = tmp_path / "bad.fasta"
    bad.write_text(">x\nMKTXAB\n")
    assert not window.open_fasta(bad)
    assert "'X' at 4" in errors[-1][1] and "'B' at 6" in errors[-1][1]
    assert window.fasta_path == SAMPLE_FASTA

    window.set_positions("90-99")
    assert window.positions_edit.property("invalid") is True
    window.motifs_edit.setPlainText("broken line")
    window.set_positions("40-55")
    window.run_action.trigger()
    assert "NAME = REGEX" in errors[-1][1]


def test_open_sequence_window_loads_the_demo_in_the_worker(qtbot, errors):
    from advexplorer.gui.sequence_window import open_sequence_window

    win = open_sequence_window()
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.model is not None, timeout=60000)
    assert win.can_run() and len(win.records) == 7 and not errors
    win.stop_and_wait(10000)


def test_importing_the_window_does_not_import_torch():
    code = "import sys, advexplorer.gui.sequence_window; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert result.stdout.strip() == "False", result.stderr
