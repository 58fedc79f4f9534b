"""Before Qt starts on Linux: say which system library its xcb platform lacks.

Qt's X11 platform plugin (``libqxcb.so``) needs about twenty system libraries. When one is
missing, Qt prints "could not load the Qt platform plugin "xcb"" and aborts, without naming
it; ``libxcb-cursor0`` is missing on most fresh Ubuntu/Debian installs. This module finds the
missing ones the way the dynamic linker would (the ``ldconfig -p`` cache, then loading the
library by its soname, which also covers ``LD_LIBRARY_PATH`` and a bundle's own folder) and
returns one line naming them and the ``apt-get install`` that fixes it.

Imports neither Qt nor torch: the start-up calls it before ``QApplication`` exists::

    problem = xcb_problem()
    if problem:
        print(f"advexplorer: error: {problem}", file=sys.stderr); return 2
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache

__all__ = ["XCB_LIBRARIES", "missing_xcb_libraries", "xcb_problem", "uses_xcb"]

#: soname → the Debian/Ubuntu package that ships it: what libqxcb.so, libQt6XcbQpa and
#: libQt6Gui link against (``readelf -d``), minus the C/C++ runtime every system has.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
}


@lru_cache(maxsize=1)
def _ldconfig_sonames() -> frozenset[str]:
    """Sonames in the dynamic linker's cache (``ldconfig -p``); empty if it cannot be run."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)
    if ldconfig is None:
        return frozenset()
    try:
        output = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    # Lines look like: "\tlibxcb-cursor.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libxcb-cursor.so.0"
    return frozenset(line.split()[0] for line in output.splitlines()[1:] if line.strip())


def _loadable(soname: str) -> bool:
    """The dynamic linker finds ``soname`` (the cache, LD_LIBRARY_PATH, a bundle's folder)."""
    if soname in _ldconfig_sonames():
        return True
    bundle = getattr(sys, "_MEIPASS", None)  # a PyInstaller bundle carries some of them
    if bundle and os.path.exists(os.path.join(bundle, soname)):
        return True
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_xcb_libraries(available: Callable[[str], bool] = _loadable) -> list[tuple[str, str]]:
    """The (soname, Debian/Ubuntu package) pairs Qt's xcb platform needs and this machine
    lacks; empty when all are there (or when not on Linux, where xcb is not used)."""
    if not sys.platform.startswith("linux"):
        return []
    return [(soname, package) for soname, package in XCB_LIBRARIES.items() if not available(soname)]


def uses_xcb(environ: dict[str, str] | None = None) -> bool:
    """Qt will try the xcb platform: Linux, and ``QT_QPA_PLATFORM`` unset or naming xcb
    (``offscreen``, ``wayland`` and ``minimal`` need none of these libraries)."""
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return False
    platform = environ.get("QT_QPA_PLATFORM", "").strip().lower()
    return platform == "" or platform.startswith("xcb")


def xcb_problem(available: Callable[[str], bool] = _loadable,
                environ: dict[str, str] | None = None) -> str | None:
    """One line saying which libraries are missing and how to install them, or None when
    the app can start (or does not use xcb)."""
    if not uses_xcb(environ):
        return None
    missing = missing_xcb_libraries(available)
    if not missing:
        return None
    names = ", ".join(soname for soname, _ in missing)
    packages = " ".join(dict.fromkeys(package for _, package in missing))
    return (f"The desktop app cannot open a window: Qt's xcb platform needs {names}, which "
            f"this system lacks. Install them (Debian/Ubuntu: sudo apt-get install {packages}), "
            "or run without a display with QT_QPA_PLATFORM=offscreen.")
