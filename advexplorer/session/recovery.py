"""Autosave and crash recovery: painted masks and finished runs survive a crash or a kill.

While the app runs, an :class:`Autosaver` writes the session as a project file
(:mod:`advexplorer.session.project`, the same ``.advx`` format) into the user's data folder
(``platformdirs.user_data_dir("AdvExplorer")/recovery``, or ``$ADVEXPLORER_DATA_DIR/recovery``),
named after the process: ``recovery-<pid>.advx``. The GUI calls :meth:`Autosaver.mark_changed`
on every change and :meth:`Autosaver.save_if_due` from a timer; the file is written (atomically)
once the work has been unsaved for ``delay_s`` seconds, so a burst of brush strokes costs
one write, not hundreds. A clean exit (after Save project, or "Discard") calls
:meth:`Autosaver.discard` and the file goes.

At the next start :func:`find_recoveries` lists the files left by processes that no longer
run (a crash, ``kill -9``, a power cut); the app offers to restore the newest
(:func:`advexplorer.session.project.open_project` reads it). A recovery file of a process that
still runs (a second window) is left alone. A damaged or half-written one is set aside
(renamed ``….damaged``) with a message, never a crash. When the data folder cannot be
written, :meth:`Autosaver.save_now` returns one message for the status bar and the app keeps
working; it tries again a minute later.

No Qt here (the GUI owns the timer); no torch.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from advexplorer.errors import UserError
from advexplorer.io.atomic import remove_leftovers
from advexplorer.session.project import (OpenedProject, ProjectState, open_project, read_project_info,
                                         save_project)

__all__ = ["APP_NAME", "data_folder", "recovery_folder", "Autosaver", "Recovery", "find_recoveries",
           "DEFAULT_DELAY_S", "RETRY_AFTER_FAILURE_S"]

APP_NAME = "AdvExplorer"
#: Seconds of unsaved change before the autosave writes (a burst of strokes: one write).
DEFAULT_DELAY_S = 3.0
#: After a failed write (read-only or full disk), wait this long before trying again.
RETRY_AFTER_FAILURE_S = 60.0
PREFIX = "recovery-"
SUFFIX = ".advx"
DAMAGED = ".damaged"
#: Recovery files this process writes: never offered back to it. (A file named after this
#: pid that it did not write is a crashed process's whose pid was reused: offered.)
_OWN_FILES: set[Path] = set()


def data_folder() -> Path:
    """The user's data folder for AdvExplorer (``$ADVEXPLORER_DATA_DIR`` overrides it):
    ``~/.local/share/AdvExplorer`` on Linux, ``%LOCALAPPDATA%\\AdvExplorer`` on Windows,
    ``~/Library/Application Support/AdvExplorer`` on macOS."""
    override = os.environ.get("ADVEXPLORER_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def recovery_folder() -> Path:
    """Where recovery files live: ``<data folder>/recovery``."""
    return data_folder() / "recovery"


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, SystemError, ValueError):  # exists but not ours; Windows: unknown pids
        return True
    return True


def _pid_of(path: Path) -> int | None:
    text = path.name[len(PREFIX):-len(SUFFIX)]
    return int(text) if text.isdigit() else None


class Autosaver:
    """Writes the session to a recovery file a few seconds after it changes.

    ``snapshot()`` returns the :class:`ProjectState` to save (the GUI builds it with
    :func:`advexplorer.session.project.snapshot_session`); it is called on the thread that
    calls :meth:`save_if_due` / :meth:`save_now` (the GUI thread, which owns the session).
    ``clock`` is injectable for tests.
    """

    def __init__(self, snapshot: Callable[[], ProjectState], folder: str | os.PathLike | None = None,
                 *, delay_s: float = DEFAULT_DELAY_S, clock: Callable[[], float] = time.monotonic):
        self.snapshot = snapshot
        self.folder = Path(folder) if folder is not None else recovery_folder()
        self.delay_s = float(delay_s)
        self.clock = clock
        self.path = self.folder / f"{PREFIX}{os.getpid()}{SUFFIX}"
        self._changed_since: float | None = None
        self._retry_at: float | None = None
        #: The last failure, as a message for the status bar (None while saving works).
        self.problem: str | None = None
        self.saves = 0

    @property
    def has_unsaved_changes(self) -> bool:
        """Changes happened that the recovery file does not hold yet."""
        return self._changed_since is not None

    def mark_changed(self) -> None:
        """Note a change (a stroke, a finished run, a form edit). Cheap: call it on every one."""
        if self._changed_since is None:
            self._changed_since = self.clock()

    def seconds_until_due(self) -> float | None:
        """Seconds until :meth:`save_if_due` will write; None when nothing is unsaved."""
        if self._changed_since is None:
            return None
        due = self._changed_since + self.delay_s
        if self._retry_at is not None:
            due = max(due, self._retry_at)
        return max(0.0, due - self.clock())

    def save_if_due(self) -> str | None:
        """Write when the oldest unsaved change is ``delay_s`` old; returns a problem message
        the first time a write fails (else None). Call it from a timer (e.g. every second)."""
        remaining = self.seconds_until_due()
        if remaining is None or remaining > 0:
            return None
        return self.save_now()

    def save_now(self) -> str | None:
        """Write the recovery file now. Returns None on success; on failure one message
        (the first time; later failures of the same kind return None) and keeps the changes
        pending, to try again after :data:`RETRY_AFTER_FAILURE_S`."""
        started = self.clock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _OWN_FILES.add(self.path.resolve())
            save_project(self.path, self.snapshot(), overwrite=True,
                         extra={"recovery": {"pid": os.getpid(), "saved_at_unix": time.time()}})
        except (OSError, UserError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            message = (f"Autosave is off: the recovery folder {self.folder} cannot be written "
                       f"({reason}). Your work is not lost, but save the project to keep it.")
            first = self.problem is None
            self.problem = message
            self._retry_at = self.clock() + RETRY_AFTER_FAILURE_S
            return message if first else None
        # Changes made while writing stay pending (they happened after the snapshot).
        if self._changed_since is not None and self._changed_since <= started:
            self._changed_since = None
        self._retry_at = None
        self.problem = None
        self.saves += 1
        return None

    def discard(self) -> None:
        """The work was saved or deliberately discarded: remove the recovery file."""
        self._changed_since = None
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass
class Recovery:
    """A recovery file left by a process that no longer runs."""

    path: Path
    saved_at: str
    images: int
    runs: int

    @property
    def description(self) -> str:
        """One line for the "Restore unsaved work?" question."""
        runs = f", {self.runs} run{'s' * (self.runs != 1)}" if self.runs else ""
        return (f"Unsaved work from {self.saved_at.replace('T', ' ').replace('+00:00', ' UTC')}: "
                f"{self.images} image{'s' * (self.images != 1)}{runs}.")

    def open(self, runs_dir: str | os.PathLike | None = None) -> OpenedProject:
        """Read it back (as a project: masks, runs, form, image problems)."""
        return open_project(self.path, runs_dir=runs_dir)

    def discard(self) -> None:
        """The user declined (or restored and saved): remove the file."""
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass
class FoundRecoveries:
    """What :func:`find_recoveries` found: usable files (newest first) and messages about
    files that were set aside."""

    recoveries: list[Recovery] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def newest(self) -> Recovery | None:
        return self.recoveries[0] if self.recoveries else None


def find_recoveries(folder: str | os.PathLike | None = None) -> FoundRecoveries:
    """Recovery files of processes that are gone, newest first.

    A damaged, half-written or unreadable file is renamed ``<name>.damaged`` (kept, in case
    someone wants to look) and reported in ``messages``; it never raises.
    """
    folder = Path(folder) if folder is not None else recovery_folder()
    found = FoundRecoveries()
    try:
        candidates = sorted(folder.glob(f"{PREFIX}*{SUFFIX}"))
    except OSError as error:
        found.messages.append(f"The recovery folder {folder} cannot be read ({error}).")
        return found
    # Temporaries of writers killed mid-write (atomic writes leave ".recovery-N.advx.…tmp").
    for leftover in folder.glob(f".{PREFIX}*{SUFFIX}.*.tmp"):
        target = leftover.name[1:].split(SUFFIX)[0] + SUFFIX
        remove_leftovers(folder / target)
    for path in candidates:
        pid = _pid_of(path)
        if pid is not None and pid != os.getpid() and _process_runs(pid):
            continue  # another window is running and autosaving into it
        if path.resolve() in _OWN_FILES:
            continue  # this window's own autosave
        try:
            info = read_project_info(path)
        except (UserError, OSError, ValueError) as error:
            found.messages.append(f"A recovery file could not be read and was set aside: {error}")
            with contextlib.suppress(OSError):
                path.replace(path.with_name(path.name + DAMAGED))
            continue
        images = [image for image in info["images"] if isinstance(image, dict)]
        found.recoveries.append(Recovery(
            path=path, saved_at=str(info.get("saved_at", "")), images=len(images),
            runs=sum(len(image.get("runs") or []) for image in images)))
    found.recoveries.sort(key=lambda recovery: recovery.saved_at, reverse=True)
    return found
