"""The Preferences dialog, driven through its widgets: values are stored and read back, the
colour-blind-safe palette is one choice away, a bad ε keeps the dialog open with the reason,
and a damaged settings file falls back to defaults."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QDialogButtonBox

from advexplorer.gui.preferences import (PALETTES, AppPreferences, PreferencesDialog, read_preferences,
                                         write_preferences)


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def reopen(settings):
    """A fresh QSettings on the same file: what the next start of the app reads."""
    return QSettings(settings.fileName(), QSettings.Format.IniFormat)


def press(qtbot, dialog, which):
    qtbot.mouseClick(dialog.buttons.button(which), Qt.MouseButton.LeftButton)


def choose(combo, data):
    combo.setCurrentIndex(combo.findData(data))


def type_into(qtbot, line_edit, text):
    line_edit.selectAll()
    qtbot.keyClick(line_edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(line_edit, text)


def test_a_fresh_install_has_the_documented_defaults(settings):
    preferences = read_preferences(settings)
    assert preferences == AppPreferences()
    assert preferences.default_eps_text == "8/255" and preferences.overlay_colours == PALETTES["default"]


def test_choices_made_in_the_dialog_are_stored_for_the_next_start(qtbot, settings):
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    changed = []
    dialog.preferences_changed.connect(changed.append)
    choose(dialog.device, "cpu")
    dialog.threads.setValue(1)
    type_into(qtbot, dialog.eps, "4/255")
    dialog.steps.setValue(37)
    choose(dialog.palette, "okabe-ito")
    dialog.recent.setValue(12)
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)

    assert dialog.result() == dialog.DialogCode.Accepted
    stored = read_preferences(reopen(settings))
    assert stored == changed[0]
    assert stored.device == "cpu" and stored.torch_threads == 1 and stored.default_steps == 37
    assert stored.default_eps == pytest.approx(4 / 255) and stored.default_eps_text == "4/255"
    assert stored.palette == "okabe-ito" and stored.overlay_colours == PALETTES["okabe-ito"]
    assert stored.recent_files == 12


def test_the_colour_blind_safe_palette_shows_on_the_colour_buttons(qtbot, settings):
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    choose(dialog.palette, "okabe-ito")
    assert dialog.colour_buttons["protect"].text() == "#0072b2"     # Okabe–Ito blue
    assert dialog.colour_buttons["allowed"].text() == "#e69f00"     # Okabe–Ito orange
    assert dialog.colour_buttons["diagnostic"].text() == "#cc79a7"  # Okabe–Ito reddish purple


def test_a_picked_colour_makes_the_palette_custom_and_is_kept(qtbot, settings, monkeypatch):
    monkeypatch.setattr(QColorDialog, "getColor", lambda *args, **kwargs: QColor(10, 20, 30))
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    choose(dialog.palette, "okabe-ito")
    qtbot.mouseClick(dialog.colour_buttons["diagnostic"], Qt.MouseButton.LeftButton)
    assert dialog.palette.currentData() == "custom"
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)
    stored = read_preferences(reopen(settings))
    assert stored.palette == "custom"
    assert stored.overlay_colours == {"protect": (0, 114, 178), "allowed": (230, 159, 0),
                                      "diagnostic": (10, 20, 30)}


@pytest.mark.parametrize("typed, reason", [("abc", "is not a number"), ("0", "must be above 0"),
                                           ("", "is empty")])
def test_a_bad_default_eps_is_said_under_the_field_and_nothing_is_stored(qtbot, settings, typed, reason):
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    type_into(qtbot, dialog.eps, typed)
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)
    assert dialog.isVisible() and dialog.eps_error.isVisible()
    assert reason in dialog.eps_error.text()
    assert read_preferences(reopen(settings)) == AppPreferences()


def test_cancel_stores_nothing_and_restore_defaults_resets_the_widgets(qtbot, settings):
    write_preferences(AppPreferences(device="cpu", default_steps=3, palette="okabe-ito",
                                     overlay_colours=dict(PALETTES["okabe-ito"])), settings)
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.device.currentData() == "cpu" and dialog.steps.value() == 3
    dialog.steps.setValue(99)
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Cancel)
    assert read_preferences(reopen(settings)).default_steps == 3

    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    press(qtbot, dialog, QDialogButtonBox.StandardButton.RestoreDefaults)
    assert dialog.preferences() == AppPreferences()


def test_a_damaged_settings_file_falls_back_to_defaults(tmp_path):
    path = tmp_path / "settings.ini"
    path.write_text("[preferences]\ndevice=quantum\ntorch_threads=-4\ndefault_eps=lots\n"
                    "default_steps=zero\npalette=rainbow\nrecent_files=1000\n")
    assert read_preferences(QSettings(str(path), QSettings.Format.IniFormat)) == AppPreferences()


def test_the_dialog_module_does_not_import_torch():
    import subprocess

    code = ("import sys; import advexplorer.gui.preferences; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
