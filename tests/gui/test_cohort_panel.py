"""The Cohort panel runs the screen in the worker, fills the curves and the table live."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def cohort_folder(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(6):
        folder = tmp_path / "cohort" / ("benign" if k % 2 else "tumour")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"t{k}.png")
        masks = tmp_path / "protect" / folder.name
        masks.mkdir(parents=True, exist_ok=True)
        protect = np.zeros((16, 16), np.uint8)
        protect[4:12, 4:12] = 255
        Image.fromarray(protect).save(masks / f"t{k}.png")
    return tmp_path


def test_panel_screens_and_opens_a_row(qtbot, tiny_model, cohort_folder):
    from advexplorer.gui.cohort_panel import CohortPanel

    panel = CohortPanel()
    qtbot.addWidget(panel)
    assert not panel.run_button.isEnabled()  # no model yet
    panel.set_model(tiny_model)
    panel.set_source(cohort_folder / "cohort", cohort_folder / "protect", "protect-dir")
    panel.eps_edit.setText("0,4/255,16/255,64/255")
    panel.steps.setValue(3)
    panel.batch.setValue(4)
    panel.noise.setChecked(True)
    with qtbot.waitSignal(panel.screen_finished, timeout=60000) as finished:
        panel.start()
    per_eps = finished.args[0]
    assert [e["n"] for e in per_eps] == [6, 6, 6, 6]
    assert panel.table.rowCount() == 6
    x, y = panel.curves["flip"].getData()
    assert list(np.round(x, 6)) == [0, 4, 16, 64]
    assert list(y) == pytest.approx([e["flip_rate"] for e in per_eps])
    assert len(panel.curves["robust"].getData()[0]) == 4  # ImageFolder labels → robust accuracy
    assert len(panel.curves["noise"].getData()[0]) == 4
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    assert panel.run_button.isEnabled() and "Done" in panel.status.text()

    with qtbot.waitSignal(panel.image_requested, timeout=2000) as opened:
        panel._row_activated(0, 0)
    path, mask, mode, _settings = opened.args
    assert path.is_file() and mask.is_file() and mode == "protect"
    assert path.parent.name == mask.parent.name and path.name == mask.name


def test_panel_reports_errors_in_the_status_line(qtbot, tiny_model, tmp_path):
    from advexplorer.gui.cohort_panel import CohortPanel

    (tmp_path / "empty").mkdir()
    panel = CohortPanel()
    qtbot.addWidget(panel)
    panel.set_model(tiny_model)
    panel.set_source(tmp_path / "empty")
    panel.start()
    qtbot.waitUntil(lambda: not panel.running and "no images" in panel.status.text(), timeout=20000)
    panel.eps_edit.setText("0,abc")
    panel.start()
    assert "ε list" in panel.status.text() and not panel.running
