"""Projects and autosave as the app uses them: a real run saved in a project comes back in
the run history as it was; the questions (quit, restore, moved or changed images, replace a
file) are answered through their buttons; the autosave timer writes and reports problems."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from advexplorer.gui import projects
from advexplorer.gui.worker import RunJob, run_job
from advexplorer.session.project import (ModelState, ProjectState, open_project, run_source,
                                         run_summary_from_folder, save_project, snapshot_session)
from advexplorer.session.recovery import find_recoveries
from advexplorer.session.state import Session


def finished_run(job):
    steps = run_job(job, update_interval_s=0.0)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


@pytest.fixture
def session_with_run(tiny_model, image_files):
    session = Session()
    session.add_images(image_files)
    entry = session.images[0]
    masks = entry.ensure_masks(32, 24)
    masks.attack.fill_rectangle(0, 0, 10, 23)
    job = RunJob(model=tiny_model, image_path=entry.path,
                 config_kwargs={"method": "pgd", "norm": "linf", "eps": 8 / 255, "steps": 3, "seed": 0},
                 allowed_at_file_size=masks.allowed_at_file_size(), mask_mode=masks.mode, number=1)
    session.add_run(entry, finished_run(job))
    return session


def test_a_run_saved_in_a_project_comes_back_in_the_history_as_it_was(tmp_path, session_with_run):
    run = session_with_run.images[0].runs[0]
    state = snapshot_session(session_with_run, model=ModelState(), attack_form={"steps": 3},
                             run_source=run_source)
    path = save_project(tmp_path / "p.advx", state)
    opened = open_project(path)
    restored = run_summary_from_folder(opened.state.images[0].runs[0], number=1)

    assert restored.title == run.title
    assert restored.classes == run.classes and restored.mask_mode == run.mask_mode
    np.testing.assert_allclose(restored.original, run.original, atol=1e-6)
    np.testing.assert_allclose(restored.perturbation, run.perturbation, atol=1e-6)
    assert (restored.prediction_before, restored.prediction_after) == (run.prediction_before, run.prediction_after)
    np.testing.assert_allclose(restored.probability_trajectory, run.probability_trajectory, atol=1e-6)
    assert restored.request is None and restored.run_folder == opened.state.images[0].runs[0].path

    # Saved again (from the restored session), the run travels on from its folder.
    session = Session()
    session.add_images([image.path for image in opened.usable_images])
    session.add_run(session.images[0], restored)
    again = save_project(tmp_path / "again.advx", snapshot_session(session, run_source=run_source))
    assert open_project(again).state.images[0].runs[0].record["prediction_after"] == run.record["prediction_after"]


@pytest.fixture
def answer(monkeypatch):
    """Answer the next message boxes by button text (or standard button), in order."""
    answers = []
    asked = []

    def fake_exec(box):
        asked.append(box.text())
        wanted = answers.pop(0)
        if isinstance(wanted, str):
            box._clicked = next(b for b in box.buttons() if b.text() == wanted)
            return 0
        box._clicked = None
        return wanted

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    monkeypatch.setattr(QMessageBox, "clickedButton", lambda box: getattr(box, "_clicked", None))
    return answers, asked


def test_quit_asks_only_with_unsaved_work_or_a_run(qtbot, answer):
    answers, asked = answer
    assert projects.ask_to_close(None, unsaved=False, running=False) == "close" and asked == []
    answers += [QMessageBox.StandardButton.Save, QMessageBox.StandardButton.Discard,
                QMessageBox.StandardButton.Cancel]
    assert projects.ask_to_close(None, unsaved=True, running=False) == "save"
    assert projects.ask_to_close(None, unsaved=False, running=True) == "discard"
    assert projects.ask_to_close(None, unsaved=True, running=True) == "cancel"
    assert asked[1] == "An attack is running." and "unsaved" in asked[2]


def crashed_recovery(tmp_path):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    path = tmp_path / f"recovery-{child.pid}.advx"
    save_project(path, ProjectState(attack_form={"steps": 5}))
    return path


def test_the_next_start_offers_to_restore_discard_or_keep_for_later(qtbot, tmp_path, answer):
    answers, asked = answer
    path = crashed_recovery(tmp_path)
    answers += ["Later", "Restore", "Discard"]
    assert projects.offer_recovery(None, tmp_path) is None and path.exists()
    recovery = projects.offer_recovery(None, tmp_path)
    assert recovery.open().state.attack_form == {"steps": 5}
    assert asked[0] == "AdvExplorer did not close properly last time."
    assert projects.offer_recovery(None, tmp_path) is None and not path.exists()
    assert projects.offer_recovery(None, tmp_path) is None and len(asked) == 3   # nothing left to ask


def test_a_damaged_recovery_file_is_a_message_not_a_question(qtbot, tmp_path, answer):
    _answers, asked = answer
    (tmp_path / "recovery-999999999.advx").write_bytes(b"half a zip")
    messages = []
    assert projects.offer_recovery(None, tmp_path, show_message=messages.append) is None
    assert asked == [] and messages[0].startswith("A recovery file could not be read")


def test_moved_images_are_found_in_the_folder_the_user_shows(qtbot, tmp_path, image_files, answer):
    answers, asked = answer
    session = Session()
    session.add_images(image_files)
    path = save_project(tmp_path / "p.advx", snapshot_session(session))
    moved = tmp_path / "moved"
    moved.mkdir()
    for file in image_files:
        file.rename(moved / file.name)
    opened = open_project(path)
    answers += ["Locate folder…"]
    projects.resolve_images(None, opened, choose_folder=lambda title: str(moved))
    assert opened.missing == [] and [i.path.parent for i in opened.usable_images] == [moved, moved]
    assert asked[0].startswith("2 image(s) of this project are not where they were: a.png, b.png")


def test_a_changed_image_is_used_only_when_the_user_says_so(qtbot, tmp_path, image_files, answer):
    answers, asked = answer
    session = Session()
    session.add_images(image_files)
    path = save_project(tmp_path / "p.advx", snapshot_session(session))
    for file in image_files:
        file.write_bytes(file.read_bytes() + b"\x00")   # other bytes, same picture size
    opened = open_project(path)
    answers += ["Use it", "Leave it out"]
    projects.resolve_images(None, opened)
    assert [image.status for image in opened.state.images] == ["ok", "changed"]
    assert [image.path.name for image in opened.usable_images] == ["a.png"]
    assert "has changed since the project was saved" in asked[0]


def test_save_dialog_asks_before_replacing_when_the_suffix_was_added(qtbot, tmp_path, monkeypatch):
    existing = tmp_path / "morning.advx"
    existing.write_bytes(b"old")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "morning"), ""))
    replies = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: replies.pop(0))
    assert projects.ask_project_path_to_save(None) is None
    assert projects.ask_project_path_to_save(None) == (existing, True)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "new"), ""))
    assert projects.ask_project_path_to_save(None) == (tmp_path / "new.advx", False)


def test_the_autosave_timer_writes_after_changes_and_discards_on_clean_exit(qtbot, tmp_path):
    timer = projects.AutosaveTimer(lambda: ProjectState(attack_form={"eps": "2/255"}), tmp_path, delay_s=0.0)
    with qtbot.waitSignal(timer.saved, timeout=5000):
        timer.changed()
    assert find_recoveries(tmp_path).recoveries == []   # our own live process: not offered
    assert open_project(timer.autosaver.path).state.attack_form == {"eps": "2/255"}
    timer.discard()
    assert not timer.autosaver.path.exists() and not timer.timer.isActive()


def test_the_autosave_timer_reports_an_unwritable_folder_once(qtbot, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    timer = projects.AutosaveTimer(ProjectState, blocked / "recovery", delay_s=0.0)
    problems = []
    timer.problem.connect(problems.append)
    timer.changed()
    qtbot.waitUntil(lambda: len(problems) == 1, timeout=5000)
    timer.tick()
    assert len(problems) == 1 and problems[0].startswith("Autosave is off")
