"""Painting masks on the canvas: mouse strokes, shortcuts, undo/redo, modes."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt


def _drag(qtbot, widget, start, end, moves=10):
    """Press, move in steps (pyqtgraph drops moves closer than ~10 ms apart), release."""
    qtbot.mousePress(widget, Qt.MouseButton.LeftButton, pos=start)
    for t in np.linspace(0, 1, moves):
        qtbot.wait(15)
        qtbot.mouseMove(widget, start + (end - start) * float(t))
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, pos=end)


def _widget_pos(window, x, y) -> QPoint:
    """Viewport position of image pixel (x, y)'s centre."""
    canvas = window.canvas
    scene = canvas.view.mapViewToScene(QPointF(x + 0.5, y + 0.5))
    return canvas.mapFromScene(scene)


def test_mouse_stroke_paints_and_undo_redo_restore(qtbot, window):
    canvas = window.canvas
    canvas.set_brush_size(3)
    qtbot.waitExposed(window)
    layer = window.session.current.masks.attack
    assert layer.is_empty
    viewport = canvas.viewport()
    start, end = _widget_pos(window, 4, 10), _widget_pos(window, 26, 10)
    _drag(qtbot, viewport, start, end)
    painted = layer.copy()
    assert painted[10, 6:24].all(), "the stroke covers the dragged line"
    assert painted[0].sum() == 0 and painted[20].sum() == 0
    assert layer.undo_depth == 1, "one stroke is one undo item"

    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert layer.is_empty
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(layer.data, painted)


def test_shortcuts_switch_tools_and_brush_size(qtbot, window):
    qtbot.waitExposed(window)
    canvas = window.canvas
    for key, tool in ((Qt.Key.Key_E, "eraser"), (Qt.Key.Key_F, "fill"), (Qt.Key.Key_B, "brush")):
        qtbot.keyClick(window, key)
        assert canvas.tool == tool and window.tool_actions[tool].isChecked()
    size = canvas.brush_size
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)
    assert canvas.brush_size > size and window.brush_size.value() == canvas.brush_size
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size < size


def test_space_drag_pans_instead_of_painting(qtbot, window):
    qtbot.waitExposed(window)
    canvas = window.canvas
    layer = window.session.current.masks.attack
    canvas.setFocus()
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    before = canvas.view.viewRange()
    viewport = canvas.viewport()
    start, end = _widget_pos(window, 5, 5), _widget_pos(window, 25, 15)
    _drag(qtbot, viewport, start, end)
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert layer.is_empty
    assert canvas.view.viewRange() != before


def test_fill_rectangle_and_diagnostic_layer(qtbot, window):
    canvas = window.canvas
    masks = window.session.current.masks
    canvas.set_tool("rectangle")
    canvas.press(QPointF(2.2, 3.7))
    canvas.drag_to(QPointF(9.9, 8.1))
    canvas.release(QPointF(9.9, 8.1))
    assert masks.attack.data[3:9, 2:10].all() and masks.attack.data.sum() == 6 * 8
    window.layer_combo.setCurrentIndex(window.layer_combo.findData("diagnostic"))
    canvas.set_tool("fill")
    canvas.click(QPointF(20.5, 20.5))
    assert masks.diagnostic.data.all(), "fill on an empty layer fills everything"
    assert masks.attack.data.sum() == 48, "the attack layer is untouched"
    window.undo()
    assert masks.diagnostic.is_empty and masks.attack.data.sum() == 48


def test_a_large_images_fill_runs_off_the_gui_thread_and_equals_the_inline_fill(qtbot, window, wand_in_a_worker):
    """Above WAND_BACKGROUND_PIXELS the fill tool's flood fill runs in a worker; the layer
    ends exactly as the inline fill leaves it, as one undo step."""
    canvas, masks = window.canvas, window.session.current.masks
    canvas.set_tool("rectangle")  # a wall across the image: the fill stays on one side
    canvas.press(QPointF(10.2, 0.2))
    canvas.drag_to(QPointF(11.2, 30.0))
    canvas.release(QPointF(11.2, 30.0))
    before = masks.attack.data.copy()
    expected = masks.attack.data.copy()
    from scipy import ndimage

    regions, _ = ndimage.label(expected == 0)
    expected[regions == regions[5, 3]] = 1  # the inline fill's rule: the 4-connected empty region
    canvas.set_tool("fill")
    with qtbot.waitSignal(canvas.mask_edited, timeout=10000):
        canvas.click(QPointF(3.5, 5.5))
    assert wand_in_a_worker == [False]
    np.testing.assert_array_equal(masks.attack.data, expected)
    assert not masks.attack.data[:, 12:].any(), "the wall keeps the right side empty"
    window.undo()
    np.testing.assert_array_equal(masks.attack.data, before)
