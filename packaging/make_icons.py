"""Render the app icon (resources/icons/app.svg) into every size a desktop expects.

Writes ``packaging/icons/hicolor/<N>x<N>/apps/advexplorer.png`` for the freedesktop sizes
(16–256 px) and ``scalable/apps/advexplorer.svg``; with ``--bundle-icons DIR`` also the
Windows ``advexplorer.ico`` and macOS ``advexplorer.icns`` the PyInstaller specs use
(Pillow writes both on any platform). Rendering goes through Qt's own SVG renderer, which
the app already depends on, so no extra tool (rsvg, Inkscape) is needed.

    python packaging/make_icons.py [--bundle-icons build/icons]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

PACKAGING = Path(__file__).resolve().parent
SOURCE_SVG = PACKAGING.parent / "resources" / "icons" / "app.svg"
HICOLOR = PACKAGING / "icons" / "hicolor"
#: The sizes the freedesktop icon theme specification lists for application icons.
SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
ICON_NAME = "advexplorer"


def render_png(svg: Path, size: int, destination: Path) -> None:
    """Render ``svg`` into a transparent ``size``×``size`` PNG at ``destination``."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(destination), "PNG"):
        raise SystemExit(f"make_icons: could not write {destination}")


def render_theme(svg: Path = SOURCE_SVG, root: Path = HICOLOR) -> list[Path]:
    """The hicolor tree: one PNG per size plus the scalable SVG. Returns the files written."""
    written = []
    for size in SIZES:
        path = root / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
        render_png(svg, size, path)
        written.append(path)
    scalable = root / "scalable" / "apps" / f"{ICON_NAME}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    return written + [scalable]


def bundle_icons(folder: Path, root: Path = HICOLOR) -> None:
    """``advexplorer.ico`` (Windows) and ``advexplorer.icns`` (macOS) from the PNGs."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    largest = Image.open(root / "256x256" / "apps" / f"{ICON_NAME}.png")
    largest.save(folder / f"{ICON_NAME}.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    largest.save(folder / f"{ICON_NAME}.icns")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle-icons", type=Path, metavar="DIR",
                        help="also write advexplorer.ico and advexplorer.icns into DIR")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (QImage needs it)
    for path in render_theme():
        print(path.relative_to(PACKAGING.parent))
    if args.bundle_icons:
        bundle_icons(args.bundle_icons)
        print(f"{args.bundle_icons}/{ICON_NAME}.ico, {ICON_NAME}.icns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
