"""What the app remembers between sessions: recent files and the folders dialogs start in."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 8     # listed unless Preferences say otherwise
MAX_STORED = 30    # remembered (so raising the number listed shows older files again)


def open_settings() -> QSettings:
    """The app's settings; ``ADVEXPLORER_SETTINGS=path.ini`` redirects them (tests, demos)."""
    location = os.environ.get("ADVEXPLORER_SETTINGS")
    if location:
        return QSettings(location, QSettings.Format.IniFormat)
    return QSettings("AdvExplorer", "AdvExplorer")


def user_folder(path: Path | str | None) -> Path:
    """``path``'s folder as a dialog's first start, unless it is the app's own bundled
    resources (samples): a user's files are never there, so start at home instead."""
    from advexplorer import paths

    if path is None:
        return Path.home()
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    try:
        folder.resolve().relative_to(paths.RESOURCES_DIR.resolve())
    except ValueError:
        return folder
    return Path.home()


class Preferences:
    """Recent files and last-used folders over a :class:`QSettings` (``remember=False``: read only)."""

    def __init__(self, settings: QSettings, remember: bool = True):
        self.settings = settings
        self.remember_enabled = remember
        self.limit = MAX_RECENT  # Preferences → "Recent files listed"

    def _stored(self, key: str) -> list[str]:
        value = self.settings.value(key)
        if isinstance(value, str):
            return [value]
        return list(value or [])

    def recent(self, key: str) -> list[str]:
        """The most recent first (at most :attr:`limit`)."""
        return self._stored(key)[:self.limit]

    def remember(self, key: str, value: str) -> None:
        if not self.remember_enabled:
            return
        items = [v for v in self._stored(key) if v != value]
        self.settings.setValue(key, [value, *items][:MAX_STORED])

    def folder(self, kind: str, fallback: Path | str | None = None) -> str:
        """The folder the last ``kind`` dialog ('report', 'mask', 'image', 'model') ended in.

        Never the bundled samples folder unless there is no better start: ``fallback`` is
        used only the first time (and the home folder when it does not exist).
        """
        value = self.settings.value(f"last_{kind}_dir")
        if isinstance(value, str) and value and Path(value).is_dir():
            return value
        if fallback is not None and Path(fallback).is_dir():
            return str(fallback)
        return str(Path.home())

    def set_folder(self, kind: str, path: Path | str) -> None:
        """Remember the folder of ``path`` (a file or a folder) for the next ``kind`` dialog."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        self.settings.setValue(f"last_{kind}_dir", str(folder))
