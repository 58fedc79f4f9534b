"""Defects a user hit in the app, each driven through the actions and menus a user clicks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image


def _finish(qtbot, window, timeout=30000):
    qtbot.waitUntil(lambda: not window.controller.running, timeout=timeout)


def _menu_action(window, menu_title: str, text: str):
    """The action a user clicks in the menu bar (by the menu's and the item's visible text)."""
    for menu_action in window.menuBar().actions():
        if menu_action.text().replace("&", "") == menu_title:
            for action in menu_action.menu().actions():
                if action.text() == text:
                    return action
    raise AssertionError(f"no {menu_title} → {text} in the menus")


def _run(qtbot, window, **values):
    window.attack_panel.set_values(**values)
    with qtbot.waitSignal(window.run_finished, timeout=60000) as finished:
        window.run_action.trigger()
    _finish(qtbot, window)
    return finished.args[0]


@pytest.fixture
def dialogs(monkeypatch):
    """File dialogs answer with prepared paths; each call's start folder is recorded."""
    from PySide6.QtWidgets import QFileDialog

    answers, starts = [], []

    def answer(_parent, _title, start="", *_args, **_kwargs):
        starts.append(start)
        return (str(answers.pop(0)) if answers else "", "")

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(answer))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(answer))
    return answers, starts


# 1 -------------------------------------------------------------------------------------------
def test_run_on_selected_images_from_the_attack_menu(qtbot, window):
    action = _menu_action(window, "Attack", "Run on selected images")
    assert action.shortcut().toString() == "Ctrl+Shift+R"
    window.attack_panel.set_values(method="fgsm", eps="8/255")
    window.image_list.selectAll()
    with qtbot.waitSignal(window.controller.stopped, timeout=60000):
        action.trigger()  # Qt passes checked=False; it must not become the list of images
    assert [window.batch_table.item(r, 6).text() for r in range(2)] == ["done", "done"]
    assert all(len(entry.runs) == 1 for entry in window.session.images)


# 5 -------------------------------------------------------------------------------------------
def test_a_failed_model_load_leaves_the_panel_describing_the_loaded_model(qtbot, window, errors, tmp_path,
                                                                          dialogs):
    answers, _ = dialogs
    bad = tmp_path / "notes.txt"
    bad.write_text("not a model")
    (tmp_path / "notes.json").write_text('{"classes": ["a", "b"], "input_size": [8, 8]}')
    answers.append(bad)
    _menu_action(window, "File", "Open another model…").trigger()
    qtbot.waitUntil(lambda: not window.model_loading and bool(errors), timeout=30000)
    info = window.model_panel.info.full_text
    assert "Loading" not in info and "notes.txt" not in info
    assert "tiny.pt" in info and window.model_panel.name.full_text == "Tiny test net"
    assert window.can_run()


def test_switching_images_does_not_show_the_previous_images_run(qtbot, window):
    _run(qtbot, window, method="fgsm", eps="8/255")
    assert "Run #1" in window.result_summary.text() and window.prediction_table.rowCount() > 0
    window.image_list.setCurrentRow(1)  # the user clicks the second image
    assert window.session.current.name == "b.png"
    assert "Run #1" not in window.result_summary.text() and "b.png" in window.result_summary.text()
    assert window.prediction_table.rowCount() == 0
    assert window.live.strip.items["adversarial"].image is None
    assert window.history.count() == 0
    window.image_list.setCurrentRow(0)  # back: its run shows again
    assert "Run #1" in window.result_summary.text()


def test_mask_readout_in_the_status_bar_follows_invert_and_undo(qtbot, window):
    from PySide6.QtCore import QPointF

    canvas = window.canvas
    qtbot.waitExposed(window)
    scene = canvas.view.mapViewToScene(QPointF(3.5, 3.5))
    canvas.scene().sigMouseMoved.emit(scene)  # the pointer rests over pixel (3, 3)
    assert "mask 0" in window.cursor_label.text()
    _menu_action(window, "Edit", "Invert mask").trigger()
    assert "mask 1" in window.cursor_label.text()
    _menu_action(window, "Edit", "Undo").trigger()
    assert "mask 0" in window.cursor_label.text()


def test_step_counter_starts_from_zero_for_a_new_run(qtbot, window):
    _run(qtbot, window, method="pgd", eps="8/255", steps=5)
    window.attack_panel.set_values(steps=300)
    window.run_action.trigger()
    assert window.step_label.text() == "step 0/300", "not the previous run's 5/5"
    window.cancel_action.trigger()
    _finish(qtbot, window)


def _second_model(tmp_path, tiny_model_path, classes):
    folder = tmp_path / "other_model"
    folder.mkdir()
    shutil.copy(tiny_model_path, folder / "other.pt")
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    card.update(name="Other net", classes=classes)
    (folder / "other.json").write_text(json.dumps(card))
    return folder / "other.pt"


def test_true_class_is_reset_with_a_word_when_the_new_model_has_other_classes(
        qtbot, window, tmp_path, tiny_model_path, dialogs):
    answers, _ = dialogs
    window.attack_panel.set_values(label=1)
    assert window.session.current.label == 1
    answers.append(_second_model(tmp_path, tiny_model_path, ["cat", "dog", "bird"]))
    with qtbot.waitSignal(window.model_loaded, timeout=30000):
        window.open_model_action.trigger()
    assert window.model.card.name == "Other net"
    assert window.session.current.label is None and window.attack_panel.true_label is None
    assert "True class reset" in window.statusBar().currentMessage()


