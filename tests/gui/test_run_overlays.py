"""After a run, its saliency or perturbation is drawn over the main canvas (issue 12), and the
user switches it through View → Canvas overlay and the Layers legend."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt


def _menu(window, title):
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def _submenu(menu, title):
    return next(a.menu() for a in menu.actions() if a.menu() is not None and a.text() == title)


def _action(menu, text):
    return next(a for a in menu.actions() if a.text() == text)


def _click(qtbot, check):
    """Click a check box on its box (its right part is empty space, not the button)."""
    qtbot.mouseClick(check, Qt.MouseButton.LeftButton, pos=QPoint(8, check.height() // 2))


def _run(qtbot, window, **values):
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=3, seed=0, **values)
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.run_action.trigger()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30000)
    return finished.args[0]


def test_a_run_draws_its_saliency_over_the_canvas_and_the_view_menu_switches_it(qtbot, window):
    layers = window.overlay_layers
    items = layers.overlays.items
    assert not any(item.isVisible() for item in items.values())  # nothing before any run
    window.attack_panel.set_values(saliency="gradient")
    summary = _run(qtbot, window)
    assert summary.saliency is not None
    # Drawn without asking: the saliency after the attack, stretched over the 32×24 image.
    assert items["saliency_after"].isVisible() and not items["perturbation"].isVisible()
    rect = items["saliency_after"].mapRectToParent(items["saliency_after"].boundingRect())
    assert (rect.width(), rect.height()) == (32, 24)
    assert layers.dock.isVisible() and layers.legend.checks["saliency_after"].isChecked()

    overlay_menu = _submenu(_menu(window, "&View"), "Canvas overlay")
    _action(overlay_menu, "Perturbation").trigger()
    assert items["perturbation"].isVisible() and not items["saliency_after"].isVisible()
    shown = items["perturbation"].image
    delta = summary.perturbation.mean(axis=2)
    np.testing.assert_allclose(shown, delta, atol=1e-6)  # the run's own perturbation, signed
    assert layers.legend.checks["perturbation"].isChecked()
    assert "/255" in layers.legend.scale_label.text()

    _action(overlay_menu, "None").trigger()
    assert not any(item.isVisible() for item in items.values())
    _run(qtbot, window)  # "None" was the user's choice: the next run keeps the canvas clean
    assert not any(item.isVisible() for item in items.values())
    assert _action(overlay_menu, "None").isChecked()


def test_the_legend_toggles_masks_and_sets_overlay_opacity(qtbot, window):
    layers = window.overlay_layers
    _run(qtbot, window)  # no saliency: the perturbation is what there is to draw
    items = layers.overlays.items
    assert items["perturbation"].isVisible()
    assert not _action(_submenu(_menu(window, "&View"), "Canvas overlay"), "Saliency after").isEnabled()
    legend = layers.legend
    qtbot.waitUntil(lambda: legend.checks["attack"].isVisible() and legend.checks["attack"].height() > 10)
    _click(qtbot, legend.checks["attack"])
    assert not window.canvas.attack_item.isVisible()
    _click(qtbot, legend.checks["attack"])
    assert window.canvas.attack_item.isVisible()
    legend.opacity_slider.setValue(25)
    assert items["perturbation"].opacity() == 0.25
    _click(qtbot, legend.checks["perturbation"])
    assert not items["perturbation"].isVisible()
    assert _action(_submenu(_menu(window, "&View"), "Canvas overlay"), "None").isChecked()


def test_another_image_shows_its_own_runs_overlay_or_none(qtbot, window):
    layers = window.overlay_layers
    _run(qtbot, window)
    first = window.session.current
    window.session.set_current(1)
    assert not any(item.isVisible() for item in layers.overlays.items.values())
    window.session.set_current(window.session.index_of(first))
    assert layers.overlays.items["perturbation"].isVisible()


def test_view_menu_toggles_the_layers_dock(qtbot, window):
    action = _action(_menu(window, "&View"), "Layers and overlays")
    dock = window.overlay_layers.dock
    before = dock.isVisible()
    action.trigger()
    assert dock.isVisible() != before
    action.trigger()
    assert dock.isVisible() == before


def test_the_legend_swatch_follows_the_mask_mode(qtbot, window):
    from advexplorer.gui.canvas import LAYER_COLOURS

    swatch = window.overlay_layers.legend.swatches["attack"]

    def colour():
        return swatch.pixmap().toImage().pixelColor(5, 5).getRgb()[:3]

    window.mode_combo.setCurrentIndex(window.mode_combo.findData("allowed"))
    assert colour() == LAYER_COLOURS["allowed"]
    window.mode_combo.setCurrentIndex(window.mode_combo.findData("protect"))
    assert colour() == LAYER_COLOURS["protect"]


def test_the_perturbation_scale_line_says_zero_and_goes_with_the_image(qtbot, window):
    """A run that changed nothing (gradient masking) says so in the legend instead of a
    made-up '±255/255'; another image without runs shows no scale line at all."""
    import numpy as np

    layers = window.overlay_layers
    _run(qtbot, window)
    assert layers.legend.scale_label.text().startswith("perturbation ±")
    layers.overlays.set_perturbation(np.zeros((3, 16, 16), np.float32))
    layers.legend.sync()
    assert layers.legend.scale_label.text() == "perturbation: zero everywhere (the attack changed no pixel)"
    window.session.set_current(1)
    layers.legend.sync()
    assert layers.legend.scale_label.text() == ""
