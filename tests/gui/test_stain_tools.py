"""Mask → Select by stain… (live preview, apply to a layer, undo) and the magic wand, as a user
drives them (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QDialogButtonBox

from advexplorer.core.stain import RGB_FROM_HED, select_by_stain


def _stained(density_h: np.ndarray, density_dab: np.ndarray) -> np.ndarray:
    """RGB uint8 from per-pixel hematoxylin and DAB optical densities (Beer–Lambert)."""
    optical_density = density_h[..., None] * RGB_FROM_HED[0] + density_dab[..., None] * RGB_FROM_HED[2]
    return np.round(np.clip(10 ** -optical_density, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def tissue_file(tmp_path):
    """48×64: two hematoxylin 'nuclei' (OD 0.6 and 0.3), a DAB patch, pale background."""
    yy, xx = np.mgrid[0:48, 0:64]
    hematoxylin = np.full((48, 64), 0.02)
    hematoxylin[(yy - 14) ** 2 + (xx - 16) ** 2 <= 36] = 0.6
    hematoxylin[(yy - 30) ** 2 + (xx - 40) ** 2 <= 25] = 0.3
    dab = np.zeros((48, 64))
    dab[36:46, 4:14] = 0.5
    path = tmp_path / "tissue.png"
    Image.fromarray(_stained(hematoxylin, dab)).save(path)
    return path


def _menu(window, title):
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def _action(menu, text):
    return next(a for a in menu.actions() if a.text() == text)


def _open(window, path):
    window.add_images([path])
    assert window.session.current.path == path
    return np.asarray(Image.open(path)).astype(np.float32) / 255


def test_select_by_stain_previews_live_and_applies_as_one_undo_step(qtbot, window, tissue_file):
    image = _open(window, tissue_file)
    masks = window.session.current.masks
    _action(_menu(window, "&Mask"), "Select by stain…").trigger()
    dialog = window.stain_tools.dialog
    qtbot.waitUntil(dialog.isVisible)
    dialog.stain.setCurrentIndex(dialog.stain.findData("hematoxylin"))
    preview = dialog.preview

    dialog.threshold.setValue(20)  # 0.20 OD: both nuclei
    qtbot.waitUntil(lambda: preview.isVisible() and
                    np.array_equal(preview.image != 0, select_by_stain(image, "hematoxylin", 0.20)))
    both = int(select_by_stain(image, "hematoxylin", 0.20).sum())
    assert f"{both:,} pixels selected" in dialog.coverage.text()
    dialog.threshold.setValue(45)  # 0.45 OD: only the dark nucleus (the slider drives the preview)
    expected = select_by_stain(image, "hematoxylin", 0.45)
    qtbot.waitUntil(lambda: np.array_equal(preview.image != 0, expected))
    assert 0 < expected.sum() < both
    assert not masks.attack.data.any()  # a preview paints nothing

    dialog.target.setCurrentIndex(dialog.target.findData("protect"))
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Apply), Qt.MouseButton.LeftButton)
    assert masks.mode == "protect" and window.mode_combo.currentData() == "protect"
    np.testing.assert_array_equal(masks.attack.data != 0, expected)
    assert window.undo_action.isEnabled()

    # Add the DAB patch to the same protect mask, then undo only that step.
    dialog.stain.setCurrentIndex(dialog.stain.findData("dab"))
    dialog.combine.setCurrentIndex(dialog.combine.findData("add"))
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Apply), Qt.MouseButton.LeftButton)
    dab = select_by_stain(image, "dab", dialog.threshold_value)
    assert dab[36:46, 4:14].all() and not dab[:30].any()
    np.testing.assert_array_equal(masks.attack.data != 0, expected | dab)
    window.undo_action.trigger()
    np.testing.assert_array_equal(masks.attack.data != 0, expected)
    window.undo_action.trigger()
    assert not masks.attack.data.any()

    dialog.close()
    assert not preview.isVisible()


def test_select_by_stain_into_the_allowed_mask_and_the_diagnostic_region(qtbot, window, tissue_file):
    image = _open(window, tissue_file)
    masks = window.session.current.masks
    dialog = window.stain_tools.show_dialog()
    dialog.stain.setCurrentIndex(dialog.stain.findData("hematoxylin"))
    dialog.set_threshold(0.2)
    dialog.target.setCurrentIndex(dialog.target.findData("diagnostic"))
    dialog.apply_button.click()
    nuclei = select_by_stain(image, "hematoxylin", 0.2)
    np.testing.assert_array_equal(masks.diagnostic.data != 0, nuclei)
    assert window.canvas.active_layer == "diagnostic"  # so Ctrl+Z undoes what was just applied
    dialog.target.setCurrentIndex(dialog.target.findData("allowed"))
    dialog.apply_button.click()
    assert masks.mode == "allowed" and masks.mask_mode == "allowed"
    np.testing.assert_array_equal(masks.attack.data != 0, nuclei)
    dialog.close()


def test_a_grey_image_says_why_it_cannot_be_selected_by_stain(qtbot, window, tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(path)
    window.add_images([path])
    dialog = window.stain_tools.show_dialog()
    assert "colour (RGB) image" in dialog.coverage.text()
    assert not dialog.apply_button.isEnabled()
    dialog.close()


def _click_pixel(qtbot, canvas, column, row):
    """A left click on the canvas over pixel (column, row), as the mouse would do it."""
    scene = canvas.view.mapViewToScene(QPointF(column + 0.5, row + 0.5))
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.mapFromScene(scene))


def test_magic_wand_adds_the_clicked_region_with_the_toolbars_tolerance(qtbot, window, tissue_file):
    image = _open(window, tissue_file)
    canvas, masks = window.canvas, window.session.current.masks
    wand = _action(_menu(window, "&Mask"), "Magic wand")
    wand.trigger()
    assert canvas.tool == "wand" and wand.isChecked()
    assert window.stain_tools.tolerance_action.isVisible()
    window.stain_tools.tolerance.setValue(0.05)
    canvas.view.autoRange(padding=0)
    qtbot.wait(50)
    _click_pixel(qtbot, canvas, 16, 14)  # the centre of the dark nucleus
    nucleus = select_by_stain(image, "hematoxylin", 0.45)
    np.testing.assert_array_equal(masks.attack.data != 0, nucleus)
    _click_pixel(qtbot, canvas, 40, 30)  # the paler nucleus joins it: the wand adds
    assert (masks.attack.data != 0).sum() > nucleus.sum() and masks.attack.data[30, 40]
    window.undo_action.trigger()
    np.testing.assert_array_equal(masks.attack.data != 0, nucleus)
    _action(_menu(window, "&Mask"), "Brush").trigger()
    assert not window.stain_tools.tolerance_action.isVisible()


def test_a_large_images_densities_are_computed_off_the_gui_thread(qtbot, window, tissue_file, monkeypatch):
    import threading

    from advexplorer.core import stain as core_stain
    from advexplorer.gui import stain_tools

    monkeypatch.setattr(stain_tools, "BACKGROUND_PIXELS", 100)  # the 48×64 tissue counts as large
    threads = []
    real = core_stain.stain_channel

    def recording(image, stain):
        threads.append((image.shape[:2], threading.current_thread() is threading.main_thread()))
        return real(image, stain)

    monkeypatch.setattr(stain_tools, "stain_channel", recording)
    image = _open(window, tissue_file)
    _action(_menu(window, "&Mask"), "Select by stain…").trigger()
    dialog = window.stain_tools.dialog
    dialog.stain.setCurrentIndex(dialog.stain.findData("dab"))
    dialog.stain.setCurrentIndex(dialog.stain.findData("hematoxylin"))  # changed while computing
    dialog.set_threshold(0.2)
    expected = select_by_stain(image, "hematoxylin", 0.2)
    qtbot.waitUntil(lambda: dialog.preview.isVisible() and np.array_equal(dialog.preview.image != 0, expected),
                    timeout=10000)
    assert dialog.apply_button.isEnabled() and "pixels selected" in dialog.coverage.text()
    # Only the 1×1 grey check runs on the GUI thread; the whole image is deconvolved off it.
    whole = [on_main for shape, on_main in threads if shape == (48, 64)]
    assert whole and not any(whole)
    qtbot.waitUntil(lambda: not dialog.computing, timeout=10000)
    dialog.close()


def test_a_large_images_magic_wand_selects_off_the_gui_thread(qtbot, window, tissue_file, wand_in_a_worker):
    """Above WAND_BACKGROUND_PIXELS the wand's flood fill runs in a worker; the layer gets the
    same region, as one undo step, and mask_edited says so when it lands."""
    image = _open(window, tissue_file)  # 48×64: large, for wand_in_a_worker
    canvas, masks = window.canvas, window.session.current.masks
    _action(_menu(window, "&Mask"), "Magic wand").trigger()
    window.stain_tools.tolerance.setValue(0.05)
    canvas.view.autoRange(padding=0)
    qtbot.wait(50)
    with qtbot.waitSignal(canvas.mask_edited, timeout=10000):
        _click_pixel(qtbot, canvas, 16, 14)
    assert wand_in_a_worker == [False]
    np.testing.assert_array_equal(masks.attack.data != 0, select_by_stain(image, "hematoxylin", 0.45))
    window.undo_action.trigger()
    assert not masks.attack.data.any()
