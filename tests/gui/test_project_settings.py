"""A saved project keeps what the user set beyond masks and runs: the form's Square query
budget, input diversity and transfer surrogate, each DICOM image's window and each image's
model crop — set through the menus, saved with File → Save project as…, and restored in a
fresh window by File → Open project…. A format-1 project (without those keys) still opens
with their defaults; a surrogate file gone since is one status-bar line, not a dialog.
A folder with DICOM files lists them beside the PNGs (File → Open folder…)."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog, QInputDialog

from advexplorer.config import AttackConfig
from advexplorer.session.project import ProjectState, save_project

pytest.importorskip("pydicom")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_dicom import write_ct  # noqa: E402


@pytest.fixture
def ct(tmp_path):
    stored = np.linspace(0, 1999, 24 * 24).reshape(24, 24)  # HU −1024…2974, the file's window 40/400
    return write_ct(tmp_path / "slice.dcm", stored, window=(40, 400))


@pytest.fixture
def surrogate(tmp_path, tiny_model_path):
    """A second model file (the tiny net again, under another name) with its card beside it."""
    folder = tmp_path / "surrogates"
    folder.mkdir()
    shutil.copy(tiny_model_path, folder / "twin.pt")
    shutil.copy(tiny_model_path.with_suffix(".json"), folder / "twin.json")
    return folder / "twin.pt"


def entry_named(win, name):
    return next(entry for entry in win.session.images if entry.path.name == name)


def show(win, qtbot, name):
    win.session.set_current(win.session.index_of(entry_named(win, name)))
    qtbot.wait(20)  # the model frame refreshes on the next turn of the event loop


def test_form_dicom_window_and_crop_survive_save_and_open_in_a_fresh_window(
        qtbot, window, fresh_window, ct, surrogate, tmp_path, monkeypatch, errors):
    from advexplorer.io.dicom import read_dicom

    panel = window.attack_panel
    # The form: Square's budget, input diversity, and a surrogate opened from its file.
    panel.queries.setValue(321)
    panel.diversity.setValue(0.35)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(surrogate), "")))
    panel.surrogate.setCurrentIndex(panel.surrogate.findData(panel.OPEN_SURROGATE))
    assert panel.surrogate_path == surrogate
    # View → DICOM window… on the CT slice.
    window.add_images([ct])
    show(window, qtbot, "slice.dcm")
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("1000,2000", True)))
    window.dicom_window.action.trigger()
    assert entry_named(window, "slice.dcm").dicom_window == (1000.0, 2000.0)
    # View → Choose the model's crop on a.png (32×24), then drag and resize the frame.
    show(window, qtbot, "a.png")
    frames = window.model_frame
    qtbot.waitUntil(frames.crop_action.isEnabled, timeout=5000)
    frames.crop_action.trigger()
    assert frames.crop_of(entry_named(window, "a.png")) == (8, 4, 16, 16)  # the default: centred
    frames.frame.roi.setPos((2, 6), finish=False)
    frames.frame.roi.setSize((18, 18), finish=True)  # as a drag of the corner ends
    assert frames.crop_of(entry_named(window, "a.png")) == (2, 6, 18, 18)
    assert window.workspace.project.unsaved

    path = tmp_path / "settings.advx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))
    window.workspace.project.save_as_action.trigger()
    assert path.is_file() and not window.workspace.project.unsaved
    saved = json.loads(zipfile.ZipFile(path).read("project.json"))
    assert saved["format_version"] == 3

    other = fresh_window()
    assert other.models.model is None and other.attack_panel.queries.value() == AttackConfig.queries
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    other.workspace.project.open_action.trigger()
    form = other.attack_panel
    assert form.queries.value() == 321 and form.diversity.value() == pytest.approx(0.35)
    # The surrogate is checked against the project's model, which loads in the background.
    qtbot.waitUntil(lambda: form.surrogate_path is not None, timeout=30000)
    assert form.surrogate_path == surrogate and other.models.model is not None
    assert [entry.path.name for entry in other.session.images] == ["a.png", "b.png", "slice.dcm"]
    dicom = entry_named(other, "slice.dcm")
    assert dicom.dicom_window == (1000.0, 2000.0)
    assert entry_named(other, "b.png").dicom_window is None
    show(other, qtbot, "slice.dcm")
    np.testing.assert_array_equal(other.canvas.image, read_dicom(ct, (1000.0, 2000.0)).pixels)
    assert other.model_frame.crop_of(entry_named(other, "a.png")) == (2, 6, 18, 18)
    assert other.model_frame.crop_of(entry_named(other, "b.png")) is None
    show(other, qtbot, "a.png")
    qtbot.waitUntil(lambda: other.model_frame.frame.is_visible(), timeout=5000)
    assert other.model_frame.crop_action.isChecked() and other.model_frame.frame.box == (2, 6, 18, 18)
    assert not errors  # no dialog on the way


def test_a_format_1_project_opens_with_the_defaults_for_what_it_did_not_keep(
        qtbot, window, image_files, surrogate, tmp_path, monkeypatch):
    # The window has a surrogate, a budget, diversity and a crop set: the old project resets them.
    panel = window.attack_panel
    panel.queries.setValue(55)
    panel.diversity.setValue(0.5)
    assert window.runs.surrogates.use(surrogate) and panel.surrogate_path == surrogate
    show(window, qtbot, "a.png")
    qtbot.waitUntil(window.model_frame.crop_action.isEnabled, timeout=5000)
    window.model_frame.crop_action.trigger()
    assert window.model_frame.crop_of(window.session.current) is not None

    path = tmp_path / "old.advx"
    manifest = {"advexplorer_project": True, "format_version": 1, "saved_by": "AdvExplorer 0.9",
                "model": {"path": None, "card_path": None, "card": None, "device": "auto"},
                "attack_form": {"method": "pgd", "norm": "linf", "eps": "2/255", "steps": 4},
                "current_index": 1,
                "images": [{"path": str(image_files[0]), "sha256": None, "size": [32, 24],
                            "mask_mode": "protect", "label": None, "attack_mask": None,
                            "diagnostic_mask": None, "runs": []},
                           {"path": str(image_files[1]), "sha256": None, "size": None,
                            "mask_mode": "allowed", "label": None, "attack_mask": None,
                            "diagnostic_mask": None, "runs": []}]}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("project.json", json.dumps(manifest))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    window.workspace.project.open_action.trigger()

    assert [entry.path.name for entry in window.session.images] == ["a.png", "b.png"]
    assert window.session.current.path.name == "b.png"
    assert panel.eps.text() == "2/255" and panel.steps.value() == 4
    assert panel.queries.value() == AttackConfig.queries and panel.diversity.value() == AttackConfig.diversity
    assert panel.surrogate_path is None
    assert all(entry.dicom_window is None for entry in window.session.images)
    assert all(window.model_frame.crop_of(entry) is None for entry in window.session.images)
    assert window.workspace.project.path == path


def test_a_surrogate_file_gone_since_is_one_status_line_and_the_project_opens(
        qtbot, window, tmp_path, errors):
    gone = tmp_path / "moved" / "twin.pt"
    path = save_project(tmp_path / "p.advx", ProjectState(
        attack_form={"method": "pgd", "queries": 222, "surrogate": str(gone)}))
    assert window.workspace.project.open(path) is not None
    message = window.statusBar().currentMessage()
    assert "twin.pt was not found" in message and message.startswith(f"Opened {path}")
    assert "\n" not in message and not errors
    assert window.attack_panel.surrogate_path is None and window.attack_panel.queries.value() == 222


def test_open_folder_lists_its_dicom_files_beside_the_png(qtbot, window, tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "series"
    folder.mkdir()
    stored = np.arange(16 * 16).reshape(16, 16)
    write_ct(folder / "001.dcm", stored)
    write_ct(folder / "002.DICOM", stored[::-1])
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "photo.png")
    (folder / "notes.txt").write_text("not an image")
    before = len(window.session.images)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    window.open_folder_action.trigger()
    added = [entry.path.name for entry in window.session.images[before:]]
    assert added == ["001.dcm", "002.DICOM", "photo.png"]
