"""Projects, autosave and the quit question, attached to the main window in a few lines.

:class:`ProjectSession` adds File → Save project / Save project as / Open project, autosaves
the session (masks, finished runs, the attack form, the Cohort panel's form) a few seconds
after each change, offers to restore a crashed session's work at start, and asks Save /
Discard / Cancel before the window closes with unsaved work or a running attack. The window
wires it with::

    self.project = ProjectSession(self)          # in __init__, after the menus exist
    self.project.start()                         # at the end of start()
    if not self.project.confirm_close():          # first lines of closeEvent
        event.ignore(); return
    self.project.closed()                        # in closeEvent, after the runs stopped

It reaches the window only through what the window already offers to its controllers and
tests: ``session``, ``attack_panel``, ``model``, ``open_model``, ``add_images``,
``file_menu``, ``runs``/``controller``, ``statusBar()``, ``show_error``, and where the window
has them ``models`` (the transfer surrogate is restored once the project's model is loaded,
as it is checked against it), ``model_frame`` (each image's chosen crop), ``dicom_window``
and ``cohort_panel`` (its form: ``form_state``/``set_form_state``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence

from advexplorer.config import AttackConfig
from advexplorer.errors import UserError
from advexplorer.gui import projects
from advexplorer.session.project import (ModelState, OpenedProject, apply_masks, open_project,
                                         run_source, run_summary_from_folder, save_project,
                                         snapshot_session)

__all__ = ["ProjectSession", "form_values", "FORM_DEFAULTS"]

#: What a project saved before these fields were kept (format 1) gets for them: the form's
#: own defaults, and a white-box attack (not a surrogate left over from the window).
FORM_DEFAULTS = {"queries": AttackConfig.queries, "diversity": AttackConfig.diversity, "surrogate": None}


def form_values(panel) -> dict:
    """The attack form as plain values, in the keys ``AttackPanel.set_values`` accepts."""
    surrogate = panel.surrogate_path
    return {"method": panel.method.currentData(), "norm": panel.norm.currentData(),
            "eps": panel.eps.text(), "step_size": panel.step_size.text() or None,
            "steps": panel.steps.value(), "restarts": panel.restarts.value(),
            "seed": panel.seed.value(), "random_start": panel.random_start.isChecked(),
            "early_stop": panel.early_stop.isChecked(), "decay": panel.decay.value(),
            "queries": panel.queries.value(), "diversity": panel.diversity.value(),
            "surrogate": None if surrogate is None else str(surrogate),
            "targeted": panel.target.currentData(), "label": panel.label.currentData(),
            "saliency": panel.saliency.currentData()}


class ProjectSession(QObject):
    """The window's project file, its unsaved-changes flag and its autosave."""

    def __init__(self, window, recovery_folder: str | Path | None = None):
        super().__init__(window)
        self.window = window
        self.path: Path | None = None
        self.unsaved = False
        self.autosave = projects.AutosaveTimer(self.snapshot, recovery_folder, parent=self)
        self.autosave.problem.connect(lambda text: window.statusBar().showMessage(text, 15000))
        self._build_actions()
        session = window.session
        session.images_changed.connect(self.changed)
        session.runs_changed.connect(self.changed)
        if hasattr(window, "mask_tools"):
            window.mask_tools.edited.connect(self.changed)
        # A chosen crop or DICOM window is work too (they change what a run attacks).
        frame = getattr(window, "model_frame", None)
        if frame is not None:
            frame.frame.changed.connect(self.changed)
            frame.crop_action.triggered.connect(self.changed)
        dicom = getattr(window, "dicom_window", None)
        if dicom is not None:
            dicom.action.triggered.connect(self.changed)
        # The project's surrogate waits for the project's model: it is checked against it.
        self._pending_surrogate: Path | None = None
        models = getattr(window, "models", None)
        if models is not None:
            models.loaded.connect(self._model_loaded)
            models.failed.connect(self._model_failed)
        # The attack form travels with a saved project, but editing it is not work to lose:
        # it marks nothing unsaved (or a fresh window that only loaded a model would ask).
        self._restoring = False

    # -- menu -------------------------------------------------------------------------
    def _build_actions(self) -> None:
        window = self.window
        self.save_action = QAction("Save project", window)
        self.save_action.setShortcut(QKeySequence.StandardKey.Save)
        self.save_action.triggered.connect(lambda: self.save_dialog(save_as=False))
        self.save_as_action = QAction("Save project as…", window)
        self.save_as_action.setShortcut(QKeySequence.StandardKey.SaveAs)
        self.save_as_action.triggered.connect(lambda: self.save_dialog(save_as=True))
        self.open_action = QAction("Open project…", window)
        self.open_action.setShortcut(QKeySequence("Ctrl+Alt+O"))  # Ctrl+Shift+O opens a folder of images
        self.open_action.triggered.connect(self.open_dialog)
        menu = getattr(window, "file_menu", None)
        if menu is not None:
            first = menu.actions()[0] if menu.actions() else None
            menu.insertActions(first, [self.open_action, self.save_action, self.save_as_action])
            menu.insertSeparator(first)
        for action in (self.open_action, self.save_action, self.save_as_action):
            window.addAction(action)

    # -- state ------------------------------------------------------------------------
    @property
    def interactive(self) -> bool:
        """A person uses this window: not the demo/screenshot mode, not ``remember=False``
        (which the demo and tests use to leave the user's files alone)."""
        options = getattr(self.window, "options", None)
        return not getattr(self.window, "non_interactive", False) and getattr(options, "remember", True)

    def changed(self, *_args) -> None:
        """Something worth keeping changed: mark unsaved and schedule the autosave."""
        if self._restoring:
            return
        self.unsaved = True
        if self.interactive:
            self.autosave.changed()

    def snapshot(self):
        """The window's work as a :class:`ProjectState` (masks copied; runs as sources)."""
        window = self.window
        model = window.model
        model_state = ModelState()
        if model is not None:
            model_state = ModelState(path=Path(model.path), card_path=Path(model.card_path) if model.card_path else None,
                                     card=model.card.to_json(), device=str(model.device))
        frame = getattr(window, "model_frame", None)
        # The Cohort panel's form travels with the project; its results do not (a screen is
        # re-run from the form, not stored).
        cohort = getattr(window, "cohort_panel", None)
        return snapshot_session(window.session, model=model_state, attack_form=form_values(window.attack_panel),
                                run_source=run_source, crop_of=None if frame is None else frame.crop_of,
                                cohort_form=None if cohort is None else cohort.form_state())

    @property
    def running(self) -> bool:
        return bool(self.window.controller.running)

    # -- start and close --------------------------------------------------------------
    def start(self) -> None:
        """At start-up: offer to restore the work a crashed session left behind."""
        # What the window opened by itself (the bundled sample, the command line's images)
        # is not the user's work yet: closing right away asks nothing.
        self.unsaved = False
        self.autosave.timer.stop()
        if not self.interactive:
            return
        recovery = projects.offer_recovery(self.window, self.autosave.autosaver.folder,
                                           show_message=lambda text: self.window.statusBar().showMessage(text, 15000))
        if recovery is None:
            return
        try:
            opened = recovery.open()
        except UserError as error:
            self.window.show_error("Could not restore", str(error))
            return
        self.load(opened, project_path=None)
        recovery.discard()  # its content now lives in this session (and its own autosave)
        self.changed()

    def confirm_close(self) -> bool:
        """Ask before closing with unsaved work or a running attack. True: close may go on
        (a running attack is stopped cleanly first); False: the user cancelled."""
        if not self.interactive:
            return True
        answer = projects.ask_to_close(self.window, unsaved=self.unsaved, running=self.running)
        if answer == "cancel":
            return False
        if self.running:
            self.window.controller.stop_and_wait(15000)
        if answer == "save":
            return self.save_dialog(save_as=False)
        return True

    def closed(self) -> None:
        """The window closed on purpose (saved or discarded): no recovery file is left."""
        self.autosave.discard()

    # -- save and open ----------------------------------------------------------------
    def save_dialog(self, save_as: bool = False) -> bool:
        """Save to the current project file, or ask for one. True when saved."""
        if self.path is not None and not save_as:
            return self.save(self.path, overwrite=True)
        chosen = projects.ask_project_path_to_save(self.window, self.path or Path.home() / "project.advx")
        if chosen is None:
            return False
        path, overwrite = chosen
        return self.save(path, overwrite=overwrite)

    def save(self, path: Path, overwrite: bool = False) -> bool:
        try:
            written = save_project(path, self.snapshot(), overwrite=overwrite)
        except UserError as error:
            self.window.show_error("Could not save the project", str(error))
            return False
        self.path, self.unsaved = written, False
        self.autosave.discard()  # the project file holds it all now
        self.window.statusBar().showMessage(f"Saved project {written}", 8000)
        return True

    def open_dialog(self) -> None:
        path = projects.ask_project_path_to_open(self.window, self.path.parent if self.path else Path.home())
        if path is not None:
            self.open(path)

    def open(self, path: str | Path) -> OpenedProject | None:
        """Open a project file: ask about moved/changed images, then load what can be used."""
        try:
            opened = open_project(path)
        except UserError as error:
            self.window.show_error("Could not open the project", str(error))
            return None
        projects.resolve_images(self.window, opened)
        self.load(opened, project_path=Path(path))
        return opened

    def load(self, opened: OpenedProject, project_path: Path | None) -> None:
        """Replace the window's images with the project's usable ones, with their masks,
        runs, the model, the attack form and the Cohort panel's form."""
        window, session = self.window, self.window.session
        frame = getattr(window, "model_frame", None)
        self._restoring = True
        notes: list[str] = []
        try:
            session.remove_images(list(session.images))
            if frame is not None:
                frame.crops.clear()  # the crops of the images just closed
            model = opened.state.model
            if model.path is not None and Path(model.path).is_file():
                window.open_model(Path(model.path), card=model.card_path, user_initiated=False)
            usable = opened.usable_images
            entries = window.add_images([image.path for image in usable], quiet=True) if usable else []
            by_path = {Path(entry.path).resolve(): entry for entry in entries}
            for image in usable:
                entry = by_path.get(Path(image.path).resolve())
                if entry is None:  # unreadable now: add_images has said so
                    continue
                apply_masks(entry, image)
                entry.dicom_window = image.dicom_window
                if frame is not None and image.crop is not None:
                    frame.crops[Path(entry.path)] = tuple(image.crop)
                for folder in image.runs:
                    session.add_run(entry, run_summary_from_folder(folder, session.next_run_number()))
            saved_form = {**FORM_DEFAULTS, **opened.state.attack_form}
            surrogate = saved_form.pop("surrogate", None)
            form = {key: value for key, value in saved_form.items() if value is not None}
            try:
                window.attack_panel.set_values(**form)
            except (KeyError, ValueError, TypeError):
                pass  # a form from another version: the rest of the project still opens
            # The Cohort panel's form (a project before format 3 kept none: the panel's
            # defaults). Its paths are set as text: a folder gone since is said by Screen.
            cohort = getattr(window, "cohort_panel", None)
            if cohort is not None:
                cohort.set_form_state(opened.state.cohort_form)
                cohort.clear_results()  # a screen on show belongs to the form it replaced
            note = self._restore_surrogate(surrogate)
            if note:
                notes.append(note)
            # Re-show the current image so the canvas draws the restored masks.
            index = opened.state.current_index
            current = usable.index(opened.state.images[index]) if index is not None and \
                opened.state.images[index] in usable else 0
            session.set_current(None)
            session.set_current(current if entries else None)
        finally:
            self._restoring = False
        self.path, self.unsaved = project_path, project_path is None
        left_out = len(opened.state.images) - len(opened.usable_images)
        note = f" ({left_out} image(s) left out)" if left_out else ""
        message = f"Opened {project_path or 'restored work'}{note}"
        window.statusBar().showMessage(". ".join([message, *notes]), 15000 if notes else 10000)

    # -- the transfer surrogate -------------------------------------------------------
    def _restore_surrogate(self, saved) -> str | None:
        """Pick the project's surrogate in the form (once the model it is checked against is
        loaded). Returns a line for the status bar when it cannot be restored."""
        panel = self.window.attack_panel
        self._pending_surrogate = None
        panel.pick_surrogate(None)
        if not isinstance(saved, str) or not saved:
            return None
        path = Path(saved)
        if not path.is_file():
            return (f"The transfer surrogate {path.name} was not found at {path.parent}; "
                    "the attack is set to white box (pick a surrogate in the form)")
        models = getattr(self.window, "models", None)
        if models is None:
            panel.pick_surrogate(path)
            return None
        self._pending_surrogate = path
        if models.model is not None and not models.loading:
            self._model_loaded(models.model)
        return None

    def _model_loaded(self, _loaded=None) -> None:
        path, self._pending_surrogate = self._pending_surrogate, None
        surrogates = getattr(getattr(self.window, "runs", None), "surrogates", None)
        if path is None or surrogates is None:
            return
        surrogates.use(path)  # says in a dialog why, if it does not fit the model

    def _model_failed(self, *_args) -> None:
        path, self._pending_surrogate = self._pending_surrogate, None
        if path is not None:
            self.window.statusBar().showMessage(
                f"The transfer surrogate {path.name} was not restored: the project's model did not load.", 15000)
