"""Autosave and recovery: work survives a real kill -9; the autosave is debounced; damaged
or half-written recovery files and an unwritable data folder are messages, never crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from PIL import Image

from advexplorer.session import recovery
from advexplorer.session.project import ImageState, ProjectState, save_project
from advexplorer.session.recovery import Autosaver, find_recoveries

# The app's own autosave path, in a child process: a session with a painted mask, autosaved
# by the Autosaver the GUI drives, then kept busy painting and saving until it is killed.
CRASHING_APP = textwrap.dedent("""
    import sys
    from pathlib import Path
    from advexplorer.session.project import ModelState, snapshot_session
    from advexplorer.session.recovery import Autosaver
    from advexplorer.session.state import Session

    image, folder = sys.argv[1], sys.argv[2]
    session = Session()
    session.add_images([image])
    masks = session.images[0].ensure_masks(32, 24)
    masks.attack.fill_rectangle(4, 4, 12, 10)
    masks.diagnostic.fill_rectangle(20, 2, 30, 8)
    form = {"method": "pgd", "eps": "2/255", "steps": 9}
    saver = Autosaver(lambda: snapshot_session(session, model=ModelState(), attack_form=form),
                      folder, delay_s=0.0)
    saver.mark_changed()
    assert saver.save_if_due() is None
    print("autosaved", flush=True)
    # Keep working: every further autosave holds the same first rectangle plus more.
    column = 0
    while True:
        masks.attack.fill_rectangle(14 + column % 16, 14, 15 + column % 16, 20)
        column += 1
        saver.mark_changed()
        saver.save_if_due()
""")

RESTORING_APP = textwrap.dedent("""
    import json, sys
    from advexplorer.session.recovery import find_recoveries

    found = find_recoveries(sys.argv[1])
    newest = found.newest
    opened = newest.open()
    image = opened.state.images[0]
    print(json.dumps({"description": newest.description, "messages": found.messages,
                      "form": opened.state.attack_form, "missing": len(opened.missing),
                      "first_rectangle": int(image.attack_mask[4:10, 4:12].sum()),
                      "diagnostic": int(image.diagnostic_mask.sum())}))
