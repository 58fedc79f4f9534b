"""Before Qt starts: a missing xcb library is named with the package that provides it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from advexplorer.gui import platform_check
from advexplorer.gui.platform_check import XCB_LIBRARIES, missing_xcb_libraries, xcb_problem

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb is Linux's")


@linux_only
def test_a_missing_library_is_named_with_its_package():
    lacking = {"libxcb-cursor.so.0", "libxcb-icccm.so.4"}
    available = lambda soname: soname not in lacking  # noqa: E731
    assert missing_xcb_libraries(available) == [("libxcb-cursor.so.0", "libxcb-cursor0"),
                                                 ("libxcb-icccm.so.4", "libxcb-icccm4")]
    message = xcb_problem(available, environ={})
    assert "needs libxcb-cursor.so.0, libxcb-icccm.so.4" in message
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4" in message and "\n" not in message


@linux_only
def test_nothing_is_said_when_all_are_there_or_qt_does_not_use_xcb():
    assert xcb_problem(lambda soname: True, environ={}) is None
    assert xcb_problem(lambda soname: False, environ={"QT_QPA_PLATFORM": "offscreen"}) is None
    assert xcb_problem(lambda soname: False, environ={"QT_QPA_PLATFORM": "xcb"}) is not None


@linux_only
def test_the_list_covers_what_qts_xcb_plugin_links_against():
    """Every xcb/X11/xkb library libqxcb.so and libQt6XcbQpa need (readelf) is in the list."""
    import shutil
    from pathlib import Path

    import PySide6

    readelf = shutil.which("readelf")
    qt = Path(PySide6.__file__).parent / "Qt"
    binaries = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]]
    if readelf is None or not all(b.is_file() for b in binaries):
        pytest.skip("readelf or the xcb plugin is not available")
    needed = set()
    for binary in binaries:
        output = subprocess.run([readelf, "-d", str(binary)], capture_output=True, text=True).stdout
        needed |= {line.split("[")[1].rstrip("]") for line in output.splitlines() if "(NEEDED)" in line}
    relevant = {name for name in needed if name.startswith(("libxcb", "libX11", "libxkb"))}
    assert relevant <= set(XCB_LIBRARIES)


def test_this_machine_is_checked_through_the_dynamic_linker():
    # The real check runs and returns a list (empty on a machine that can show the app).
    assert isinstance(missing_xcb_libraries(), list)
    assert platform_check._loadable("libc.so.6") or not sys.platform.startswith("linux")
    assert not platform_check._loadable("libdefinitely-not-a-library.so.99")


def test_the_check_imports_neither_qt_nor_torch():
    code = ("import sys; import advexplorer.gui.platform_check as p; p.missing_xcb_libraries(); "
            "sys.exit(1 if {'torch', 'PySide6'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_readme_install_line_names_every_package_the_check_knows():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("sudo apt-get install libxcb")
    line = readme[start:readme.index("```", start)].replace("\\\n", " ")
    assert set(XCB_LIBRARIES.values()) <= set(line.split())
