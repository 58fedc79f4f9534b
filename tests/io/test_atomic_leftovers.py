"""Atomic writes after a kill -9, and output folders a user protected."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap

import pytest

from advexplorer.errors import UserError
from advexplorer.io.atomic import atomic_directory, atomic_write_text


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def killed_writer(body: str) -> None:
    """Run ``body`` in a fresh Python that kills itself with SIGKILL (no clean-up runs)."""
    script = "import os, signal\n" + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()


def test_a_partial_folder_left_by_kill_9_is_removed_by_the_next_write(tmp_path):
    destination = tmp_path / "run"
    killed_writer(f"""
        from advexplorer.io.atomic import atomic_directory
        with atomic_directory({str(destination)!r}) as folder:
            (folder / "record.json").write_text("{{}}")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert not destination.exists()
    assert [name.endswith(".partial") for name in hidden(tmp_path)] == [True]
    with atomic_directory(destination) as folder:
        (folder / "record.json").write_text("{}")
    assert hidden(tmp_path) == [] and (destination / "record.json").is_file()


def test_a_temporary_file_left_by_kill_9_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "report.html"
    killed_writer(f"""
        from advexplorer.io import atomic
        atomic.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        atomic.atomic_write_text({str(target)!r}, "half a report")
    """)
    assert len(hidden(tmp_path)) == 1 and not target.exists()
    atomic_write_text(target, "a whole report")
    assert hidden(tmp_path) == [] and target.read_text() == "a whole report"


def test_a_write_in_progress_elsewhere_is_left_alone(tmp_path):
    destination = tmp_path / "run"
    # A live writer (this process stands in for it) owns its temporary folder.
    with atomic_directory(destination) as first:
        (first / "a.txt").write_text("a")
        with atomic_directory(tmp_path / "other") as second:
            (second / "b.txt").write_text("b")
        assert first.is_dir()
    assert (destination / "a.txt").is_file() and (tmp_path / "other" / "b.txt").is_file()


def test_an_empty_read_only_output_folder_is_not_replaced(tmp_path):
    destination = tmp_path / "protected"
    destination.mkdir()
    destination.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(UserError, match=f"Output folder {destination} is read-only") as caught:
            with atomic_directory(destination) as folder:
                (folder / "record.json").write_text("{}")
        assert len(str(caught.value).splitlines()) == 1
        # Still the user's folder, with the user's permissions (not a fresh writable one).
        assert stat.S_IMODE(destination.stat().st_mode) == stat.S_IRUSR | stat.S_IXUSR
        assert hidden(tmp_path) == []
    finally:
        destination.chmod(stat.S_IRWXU)
