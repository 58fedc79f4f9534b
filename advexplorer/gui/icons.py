"""Toolbar and window icons (SVG files in ``resources/icons``)."""

from __future__ import annotations

from functools import lru_cache

from PySide6.QtGui import QIcon

from advexplorer import paths

ICONS_DIR = paths.RESOURCES_DIR / "icons"


@lru_cache(maxsize=None)
def icon(name: str) -> QIcon:
    """The icon ``name`` (an empty icon if the file is missing: text still shows)."""
    path = ICONS_DIR / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()
