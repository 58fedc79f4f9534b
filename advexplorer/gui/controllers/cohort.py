"""The Cohort panel inside the main window: where it opens, and what its rows ask for."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow

from advexplorer.config import eps_argument

#: What a cohort row may set on the attack form when it asks to open its image.
FORM_KEYS = ("method", "norm", "eps", "step_size", "steps", "restarts", "random_start", "seed",
             "early_stop", "decay", "targeted", "label", "saliency")


def form_values(settings: dict | None) -> dict:
    """The attack form's values for a cohort row's settings (ε as text such as '3/255')."""
    values = {key: value for key, value in (settings or {}).items() if key in FORM_KEYS}
    for key in ("eps", "step_size"):
        if isinstance(values.get(key), (int, float)) and not isinstance(values[key], bool):
            values[key] = eps_argument(values[key])
    return values


class CohortDockController(QObject):
    """Keeps the Cohort dock inside the screen: it opens floating, sized to the screen's
    available area, and if docking it would push the window past the screen it is tabbed
    with the Results dock instead (its curves need height a bottom dock cannot give)."""

    def __init__(self, window: QMainWindow, dock: QDockWidget, results_dock: QDockWidget):
        super().__init__(window)
        self.window, self.dock, self.results_dock = window, dock, results_dock
        dock.topLevelChanged.connect(self._floating_changed)

    def _floating_changed(self, floating: bool) -> None:
        if not floating:
            QTimer.singleShot(0, self.keep_on_screen)

    def _screen(self):
        return (self.window.screen() or self.dock.screen()).availableGeometry()

    def show(self) -> None:
        dock = self.dock
        if not dock.isVisible() and not dock.isFloating():
            dock.setFloating(True)
            screen = self._screen()
            dock.resize(max(min(1100, screen.width() - 80), 200), max(min(760, screen.height() - 80), 200))
            frame = self.window.frameGeometry()
            dock.move(max(screen.left(), min(frame.x() + 40, screen.right() - dock.width())),
                      max(screen.top(), min(frame.y() + 60, screen.bottom() - dock.height())))
        dock.show()
        dock.raise_()

    def keep_on_screen(self) -> None:
        screen = self._screen()
        frame = self.window.frameGeometry()
        if frame.height() > screen.height() or frame.width() > screen.width():
            self.window.tabifyDockWidget(self.results_dock, self.dock)
            self.dock.raise_()
            self.window.setGeometry(self.window.geometry().intersected(screen))
