"""Projects in the real main window: save and reopen round-trips masks, runs and the attack
form; quitting with a run in progress asks and stops the worker; a crashed session's work is
offered at the next start."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from advexplorer.gui.project_session import form_values
from advexplorer.session.project import ProjectState, save_project


def finish(qtbot, window):
    qtbot.waitUntil(lambda: not window.controller.running, timeout=60000)


@pytest.fixture
def answers(monkeypatch):
    """Answer message boxes in order (a button text or a standard button)."""
    queue = []

    def fake_exec(box):
        if not queue:  # the window closing at the end of a test discards its work
            return QMessageBox.StandardButton.Discard if box.windowTitle() == "Quit AdvExplorer" \
                else QMessageBox.StandardButton.Ok
        wanted = queue.pop(0)
        box._clicked = next((b for b in box.buttons() if b.text() == wanted), None) if isinstance(wanted, str) else None
        return 0 if isinstance(wanted, str) else wanted

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    monkeypatch.setattr(QMessageBox, "clickedButton", lambda box: getattr(box, "_clicked", None))
    return queue


def test_save_and_reopen_round_trips_masks_runs_and_form(qtbot, window, tmp_path):
    project = window.workspace.project  # the window's own (its autosave folder is the test's)
    entry = window.session.current
    entry.masks.attack.fill_rectangle(0, 0, 12, 10)
    entry.masks.diagnostic.fill_rectangle(20, 5, 30, 20)
    window.attack_panel.set_values(method="pgd", norm="linf", eps="4/255", steps=3, seed=7)
    window.start_run()
    finish(qtbot, window)
    assert len(entry.runs) == 1 and project.unsaved
    attack, diagnostic, form = entry.masks.attack.copy(), entry.masks.diagnostic.copy(), form_values(window.attack_panel)
    title = entry.runs[0].title

    assert project.save(tmp_path / "morning.advx")
    assert not project.unsaved and not project.autosave.autosaver.path.exists()

    # Change everything, then open the project again.
    window.attack_panel.set_values(eps="1/255", steps=9, seed=1)
    entry.masks.attack.clear()
    project.open(tmp_path / "morning.advx")
    restored = window.session.images[0]
    assert [image.path.name for image in window.session.images] == ["a.png", "b.png"]
    assert np.array_equal(restored.masks.attack.data, attack)
    assert np.array_equal(restored.masks.diagnostic.data, diagnostic)
    assert not restored.masks.attack.can_undo            # current state only, no history
    # Runs are numbered on in this window; everything after the number is as it was.
    assert [run.title.split(" ", 1)[1] for run in restored.runs] == [title.split(" ", 1)[1]]
    assert form_values(window.attack_panel) == form
    assert project.path == tmp_path / "morning.advx" and not project.unsaved


def test_quit_with_a_run_in_progress_asks_and_stops_the_worker(qtbot, window, tmp_path, answers):
    project = window.workspace.project  # the window's own (its autosave folder is the test's)
    window.attack_panel.set_values(method="pgd", steps=100000)
    window.start_run()
    qtbot.waitUntil(lambda: window.controller.running, timeout=30000)
    answers.append(QMessageBox.StandardButton.Cancel)
    assert project.confirm_close() is False and window.controller.running   # Cancel: keeps running
    answers.append(QMessageBox.StandardButton.Discard)
    assert project.confirm_close() is True
    assert not window.controller.running                                    # stopped cleanly
    project.closed()
    assert not project.autosave.autosaver.path.exists()


def test_the_next_start_offers_a_crashed_sessions_work(qtbot, window, tmp_path, answers, image_files):
    import subprocess
    import sys

    from advexplorer.session.project import ImageState

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    project = window.workspace.project
    folder = project.autosave.autosaver.folder
    mask = np.zeros((24, 32), np.uint8)
    mask[2:6, 3:9] = 1
    save_project(folder / f"recovery-{child.pid}.advx",
                 ProjectState(images=[ImageState(path=image_files[1], size=(20, 20), mask_mode="allowed",
                                                 attack_mask=np.ones((20, 20), np.uint8))],
                              attack_form={"steps": 11}))
    answers.append("Restore")
    project.start()
    assert [image.path.name for image in window.session.images] == ["b.png"]
    assert window.session.images[0].masks.mode == "allowed" and window.session.images[0].masks.attack.data.all()
    assert window.attack_panel.steps.value() == 11
    assert project.unsaved and not list(folder.glob(f"recovery-{child.pid}.advx"))


def test_the_demo_and_remember_false_windows_neither_autosave_nor_ask(qtbot, window, tmp_path, answers):
    window.options.remember = False
    project = window.workspace.project  # the window's own (its autosave folder is the test's)
    project.autosave.timer.stop()       # what the window's start-up scheduled
    window.session.current.masks.attack.fill_rectangle(0, 0, 5, 5)
    project.changed()
    assert project.unsaved and not project.autosave.timer.isActive()
    assert project.confirm_close() is True and answers == []   # nothing asked
    project.start()
    folder = project.autosave.autosaver.folder
    assert not folder.exists() or not list(folder.glob("recovery-*.advx"))
