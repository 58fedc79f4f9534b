"""Cohort panel defects seen in use (issue 10, items 3 and 7): the screen's result was thrown
away, the empty plot showed −400…400 "(x0.001)" with a legend entry for a curve without
data, and a double-clicked row was attacked with the main form's settings."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

EPS_TEXT = "0,4/255,16/255,64/255"


@pytest.fixture
def flat_cohort(tmp_path):
    """Six 16×16 RGB images directly in a folder: no labels, no masks."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"tile{k}.png")
    return folder


def _screen(qtbot, panel, verify: int = 0):
    panel.eps_edit.setText(EPS_TEXT)
    panel.steps.setValue(3)
    panel.batch.setValue(4)
    panel.verify.setValue(verify)
    with qtbot.waitSignal(panel.screen_finished, timeout=60000) as finished:
        panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    return finished.args[0]


@pytest.fixture
def panel(qtbot, tiny_model, flat_cohort):
    from advexplorer.gui.cohort_panel import CohortPanel

    widget = CohortPanel()
    qtbot.addWidget(widget)
    widget.resize(900, 800)
    widget.show()
    widget.set_model(tiny_model)
    widget.set_source(flat_cohort)
    yield widget
    if widget.running:
        widget.stop_and_wait(10000)


def test_the_screen_result_reaches_the_panel_with_worst_cases_and_the_monotone_check(qtbot, panel):
    from advexplorer.core.screening import ScreenResult

    per_eps = _screen(qtbot, panel, verify=4)
    assert isinstance(panel.result, ScreenResult)
    flipped = [row for row in panel.result.rows if row.flip_eps is not None]
    assert per_eps[-1]["flipped"] == len(flipped) > 0
    # Worst cases: one button each, naming the image and the ε where it flipped.
    cases = panel.result.worst_cases
    assert len(panel.worst_buttons) == len(cases) > 0
    assert cases[0].file in panel.worst_buttons[0].text()
    assert "Worst cases (" in panel.tabs.tabText(1)
    # The monotone check ran and is reported in words.
    check = panel.result.monotone_check
    assert check is not None and check.images_checked > 0
    assert panel.monotone.isVisible()
    assert panel.monotone.text().startswith("Monotone check:")
    assert f"{len(check.disagreements)} disagreement" in panel.monotone.text()


def test_an_unchecked_screen_says_the_shortcut_was_not_checked(qtbot, panel):
    _screen(qtbot, panel, verify=0)
    assert panel.result.monotone_check is None
    assert "not checked" in panel.monotone.text()


def test_the_empty_plot_spans_the_eps_list_in_levels_and_0_to_100_percent(qtbot, panel):
    plot = panel.plot.getPlotItem()
    (x_low, x_high), (y_low, y_high) = plot.viewRange()
    # Default list 0,1/255,…,8/255 → 0…8 on a ×255 axis, not −400…400.
    assert -1 < x_low <= 0 and 8 <= x_high < 9
    assert -0.05 < y_low <= 0 and 1 <= y_high < 1.05
    for side in ("bottom", "left"):
        assert "x0." not in plot.getAxis(side).labelString()  # no "(x0.001)" SI scaling
    assert panel.plot.getAxis("left").tickStrings([0.0, 0.5, 1.0], 1.0, 0.5) == ["0 %", "50 %", "100 %"]
    assert panel.legend.names() == []  # no entry for a curve without data
    assert plot.legend is None          # and no legend drawn over the curves

    panel.eps_edit.setText("0,2/255,16/255")
    x_low, x_high = plot.viewRange()[0]
    assert x_low <= 0 and 16 <= x_high < 18


def test_the_legend_lists_only_the_curves_with_data(qtbot, panel):
    _screen(qtbot, panel)  # no labels, no noise baseline: one curve
    assert panel.legend.names() == ["flip rate"]
    assert len(panel.curves["flip"].getData()[0]) == 4
    assert panel.curves["robust"].getData()[0] is None or len(panel.curves["robust"].getData()[0]) == 0
    x_low, x_high = panel.plot.getPlotItem().viewRange()[0]
    assert x_low <= 0 and 64 <= x_high < 70


def test_double_clicking_a_row_asks_for_an_attack_at_the_eps_where_it_flipped(qtbot, panel):
    from advexplorer.config import eps_argument
    from advexplorer.gui.attack_panel import AttackPanel

    panel.attack.setCurrentIndex(panel.attack.findData("mifgsm"))
    _screen(qtbot, panel)
    table = panel.table
    by_file = {row.file: row for row in panel.result.rows}
    checked = set()
    for r in range(table.rowCount()):
        file_id = table.item(r, 0).data(Qt.ItemDataRole.UserRole)
        flipped = by_file[file_id].flip_eps is not None
        if flipped in checked:
            continue
        table.scrollToItem(table.item(r, 0))
        centre = table.visualItemRect(table.item(r, 0)).center()
        with qtbot.waitSignal(panel.image_requested, timeout=2000) as opened:
            # A double click as a mouse makes it: press/release, then the double click.
            qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=centre)
            qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=centre)
        path, _mask, _mode, settings = opened.args
        assert path.name == file_id
        expected = by_file[file_id].flip_eps if flipped else 64 / 255
        assert settings["eps"] == eps_argument(expected)
        assert (settings["method"], settings["norm"], settings["steps"]) == ("mifgsm", "linf", 3)
        # The attack form takes the dict as it is and reads back the same attack.
        form = AttackPanel()
        qtbot.addWidget(form)
        form.set_values(**settings)
        values = form.config_kwargs()
        assert values["eps"] == pytest.approx(expected)
        assert (values["method"], values["steps"], values["early_stop"]) == ("mifgsm", 3, True)
        checked.add(flipped)
    assert True in checked  # at least one flipped image was opened


def test_the_attack_list_is_the_shared_vocabulary_and_the_panel_needs_no_commands():
    code = (
        "import sys; from PySide6.QtWidgets import QApplication; app = QApplication([]);\n"
        "from types import SimpleNamespace; from advexplorer import config\n"
        "from advexplorer.gui.cohort_panel import CohortPanel\n"
        "panel = CohortPanel(); panel.set_model(SimpleNamespace(card=None)); panel.set_source('x')\n"
        "panel.eps_edit.setText('0, 0.5/255, 2e-3'); job = panel._job()\n"
        "assert job.eps == [0, 0.5 / 255, 2e-3], job.eps\n"
        "assert [panel.attack.itemData(i) for i in range(panel.attack.count())] == list(config.METHODS)\n"
        "sys.exit(3 if 'advexplorer.commands' in sys.modules else 4 if 'torch' in sys.modules else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr[-2000:] or f"exit {done.returncode}"
