"""View → DICOM window…: the window (centre, width) a DICOM image is shown and attacked through.

Radiologists read the same CT through different windows (soft tissue 40/400, lung −600/1500,
bone 400/1800). The window is part of the model's preprocessing, so it is chosen per image,
drawn on the canvas exactly as the engine will read it, carried by the run
(:attr:`advexplorer.gui.worker.RunJob.dicom_window`) and recorded in ``record.json`` as
``image.dicom``, as ``advexplorer attack --dicom-window C,W`` does.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog

from advexplorer.errors import UserError


class DicomWindowController(QObject):
    """The View menu's DICOM window action, enabled while the current image is a DICOM file."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.action = QAction("DICOM window…", window)
        self.action.setToolTip("The window (centre, width) a DICOM image is shown and attacked through")
        self.action.triggered.connect(lambda _checked=False: self.choose())
        self.action.setEnabled(False)
        window.session.current_changed.connect(self._current_changed)

    def add_to_menu(self, menu) -> None:
        menu.addSeparator()
        menu.addAction(self.action)

    def _current_changed(self, entry) -> None:
        from advexplorer.io.dicom import is_dicom_file

        self.action.setEnabled(entry is not None and entry.path.is_file() and is_dicom_file(entry.path))

    def current_window(self, entry) -> tuple[tuple[float, float] | None, str]:
        """The window in use for ``entry`` and where it comes from ('chosen', 'file', 'min-max')."""
        from advexplorer.io.dicom import read_dicom

        if entry.dicom_window is not None:
            return entry.dicom_window, "chosen"
        image = read_dicom(entry.path)
        return image.window, image.window_source

    def choose(self, text: str | None = None) -> bool:
        """Ask for 'centre,width' (or take ``text``), then redraw the image through it.

        An empty answer goes back to the file's own window. Returns True if it changed."""
        from advexplorer.io.dicom import parse_window

        entry = self.window.session.current
        if entry is None or not self.action.isEnabled():
            return False
        try:
            window, source = self.current_window(entry)
        except UserError as error:
            self.window.show_error("Could not read the DICOM file", str(error))
            return False
        if text is None:
            shown = "" if window is None else f"{window[0]:g},{window[1]:g}"
            text, ok = QInputDialog.getText(
                self.window, "DICOM window",
                f"Window of {entry.name} as centre,width in the file's units (e.g. 40,400 soft tissue, "
                f"-600,1500 lung, 400,1800 bone).\nNow: {shown or 'none'} ({source}). Empty: the file's own.",
                text=shown)
            if not ok:
                return False
        try:
            chosen = parse_window(text) if text.strip() else None
        except UserError as error:
            self.window.show_error("Not a DICOM window", str(error))
            return False
        if chosen == entry.dicom_window:
            return False
        entry.dicom_window = chosen
        self.window._show_entry(entry)  # the canvas shows what the model will be given
        label = "the file's own window" if chosen is None else f"window {chosen[0]:g},{chosen[1]:g}"
        self.window.statusBar().showMessage(f"{entry.name}: {label}; runs use it and record it.", 6000)
        return True
