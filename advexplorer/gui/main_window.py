"""The main window: a shell of docks, menus and toolbars that wires the controllers.

Each lifecycle lives in its own controller (:mod:`advexplorer.gui.controllers`): loading a
model, the image list and masks, runs and batches, the run history. All background work
(engine import, model load, runs, batches, cohort screens) goes through one task runner,
:class:`advexplorer.gui.worker.TaskRunner`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QMainWindow, QMessageBox, QScrollArea, QSplitter, QWidget,
)

from advexplorer import paths
from advexplorer.config import SALIENCY_METHODS
from advexplorer.errors import UserError
from advexplorer.gui import icons, qtgraph  # noqa: F401  (qtgraph before canvas: no CUDA probe)
from advexplorer.gui.canvas import MaskCanvas
from advexplorer.gui.controllers.cohort import CohortDockController, form_values
from advexplorer.gui.controllers.history import HistoryController
from advexplorer.gui.controllers.images import ImageController, input_note
from advexplorer.gui.controllers.masks import MaskToolsController
from advexplorer.gui.controllers.models import ModelController
from advexplorer.gui.controllers.runs import RunController, StatusWidgets
from advexplorer.gui.controllers.settings import Preferences, open_settings, user_folder
from advexplorer.gui.controllers.workspace import WorkspaceController
from advexplorer.gui.engine import EngineLoader, module_exists
from advexplorer.gui.imageio import read_display_image
from advexplorer.gui.menus import build_actions, build_menus_and_toolbars, refresh_recent_menus
from advexplorer.gui.panels import AttackDock, BatchPanel, HistoryPanel, ImagesPanel, ModelPanel, ResultsPanel
from advexplorer.gui.views import LiveViews
from advexplorer.session.state import ImageEntry, RunSummary, Session

__all__ = ["MainWindow", "StartOptions", "open_settings"]

MODEL_SUFFIXES = (".pt", ".pth", ".ts", ".pt2", ".safetensors", ".ckpt")
@dataclass
class StartOptions:
    """What the window opens on (from ``advexplorer gui`` / ``advexplorer demo``)."""

    model: Path | None = None
    card: Path | None = None
    device: str = "auto"
    trust_pickle: bool = False
    images: list[Path] = field(default_factory=list)
    mask: Path | None = None
    protect: Path | None = None
    diagnostic: Path | None = None
    use_default_model: bool = True
    remember: bool = True  # read/write window layout and recent files


class MainWindow(QMainWindow):
    """AdvExplorer's main window. ``run_enabled_changed(bool)`` tells when Run becomes usable."""

    run_enabled_changed = Signal(bool)
    model_loaded = Signal(object)
    run_finished = Signal(object)

    def __init__(self, options: StartOptions | None = None, engine: EngineLoader | None = None,
                 settings: QSettings | None = None):
        super().__init__()
        self.options = options or StartOptions()
        self.settings = settings if settings is not None else open_settings()
        self.preferences = Preferences(self.settings, self.options.remember)
        self.engine = engine or EngineLoader(self)
        self.session = Session()
        self.last_error: str | None = None
        self.non_interactive = False       # demo/screenshot mode: errors go to stderr, no dialog
        self.startup_s = 0.0
        self._run_enabled = False
        self.setWindowTitle("AdvExplorer")
        self.setWindowIcon(icons.icon("app"))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._build_docks()
        self._build_controllers()
        build_actions(self)
        build_menus_and_toolbars(self)
        self._connect()
        self.workspace = WorkspaceController(self)  # Tools/Preferences rooms and the project (autosave)
        screen = self.screen().availableGeometry()  # never larger than the screen it opens on
        self.resize(min(1600, screen.width() - 16), min(1000, screen.height() - 40))  # room for the frame
        if self.options.remember:
            self._restore_layout()
        self._update_enabled()

    # ================================================================ construction
    def _dock(self, title: str, name: str, widget: QWidget, area, scroll: bool = False) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        if scroll:  # a tall panel scrolls rather than forcing the window past the screen
            area_widget = QScrollArea()
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QScrollArea.Shape.NoFrame)
            area_widget.setWidget(widget)
            # As wide as the form where the screen allows (no sideways scrolling), a third of it at most.
            needed = widget.minimumSizeHint().width() + area_widget.verticalScrollBar().sizeHint().width()
            area_widget.setMinimumWidth(min(needed, self.screen().availableGeometry().width() // 3))
            widget = area_widget
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        from advexplorer.gui.cohort_panel import CohortPanel

        self.canvas, self.live = MaskCanvas(), LiveViews()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.canvas)
        splitter.addWidget(self.live)
        splitter.setStretchFactor(0, 3)
        splitter.setSizes([640, 230])
        self.setCentralWidget(splitter)
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        self.images_panel, self.model_panel = ImagesPanel(), ModelPanel()
        self.history_panel, self.attack_dock_widget = HistoryPanel(), AttackDock()
        self.results_panel, self.batch_panel = ResultsPanel(), BatchPanel()
        self.cohort_panel = CohortPanel()
        self.images_dock = self._dock("Images", "images_dock", self.images_panel, left)
        self.model_dock = self._dock("Model", "model_dock", self.model_panel, left)
        self.history_dock = self._dock("Run history", "history_dock", self.history_panel, left)
        self.attack_dock = self._dock("Attack", "attack_dock", self.attack_dock_widget, right, True)
        self.results_dock = self._dock("Results", "results_dock", self.results_panel, right)
        self.splitDockWidget(self.attack_dock, self.results_dock, Qt.Orientation.Vertical)
        self.batch_dock = self._dock("Batch", "batch_dock", self.batch_panel, bottom)
        self.cohort_dock = self._dock("Cohort", "cohort_dock", self.cohort_panel, bottom, True)
        self.tabifyDockWidget(self.batch_dock, self.cohort_dock)
        self.batch_dock.hide()
        self.cohort_dock.hide()
        self.resizeDocks([self.images_dock, self.attack_dock], [270, 440], Qt.Orientation.Horizontal)
        self.resizeDocks([self.images_dock, self.model_dock, self.history_dock], [380, 150, 260],
                         Qt.Orientation.Vertical)
        self.resizeDocks([self.attack_dock, self.results_dock], [420, 560], Qt.Orientation.Vertical)
        # Widgets the tests, the demo and the controllers reach by their old names.
        self.attack_panel = self.attack_dock_widget.panel
        self.attack_panel.set_saliency_methods(
            SALIENCY_METHODS if module_exists("advexplorer.core.saliency") else ())
        dock = self.attack_dock_widget
        self.run_button, self.pause_button, self.cancel_button = \
            dock.run_button, dock.pause_button, dock.cancel_button
        self.image_list, self.history = self.images_panel.list, self.history_panel.list
        self.compare_button = self.history_panel.compare_button
        self.result_summary = self.results_panel.summary
        self.plots, self.prediction_table = self.results_panel.plots, self.results_panel.prediction_table
        self.batch_progress, self.batch_table = self.batch_panel.progress, self.batch_panel.table
        self.status = StatusWidgets.create(self.statusBar())
        self.engine_label, self.cursor_label = self.status.engine, self.status.cursor
        self.run_progress, self.step_label, self.steps_label = self.status.progress, self.status.step, self.status.rate

    def _build_controllers(self) -> None:
        self.models = ModelController(self.engine, self.model_panel, self.attack_panel, self.session,
                                      self.preferences, self.options, self)
        self.images = ImageController(self.session, self.images_panel, self.preferences, self, self)
        self.runs = RunController(self.session, self.models, self.attack_panel, self.live, self.results_panel,
                                  self.status, self.batch_panel, self.batch_dock, self)
        self.runs_history = HistoryController(self.session, self.history_panel, self.preferences, self, self)
        self.runs_history.busy = lambda: self.runs.running
        self.cohort = CohortDockController(self, self.cohort_dock, self.results_dock)
        self.controller = self.runs.tasks  # the run/batch task runner (tests wait on it)

    def _connect(self) -> None:
        self.mask_tools = MaskToolsController(self.session, self.canvas, self.mask_toolbar, self.tool_actions, self)
        self.engine.ready.connect(self._engine_ready)
        self.engine.failed.connect(self._engine_failed)
        self.session.images_changed.connect(self.images.refresh_list)
        self.session.current_changed.connect(self._show_entry)
        self.session.runs_changed.connect(
            lambda entry: entry is self.session.current and self.runs_history.refresh(select_last=True))
        self.image_list.currentRowChanged.connect(self._image_row_changed)
        self.images_panel.remove_button.clicked.connect(self._remove_images)
        self.images.error.connect(self.show_error)
        self.images.message.connect(self.statusBar().showMessage)
        self.images.masks_loaded.connect(self.mask_tools.show_masks_of)
        self.images.added.connect(self._recent_menus)
        self.images.added.connect(self._update_enabled)
        self.model_panel.open_button.clicked.connect(self.open_model_dialog)
        self.models.loading_changed.connect(self._update_enabled)
        self.models.loaded.connect(self._model_loaded)
        self.models.failed.connect(self._model_failed)
        self.models.message.connect(self.statusBar().showMessage)
        hist = self.runs_history
        hist.show_requested.connect(self.runs.show_run)
        hist.message.connect(self.statusBar().showMessage)
        hist.error.connect(self.show_error)
        self.history_panel.save_button.clicked.connect(self.save_run_action.trigger)
        self.history_panel.report_button.clicked.connect(self.report_action.trigger)
        self.run_button.clicked.connect(self.start_run)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.runs.state_changed.connect(self._update_enabled)
        self.runs.message.connect(self.statusBar().showMessage)
        self.runs.error.connect(self.show_error)
        self.runs.run_finished.connect(self.run_finished)
        self.attack_panel.changed.connect(self._update_enabled)
        self.attack_panel.label.currentIndexChanged.connect(self._label_changed)
        self.mask_tools.edited.connect(self._update_enabled)
        self.canvas.cursor_moved.connect(self.cursor_label.setText)
        self.cohort_panel.image_requested.connect(self.open_from_cohort)

    # ================================================================ start-up, engine, model
    def start(self) -> None:
        """Open what the options say, and start loading the engine in the background."""
        options = self.options
        model_path = options.model
        if model_path is None and options.use_default_model and paths.DEFAULT_MODEL.is_file():
            model_path = paths.DEFAULT_MODEL
        card = self.models.read_card(model_path, options.card) if model_path is not None else None
        if options.images:
            entries = self.add_images(options.images)
            if entries and (options.mask or options.protect):
                self.images.load_mask(entries[0], "attack", options.mask or options.protect,
                                      "allowed" if options.mask else "protect")
            if entries and options.diagnostic:
                self.images.load_mask(entries[0], "diagnostic", options.diagnostic)
        elif card is not None and card.samples:
            self.images.add_samples(card)
        elif model_path is None:
            self.images.add_fallback_image()
        if model_path is not None:
            self.open_model(model_path, card=options.card, user_initiated=options.model is not None)
        self._recent_menus()
        QTimer.singleShot(0, self.engine.start)  # after the first frame has painted
        self.workspace.start()  # offers to restore the work of a session that crashed

    def _engine_ready(self, seconds: float) -> None:
        self.engine_label.setObjectName("engine_ready")
        self.engine_label.setText(f"Engine ready ({seconds:.1f} s)")
        self.engine_label.style().unpolish(self.engine_label)
        self.engine_label.style().polish(self.engine_label)
        self.models.engine_ready()
        self._update_enabled()

    def _engine_failed(self, text: str) -> None:
        self.engine_label.setText("Engine failed to load")
        self.show_error("The engine could not be loaded",
                        "PyTorch or AdvExplorer's engine failed to import, so attacks cannot run. "
                        "Reinstall AdvExplorer (pip install advexplorer[gui]).", text)

    @property
    def model(self):
        return self.models.model

    @model.setter
    def model(self, loaded) -> None:
        self.models.model = loaded

    model_card = property(lambda self: self.models.card, doc="The card, known before the model loads.")

    model_loading = property(lambda self: self.models.loading, doc="A model load is in progress.")

    def open_model_dialog(self) -> None:
        self.models.open_dialog(self)

    def open_model(self, path, card=None, user_initiated: bool = True) -> None:
        """Load a model in the background (after the engine); errors become a dialog."""
        self.models.open(path, card=card, user_initiated=user_initiated)

    def set_model(self, loaded) -> None:
        """Use an already loaded model (tests, embedding)."""
        self.models.set_model(loaded)

    def _model_loaded(self, loaded) -> None:
        self.cohort_panel.set_model(loaded)
        self._recent_menus()
        self.engine_label.setText(f"Device: {loaded.device}")
        self.open_model_action.setText("Open another model…")
        self.open_model_action.setToolTip(f"Loaded: {loaded.card.name} ({Path(loaded.path).name}). "
                                          "Open another classifier and its model card.")
        self._show_input_note(announce=False)  # the panel says it; the status bar may say more
        self._update_window_title()
        self._update_enabled()
        self.model_loaded.emit(loaded)

    def _model_failed(self, failure, show: bool) -> None:
        if show:
            self.show_error("Could not load the model", failure.message,
                            None if failure.is_user_error else failure.details)

    def _label_changed(self) -> None:
        entry = self.session.current
        if entry is not None:
            entry.label = self.attack_panel.true_label

    # ================================================================ images and masks
    def add_images(self, paths_, quiet: bool = False) -> list[ImageEntry]:
        """Add image files/folders; unreadable files are skipped and reported in one dialog."""
        return self.images.add_images(paths_, quiet=quiet)

    def _image_row_changed(self, row: int) -> None:  # slots return None (see menus._without_result)
        if row >= 0:
            self.session.set_current(row)

    def _remove_images(self) -> None:
        self.images.busy_entry = self.runs.entry
        problem = self.images.remove_selected()
        if problem:
            self.statusBar().showMessage(problem, 4000)

    def _show_entry(self, entry: ImageEntry | None) -> None:
        """Show an image (file resolution) with its masks and its runs — or no run at all."""
        image = None
        if entry is not None:
            self.images.select_row(self.session.index_of(entry))
            try:
                image = read_display_image(entry.path, entry.dicom_window)
            except UserError as error:
                self.show_error("Could not open the image", str(error))
        masks = None if image is None else entry.ensure_masks(image.shape[1], image.shape[0])
        self.canvas.set_image(image, masks)
        if masks is not None:
            self.mask_tools.show_masks_of(entry)
            if self.attack_panel.classes:
                self.attack_panel.label.blockSignals(True)
                self.attack_panel.set_values(label=entry.label)
                self.attack_panel.label.blockSignals(False)
        self.runs_history.refresh()
        if not self.runs.running:
            if entry is not None and entry.runs:
                self.runs.show_run(entry.runs[-1])
            else:
                self.runs.clear_results(entry.name if entry is not None else None)
        self._show_input_note()
        self._update_window_title()
        self._update_enabled()

    def _show_input_note(self, announce: bool = True) -> None:
        """Say how the current image will be converted for the model, before anyone runs."""
        entry, card = self.session.current, self.model_card
        note = input_note(entry.path, card) if entry is not None and card is not None else ""
        label = self.attack_dock_widget.input_note
        label.set_full_text(note)
        label.setVisible(bool(note))
        if note and announce:
            self.statusBar().showMessage(note, 8000)

    def undo(self) -> None:
        self.mask_tools.edit("undo")

    # ================================================================ runs, batches, cohorts
    def can_run(self) -> bool:
        return (self.engine.is_ready and self.model is not None and not self.model_loading
                and self.session.current is not None and self.attack_panel.is_valid()
                and not self.runs.running)

    def start_run(self) -> None:
        """Run the attack on the current image (Run button / Ctrl+R)."""
        if not self.can_run():
            if self.attack_panel.error:
                self.statusBar().showMessage(self.attack_panel.error, 6000)
            return
        self.runs.start_run(self.session.current)

    def start_batch(self, entries: list[ImageEntry] | None = None) -> None:
        """Run the form's attack on every selected image (all images when none is selected)."""
        entries = entries if entries is not None else (self.images.selected_entries()
                                                       or list(self.session.images))
        if entries and self.can_run():
            self.runs.start_batch(entries)

    def toggle_pause(self) -> None:
        self.runs.toggle_pause()

    def cancel_run(self) -> None:
        self.runs.cancel()

    def compare_selected_runs(self):
        return self.runs_history.compare_selected()

    def save_run(self, run: RunSummary, folder: Path) -> Path | None:
        return self.runs_history.save_run(run, folder)

    def write_report(self, runs: list[RunSummary], path: Path) -> Path | None:
        return self.runs_history.write_report(runs, path)

    def show_cohort(self) -> None:
        """Show the Cohort panel floating over the window, inside the screen (never growing it)."""
        self.cohort.show()

    def open_from_cohort(self, path: Path, mask: Path | None, mode: str, settings: dict | None = None) -> None:
        """A cohort row asked for its image: open it with its mask and attack it with the row's
        settings (method, norm, the ε where it flipped, steps…), not the form's."""
        entries = self.add_images([path])
        if not entries:
            return
        entry = entries[0]
        if mask is not None and mode in ("allowed", "protect"):
            self.images.load_mask(entry, "attack", mask, mode)
        self.session.set_current(self.session.index_of(entry))
        if settings:
            self.attack_panel.set_values(**form_values(settings))
            self.statusBar().showMessage(f"{entry.name}: attack settings from the cohort row "
                                         f"({self.attack_panel.eps.text()}).", 8000)
        if self.can_run():
            self.start_run()

    # ================================================================ window
    def _update_enabled(self, *_args) -> None:
        running, can_run = self.runs.running, self.can_run()
        self.run_button.setEnabled(can_run)
        self.run_action.setEnabled(can_run)
        self.batch_action.setEnabled(can_run and len(self.session.images) > 0)
        for widget in (self.pause_button, self.pause_action, self.cancel_button, self.cancel_action):
            widget.setEnabled(running)
        paused = self.controller.paused
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_action.setText("Resume" if paused else "Pause")
        if not self.engine.is_ready:
            text = "Loading engine…"
        elif self.model_loading:
            text = "Loading model…"
        elif self.model is None:
            text = "Run (no model loaded)"
        else:
            text = "Running…" if running else "Run"
        self.run_button.setText(text)
        layer = self.canvas.layer
        self.undo_action.setEnabled(layer is not None and layer.can_undo)
        self.redo_action.setEnabled(layer is not None and layer.can_redo)
        if can_run != self._run_enabled:
            self._run_enabled = can_run
            self.run_enabled_changed.emit(can_run)

    def _update_window_title(self) -> None:
        names = (self.model_card and self.model_card.name, self.session.current and self.session.current.name)
        self.setWindowTitle(" — ".join(["AdvExplorer", *(name for name in names if name)]))

    def _recent_menus(self, *_args) -> None:
        refresh_recent_menus(self)

    def _restore_layout(self) -> None:
        geometry, state = self.settings.value("window/geometry"), self.settings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)
            self.batch_dock.hide()  # empty until a batch runs

    def save_layout(self) -> None:
        if self.options.remember:
            self.settings.setValue("window/geometry", self.saveGeometry())
            self.settings.setValue("window/state", self.saveState())
            self.settings.sync()

    def dragEnterEvent(self, event):  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        self.open_paths([Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()])
        event.acceptProposedAction()

    def open_paths(self, dropped: list[Path]) -> None:
        """Dropped files: model files load as the model, everything else as images/folders."""
        models = [p for p in dropped if p.suffix.lower() in MODEL_SUFFIXES]
        others = [p for p in dropped if p not in models]
        if models:
            self.open_model(models[0])
        if others:
            self.add_images(others)

    def show_error(self, title: str, message: str, details: str | None = None) -> None:
        """A modal error dialog; the app stays as it was."""
        self.last_error = message
        if self.non_interactive:
            print(f"advexplorer: error: {title}: {' '.join(message.split())}", file=sys.stderr)
            return
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.exec()

    def screenshot_dialog(self) -> None:
        start = Path(self.preferences.folder("screenshot", user_folder(None)))
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", str(start / "advexplorer.png"), "PNG (*.png)")
        if path:
            self.preferences.set_folder("screenshot", path)
            self.grab().save(path)

    def closeEvent(self, event):  # noqa: N802
        """Ask about unsaved work, stop a running attack cleanly, remember the layout, then close."""
        if not self.workspace.confirm_close():
            return event.ignore()
        self.runs.closing = True
        for tasks in (self.controller, self.models.tasks, self.engine.warm_tasks):
            if tasks.running:
                tasks.stop_and_wait(15000)
        if self.cohort_panel.running:
            self.cohort_panel.stop_and_wait(15000)
        self.save_layout()
        self.workspace.closed()
        super().closeEvent(event)
