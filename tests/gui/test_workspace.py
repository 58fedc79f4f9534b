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