""")


def write_image(path, size=(32, 24)):
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)
    return path


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_work_of_a_killed_process_is_found_and_restored_by_the_next_start(tmp_path):
    image = write_image(tmp_path / "tile.png")
    folder = tmp_path / "recovery"
    app = subprocess.Popen([sys.executable, "-c", CRASHING_APP, str(image), str(folder)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        assert app.stdout.readline().strip() == "autosaved", app.stderr.read()
    finally:
        app.send_signal(signal.SIGKILL)  # a crash: no cleanup, no atexit, mid-write perhaps
        app.wait(timeout=30)
    assert app.returncode == -signal.SIGKILL

    restart = subprocess.run([sys.executable, "-c", RESTORING_APP, str(folder)], capture_output=True,
                             text=True, env=child_env(), timeout=120)
    assert restart.returncode == 0, restart.stderr
    restored = json.loads(restart.stdout)
    assert restored["form"] == {"method": "pgd", "eps": "2/255", "steps": 9}
    # fill_rectangle includes both corners: 11 × 7 pixels for (20, 2)–(30, 8).
    assert restored["first_rectangle"] == 6 * 8 and restored["diagnostic"] == 11 * 7
    assert restored["missing"] == 0 and restored["messages"] == []
    assert restored["description"].startswith("Unsaved work from ") and "1 image" in restored["description"]


def test_autosave_is_debounced_a_burst_of_changes_is_one_write(tmp_path):
    now = [100.0]
    saver = Autosaver(lambda: ProjectState(attack_form={"steps": 1}), tmp_path, delay_s=3.0,
                      clock=lambda: now[0])
    assert saver.save_if_due() is None and saver.saves == 0 and saver.seconds_until_due() is None
    for _ in range(50):            # fifty strokes within a second
        saver.mark_changed()
        now[0] += 0.02
        saver.save_if_due()
    assert saver.saves == 0 and not saver.path.exists()
    now[0] += 3.0
    saver.save_if_due()
    assert saver.saves == 1 and saver.path.is_file() and not saver.has_unsaved_changes
    saver.save_if_due()
    assert saver.saves == 1        # nothing changed since: no write


def test_a_clean_exit_removes_the_recovery_file(tmp_path):
    saver = Autosaver(ProjectState, tmp_path, delay_s=0)
    saver.mark_changed()
    saver.save_if_due()
    assert saver.path.is_file()
    saver.discard()
    assert not saver.path.exists() and find_recoveries(tmp_path).recoveries == []


def test_a_running_windows_recovery_file_is_not_offered(tmp_path):
    saver = Autosaver(ProjectState, tmp_path, delay_s=0)
    saver.save_now()
    other = tmp_path / f"recovery-{os.getppid()}.advx"   # the parent process: alive
    saver.path.rename(other)
    assert find_recoveries(tmp_path).recoveries == []
    assert other.is_file()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "empty", "no manifest"])
def test_a_damaged_recovery_file_is_set_aside_with_a_message(tmp_path, damage):
    path = tmp_path / f"recovery-{dead_pid()}.advx"
    save_project(path, ProjectState(images=[ImageState(path=tmp_path / "x.png")]))
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "not a zip":
        path.write_bytes(b"\x00" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("other.txt", "x")
    found = find_recoveries(tmp_path)
    assert found.recoveries == []
    assert len(found.messages) == 1 and found.messages[0].startswith("A recovery file could not be read")
    assert (tmp_path / (path.name + ".damaged")).is_file() and not path.exists()
    assert find_recoveries(tmp_path).messages == []   # said once, not at every start


def test_a_half_written_temporary_of_a_killed_writer_is_ignored_and_removed(tmp_path):
    pid = dead_pid()
    good = tmp_path / f"recovery-{pid}.advx"
    save_project(good, ProjectState(attack_form={"steps": 4}))
    leftover = tmp_path / f".recovery-{pid}.advx.{pid}-0badc0de.tmp"
    leftover.write_bytes(b"PK\x03\x04 half a zip")
    found = find_recoveries(tmp_path)
    assert [r.path for r in found.recoveries] == [good] and found.messages == []
    assert not leftover.exists()
    assert found.newest.open().state.attack_form == {"steps": 4}


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="root writes into read-only folders; POSIX permissions")
def test_an_unwritable_data_folder_is_one_message_and_the_app_keeps_working(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        saver = Autosaver(ProjectState, folder, delay_s=0)
        saver.mark_changed()
        message = saver.save_if_due()
        assert message.startswith(f"Autosave is off: the recovery folder {folder} cannot be written")
        assert saver.has_unsaved_changes and saver.seconds_until_due() > 0   # retried later
    finally:
        folder.chmod(0o700)


def test_an_unwritable_data_folder_as_root_too(tmp_path):
    """Root ignores permissions; a data 'folder' that is a file fails for everyone."""
    blocked = tmp_path / "data"
    blocked.write_text("a file where the folder should be")
    saver = Autosaver(ProjectState, blocked / "recovery", delay_s=0)
    saver.mark_changed()
    message = saver.save_if_due()
    assert message is not None and message.startswith("Autosave is off") and "\n" not in message
    assert saver.save_now() is None and saver.problem == message   # said once, not at every try
    assert saver.has_unsaved_changes


def test_the_data_folder_follows_platformdirs_and_the_override(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVEXPLORER_DATA_DIR", str(tmp_path))
    assert recovery.recovery_folder() == tmp_path / "recovery"
    monkeypatch.delenv("ADVEXPLORER_DATA_DIR")
    import platformdirs
    assert recovery.data_folder() == platformdirs.user_data_path("AdvExplorer", appauthor=False)
