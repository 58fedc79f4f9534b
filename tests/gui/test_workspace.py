"""The Tools and Edit menus reach the rooms beside the canvas; closing asks about unsaved work."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox


def _menu(window, title):
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def test_tools_menu_opens_the_sequence_probe_and_the_train_panel(window, qtbot):
    tools = _menu(window, "&Tools")
    texts = [action.text() for action in tools.actions()]
    assert texts == ["Open slide…", "Train a robust twin…", "Protein sequence probe…"]
    window.workspace.train_action.trigger()
    assert window.workspace.train_dock.isVisible()
    assert window.workspace.train_panel.model is window.model  # the loaded model is the one trained
    window.workspace.sequence_action.trigger()
    qtbot.waitUntil(lambda: window.workspace.sequence_window.isVisible(), timeout=5000)
    assert [a.text() for a in window.menuBar().actions()][-1] == "&Help"


def test_preferences_are_in_the_edit_menu_and_apply_to_the_form(window, monkeypatch):
    from advexplorer.gui.preferences import AppPreferences

    assert window.workspace.preferences_action in _menu(window, "&Edit").actions()
    window.workspace.apply_preferences(AppPreferences(default_eps=4 / 255, default_steps=7))
    assert window.attack_panel.eps.text() == "4/255"
    assert window.attack_panel.steps.value() == 7


def test_no_two_actions_share_a_shortcut(window):
    seen = {}
    for action in window.findChildren(type(window.run_action)):
        for shortcut in action.shortcuts():
            key = shortcut.toString()
            assert key not in seen, f"{key} is both {seen[key]!r} and {action.text()!r}"
            seen[key] = action.text()


def test_closing_with_unsaved_work_asks_and_cancel_keeps_the_window(window, qtbot, monkeypatch):
    window.workspace.project.changed()  # e.g. a stroke on the mask
    monkeypatch.setattr(QMessageBox, "exec", lambda box: QMessageBox.StandardButton.Cancel)
    assert not window.close()
    assert window.isVisible()


def test_a_fresh_window_closes_without_asking(window, monkeypatch):
    asked = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: asked.append(box.windowTitle()) or QMessageBox.StandardButton.Cancel)
    window.attack_panel.set_values(eps="2/255")  # editing the form is not work to lose
    assert window.close()
    assert asked == []


def test_every_preference_takes_effect_on_ok(window, qtbot, monkeypatch):
    """Preferences → OK: ε and steps in the form, the mask colours on the canvas and in the
    Layers legend, how many recent files the menu lists, and the attack threads."""
    import torch
    from PySide6.QtCore import QSettings

    from advexplorer.gui import engine
    from advexplorer.gui.preferences import PALETTES, AppPreferences, PreferencesDialog

    monkeypatch.delenv("ADVEXPLORER_THREADS", raising=False)
    monkeypatch.setattr(engine, "THREADS_PREFERENCE", 0)
    before_threads = torch.get_num_threads()
    for index in range(5):
        window.preferences.remember("recent_models", f"/models/m{index}.pt")
    dialog = PreferencesDialog(window.settings, window)
    dialog.preferences_changed.connect(window.workspace.apply_preferences)
    dialog.show_preferences(AppPreferences(default_eps=2 / 255, default_steps=33, palette="okabe-ito",
                                           overlay_colours=dict(PALETTES["okabe-ito"]), recent_files=2,
                                           torch_threads=1, device="cpu"))
    try:
        dialog.accept()
        assert window.attack_panel.eps.text() == "2/255" and window.attack_panel.steps.value() == 33
        assert window.canvas.colours == PALETTES["okabe-ito"]
        lut = window.canvas.attack_item.lut
        mode = window.session.current.masks.mode
        assert tuple(lut[-1][:3]) == PALETTES["okabe-ito"][mode]  # the painted value's colour
        legend = window.overlay_layers.legend.swatches["attack"].pixmap().toImage()
        assert legend.pixelColor(legend.width() // 2, legend.height() // 2).getRgb()[:3] == \
            PALETTES["okabe-ito"][mode]
        assert window.preferences.recent("recent_models") == ["/models/m4.pt", "/models/m3.pt"]
        listed = [a.text() for a in window.recent_models_menu.actions() if "/models/m" in a.text()
                  or a.text().startswith("m")]
        assert len(listed) == 2
        assert engine.engine_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before_threads)
        engine.THREADS_PREFERENCE = 0


def test_stored_preferences_apply_at_start(qtbot, settings_file, errors, tiny_model, image_files):
    """The preferences are read when the window starts, not only when the dialog's OK is pressed."""
    from PySide6.QtCore import QSettings

    from advexplorer.gui.app import application
    from advexplorer.gui.main_window import MainWindow, StartOptions
    from advexplorer.gui.preferences import PALETTES, AppPreferences, write_preferences

    application()
    write_preferences(AppPreferences(default_eps=4 / 255, default_steps=7, palette="okabe-ito",
                                     overlay_colours=dict(PALETTES["okabe-ito"]), recent_files=3, device="cpu"),
                      QSettings(str(settings_file), QSettings.Format.IniFormat))
    window = MainWindow(StartOptions(use_default_model=False, images=list(image_files)))
    qtbot.addWidget(window)
    window.start()
    assert window.attack_panel.eps.text() == "4/255" and window.attack_panel.steps.value() == 7
    assert window.canvas.colours == PALETTES["okabe-ito"]
    assert window.preferences.limit == 3 and window.models.start_device == "cpu"
    qtbot.waitUntil(lambda: window.engine.is_ready, timeout=30000)
    assert window.attack_panel.device.currentText() == "cpu"
