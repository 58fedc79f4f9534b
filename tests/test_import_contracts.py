"""The import-linter contracts in pyproject.toml hold, and they would catch a wrong-way arrow.

The contracts are the shape of the house (see STYLE.md): layers cli → commands → gui →
report → session → io → core → config/paths → errors, no Qt in core/io/session/report (the
PDF writer's lazy import excepted), and no GUI module importing a command. The second half
of this file plants a violation in a copy of the package and checks that ``lint-imports``
reports it, so a contract that silently stopped checking (a typo, a missing option) fails too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` on the package under ``root`` with ``root/pyproject.toml``."""
    executable = Path(sys.executable).with_name("lint-imports")
    command = [str(executable)] if executable.exists() else \
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    # The package under root, not the installed one, is the one analysed.
    environment = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([*command, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
                          cwd=root, env=environment, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


@pytest.fixture
def package_copy(tmp_path) -> Path:
    """The package and its contracts, copied so a test can plant a bad import in it."""
    shutil.copytree(ROOT / "advexplorer", tmp_path / "advexplorer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():  # a package
        path = root / module.replace(".", "/") / "__init__.py"
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


@pytest.mark.parametrize("module, line, broken, arrow", [
    ("advexplorer.core.saliency", "import PySide6", "never import Qt",
     "advexplorer.core.saliency -> PySide6"),
    ("advexplorer.io.hashing", "import pyqtgraph", "never import Qt", "advexplorer.io.hashing -> pyqtgraph"),
    ("advexplorer.core.saliency", "import advexplorer.session.runs", "layers",
     "advexplorer.core.saliency -> advexplorer.session.runs"),
    ("advexplorer.report.html", "from advexplorer.gui import worker", "layers",
     "advexplorer.report.html -> advexplorer.gui.worker"),
    ("advexplorer.gui.views", "from advexplorer.commands import _args", "no GUI module imports",
     "advexplorer.gui.views -> advexplorer.commands._args"),
])
def test_a_wrong_way_import_breaks_a_contract(package_copy, module, line, broken, arrow):
    plant(package_copy, module, line)
    result = lint_imports(package_copy)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    broken_section = output.split("Broken contracts", 1)[-1]
    assert broken in broken_section and arrow in broken_section, output
