"""A DICOM file opens in the app, is shown through its window, and View → DICOM window…
changes what the canvas shows and what the run attacks and records (issue 12)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_dicom import write_ct  # noqa: E402


@pytest.fixture
def ct(tmp_path):
    # A gradient of stored values 0…1999 (HU −1024…2974), 24×24, with the file's window 40/400.
    stored = np.linspace(0, 1999, 24 * 24).reshape(24, 24)
    return write_ct(tmp_path / "slice.dcm", stored, window=(40, 400))


def test_a_dicom_is_shown_as_the_engine_reads_it_and_its_window_is_chosen_recorded_and_refused_when_bad(
        qtbot, window, ct, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from advexplorer.io.dicom import read_dicom

    entries = window.add_images([ct])
    assert entries and window.session.current is entries[0]
    action = window.dicom_window.action
    assert action in window.view_menu.actions() and action.isEnabled()
    np.testing.assert_array_equal(window.canvas.image, read_dicom(ct).pixels)  # the file's 40/400

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("1000,2000", True)))
    action.trigger()  # as a user picks it from the View menu
    entry = window.session.current
    assert entry.dicom_window == (1000.0, 2000.0)
    shown = window.canvas.image
    np.testing.assert_array_equal(shown, read_dicom(ct, (1000.0, 2000.0)).pixels)
    assert not np.array_equal(shown, read_dicom(ct).pixels)

    window.attack_panel.set_values(method="pgd", eps="8/255", steps=2, seed=3)
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.run_action.trigger()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30000)
    recorded = finished.args[0].record["image"]["dicom"]
    assert recorded["window"] == [1000.0, 2000.0] and recorded["window_source"] == "given"

    errors = []
    monkeypatch.setattr(window, "show_error", lambda title, message, *rest: errors.append(message))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("40", True)))
    action.trigger()
    assert errors and "window" in errors[0].lower() and entry.dicom_window == (1000.0, 2000.0)


def test_the_action_is_off_for_an_ordinary_image_and_on_again_for_the_dicom(window, ct, tmp_path):
    from PIL import Image

    png = tmp_path / "tile.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(png)
    window.add_images([ct])
    assert window.dicom_window.action.isEnabled()
    window.add_images([png])
    assert window.session.current.path == png and not window.dicom_window.action.isEnabled()
    assert window.dicom_window.choose("40,400") is False  # nothing to window
    dicom = next(entry for entry in window.session.images if entry.path == ct)
    window.session.set_current(window.session.index_of(dicom))
    assert window.dicom_window.action.isEnabled()
