"""Mask → Load annotations as masks… (QuPath GeoJSON, ImageJ ROIs) and Mask → Save mask as
GeoJSON…, as a user clicks them; a slide tile places them by its region (issue 12)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QFileDialog

pytest.importorskip("shapely")


def _menu(window, title):
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def _action(menu, text):
    return next(a for a in menu.actions() if a.text() == text)


def _square(x0, y0, x1, y1, name):
    return {"type": "Feature", "properties": {"classification": {"name": name}},
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}


def _answer_class_dialog(protect=(), diagnostic=(), cancel=False):
    """Tick classes in the modal class dialog once it opens, then press OK (or Cancel)."""
    from advexplorer.gui.controllers.masks import AnnotationClassesDialog

    def answer():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, AnnotationClassesDialog):
            QTimer.singleShot(20, answer)
            return
        for name in protect:
            dialog.check("protect", name)
        for name in diagnostic:
            dialog.check("diagnostic", name)
        button = QDialogButtonBox.StandardButton.Cancel if cancel else QDialogButtonBox.StandardButton.Ok
        dialog.buttons.button(button).click()

    QTimer.singleShot(20, answer)


def test_geojson_classes_become_the_protect_mask_and_diagnostic_region(qtbot, window, tmp_path, monkeypatch):
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _square(2, 3, 12, 9, "Tumor"), _square(20, 10, 30, 20, "Stroma"), _square(0, 0, 4, 4, "Necrosis")]}))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    masks = window.session.current.masks  # a.png, 32×24
    window.mode_combo.setCurrentIndex(window.mode_combo.findData("allowed"))
    _answer_class_dialog(protect=["Tumor"], diagnostic=["Stroma"])
    _action(_menu(window, "&Mask"), "Load annotations as masks…").trigger()
    protect = np.zeros((24, 32), bool)
    protect[3:9, 2:12] = True
    diagnostic = np.zeros((24, 32), bool)
    diagnostic[10:20, 20:30] = True
    assert masks.mode == "protect" and window.mode_combo.currentData() == "protect"
    np.testing.assert_array_equal(masks.attack.data != 0, protect)
    np.testing.assert_array_equal(masks.diagnostic.data != 0, diagnostic)
    window.undo_action.trigger()  # the diagnostic layer is active: its load is undone
    assert not masks.diagnostic.data.any() and masks.attack.data.any()

    _answer_class_dialog(cancel=True)
    _action(_menu(window, "&Mask"), "Load annotations as masks…").trigger()
    np.testing.assert_array_equal(masks.attack.data != 0, protect)  # cancel changes nothing


def test_an_imagej_roi_zip_and_a_bad_file(qtbot, window, tmp_path, monkeypatch, errors):
    roifile = pytest.importorskip("roifile")
    from roifile import ROI_TYPE, ImagejRoi

    path = tmp_path / "RoiSet.zip"
    roifile.roiwrite(path, [ImagejRoi(roitype=ROI_TYPE.RECT, left=4, top=2, right=10, bottom=8, name="Nuclei",
                                      version=228)], mode="w")
    assert window.annotations.load(path, protect_classes=["Nuclei"])
    assert window.session.current.masks.attack.data[2:8, 4:10].all()
    junk = tmp_path / "junk.roi"
    junk.write_bytes(b"nope")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(junk), ""))
    _action(_menu(window, "&Mask"), "Load annotations as masks…").trigger()
    assert errors and "junk.roi is not an ImageJ ROI file" in errors[-1][1]


def test_a_slide_tile_reads_and_writes_annotations_in_slide_coordinates(qtbot, window, tmp_path, monkeypatch):
    pytest.importorskip("tiffslide")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    from slide_fixtures import tissue, write_pyramid

    from advexplorer.io.annotations import rasterise, read_annotations
    from advexplorer.io.slides import read_region

    slide = tmp_path / "slide.tif"
    write_pyramid(slide, tissue(128, 160), levels=2, tile=64)
    (tmp_path / "tiles").mkdir()
    window.preferences.set_folder("tiles", tmp_path / "tiles")
    window.workspace._tile_cut(*read_region(slide, 1, 10, 5, 32, 32))  # level 1: level-0 (20, 10)–(84, 74)
    geojson = tmp_path / "slide.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [_square(40, 30, 60, 50, "Tumor")]}))
    assert window.annotations.load(geojson, protect_classes=["Tumor"])
    masks = window.session.current.masks
    expected = np.zeros((32, 32), bool)
    expected[10:20, 10:20] = True  # level-0 (40, 30)–(60, 50) at downsample 2, tile corner (20, 10)
    np.testing.assert_array_equal(masks.attack.data != 0, expected)

    out = tmp_path / "export.geojson"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    window.layer_combo.setCurrentIndex(window.layer_combo.findData("attack"))
    _action(_menu(window, "&Mask"), "Save mask as GeoJSON…").trigger()
    exported = read_annotations(out)
    assert [a.name for a in exported] == ["Protect"]
    # Back on the slide: the same level-0 square.
    np.testing.assert_array_equal(rasterise(exported, (128, 160)), rasterise(read_annotations(geojson), (128, 160)))
