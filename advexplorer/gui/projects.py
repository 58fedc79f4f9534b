"""The app's side of projects and autosave: the questions it asks and the autosave timer.

Everything a window needs to wire File → Save project / Open project, autosave, the offer
to restore after a crash, and the question before quitting, as small functions over
:mod:`advexplorer.session.project` and :mod:`advexplorer.session.recovery`:

* :class:`AutosaveTimer` — call :meth:`~AutosaveTimer.changed` on every change; it writes
  the recovery file a few seconds later (debounced) and emits ``problem`` once if it cannot.
* :func:`ask_to_close` — Save / Discard / Cancel when there is unsaved work or a run.
* :func:`offer_recovery` — at start: "Restore unsaved work?" for a crashed session's file.
* :func:`resolve_images` — after opening a project: where are the moved images; use the
  changed ones or leave them out.
* :func:`ask_project_path_to_save` / :func:`ask_project_path_to_open` — file dialogs that
  never overwrite a project without asking.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from advexplorer.session.project import PROJECT_SUFFIX, OpenedProject, ProjectState, project_path
from advexplorer.session.recovery import Autosaver, Recovery, find_recoveries

__all__ = ["AutosaveTimer", "ask_to_close", "offer_recovery", "resolve_images",
           "ask_project_path_to_save", "ask_project_path_to_open", "PROJECT_FILTER"]

PROJECT_FILTER = f"AdvExplorer project (*{PROJECT_SUFFIX})"
Button = QMessageBox.StandardButton


class AutosaveTimer(QObject):
    """Drives an :class:`Autosaver` from the GUI thread: a one-second tick writes the
    recovery file once the work has been unsaved for ``delay_s`` seconds.

    ``problem(str)`` is emitted once when the data folder cannot be written (show it in the
    status bar); the app keeps working and the timer tries again a minute later.
    """

    problem = Signal(str)
    saved = Signal(str)

    def __init__(self, snapshot: Callable[[], ProjectState], folder: str | Path | None = None, *,
                 delay_s: float | None = None, parent: QObject | None = None):
        super().__init__(parent)
        kwargs = {} if delay_s is None else {"delay_s": delay_s}
        self.autosaver = Autosaver(snapshot, folder, **kwargs)
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.tick)

    def changed(self, *_args) -> None:
        """Something the recovery file should hold changed (connect any signal to it)."""
        self.autosaver.mark_changed()
        if not self.timer.isActive():
            self.timer.start()

    def tick(self) -> None:
        message = self.autosaver.save_if_due()
        if message:
            self.problem.emit(message)
        elif not self.autosaver.has_unsaved_changes:
            self.timer.stop()
            self.saved.emit(str(self.autosaver.path))

    def discard(self) -> None:
        """Work saved or deliberately discarded: stop and remove the recovery file."""
        self.timer.stop()
        self.autosaver.discard()


def ask_to_close(parent: QWidget | None, *, unsaved: bool, running: bool) -> str:
    """Before quitting or closing: ``"save"``, ``"discard"`` or ``"cancel"``; ``"close"``
    without asking when there is no unsaved work and no run. A running attack is stopped
    by the caller for "save" and "discard" (before it saves)."""
    if not unsaved and not running:
        return "close"
    if running and unsaved:
        text = "An attack is running and the project has unsaved changes."
    elif running:
        text = "An attack is running."
    else:
        text = "The project has unsaved changes (masks or runs)."
    box = QMessageBox(QMessageBox.Icon.Question, "Quit AdvExplorer", text,
                      Button.Save | Button.Discard | Button.Cancel, parent)
    box.setInformativeText("Save the project before quitting? A running attack is stopped first."
                           if running else "Save the project before quitting?")
    box.setDefaultButton(Button.Save)
    answer = box.exec()
    return {Button.Save: "save", Button.Discard: "discard"}.get(Button(answer), "cancel")


def offer_recovery(parent: QWidget | None, folder: str | Path | None = None,
                   show_message: Callable[[str], None] | None = None) -> Recovery | None:
    """At start: when a crashed or killed session left work behind, ask to restore it.

    Returns the :class:`Recovery` to open (the caller opens it and then removes it once it
    has its own autosave), or None. "Discard" removes the file; "Later" keeps it for the
    next start. Files that could not be read were set aside; their messages go to
    ``show_message`` (e.g. the status bar), never an exception.
    """
    found = find_recoveries(folder)
    for message in found.messages:
        if show_message is not None:
            show_message(message)
    recovery = found.newest
    if recovery is None:
        return None
    box = QMessageBox(QMessageBox.Icon.Question, "Restore unsaved work",
                      "AdvExplorer did not close properly last time.", Button.NoButton, parent)
    box.setInformativeText(f"{recovery.description} Restore it?")
    restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
    discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(restore)
    box.exec()
    if box.clickedButton() is restore:
        return recovery
    if box.clickedButton() is discard:
        recovery.discard()
    return None


def resolve_images(parent: QWidget | None, opened: OpenedProject,
                   choose_folder: Callable[[str], str] | None = None) -> None:
    """After opening a project: ask where moved images are (a folder, searched by file name
    and checked by SHA-256; asked again while some are missing, until the user skips), then,
    per changed image, whether to use it as it is now or leave it out."""
    if choose_folder is None:
        def choose_folder(title: str) -> str:
            return QFileDialog.getExistingDirectory(parent, title, str(opened.path.parent))
    while opened.missing:
        names = ", ".join(problem.path.name for problem in opened.missing[:5])
        more = f" and {len(opened.missing) - 5} more" if len(opened.missing) > 5 else ""
        box = QMessageBox(QMessageBox.Icon.Warning, "Images not found",
                          f"{len(opened.missing)} image(s) of this project are not where they were: "
                          f"{names}{more}.", Button.NoButton, parent)
        box.setInformativeText("Show the folder they are in now? Images found there are used only "
                               "if their content is the one the project was saved with.")
        locate = box.addButton("Locate folder…", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Leave them out", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is not locate:
            break
        folder = choose_folder("Folder with the project's images")
        if not folder:
            break
        before = len(opened.missing)
        opened.relocate(folder)
        if len(opened.missing) == before and not opened.changed:
            continue  # nothing there; ask again (the user may pick another folder or give up)
    for problem in list(opened.changed):
        box = QMessageBox(QMessageBox.Icon.Warning, "Image changed", problem.message, Button.NoButton, parent)
        box.setInformativeText("Use it as it is now (masks are kept only if its size is the same), "
                               "or leave it out of the project?")
        use = box.addButton("Use it", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Leave it out", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is use:
            opened.accept_changed(problem.index)


def ask_project_path_to_save(parent: QWidget | None, start: str | Path = "") -> tuple[Path, bool] | None:
    """A file dialog for Save project: ``(path, overwrite)`` or None if cancelled.

    ``overwrite`` is True only when the user confirmed replacing an existing file (the
    dialog asks for the name typed; when ``.advx`` had to be added, this asks again)."""
    name, _ = QFileDialog.getSaveFileName(parent, "Save project", str(start), PROJECT_FILTER)
    if not name:
        return None
    path = project_path(name)
    if not path.exists():
        return path, False
    if Path(name) == path:
        return path, True  # the dialog has asked already
    answer = QMessageBox.question(parent, "Replace project",
                                  f"{path.name} already exists in {path.parent}. Replace it?",
                                  Button.Yes | Button.No, Button.No)
    return (path, True) if answer == Button.Yes else None


def ask_project_path_to_open(parent: QWidget | None, start: str | Path = "") -> Path | None:
    """A file dialog for Open project; None if cancelled."""
    name, _ = QFileDialog.getOpenFileName(parent, "Open project", str(start),
                                          f"{PROJECT_FILTER};;All files (*)")
    return Path(name) if name else None
