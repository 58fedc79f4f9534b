"""Desktop integration files and packaging checks that need no bundle: the .desktop entry is
valid, the project MIME type parses and matches the project suffix, the icon exists in every
freedesktop size, the install script installs them, the screenshot check tells a window from
a blank picture, and the PyInstaller spec leaves out nothing the app imports."""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advexplorer.session.project import PROJECT_SUFFIX

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
DESKTOP = PACKAGING / "linux" / "advexplorer.desktop"
MIME = PACKAGING / "linux" / "advexplorer-mime.xml"
HICOLOR = PACKAGING / "icons" / "hicolor"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser["Desktop Entry"]


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None,
                    reason="desktop-file-validate is not installed (apt-get install desktop-file-utils)")
def test_the_desktop_entry_is_valid_per_desktop_file_validate():
    result = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout


def test_the_desktop_entry_opens_projects_with_the_app_and_its_icon():
    entry = desktop_entry()
    assert entry["Type"] == "Application" and entry["Name"] == "AdvExplorer"
    assert entry["Exec"].split()[0] == "advexplorer" and entry["Exec"].endswith("%f")
    assert entry["Icon"] == "advexplorer" and entry["Terminal"] == "false"
    mime_types = [t for t in entry["MimeType"].split(";") if t]
    declared = [node.get("type") for node in ElementTree.parse(MIME).getroot().iter(f"{MIME_NS}mime-type")]
    assert mime_types == declared == ["application/x-advexplorer-project"]


def test_the_mime_type_matches_project_files():
    root = ElementTree.parse(MIME).getroot()
    assert root.tag == f"{MIME_NS}mime-info"
    mime_type = root.find(f"{MIME_NS}mime-type")
    assert [glob.get("pattern") for glob in mime_type.iter(f"{MIME_NS}glob")] == [f"*{PROJECT_SUFFIX}"]
    assert mime_type.find(f"{MIME_NS}sub-class-of").get("type") == "application/zip"  # it is a zip
    assert mime_type.find(f"{MIME_NS}comment").text == "AdvExplorer project"


@pytest.mark.parametrize("size", ICON_SIZES)
def test_the_icon_exists_in_every_freedesktop_size(size):
    path = HICOLOR / f"{size}x{size}" / "apps" / "advexplorer.png"
    with Image.open(path) as icon:
        assert icon.format == "PNG" and icon.size == (size, size) and icon.mode == "RGBA"
        assert icon.getextrema()[3][1] == 255  # not transparent all over


def test_the_scalable_icon_is_the_apps_svg():
    scalable = HICOLOR / "scalable" / "apps" / "advexplorer.svg"
    assert scalable.read_bytes() == (ROOT / "resources" / "icons" / "app.svg").read_bytes()
    assert ElementTree.parse(scalable).getroot().tag.endswith("svg")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="freedesktop install is Linux's")
def test_the_install_script_installs_entry_icons_and_mime_type(tmp_path):
    app = tmp_path / "bin" / "advexplorer"
    app.parent.mkdir()
    app.write_text("#!/bin/sh\n")
    app.chmod(0o755)
    prefix = tmp_path / "share"
    script = PACKAGING / "linux" / "install-desktop.sh"
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(prefix), "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", str(script), str(app)], check=True, env=env, capture_output=True)
    installed = (prefix / "applications" / "advexplorer.desktop").read_text()
    assert f'Exec="{app}" gui %f' in installed and f"TryExec={app}" in installed
    assert (prefix / "mime" / "packages" / "advexplorer.xml").is_file()
    for size in ICON_SIZES:
        assert (prefix / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "advexplorer.png").is_file()
    if shutil.which("update-mime-database"):  # the MIME database accepted our type
        assert (prefix / "mime" / "application" / "x-advexplorer-project.xml").is_file()
    subprocess.run(["bash", str(script), "--uninstall"], check=True, env=env, capture_output=True)
    assert not (prefix / "applications" / "advexplorer.desktop").exists()
    assert not list((prefix / "icons").rglob("advexplorer.png"))


def check_screenshot(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PACKAGING / "check_screenshot.py"), str(path), *args],
                          capture_output=True, text=True)


def test_the_smoke_check_tells_a_window_from_a_blank_picture(tmp_path):
    rng = np.random.default_rng(0)
    window = rng.integers(0, 256, (100, 160, 3), dtype=np.uint8)
    Image.fromarray(window).save(tmp_path / "window.png")
    Image.fromarray(np.full((100, 160, 3), 40, np.uint8)).save(tmp_path / "blank.png")
    (tmp_path / "text.png").write_text("not a picture")

    good = check_screenshot(tmp_path / "window.png", "--width", "160", "--height", "100")
    assert good.returncode == 0 and good.stdout.startswith("ok: ")
    blank = check_screenshot(tmp_path / "blank.png", "--width", "160", "--height", "100")
    assert blank.returncode == 1 and "looks blank" in blank.stdout
    small = check_screenshot(tmp_path / "window.png", "--width", "1600", "--height", "1000")
    assert small.returncode == 1 and "not the window size" in small.stdout
    assert "cannot be read as a PNG" in check_screenshot(tmp_path / "text.png").stdout


def spec_excludes() -> set[str]:
    tree = ast.parse((PACKAGING / "advexplorer.spec").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "excludes":
            return set(ast.literal_eval(node.value))
    raise AssertionError("the spec has no excludes list")


def test_the_bundle_leaves_out_nothing_the_app_imports():
    """Every module the package imports (at top level or lazily) must be in the bundle."""
    excluded = spec_excludes()
    offenders = []
    for source in sorted((ROOT / "advexplorer").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                parts = name.split(".")
                if any(".".join(parts[:i]) in excluded for i in range(1, len(parts) + 1)):
                    offenders.append(f"{source.relative_to(ROOT)} imports {name}")
    assert offenders == []


@pytest.mark.slow
def test_the_bundle_leaves_out_nothing_the_apps_libraries_import():
    """captum.attr imports matplotlib at import time: a library the app loads must find
    every module it imports in the bundle (this caught matplotlib in the excludes)."""
    code = ("import sys, json\n"
            "import advexplorer.gui.app, advexplorer.gui.engine, advexplorer.session.runs\n"
            "import advexplorer.core.saliency, advexplorer.core.robustness, advexplorer.report.pdf\n"
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(__import__("json").loads(result.stdout.splitlines()[-1]))
    excluded = spec_excludes()
    assert sorted(name for name in loaded if name in excluded or name.split(".")[0] in excluded) == []
