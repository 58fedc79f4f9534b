"""Preferences: device, torch threads, default ε and steps, overlay colours, recent files.

:func:`read_preferences` gives the stored values as an :class:`AppPreferences` (defaults for
anything missing or unreadable, so a hand-edited settings file never stops the app);
:class:`PreferencesDialog` edits and stores them in the app's :class:`QSettings` (the same
store as the window layout and recent files, under ``preferences/``) and emits
``preferences_changed`` when the user presses OK.

Overlay colours come as palettes: the app's default (cyan protect, orange allowed, magenta
diagnostic), a colour-blind-safe palette from Okabe & Ito ("Color Universal Design", 2008,
https://jfly.uni-koeln.de/color/), distinguishable with protanopia, deuteranopia and
tritanopia, or custom colours picked per layer.

No torch here: the dialog opens before the engine has loaded.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

from PySide6.QtCore import QSettings, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QCheckBox, QColorDialog, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from advexplorer.config import over_255, parse_number
from advexplorer.errors import UserError

__all__ = ["AppPreferences", "PALETTES", "PALETTE_LABELS", "DEVICES", "LAYERS", "read_preferences",
           "write_preferences", "PreferencesDialog"]

GROUP = "preferences"
DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_LABELS = {"auto": "Automatic (CUDA, then MPS, then CPU)", "cpu": "CPU", "cuda": "CUDA GPU",
                 "mps": "Apple GPU (MPS)"}
#: The mask layers that have an overlay colour, in the order shown.
LAYERS = ("protect", "allowed", "diagnostic")
LAYER_LABELS = {"protect": "Protect mask", "allowed": "Allowed mask", "diagnostic": "Diagnostic region"}
RGB = tuple[int, int, int]
#: Overlay palettes: layer → RGB. "default" is the canvas's original colours.
PALETTES: dict[str, dict[str, RGB]] = {
    "default": {"protect": (0, 200, 255), "allowed": (255, 150, 0), "diagnostic": (255, 0, 200)},
    # Okabe–Ito blue, orange and reddish purple: apart for every common colour-vision deficiency.
    "okabe-ito": {"protect": (0, 114, 178), "allowed": (230, 159, 0), "diagnostic": (204, 121, 167)},
}
PALETTE_LABELS = {"default": "Default (cyan, orange, magenta)",
                  "okabe-ito": "Colour-blind safe (Okabe–Ito)", "custom": "Custom"}
MAX_THREADS = max(1, os.cpu_count() or 1)
MAX_RECENT_FILES = 30


@dataclass(frozen=True)
class AppPreferences:
    """What the user chose. ``torch_threads`` 0 means torch's own default; ``default_eps``
    is in pixel units ([0,1] images), e.g. 8/255; ``overlay_colours`` maps each of
    :data:`LAYERS` to an RGB triple (the palette's, or custom ones)."""

    device: str = "auto"
    torch_threads: int = 0
    default_eps: float = 8 / 255
    default_steps: int = 10  # the attack form's own default
    palette: str = "default"
    overlay_colours: dict[str, RGB] = field(default_factory=lambda: dict(PALETTES["default"]))
    recent_files: int = 8
    attack_process: bool = True  # live runs in their own process (advexplorer.gui.attack_process)

    @property
    def default_eps_text(self) -> str:
        """ε as the attack form shows it (``8/255`` when it is a whole number of 255ths)."""
        return over_255(self.default_eps)


def _default_settings() -> QSettings:
    from advexplorer.gui.controllers.settings import open_settings

    return open_settings()


def _int(value, default: int, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if low <= number <= high else default


def _colour(value, default: RGB) -> RGB:
    """``#rrggbb`` (how they are stored) → RGB; anything else → ``default``."""
    colour = QColor(str(value)) if value is not None else QColor()
    return (colour.red(), colour.green(), colour.blue()) if colour.isValid() else default


def read_preferences(settings: QSettings | None = None) -> AppPreferences:
    """The stored preferences; defaults for anything missing or not readable."""
    settings = settings if settings is not None else _default_settings()
    defaults = AppPreferences()
    settings.beginGroup(GROUP)
    try:
        device = str(settings.value("device", defaults.device))
        palette = str(settings.value("palette", defaults.palette))
        palette = palette if palette in PALETTE_LABELS else defaults.palette
        base = PALETTES.get(palette, PALETTES["default"])
        colours = {layer: _colour(settings.value(f"colour_{layer}"), base[layer]) if palette == "custom"
                   else base[layer] for layer in LAYERS}
        try:
            eps = parse_number(settings.value("default_eps", defaults.default_eps_text), "default ε")
        except UserError:
            eps = defaults.default_eps
        return AppPreferences(
            device=device if device in DEVICES else defaults.device,
            torch_threads=_int(settings.value("torch_threads"), defaults.torch_threads, 0, MAX_THREADS),
            default_eps=eps if eps > 0 else defaults.default_eps,
            default_steps=_int(settings.value("default_steps"), defaults.default_steps, 1, 100_000),
            palette=palette, overlay_colours=colours,
            recent_files=_int(settings.value("recent_files"), defaults.recent_files, 0, MAX_RECENT_FILES),
            attack_process=str(settings.value("attack_process", "true")).lower() not in ("false", "0", "no"))
    finally:
        settings.endGroup()


def write_preferences(preferences: AppPreferences, settings: QSettings | None = None) -> None:
    """Store ``preferences`` (colours as ``#rrggbb``, ε as typed-style text such as 8/255)."""
    settings = settings if settings is not None else _default_settings()
    settings.beginGroup(GROUP)
    try:
        values = asdict(preferences)
        for key in ("device", "torch_threads", "default_steps", "palette", "recent_files"):
            settings.setValue(key, values[key])
        settings.setValue("default_eps", preferences.default_eps_text)
        settings.setValue("attack_process", "true" if preferences.attack_process else "false")
        for layer, rgb in preferences.overlay_colours.items():
            settings.setValue(f"colour_{layer}", QColor(*rgb).name())
    finally:
        settings.endGroup()
    settings.sync()


class ColourButton(QPushButton):
    """A button showing a colour; clicking it opens a colour picker."""

    colour_changed = Signal(tuple)

    def __init__(self, rgb: RGB, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFixedWidth(72)
        self.rgb = rgb
        self._show()
        self.clicked.connect(self.pick)

    def set_rgb(self, rgb: RGB) -> None:
        self.rgb = tuple(int(v) for v in rgb)
        self._show()

    def _show(self) -> None:
        name = QColor(*self.rgb).name()
        self.setText(name)
        self.setStyleSheet(f"background: {name}; color: {'#000' if sum(self.rgb) > 380 else '#fff'};")

    def pick(self) -> None:
        colour = QColorDialog.getColor(QColor(*self.rgb), self, "Overlay colour")
        if colour.isValid():
            self.set_rgb((colour.red(), colour.green(), colour.blue()))
            self.colour_changed.emit(self.rgb)


class PreferencesDialog(QDialog):
    """Edit → Preferences…: edits the stored :class:`AppPreferences`.

    OK validates (ε must be a positive number such as 8/255; a mistake is shown under the
    field and keeps the dialog open), stores and emits ``preferences_changed``.
    """

    preferences_changed = Signal(object)

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.settings = settings if settings is not None else _default_settings()
        current = read_preferences(self.settings)

        self.device = QComboBox()
        for name in DEVICES:
            self.device.addItem(DEVICE_LABELS[name], name)
        self.device.setToolTip("Where models run: at every start, and at once (the model is loaded "
                               "again on it) when you press OK.")
        self.threads = QSpinBox()
        self.threads.setRange(0, MAX_THREADS)
        self.threads.setSpecialValueText("Automatic")
        self.threads.setToolTip("CPU threads an attack may use (Automatic: all cores but one, which "
                                "stays free for drawing). ADVEXPLORER_THREADS overrides it.")
        self.eps = QLineEdit()
        self.eps.setPlaceholderText("8/255")
        self.eps.setToolTip("The ε a new attack form starts with, in pixel units: 8/255, 0.03, 0.5/255.")
        self.eps_error = QLabel()
        self.eps_error.setStyleSheet("color: #e15759;")
        self.eps_error.setWordWrap(True)
        self.eps_error.hide()
        self.steps = QSpinBox()
        self.steps.setRange(1, 100_000)
        self.palette = QComboBox()
        for name, label in PALETTE_LABELS.items():
            self.palette.addItem(label, name)
        self.colour_buttons = {layer: ColourButton(PALETTES["default"][layer]) for layer in LAYERS}
        self.recent = QSpinBox()
        self.recent.setRange(0, MAX_RECENT_FILES)
        self.recent.setToolTip("How many recent images, models and projects the File menu lists.")
        self.attack_process = QCheckBox("Run live attacks in a process of their own")
        self.attack_process.setToolTip(
            "Drawing a live run then never slows the attack (on the CPU). It costs a second copy of "
            "torch and the model in memory (about 0.7 GB for the demo); off, attacks run in a thread.")

        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow("Torch threads", self.threads)
        form.addRow("Default ε", self.eps)
        form.addRow("", self.eps_error)
        form.addRow("Default steps", self.steps)
        form.addRow("Overlay colours", self.palette)
        for layer in LAYERS:
            row = QHBoxLayout()
            row.addWidget(self.colour_buttons[layer])
            row.addStretch(1)
            form.addRow(f"    {LAYER_LABELS[layer]}", row)
        form.addRow("Recent files listed", self.recent)
        form.addRow("Attacks", self.attack_process)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.RestoreDefaults)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            lambda: self.show_preferences(AppPreferences()))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)

        self.palette.currentIndexChanged.connect(self._palette_chosen)
        for layer, button in self.colour_buttons.items():
            button.colour_changed.connect(self._colour_picked)
        self.eps.textChanged.connect(lambda _text: self.eps_error.hide())
        self.show_preferences(current)

    # -- widgets <-> preferences -------------------------------------------------------
    def show_preferences(self, preferences: AppPreferences) -> None:
        """Put ``preferences`` into the widgets."""
        self.device.setCurrentIndex(self.device.findData(preferences.device))
        self.threads.setValue(preferences.torch_threads)
        self.eps.setText(preferences.default_eps_text)
        self.steps.setValue(preferences.default_steps)
        self.palette.blockSignals(True)  # the colours below are the palette's already
        self.palette.setCurrentIndex(self.palette.findData(preferences.palette))
        self.palette.blockSignals(False)
        for layer, button in self.colour_buttons.items():
            button.set_rgb(preferences.overlay_colours[layer])
        self.recent.setValue(preferences.recent_files)
        self.attack_process.setChecked(preferences.attack_process)

    def _palette_chosen(self) -> None:
        palette = self.palette.currentData()
        if palette in PALETTES:
            for layer, button in self.colour_buttons.items():
                button.set_rgb(PALETTES[palette][layer])

    def _colour_picked(self, _rgb) -> None:
        # A picked colour makes the palette custom (the other layers keep their colours).
        self.palette.blockSignals(True)
        self.palette.setCurrentIndex(self.palette.findData("custom"))
        self.palette.blockSignals(False)

    def preferences(self) -> AppPreferences:
        """The preferences the widgets show; raises :class:`UserError` for a bad ε."""
        eps = parse_number(self.eps.text(), "Default ε")
        if eps <= 0:
            raise UserError(f"Default ε must be above 0, not {self.eps.text().strip()}.")
        return replace(AppPreferences(), device=self.device.currentData(),
                       torch_threads=self.threads.value(), default_eps=eps,
                       default_steps=self.steps.value(), palette=self.palette.currentData(),
                       overlay_colours={layer: button.rgb for layer, button in self.colour_buttons.items()},
                       recent_files=self.recent.value(), attack_process=self.attack_process.isChecked())

    def accept(self) -> None:
        try:
            preferences = self.preferences()
        except UserError as error:
            self.eps_error.setText(str(error))
            self.eps_error.show()
            self.eps.setFocus()
            return
        write_preferences(preferences, self.settings)
        self.preferences_changed.emit(preferences)
        super().accept()
