"""The Cohort panel's defence row: the same defended screen as ``advexplorer screen --defense …``.

A brightness classifier (class "bright" when the mean pixel is above 0.5) behind bit-depth
reduction: rounding has no gradient, so the naive attack is blind and the defence looks
robust, while BPDA sees through it. The panel's numbers must be the CLI's, on the same
images with the same options, and its report must carry the CLI's defence section.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

EPS = "0,4/255,16/255,32/255"
SHOTS = os.environ.get("ADVEXPLORER_SCREENSHOTS")  # a folder: save the screenshot there


@pytest.fixture(scope="module")
def setup(tmp_path_factory, write_brightness_model, write_brightness_cohort):
    root = tmp_path_factory.mktemp("cohort_defence")
    write_brightness_model(root)
    write_brightness_cohort(root, 6)
    return root


@pytest.fixture
def panel(qtbot, setup):
    from advexplorer.gui.cohort_panel import CohortPanel
    from advexplorer.io.models import load_model

    widget = CohortPanel()
    qtbot.addWidget(widget)
    widget.set_model(load_model(setup / "bright.pt", device="cpu"))
    widget.set_source(setup / "cohort")
    widget.eps_edit.setText(EPS)
    widget.steps.setValue(5)
    widget.batch.setValue(4)
    return widget


def choose_defence(panel, kind: str | None, value: str = "", adaptive: str = "none") -> None:
    """Set the defence row through its widgets, as a user would."""
    panel.defence_kind.setCurrentIndex(panel.defence_kind.findData(kind))
    if kind is not None:
        panel.defence_value.setText(value)
        panel.adaptive.setCurrentIndex(panel.adaptive.findData(adaptive))


def run_panel(panel, qtbot) -> list[dict]:
    with qtbot.waitSignal(panel.screen_finished, timeout=60000) as finished:
        panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    return finished.args[0]


def run_cli(setup, out: Path, *extra) -> dict:
    from advexplorer.cli import main

    argv = ["screen", "--model", str(setup / "bright.pt"), "--images", str(setup / "cohort"),
            "--eps", EPS, "--steps", "5", "--batch-size", "4", "--workers", "0", "--device", "cpu",
            "--quiet", "--out", str(out), *extra]
    assert main(argv) == 0
    return json.loads((out / "summary.json").read_text())


def table_cells(table) -> tuple[list[str], list[list[str]]]:
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    cells = [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]
    return headers, cells


def test_a_defended_screen_in_the_panel_equals_the_cli(panel, qtbot, setup, tmp_path):
    from advexplorer.report.cohort import defence_section

    choose_defence(panel, "bits", "3", "bpda")
    assert panel.adaptive.isEnabled() and "proves little" in panel.adaptive.toolTip()
    per_eps = run_panel(panel, qtbot)
    cli = run_cli(setup, tmp_path / "cli", "--defense", "bits:3", "--adaptive", "bpda")

    # The screen's own numbers (through the defence, with BPDA) and both defence numbers are the CLI's.
    ours = json.loads(json.dumps(panel.summary))
    assert per_eps == cli["per_eps"] == ours["per_eps"]
    assert ours["defence"] == cli["defence"]
    largest = cli["defence"]["per_eps"][-1]
    assert largest["naive"]["value"] == 1.0 and largest["adaptive"]["value"] == 0.0  # blind vs BPDA
    assert panel.naive_result is not None and len(panel.naive_result.rows) == 6

    # The Defence tab shows both numbers with their intervals, as the CLI computed them.
    assert panel.tabs.isTabVisible(2) and panel.tabs.currentWidget() is panel.defence_page
    headers, cells = table_cells(panel.defence_table)
    assert headers[1].startswith("naive attack: robust accuracy") and headers[2].startswith("BPDA attack")
    for row, entry in zip(cells, cli["defence"]["per_eps"]):
        for text, share in ((row[1], entry["naive"]), (row[2], entry["adaptive"])):
            low, high = share["ci95"]
            assert text == f"{100 * share['value']:.1f} % [{100 * low:.1f}–{100 * high:.1f} %]"
    assert "gradient hidden" in cells[-1][3]
    assert "hides the gradient" in panel.defence_verdict.text()
    # The naive curve beside the adaptive robust accuracy, from the naive pass.
    _, y = panel.curves["naive"].getData()
    assert list(y) == pytest.approx([e["naive"]["value"] for e in cli["defence"]["per_eps"]])
    assert list(panel.curves["robust"].getData()[1]) == pytest.approx(
        [e["adaptive"]["value"] for e in cli["defence"]["per_eps"]])

    # The report written from the panel carries the CLI's defence section, word for word.
    assert panel.report_button.isEnabled()
    report = panel.write_report(tmp_path / "from_panel")
    html = report.read_text()
    assert defence_section(cli) in html and "Defence: naive vs adaptive attack" in html
    written = json.loads((tmp_path / "from_panel" / "summary.json").read_text())
    assert written["defence"] == cli["defence"] and written["files"]["per_image_naive"] == "per_image_naive.csv"
    for name in ("per_image.csv", "per_image_naive.csv"):
        assert (tmp_path / "from_panel" / name).read_text() == (tmp_path / "cli" / name).read_text()
    assert "--defense bits:3 --adaptive bpda" in " ".join(written["command_line"])

    if SHOTS:
        panel.resize(900, 760)
        panel.grab().save(str(Path(SHOTS) / "cohort_defence.png"))


def test_the_adaptive_column_appears_only_with_a_defence(panel, qtbot, setup, tmp_path):
    choose_defence(panel, None)
    assert not panel.adaptive.isEnabled()
    run_panel(panel, qtbot)
    assert not panel.tabs.isTabVisible(2) and "defence" not in panel.summary
    naive_x, _ = panel.curves["naive"].getData()
    assert naive_x is None or len(naive_x) == 0

    # A defence attacked naively only: one column of numbers, and a nudge towards BPDA.
    choose_defence(panel, "jpeg", "75", "none")
    run_panel(panel, qtbot)
    cli = run_cli(setup, tmp_path / "jpeg", "--defense", "jpeg:75")
    assert json.loads(json.dumps(panel.summary["defence"])) == cli["defence"]
    headers, cells = table_cells(panel.defence_table)
    assert len(headers) == 2 and headers[1].startswith("naive attack")
    assert panel.tabs.isTabVisible(2) and "BPDA" in panel.defence_verdict.text()
    assert panel.naive_result is None


@pytest.mark.parametrize("kind, value, said", [("bits", "9", "from 1 to 8"),
                                               ("jpeg", "high", "is not a number")])
def test_a_bad_defence_parameter_is_one_line(panel, kind, value, said):
    choose_defence(panel, kind, value, "bpda")
    panel.start()
    text = panel.status.text()
    assert not panel.running and said in text and len(text.splitlines()) == 1
    assert text.startswith("Defence ") and "--defense" not in text


def test_the_summary_and_its_model_probe_are_built_off_the_gui_thread(panel, qtbot, monkeypatch):
    """summary.json's flags run the model (a gradient probe): that happens in the screen's
    worker, never on the GUI thread, and the panel shows the worker's summary."""
    import threading

    import advexplorer.core.flags as flags

    threads = []
    real = flags.gradient_flag

    def recording(model, probe):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(model, probe)

    monkeypatch.setattr(flags, "gradient_flag", recording)
    choose_defence(panel, None)
    run_panel(panel, qtbot)
    assert threads == [False]
    assert panel.summary is panel.outcome.summary and "flags" in panel.summary