def test_an_image_that_does_not_fit_the_model_is_announced_before_the_run(qtbot, window, tmp_path):
    note = window.attack_dock_widget.input_note
    assert note.isVisible() and "32×24 stretched to 16×16" in note.full_text  # a.png on a 16×16 model
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(grey)
    window.add_images([grey])
    assert "grey copied to 3 channels" in note.full_text and "stretched" not in note.full_text
    fits = tmp_path / "fits.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(fits)
    window.add_images([fits])
    assert not note.isVisible()


# 6 -------------------------------------------------------------------------------------------
def test_work_after_the_last_step_has_its_own_progress(qtbot, window):
    from advexplorer.gui.worker import Phase

    seen = []

    def record(item):
        if isinstance(item, Phase):
            seen.append((item.label, window.step_label.text(), window.run_progress.value(),
                         window.run_progress.maximum(), window.result_summary.text()))

    window.controller.step.connect(record)
    summary = _run(qtbot, window, method="pgd", eps="8/255", steps=3, saliency="gradient")
    labels = [label for label, *_ in seen]
    assert [label.split()[0] for label in labels] == ["Scoring", "Saliency", "Robustness"]
    for label, step_text, value, maximum, text in seen:
        assert step_text == label and value < maximum, "not a full bar while work remains"
        assert label in text
    assert summary.saliency is not None and summary.outcome.robustness is not None
    assert "robustness" in summary.record


# 7 -------------------------------------------------------------------------------------------
def test_model_menu_and_panel_say_a_model_is_loaded_and_do_not_cut_text(qtbot, window):
    action = _menu_action(window, "File", "Open another model…")
    assert "Tiny test net" in action.toolTip()
    assert window.model_panel.open_button.text() == "Open another model…"
    info = window.model_panel.info
    assert "tiny.pt" in info.toolTip() and "benign" in info.toolTip()
    assert info.wordWrap() and info.minimumSizeHint().width() < 200, "wraps instead of widening the dock"


def test_the_cohort_panel_opens_inside_the_screen_and_docking_it_keeps_the_window_there(qtbot, window):
    screen = window.screen().availableGeometry()
    _menu_action(window, "Attack", "Screen a cohort…").trigger()
    dock = window.cohort_dock
    qtbot.waitUntil(dock.isVisible)
    assert dock.isFloating() and screen.contains(dock.frameGeometry())
    dock.setFloating(False)
    qtbot.wait(50)
    assert window.frameGeometry().height() <= screen.height()
    assert window.frameGeometry().width() <= screen.width()


# 10 ------------------------------------------------------------------------------------------
def test_export_report_names_run_folders_that_exist_and_remembers_the_folder(qtbot, window, tmp_path, dialogs):
    import shlex

    from advexplorer import paths

    answers, starts = dialogs
    _run(qtbot, window, method="fgsm", eps="8/255")
    action = _menu_action(window, "File", "Export report…")
    assert action.shortcut().toString() == "Ctrl+E"
    out = tmp_path / "reports"
    out.mkdir()
    answers.append(out / "findings.html")
    action.trigger()
    run_folder = (out / "findings_runs" / "run-1").resolve()
    assert (run_folder / "record.json").is_file()
    html = (out / "findings.html").read_text()
    assert shlex.join(["advexplorer", "reproduce", str(run_folder)]) in html
    assert "advexplorer gui" not in html
    assert paths.RESOURCES_DIR.as_posix() not in starts[0]
    answers.append(out / "again.html")
    action.trigger()
    assert starts[1].startswith(str(out)), "the next report starts in the folder used last"


def test_mask_dialogs_start_in_the_last_used_folder(qtbot, window, tmp_path, dialogs):
    answers, starts = dialogs
    elsewhere = tmp_path / "masks"
    elsewhere.mkdir()
    mask = np.zeros((24, 32), np.uint8)
    mask[:, :8] = 255
    Image.fromarray(mask).save(elsewhere / "left.png")
    answers.append(elsewhere / "left.png")
    _menu_action(window, "File", "Load mask…").trigger()
    assert window.session.current.masks.attack.data[:, :8].all()
    window.image_list.setCurrentRow(1)
    _menu_action(window, "File", "Load mask…").trigger()  # cancelled: no answer
    assert starts[1] == str(elsewhere)


# cohort rows ---------------------------------------------------------------------------------
def test_a_cohort_row_opens_its_image_with_the_rows_attack_settings(qtbot, window, tmp_path):
    path = tmp_path / "tile.png"
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(path)
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=200)
    settings = {"method": "fgsm", "norm": "linf", "eps": 3 / 255, "steps": 1, "unknown": "ignored"}
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.cohort_panel.image_requested.emit(path, None, "none", settings)
    summary = finished.args[0]
    assert window.attack_panel.eps.text() == "3/255"
    assert summary.config["method"] == "fgsm" and summary.config["eps"] == pytest.approx(3 / 255)
