"""The shape of the house: data rooms never import Qt, and the CLI stays light until needed."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "advexplorer"
QT = ("PySide6", "pyqtgraph", "superqt", "qtpy", "advexplorer.gui")


def imported_modules(path: Path, top_level_only: bool):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("room", ["core", "io", "session"])
def test_data_rooms_never_import_qt(room):
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {module}"
        for path in sorted((PACKAGE / room).rglob("*.py"))
        for module in imported_modules(path, top_level_only=False)
        if module.split(".")[0] in QT or module.startswith("advexplorer.gui")
    ]
    assert not offenders, offenders


def test_report_imports_qt_only_lazily_for_pdf():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {module} at module level"
        for path in sorted((PACKAGE / "report").rglob("*.py"))
        for module in imported_modules(path, top_level_only=True)
        if module.split(".")[0] in QT or module.startswith("advexplorer.gui")
    ]
    assert not offenders, offenders


def test_cli_help_does_not_import_torch():
    code = ("import sys; from advexplorer.cli import _top_parser; _top_parser(); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_reading_run_folders_does_not_import_torch_or_qt():
    """``advexplorer report`` and the GUI's history read run folders before the engine loads."""
    code = ("import sys; import advexplorer.io.runfolder, advexplorer.report.run; "
            "print('torch' in sys.modules, 'PySide6' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False False", result.stderr
