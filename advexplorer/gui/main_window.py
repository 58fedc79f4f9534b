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

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar, QSplitter, QToolBar,
    QWidget,
)

from advexplorer import paths
from advexplorer.config import SALIENCY_METHODS, eps_argument
from advexplorer.errors import UserError
from advexplorer.gui import icons
from advexplorer.gui.canvas import MaskCanvas
from advexplorer.gui.controllers.history import HistoryController
from advexplorer.gui.controllers.images import IMAGE_FILTER, ImageController, input_note
from advexplorer.gui.controllers.models import ModelController
from advexplorer.gui.controllers.runs import RunController, StatusWidgets
from advexplorer.gui.controllers.settings import Preferences, open_settings, user_folder
from advexplorer.gui.engine import EngineLoader, module_exists
from advexplorer.gui.imageio import read_display_image
from advexplorer.gui.panels import (AttackDock, BatchPanel, HistoryPanel, ImagesPanel, MaskToolBar,
                                    ModelPanel, ResultsPanel)
from advexplorer.gui.views import LiveViews
from advexplorer.session.state import ImageEntry, RunSummary, Session

__all__ = ["MainWindow", "StartOptions", "open_settings"]

MODEL_FILTER = "Models (*.pt *.pth *.ts *.pt2 *.safetensors *.ckpt);;All files (*)"
MODEL_SUFFIXES = (".pt", ".pth", ".ts", ".pt2", ".safetensors", ".ckpt")
#: What a cohort row may set on the attack form when it asks to open its image.
FORM_KEYS = ("method", "norm", "eps", "step_size", "steps", "restarts", "random_start", "seed",
             "early_stop", "decay", "targeted", "label", "saliency")


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
        self._build_actions()
        self._build_menus_and_toolbars()
        self._connect()
        self.resize(1600, 1000)
        if self.options.remember:
            self._restore_layout()
        self._update_enabled()

    # ================================================================ construction
    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
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
        self.attack_dock = self._dock("Attack", "attack_dock", self.attack_dock_widget, right)
        self.results_dock = self._dock("Results", "results_dock", self.results_panel, right)
        self.splitDockWidget(self.attack_dock, self.results_dock, Qt.Orientation.Vertical)
        self.batch_dock = self._dock("Batch", "batch_dock", self.batch_panel, bottom)
        self.cohort_dock = self._dock("Cohort", "cohort_dock", self.cohort_panel, bottom)
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
        status = self.statusBar()
        self.engine_label = QLabel("Loading engine…")
        self.engine_label.setObjectName("engine_loading")
        self.steps_label, self.step_label, self.cursor_label = QLabel(""), QLabel(""), QLabel("")
        self.run_progress = QProgressBar()
        self.run_progress.setFixedWidth(200)
        self.run_progress.setTextVisible(False)
        self.run_progress.setVisible(False)
        status.addWidget(self.cursor_label, 1)
        for widget in (self.run_progress, self.step_label, self.steps_label, self.engine_label):
            status.addPermanentWidget(widget)

    def _build_controllers(self) -> None:
        self.models = ModelController(self.engine, self.model_panel, self.options.trust_pickle, self)
        self.images = ImageController(self.session, self.images_panel, self.preferences, self, self)
        self.runs = RunController(self.session, self.models, self.attack_panel, self.live,
                                  self.results_panel,
                                  StatusWidgets(self.run_progress, self.step_label, self.steps_label),
                                  self.batch_panel, self.batch_dock, self)
        self.runs_history = HistoryController(self.session, self.history_panel, self.preferences, self, self)
        self.runs_history.busy = lambda: self.runs.running
        self.controller = self.runs.tasks  # the run/batch task runner (tests wait on it)

    def _action(self, text: str, slot, shortcut=None, tip: str = "", icon: str | None = None,
                checkable: bool = False) -> QAction:
        """An action; ``slot`` is called WITHOUT Qt's ``checked`` argument (it would land
        in the slot's first parameter: Run on selected images once got ``entries=False``)."""
        action = QAction(text, self)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        if icon:
            action.setIcon(icons.icon(icon))
        action.setCheckable(checkable)
        if slot is not None:
            action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)  # shortcuts work even when a toolbar is hidden
        return action

    def _build_actions(self) -> None:
        a = self._action
        images = self.images
        self.open_images_action = a("Open images…", self.open_images_dialog, QKeySequence.StandardKey.Open,
                                    "Add image files to the session.", "open")
        self.open_folder_action = a("Open folder…", self.open_folder_dialog, "Ctrl+Shift+O",
                                    "Add every image of a folder.")
        self.open_model_action = a("Open model…", self.open_model_dialog, "Ctrl+M",
                                   "Load a classifier and its model card.", "model")
        self.load_mask_action = a("Load mask…", lambda: images.load_mask_dialog("attack"), None,
                                  "Load an allowed/protect mask PNG for the current image.")
        self.load_diagnostic_action = a("Load diagnostic region…", lambda: images.load_mask_dialog("diagnostic"))
        self.save_mask_action = a("Save mask…", lambda: self._saved(images.save_mask_dialog("attack")),
                                  "Ctrl+Shift+S", "Save the painted mask as a PNG at the image's size.")
        self.save_diagnostic_action = a("Save diagnostic region…",
                                        lambda: self._saved(images.save_mask_dialog("diagnostic")))
        self.save_run_action = a("Save run folder…", lambda: self.runs_history.save_run_dialog(
            self.runs.shown_run), "Ctrl+S", "Write the shown run as a run folder (record.json and files).")
        self.report_action = a("Export report…", self.runs_history.report_dialog, "Ctrl+E",
                               "HTML/PDF report of the selected runs (else the last run), with their "
                               "run folders saved beside it for `advexplorer reproduce`.")
        self.screenshot_action = a("Save screenshot…", self.screenshot_dialog, None,
                                   "Save a PNG of the whole window.")
        self.quit_action = a("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.undo_action = a("Undo", lambda: self._edit_mask("undo"), ["Ctrl+Z"],
                             "Undo the last stroke on the active layer.", "undo")
        self.redo_action = a("Redo", lambda: self._edit_mask("redo"), ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo.", "redo")
        self.invert_action = a("Invert mask", lambda: self._edit_mask("invert"), "I",
                               "Swap painted and unpainted pixels.", "invert")
        self.clear_action = a("Clear mask", lambda: self._edit_mask("clear"), None,
                              "Erase the whole active layer.", "clear")
        self.tool_group = QActionGroup(self)
        self.tool_actions = {}
        for tool, text, key, tip in (
                ("brush", "Brush", "B", "Paint on the active layer (B). [ and ] change the size."),
                ("eraser", "Eraser", "E", "Erase from the active layer (E)."),
                ("fill", "Fill", "F", "Flood-fill the clicked region (F)."),
                ("rectangle", "Rectangle", "R", "Drag a rectangle to paint (R)."),
                ("pan", "Pan / zoom", "P", "Drag to pan, wheel to zoom (P). Space-drag pans with any tool.")):
            action = a(text, lambda t=tool: self.canvas.set_tool(t), key, tip, tool, checkable=True)
            self.tool_group.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions["brush"].setChecked(True)
        self.smaller_action = a("Smaller brush", lambda: self.canvas.grow_brush(1 / 1.25), "[")
        self.larger_action = a("Larger brush", lambda: self.canvas.grow_brush(1.25), "]")
        self.fit_action = a("Zoom to fit", lambda: self.canvas.view.autoRange(padding=0.02), "Ctrl+0",
                            "Show the whole image.")
        self.run_action = a("Run", self.start_run, "Ctrl+R", "Run the attack on the current image.", "run")
        self.pause_action = a("Pause", self.toggle_pause, "Ctrl+P", "Pause/resume between steps.", "pause")
        self.cancel_action = a("Cancel", self.cancel_run, "Esc", "Stop after the current step.", "stop")
        self.batch_action = a("Run on selected images", self.start_batch, "Ctrl+Shift+R",
                              "Run the same attack on every selected image, each with its own mask.")
        self.cohort_action = a("Screen a cohort…", self.show_cohort, "Ctrl+Shift+C",
                               "Flip rate and robust accuracy against ε over a folder of images.")
        self.about_action = a("About AdvExplorer", self.about)
        self.shortcuts_action = a("Keyboard shortcuts", self.show_shortcuts, "F1")

    def _build_menus_and_toolbars(self) -> None:
        def menu(title, *items):
            added = self.menuBar().addMenu(title)
            for item in items:
                added.addSeparator() if item is None else added.addAction(item)
            return added

        self.file_menu = menu("&File", self.open_images_action, self.open_folder_action, self.open_model_action)
        self.recent_models_menu = self.file_menu.addMenu("Recent models")
        self.recent_images_menu = self.file_menu.addMenu("Recent images")
        for item in (None, self.load_mask_action, self.load_diagnostic_action, self.save_mask_action,
                     self.save_diagnostic_action, None, self.save_run_action, self.report_action,
                     self.screenshot_action, None, self.quit_action):
            self.file_menu.addSeparator() if item is None else self.file_menu.addAction(item)
        menu("&Edit", self.undo_action, self.redo_action, self.invert_action, self.clear_action)
        menu("&Mask", *self.tool_actions.values(), None, self.smaller_action, self.larger_action)
        self.attack_menu = menu("&Attack", self.run_action, self.pause_action, self.cancel_action,
                                self.batch_action, self.cohort_action)
        self.view_menu = menu("&View", self.fit_action, None, *(dock.toggleViewAction() for dock in (
            self.images_dock, self.model_dock, self.history_dock, self.attack_dock, self.results_dock,
            self.batch_dock, self.cohort_dock)))
        menu("&Help", self.shortcuts_action, self.about_action)
        bar = QToolBar("File")
        bar.setObjectName("file_toolbar")
        bar.setIconSize(QSize(20, 20))
        bar.addAction(self.open_images_action)
        bar.addAction(self.open_model_action)
        self.addToolBar(bar)
        self.mask_toolbar = MaskToolBar(self.tool_actions.values(), (
            self.invert_action, self.clear_action, self.undo_action, self.redo_action),
            self.canvas.brush_size, self.canvas.opacity, self)
        self.addToolBar(self.mask_toolbar)
        self.brush_size, self.opacity = self.mask_toolbar.brush_size, self.mask_toolbar.opacity
        self.layer_combo, self.mode_combo = self.mask_toolbar.layer, self.mask_toolbar.mode
        run = QToolBar("Run")
        run.setObjectName("run_toolbar")
        run.setIconSize(QSize(20, 20))
        run.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.run_action, self.pause_action, self.cancel_action):
            run.addAction(action)
        self.addToolBar(run)

    def _connect(self) -> None:
        self.engine.ready.connect(self._engine_ready)
        self.engine.failed.connect(self._engine_failed)
        self.session.images_changed.connect(self.images.refresh_list)
        self.session.current_changed.connect(self._show_entry)
        self.session.runs_changed.connect(
            lambda entry: entry is self.session.current and self.runs_history.refresh(select_last=True))
        self.image_list.currentRowChanged.connect(lambda row: row >= 0 and self.session.set_current(row))
        self.images_panel.add_button.clicked.connect(self.open_images_dialog)
        self.images_panel.remove_button.clicked.connect(self._remove_images)
        self.images.error.connect(self.show_error)
        self.images.masks_loaded.connect(self._masks_loaded)
        self.model_panel.open_button.clicked.connect(self.open_model_dialog)
        self.models.loading_changed.connect(self._update_enabled)
        self.models.loaded.connect(self._model_loaded)
        self.models.failed.connect(self._model_failed)
        self.models.classes_changed.connect(self._classes_changed)
        hist = self.runs_history
        hist.show_requested.connect(self.runs.show_run)
        hist.message.connect(self.statusBar().showMessage)
        hist.error.connect(self.show_error)
        self.compare_button.clicked.connect(hist.compare_selected)
        self.history_panel.save_button.clicked.connect(lambda: hist.save_run_dialog(self.runs.shown_run))
        self.history_panel.report_button.clicked.connect(hist.report_dialog)
        self.run_button.clicked.connect(self.start_run)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.runs.state_changed.connect(self._update_enabled)
        self.runs.message.connect(self.statusBar().showMessage)
        self.runs.error.connect(self.show_error)
        self.runs.run_finished.connect(self.run_finished)
        self.attack_panel.changed.connect(self._update_enabled)
        self.attack_panel.device_changed.connect(self._device_changed)
        self.attack_panel.label.currentIndexChanged.connect(self._label_changed)
        self.canvas.tool_changed.connect(lambda tool: self.tool_actions[tool].setChecked(True))
        self.canvas.brush_size_changed.connect(self.brush_size.setValue)
        self.canvas.mask_edited.connect(self._update_enabled)
        self.canvas.cursor_moved.connect(self.cursor_label.setText)
        self.brush_size.valueChanged.connect(self.canvas.set_brush_size)
        self.layer_combo.currentIndexChanged.connect(self._layer_changed)
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        self.opacity.valueChanged.connect(lambda v: self.canvas.set_opacity(v / 100))
        self.cohort_panel.image_requested.connect(self.open_from_cohort)
        self.cohort_dock.topLevelChanged.connect(lambda floating: floating or QTimer.singleShot(
            0, self._keep_on_screen))

    # ================================================================ start-up, engine, model
    def start(self) -> None:
        """Open what the options say, and start loading the engine in the background."""
        options = self.options
        model_path = options.model
        if model_path is None and options.use_default_model and paths.DEFAULT_MODEL.is_file():
            model_path = paths.DEFAULT_MODEL
        card = self.models.read_card(model_path, options.card) if model_path is not None else None
        if card is not None:
            self.attack_panel.set_classes(card.classes)
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
        self._refresh_recent_menus()
        self.engine.start()

    def _engine_ready(self, seconds: float) -> None:
        import torch

        devices = ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            devices.append("mps")
        self.attack_panel.set_devices(devices)
        if self.options.device in devices:
            self.attack_panel.device.setCurrentText(self.options.device)
        self.attack_panel.set_engine_ready(True)
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

    @property
    def model_card(self):
        return self.models.card

    @property
    def model_loading(self) -> bool:
        return self.models.loading

    def open_model_dialog(self) -> None:
        start = self.preferences.folder("model", paths.MODELS_DIR)
        path, _ = QFileDialog.getOpenFileName(self, "Open model", start, MODEL_FILTER)
        if path:
            self.preferences.set_folder("model", path)
            self.open_model(Path(path))

    def open_model(self, path, card=None, user_initiated: bool = True) -> None:
        """Load a model in the background (after the engine); errors become a dialog."""
        self.models.open(path, card=card, device=self.attack_panel.device.currentText() or "auto",
                         user_initiated=user_initiated)

    def set_model(self, loaded) -> None:
        """Use an already loaded model (tests, embedding)."""
        self.models.set_model(loaded)

    def _model_loaded(self, loaded) -> None:
        card = loaded.card
        self.attack_panel.set_classes(card.classes)
        self.cohort_panel.set_model(loaded)
        current = self.session.current
        if current is not None and current.label is not None:
            self.attack_panel.set_values(label=current.label)
        self.preferences.remember("recent_models", str(loaded.path))
        self._refresh_recent_menus()
        self.engine_label.setText(f"Device: {loaded.device}")
        self.open_model_action.setText("Open another model…")
        self.open_model_action.setToolTip(f"Loaded: {card.name} ({Path(loaded.path).name}). "
                                          "Open another classifier and its model card.")
        self._show_input_note()
        self._update_window_title()
        self._update_enabled()
        self.model_loaded.emit(loaded)

    def _model_failed(self, failure, show: bool) -> None:
        if show:
            self.show_error("Could not load the model", failure.message,
                            None if failure.is_user_error else failure.details)

    def _classes_changed(self, old: tuple, new: tuple) -> None:
        """True classes are indices into the old class list: they mean nothing for the new one."""
        had_labels = any(entry.label is not None for entry in self.session.images)
        for entry in self.session.images:
            entry.label = None
        self.attack_panel.set_values(label=None)
        if had_labels:
            self.statusBar().showMessage(
                f"True class reset: the new model's classes ({', '.join(new[:4])}) differ from the "
                f"previous ones ({', '.join(old[:4])}). Set it again if you know it.", 12000)

    def _label_changed(self) -> None:
        entry = self.session.current
        if entry is not None:
            entry.label = self.attack_panel.true_label

    def _device_changed(self, device: str) -> None:
        model = self.model
        if model is not None and self.engine.is_ready and not self.model_loading:
            if str(model.device) != device or device == "auto":
                self.open_model(model.path, card=model.card_path or None)

    # ================================================================ images and masks
    def open_images_dialog(self) -> None:
        start = self.preferences.folder("image", paths.SAMPLES_DIR)
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", start, IMAGE_FILTER)
        if files:
            self.preferences.set_folder("image", files[0])
            self.add_images([Path(f) for f in files])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images",
                                                  self.preferences.folder("image", Path.home()))
        if folder:
            self.preferences.set_folder("image", folder)
            self.add_images([Path(folder)])

    def add_images(self, paths_, quiet: bool = False) -> list[ImageEntry]:
        """Add image files/folders; unreadable files are skipped and reported in one dialog."""
        entries = self.images.add_images(paths_, quiet=quiet)
        self._refresh_recent_menus()
        self._update_enabled()
        return entries

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
                image = read_display_image(entry.path)
            except UserError as error:
                self.show_error("Could not open the image", str(error))
        masks = None if image is None else entry.ensure_masks(image.shape[1], image.shape[0])
        self.canvas.set_image(image, masks)
        if masks is not None:
            self._masks_loaded(entry)
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

    def _show_input_note(self) -> None:
        """Say how the current image will be converted for the model, before anyone runs."""
        entry, card = self.session.current, self.model_card
        note = input_note(entry.path, card) if entry is not None and card is not None else ""
        label = self.attack_dock_widget.input_note
        label.set_full_text(note)
        label.setVisible(bool(note))
        if note:
            self.statusBar().showMessage(note, 8000)

    def _masks_loaded(self, entry: ImageEntry) -> None:
        if entry is self.session.current and entry.masks is not None:
            self.mode_combo.blockSignals(True)
            self.mode_combo.setCurrentIndex(self.mode_combo.findData(entry.masks.mode))
            self.mode_combo.blockSignals(False)
            self.canvas.refresh_overlays()

    def _saved(self, written: Path | None) -> None:
        if written is not None:
            self.statusBar().showMessage(f"Saved {written}", 5000)

    def _layer_changed(self) -> None:
        self.canvas.active_layer = self.layer_combo.currentData()
        self.mode_combo.setEnabled(self.canvas.active_layer == "attack")

    def _mode_changed(self) -> None:
        entry = self.session.current
        if entry is not None and entry.masks is not None:
            entry.masks.mode = self.mode_combo.currentData()
            self.canvas.refresh_overlays()
        self._update_enabled()

    def _edit_mask(self, operation: str) -> None:
        """Undo / redo / invert / clear the active layer, then refresh what shows its values."""
        layer = self.canvas.layer
        if layer is None:
            return
        getattr(layer, operation)()
        point = self.canvas._last_point  # the status bar's pixel readout must not show old values
        if point is not None:
            self.canvas._hover(self.canvas.view.mapViewToScene(point))
        self._update_enabled()

    def undo(self) -> None:
        self._edit_mask("undo")

    def redo(self) -> None:
        self._edit_mask("redo")

    # ================================================================ runs, batches, cohorts
    def can_run(self) -> bool:
        return (self.engine.is_ready and self.model is not None and not self.model_loading
                and self.session.current is not None and self.attack_panel.is_valid()
                and not self.runs.running)

    def make_job(self, entry: ImageEntry):
        return self.runs.make_job(entry)

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
        dock = self.cohort_dock
        if not dock.isVisible() and not dock.isFloating():
            dock.setFloating(True)
            screen = (self.screen() or dock.screen()).availableGeometry()
            width, height = min(1100, screen.width() - 80), min(760, screen.height() - 80)
            dock.resize(max(width, 200), max(height, 200))
            frame = self.frameGeometry()
            dock.move(max(screen.left(), min(frame.x() + 40, screen.right() - dock.width())),
                      max(screen.top(), min(frame.y() + 60, screen.bottom() - dock.height())))
        dock.show()
        dock.raise_()

    def _keep_on_screen(self) -> None:
        """The Cohort panel was docked: if that pushed the window past the screen, tab it with
        the results instead (its curves need height that a bottom dock cannot give)."""
        screen = (self.screen() or self.cohort_dock.screen()).availableGeometry()
        if self.frameGeometry().height() > screen.height() or self.frameGeometry().width() > screen.width():
            self.tabifyDockWidget(self.results_dock, self.cohort_dock)
            self.cohort_dock.raise_()
            self.setGeometry(self.geometry().intersected(screen))

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
            values = {k: v for k, v in settings.items() if k in FORM_KEYS}
            if isinstance(values.get("eps"), (int, float)):
                values["eps"] = eps_argument(values["eps"])
            if isinstance(values.get("step_size"), (int, float)):
                values["step_size"] = eps_argument(values["step_size"])
            self.attack_panel.set_values(**values)
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
        parts = ["AdvExplorer"]
        if self.model_card is not None:
            parts.append(self.model_card.name)
        if self.session.current is not None:
            parts.append(self.session.current.name)
        self.setWindowTitle(" — ".join(parts))

    def recent(self, key: str) -> list[str]:
        return self.preferences.recent(key)

    def _refresh_recent_menus(self) -> None:
        for menu, key, opener in ((self.recent_models_menu, "recent_models", self.open_model),
                                  (self.recent_images_menu, "recent_images", lambda p: self.add_images([p]))):
            menu.clear()
            for value in self.recent(key):
                action = menu.addAction(value)
                action.triggered.connect(lambda _=False, p=value, f=opener: f(Path(p)))
            menu.setEnabled(bool(menu.actions()))

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
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", str(start / "advexplorer.png"),
                                              "PNG (*.png)")
        if path:
            self.preferences.set_folder("screenshot", path)
            self.grab().save(path)

    def about(self) -> None:
        from advexplorer import __version__

        QMessageBox.about(self, "About AdvExplorer",
                          f"<b>AdvExplorer {__version__}</b><br>Probe image classifiers with masked "
                          "adversarial attacks (FGSM, PGD, MI-FGSM) and see whether explanations "
                          "follow the prediction.")

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", (
            "B brush · E eraser · F fill · R rectangle · P pan\n"
            "[ / ] brush size · Space + drag pan · wheel zoom · Ctrl+0 fit\n"
            "Ctrl+Z undo · Ctrl+Shift+Z redo · I invert\n"
            "Ctrl+R run · Ctrl+P pause/resume · Esc cancel · Ctrl+Shift+R run on selected images\n"
            "Ctrl+E export report · Ctrl+S save run folder"))

    def closeEvent(self, event):  # noqa: N802
        """Stop a running attack cleanly, remember the layout, then close."""
        self.runs.closing = True
        for tasks in (self.controller, self.models.tasks):
            if tasks.running:
                tasks.stop_and_wait(15000)
        if self.cohort_panel.running:
            self.cohort_panel.stop_and_wait(15000)
        self.save_layout()
        super().closeEvent(event)
