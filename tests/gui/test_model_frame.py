"""The frame on the canvas showing what the model sees, and a crop the user moves that the run
then attacks and records like a slide region (issue 12)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication


def _menu(window, title):
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def _action(menu, text):
    return next(a for a in menu.actions() if a.text() == text)


def _drag(qtbot, canvas, start, end, steps=6):
    """A left-button drag on the canvas from image point ``start`` to ``end`` (x, y), as a mouse does."""
    viewport = canvas.viewport()

    def at(point):
        return QPointF(canvas.mapFromScene(canvas.view.mapViewToScene(QPointF(*point))))

    def send(kind, point, buttons):
        local = at(point)
        event = QMouseEvent(kind, local, viewport.mapToGlobal(local.toPoint()).toPointF(),
                            Qt.MouseButton.LeftButton, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)

    send(QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
    for i in range(1, steps + 1):
        t = i / steps
        send(QEvent.Type.MouseMove, (start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t),
             Qt.MouseButton.LeftButton)
        qtbot.wait(5)
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def test_the_frame_shows_the_card_rule_and_the_chosen_crop_is_attacked_and_reproduced(
        qtbot, window, tmp_path, capsys):
    from advexplorer.cli import main

    canvas, frame = window.canvas, window.model_frame.frame
    window.canvas.view.autoRange(padding=0)
    qtbot.waitUntil(frame.is_visible)
    # a.png is 32×24 and the model's input 16×16 (stretch): the frame is the whole image.
    assert frame.box == (0, 0, 32, 24) and "stretched 32×24 → 16×16" in frame.label.textItem.toPlainText()
    assert not frame.movable
    masks = window.session.current.masks
    masks.attack.fill_rectangle(0, 0, 31, 11)  # protect the top half of the file

    crop_action = _action(_menu(window, "&View"), "Choose the model's crop")
    crop_action.trigger()
    assert crop_action.isChecked() and frame.movable
    assert frame.box == (8, 4, 16, 16)  # model-sized, full resolution, centred
    _drag(qtbot, canvas, (12, 8), (8, 14))  # grab inside the frame, move it left 4 and down 6
    qtbot.waitUntil(lambda: frame.box == (4, 8, 16, 16))
    assert window.model_frame.crop_of(window.session.current) == (4, 8, 16, 16)
    assert masks.attack.data[8:24, 4:20].sum() == 4 * 16  # the drag moved the frame, painted nothing

    window.attack_panel.set_values(method="pgd", eps="8/255", steps=2, seed=5)
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.run_action.trigger()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30000)
    summary = finished.args[0]
    image = summary.record["image"]
    path = window.session.current.path
    assert image["path"] == str(path.resolve())
    region = image["region"]
    assert (region["level"], region["x"], region["y"], region["w"], region["h"]) == (0, 4, 8, 16, 16)
    assert len(region["pixels_sha256"]) == 64 and region["slide_sha256"] == image["sha256"]
    pixels = np.asarray(Image.open(path)).astype(np.float32) / 255
    np.testing.assert_allclose(summary.request.image.original, pixels[8:24, 4:20], atol=1e-7)
    # The protect mask followed the crop: rows 8–11 of the file (the crop's first 4) are protected.
    allowed = summary.request.allowed_mask.numpy()
    assert not allowed[:4].any() and allowed[4:].all()
    # Its perturbation lies over the crop on the canvas.
    overlay = window.overlay_layers.overlays.items["perturbation"]
    rect = overlay.mapRectToParent(overlay.boundingRect())
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == (4, 8, 16, 16)

    folder = window.save_run(summary, tmp_path / "run")
    capsys.readouterr()
    assert main(["reproduce", str(folder)]) == 0
    assert "MATCH" in capsys.readouterr().out
    record = json.loads((folder / "record.json").read_text())
    assert record["image"]["region"]["x"] == 4

    crop_action.trigger()  # back to the card's rule
    assert not frame.movable and frame.box == (0, 0, 32, 24)
    assert window.model_frame.crop_of(window.session.current) is None


def test_each_image_keeps_its_crop_and_the_frame_follows_the_image(qtbot, window):
    frame, controller = window.model_frame.frame, window.model_frame
    _action(_menu(window, "&View"), "Choose the model's crop").trigger()
    first = window.session.current
    window.session.set_current(1)  # b.png, 20×20: no crop chosen
    qtbot.waitUntil(lambda: frame.box == (0, 0, 20, 20))
    assert not frame.movable and controller.crop_of(window.session.current) is None
    window.session.set_current(window.session.index_of(first))
    qtbot.waitUntil(lambda: frame.movable and frame.box == (8, 4, 16, 16))


def test_view_menu_hides_the_frame(qtbot, window):
    frame = window.model_frame.frame
    qtbot.waitUntil(frame.is_visible)
    _action(_menu(window, "&View"), "Model input frame").trigger()
    assert not frame.is_visible()
    _action(_menu(window, "&View"), "Model input frame").trigger()
    assert frame.is_visible()


@pytest.mark.parametrize("size", [(8, 12)])
def test_an_image_smaller_than_the_input_gets_the_largest_crop_with_the_models_shape(qtbot, window, tmp_path, size):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(path)
    window.add_images([path])
    _action(_menu(window, "&View"), "Choose the model's crop").trigger()
    assert window.model_frame.frame.box == (2, 0, 8, 8)
