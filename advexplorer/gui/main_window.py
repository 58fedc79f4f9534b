"""The main window: image list, canvas, model/attack/results panels, runs, batch.

The GUI thread owns the :class:`~advexplorer.session.state.Session`; a run gets copies
of the image path, the masks and the form's values taken when Run is pressed, and
reports back through :class:`~advexplorer.gui.worker.RunController`. Redraws are
throttled to about 30 per second, whatever the attack's speed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QDockWidget, QFileDialog, QHBoxLayout, QHeaderView,
    QLabel, QListWidget, QListWidgetItem, QMainWindow, QMessageBox, QProgressBar, QPushButton,
    QSlider, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QToolBar, QVBoxLayout, QWidget,
)
from superqt.utils import qthrottled

from advexplorer import paths
from advexplorer.errors import UserError
from advexplorer.gui import icons
from advexplorer.gui.attack_panel import SALIENCY_METHODS, AttackPanel
from advexplorer.gui.canvas import MaskCanvas
from advexplorer.gui.engine import EngineLoader, module_exists
from advexplorer.gui.imageio import image_size, read_display_image, thumbnail
from advexplorer.gui.views import LiveViews, PredictionTable, TrajectoryPlots, summary_lines
from advexplorer.gui.worker import JobFailed, RunController, RunJob, StepUpdate, batch_job, run_job
from advexplorer.session.masks import read_mask_png, write_mask_png
from advexplorer.session.state import ImageEntry, RunSummary, Session

MODEL_FILTER = "Models (*.pt *.pth *.ts *.pt2 *.safetensors *.ckpt);;All files (*)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp *.webp);;All files (*)"
MODEL_SUFFIXES = (".pt", ".pth", ".ts", ".pt2", ".safetensors", ".ckpt")
MAX_RECENT = 8
REDRAW_MS = 33  # ~30 Hz
PLOT_EVERY = 3  # trajectory plots refresh on every third redraw (~10 Hz)


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


def open_settings() -> QSettings:
    """The app's settings; ``ADVEXPLORER_SETTINGS=path.ini`` redirects them (tests, demos)."""
    import os

    location = os.environ.get("ADVEXPLORER_SETTINGS")
    if location:
        return QSettings(location, QSettings.Format.IniFormat)
    return QSettings("AdvExplorer", "AdvExplorer")


def _qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


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
        self.engine = engine or EngineLoader(self)
        self.session = Session()
        self.model = None                  # advexplorer.io.models.LoadedModel
        self.model_card = None             # the card, known before the model loads
        self.model_loading = False
        self._pending_model: tuple | None = None
        self.controller = RunController(self)
        self.last_error: str | None = None
        self._run_entry: ImageEntry | None = None
        self._run_started = 0.0
        self._run_steps = 0
        self._run_saliency = None
        self._run_done = False
        self._frames = 0
        self._status_time = 0.0
        self._latest: StepUpdate | None = None
        self._latest_images: StepUpdate | None = None
        self._original_shown = False
        self._batch_rows: list[ImageEntry] = []
        self._batch_total = 0
        self._mode = "idle"                # idle | run | batch
        self._shown_run: RunSummary | None = None
        self._closing = False
        self._run_enabled = False
        self._model_workers = set()
        self.non_interactive = False       # demo/screenshot mode: errors go to stderr, no dialog
        self.startup_s = 0.0

        self.setWindowTitle("AdvExplorer")
        self.setWindowIcon(icons.icon("app"))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_menus_and_toolbars()
        self._build_status_bar()
        self._connect()
        self.resize(1600, 1000)
        if self.options.remember:
            self._restore_layout()
        self._redraw = qthrottled(self._redraw_live, timeout=REDRAW_MS, leading=True)
        self._update_enabled()

    # =================================================================================
    # construction
    # =================================================================================
    def _build_central(self) -> None:
        self.canvas = MaskCanvas()
        self.live = LiveViews()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.canvas)
        splitter.addWidget(self.live)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([640, 230])
        self.central_splitter = splitter
        self.setCentralWidget(splitter)

    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                         QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                         QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        right = Qt.DockWidgetArea.RightDockWidgetArea

        # Images
        self.image_list = QListWidget()
        self.image_list.setIconSize(QSize(48, 48))
        self.image_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.image_list.setToolTip("Images of this session. Drop files or folders on the window to "
                                   "add them; select several and use Attack → Run on selected images.")
        self.add_images_button = QPushButton("Add…")
        self.remove_images_button = QPushButton("Remove")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_images_button)
        buttons.addWidget(self.remove_images_button)
        images = QWidget()
        layout = QVBoxLayout(images)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.image_list)
        layout.addLayout(buttons)
        self.images_dock = self._dock("Images", "images_dock", images, left)

        # Model
        self.model_name = QLabel("No model loaded")
        self.model_name.setObjectName("title")
        self.model_name.setWordWrap(True)
        self.model_info = QLabel("File → Open model… (TorchScript, state_dict + card, "
                                 "safetensors, .pt2)")
        self.model_info.setObjectName("hint")
        self.model_info.setWordWrap(True)
        self.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_model_button = QPushButton("Open model…")
        model = QWidget()
        layout = QVBoxLayout(model)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(self.model_name)
        layout.addWidget(self.model_info)
        layout.addWidget(self.open_model_button)
        layout.addStretch(1)
        self.model_dock = self._dock("Model", "model_dock", model, left)

        # Run history
        self.history = QListWidget()
        self.history.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.history.setWordWrap(True)
        self.history.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.history.setToolTip("Finished runs on this image. Click one to show it; select two "
                                "and press Compare to see them side by side.")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Show the two selected runs side by side.")
        self.save_run_button = QPushButton("Save…")
        self.save_run_button.setToolTip("Write the selected run as a run folder (record.json, "
                                        "adversarial.png, …) like `advexplorer attack --out`.")
        self.report_button = QPushButton("Report…")
        self.report_button.setToolTip("Write an HTML or PDF report of the selected runs.")
        buttons = QHBoxLayout()
        for button in (self.compare_button, self.save_run_button, self.report_button):
            buttons.addWidget(button)
        history = QWidget()
        layout = QVBoxLayout(history)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.history)
        layout.addLayout(buttons)
        self.history_dock = self._dock("Run history", "history_dock", history, left)

        # Attack
        self.attack_panel = AttackPanel()
        self.attack_panel.set_saliency_methods(
            SALIENCY_METHODS if module_exists("advexplorer.core.saliency") else ())
        self.run_button = QPushButton("Loading engine…")
        self.run_button.setObjectName("run")
        self.run_button.setToolTip("Run the attack on the current image with its mask (Ctrl+R).")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause or resume between two steps.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run after the current step (Esc).")
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button, 2)
        run_row.addWidget(self.pause_button, 1)
        run_row.addWidget(self.cancel_button, 1)
        attack = QWidget()
        layout = QVBoxLayout(attack)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addWidget(self.attack_panel)
        layout.addLayout(run_row)
        self.attack_dock = self._dock("Attack", "attack_dock", attack, right)

        # Results
        self.result_summary = QLabel("Paint a mask (or none), choose an attack and press Run.")
        self.result_summary.setObjectName("summary")
        self.result_summary.setWordWrap(True)
        self.plots = TrajectoryPlots()
        self.prediction_table = PredictionTable()
        results = QWidget()
        layout = QVBoxLayout(results)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.result_summary)
        layout.addWidget(self.plots, 3)
        layout.addWidget(self.prediction_table, 1)
        self.results_dock = self._dock("Results", "results_dock", results, right)
        self.splitDockWidget(self.attack_dock, self.results_dock, Qt.Orientation.Vertical)

        # Batch
        self.batch_progress = QProgressBar()
        self.batch_progress.setFormat("%v / %m images")
        self.batch_table = QTableWidget(0, 7)
        self.batch_table.setHorizontalHeaderLabels(
            ["Image", "Before", "After", "Flipped", "‖δ‖∞ (/255)", "Time (s)", "Status"])
        self.batch_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.batch_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.batch_table.verticalHeader().setVisible(False)
        self.batch_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        batch = QWidget()
        layout = QVBoxLayout(batch)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.batch_progress)
        layout.addWidget(self.batch_table)
        self.batch_dock = self._dock("Batch", "batch_dock", batch, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.batch_dock.hide()

        # Cohort screening (its own panel and worker; it asks us to open an image it lists)
        from advexplorer.gui.cohort_panel import CohortPanel

        self.cohort_panel = CohortPanel()
        self.cohort_dock = self._dock("Cohort", "cohort_dock", self.cohort_panel,
                                      Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(self.batch_dock, self.cohort_dock)
        self.cohort_dock.hide()
        self.resizeDocks([self.images_dock, self.attack_dock], [270, 440], Qt.Orientation.Horizontal)
        self.resizeDocks([self.images_dock, self.model_dock, self.history_dock], [380, 150, 260],
                         Qt.Orientation.Vertical)
        self.resizeDocks([self.attack_dock, self.results_dock], [420, 560], Qt.Orientation.Vertical)

    def _action(self, text: str, slot, shortcut=None, tip: str = "", icon: str | None = None,
                checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                action.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        if icon:
            action.setIcon(icons.icon(icon))
        action.setCheckable(checkable)
        if slot is not None:
            action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even when a toolbar is hidden
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.open_images_action = a("Open images…", self.open_images_dialog, QKeySequence.StandardKey.Open,
                                    "Add image files to the session.", "open")
        self.open_folder_action = a("Open folder…", self.open_folder_dialog, "Ctrl+Shift+O",
                                    "Add every image of a folder.")
        self.open_model_action = a("Open model…", self.open_model_dialog, "Ctrl+M",
                                   "Load a classifier and its model card.", "model")
        self.load_mask_action = a("Load mask…", lambda: self.load_mask_dialog("attack"), None,
                                  "Load an allowed/protect mask PNG for the current image.")
        self.load_diagnostic_action = a("Load diagnostic region…", lambda: self.load_mask_dialog("diagnostic"))
        self.save_mask_action = a("Save mask…", lambda: self.save_mask_dialog("attack"), "Ctrl+Shift+S",
                                  "Save the painted mask as a PNG at the image's size.")
        self.save_diagnostic_action = a("Save diagnostic region…", lambda: self.save_mask_dialog("diagnostic"))
        self.save_run_action = a("Save run folder…", self.save_run_dialog, "Ctrl+S",
                                 "Write the shown run as a run folder (record.json and files).")
        self.report_action = a("Write report…", self.report_dialog, None, "HTML/PDF report of selected runs.")
        self.screenshot_action = a("Save screenshot…", self.screenshot_dialog, None,
                                   "Save a PNG of the whole window.")
        self.quit_action = a("Quit", self.close, QKeySequence.StandardKey.Quit)

        self.undo_action = a("Undo", self.undo, ["Ctrl+Z"], "Undo the last stroke on the active layer.", "undo")
        self.redo_action = a("Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo.", "redo")
        self.invert_action = a("Invert mask", self.invert_mask, "I", "Swap painted and unpainted pixels.", "invert")
        self.clear_action = a("Clear mask", self.clear_mask, None, "Erase the whole active layer.", "clear")

        self.tool_group = QActionGroup(self)
        self.tool_actions = {}
        for tool, text, key, tip in (
                ("brush", "Brush", "B", "Paint on the active layer (B). [ and ] change the size."),
                ("eraser", "Eraser", "E", "Erase from the active layer (E)."),
                ("fill", "Fill", "F", "Flood-fill the clicked region (F)."),
                ("rectangle", "Rectangle", "R", "Drag a rectangle to paint (R)."),
                ("pan", "Pan / zoom", "P", "Drag to pan, wheel to zoom (P). Space-drag pans with any tool.")):
            action = a(text, lambda _=False, t=tool: self.canvas.set_tool(t), key, tip, tool, checkable=True)
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
        menu = self.menuBar().addMenu("&File")
        for action in (self.open_images_action, self.open_folder_action, self.open_model_action):
            menu.addAction(action)
        self.recent_models_menu = menu.addMenu("Recent models")
        self.recent_images_menu = menu.addMenu("Recent images")
        menu.addSeparator()
        for action in (self.load_mask_action, self.load_diagnostic_action, self.save_mask_action,
                       self.save_diagnostic_action):
            menu.addAction(action)
        menu.addSeparator()
        for action in (self.save_run_action, self.report_action, self.screenshot_action):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.quit_action)

        menu = self.menuBar().addMenu("&Edit")
        for action in (self.undo_action, self.redo_action, self.invert_action, self.clear_action):
            menu.addAction(action)
        menu = self.menuBar().addMenu("&Mask")
        for action in self.tool_actions.values():
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.smaller_action)
        menu.addAction(self.larger_action)
        menu = self.menuBar().addMenu("&Attack")
        for action in (self.run_action, self.pause_action, self.cancel_action, self.batch_action,
                       self.cohort_action):
            menu.addAction(action)
        self.view_menu = self.menuBar().addMenu("&View")
        self.view_menu.addAction(self.fit_action)
        self.view_menu.addSeparator()
        for dock in (self.images_dock, self.model_dock, self.history_dock, self.attack_dock,
                     self.results_dock, self.batch_dock, self.cohort_dock):
            self.view_menu.addAction(dock.toggleViewAction())
        menu = self.menuBar().addMenu("&Help")
        menu.addAction(self.shortcuts_action)
        menu.addAction(self.about_action)

        bar = QToolBar("File")
        bar.setObjectName("file_toolbar")
        bar.setIconSize(QSize(20, 20))
        bar.addAction(self.open_images_action)
        bar.addAction(self.open_model_action)
        self.addToolBar(bar)

        tools = QToolBar("Mask tools")
        tools.setObjectName("mask_toolbar")
        tools.setIconSize(QSize(20, 20))
        for action in self.tool_actions.values():
            tools.addAction(action)
        tools.addSeparator()
        tools.addWidget(QLabel(" Size "))
        self.brush_size = QSpinBox()
        self.brush_size.setRange(1, 500)
        self.brush_size.setValue(self.canvas.brush_size)
        self.brush_size.setSuffix(" px")
        self.brush_size.setToolTip("Brush diameter in image pixels ([ and ] change it).")
        tools.addWidget(self.brush_size)
        tools.addWidget(QLabel("  Layer "))
        self.layer_combo = QComboBox()
        self.layer_combo.addItem("Attack mask", "attack")
        self.layer_combo.addItem("Diagnostic region", "diagnostic")
        self.layer_combo.setToolTip("Which layer the tools paint: the attack mask (protect/allowed) "
                                    "or the diagnostic region used by the saliency checks.")
        tools.addWidget(self.layer_combo)
        tools.addWidget(QLabel("  Mode "))
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Protect (keep painted pixels)", "protect")
        self.mode_combo.addItem("Allowed (attack only painted pixels)", "allowed")
        self.mode_combo.setToolTip("Protect: the attack must not change painted pixels. Allowed: it "
                                   "may change only painted pixels. Nothing painted = no mask.")
        tools.addWidget(self.mode_combo)
        tools.addWidget(QLabel("  Opacity "))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.canvas.opacity * 100))
        self.opacity.setFixedWidth(90)
        self.opacity.setToolTip("Mask overlay opacity.")
        tools.addWidget(self.opacity)
        tools.addSeparator()
        for action in (self.invert_action, self.clear_action, self.undo_action, self.redo_action):
            tools.addAction(action)
        self.addToolBar(tools)

        run = QToolBar("Run")
        run.setObjectName("run_toolbar")
        run.setIconSize(QSize(20, 20))
        run.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.run_action, self.pause_action, self.cancel_action):
            run.addAction(action)
        self.addToolBar(run)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.engine_label = QLabel("Loading engine…")
        self.engine_label.setObjectName("engine_loading")
        self.steps_label = QLabel("")
        self.step_label = QLabel("")
        self.cursor_label = QLabel("")
        self.run_progress = QProgressBar()
        self.run_progress.setFixedWidth(160)
        self.run_progress.setTextVisible(False)
        self.run_progress.setVisible(False)
        status.addWidget(self.cursor_label, 1)
        for widget in (self.run_progress, self.step_label, self.steps_label, self.engine_label):
            status.addPermanentWidget(widget)

    def _connect(self) -> None:
        self.engine.ready.connect(self._engine_ready)
        self.engine.failed.connect(self._engine_failed)
        self.session.images_changed.connect(self._refresh_image_list)
        self.session.current_changed.connect(self._show_entry)
        self.session.runs_changed.connect(self._runs_changed)
        self.image_list.currentRowChanged.connect(self._image_row_changed)
        self.add_images_button.clicked.connect(self.open_images_dialog)
        self.remove_images_button.clicked.connect(self.remove_selected_images)
        self.open_model_button.clicked.connect(self.open_model_dialog)
        self.history.itemSelectionChanged.connect(self._history_selection_changed)
        self.compare_button.clicked.connect(self.compare_selected_runs)
        self.save_run_button.clicked.connect(self.save_run_dialog)
        self.report_button.clicked.connect(self.report_dialog)
        self.run_button.clicked.connect(self.start_run)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel_run)
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
        self.controller.step.connect(self._on_step)
        self.controller.finished_run.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.cancelled.connect(self._on_cancelled)
        self.controller.stopped.connect(self._on_stopped)
        self.controller.paused_changed.connect(self._on_paused)
        self.cohort_panel.image_requested.connect(self.open_from_cohort)

    # =================================================================================
    # start-up
    # =================================================================================
    def start(self) -> None:
        """Open what the options say, and start loading the engine in the background."""
        options = self.options
        model_path = options.model
        if model_path is None and options.use_default_model and paths.DEFAULT_MODEL.is_file():
            model_path = paths.DEFAULT_MODEL
        card = None
        if model_path is not None:
            card = self._read_card(model_path, options.card)
        if options.images:
            entries = self.add_images(options.images)
            if entries and (options.mask or options.protect):
                self._load_mask_into(entries[0], "attack", options.mask or options.protect,
                                     "allowed" if options.mask else "protect")
            if entries and options.diagnostic:
                self._load_mask_into(entries[0], "diagnostic", options.diagnostic)
        elif card is not None and card.samples:
            self._add_samples(card)
        elif model_path is None:
            self._add_fallback_image()
        if model_path is not None:
            self.open_model(model_path, card=options.card, user_initiated=options.model is not None)
        self._refresh_recent_menus()
        self.engine.start()

    def _read_card(self, model_path: Path, card_path: Path | None):
        """The model card (plain JSON, no torch) so samples appear before the engine loads."""
        from advexplorer.io.cards import card_path_for, load_card

        try:
            card = load_card(card_path or card_path_for(model_path))
        except UserError:
            return None
        self.model_card = card
        self.model_name.setText(f"{card.name} (loading…)")
        self.attack_panel.set_classes(card.classes)
        return card

    def _add_samples(self, card) -> None:
        for sample in card.samples:
            if not sample.image.is_file():
                continue
            entries = self.add_images([sample.image], quiet=True)
            if not entries:
                continue
            entry = entries[0]
            if sample.protect is not None and sample.protect.is_file():
                self._load_mask_into(entry, "attack", sample.protect, "protect")
            elif sample.allowed is not None and sample.allowed.is_file():
                self._load_mask_into(entry, "attack", sample.allowed, "allowed")
            if sample.diagnostic is not None and sample.diagnostic.is_file():
                self._load_mask_into(entry, "diagnostic", sample.diagnostic)
            if sample.label is not None and sample.label in card.classes:
                entry.label = card.classes.index(sample.label)
        if self.session.images:
            self.session.set_current(0)
            self._show_entry(self.session.current)

    def _add_fallback_image(self) -> None:
        """No bundled model: show a histology image from scikit-image (if installed) so the
        window is not empty; painting works, Run waits for a model."""
        import importlib.util

        spec = importlib.util.find_spec("skimage")
        if spec is None or not spec.submodule_search_locations:
            return
        candidate = Path(list(spec.submodule_search_locations)[0]) / "data" / "ihc.png"
        if candidate.is_file():
            self.add_images([candidate], quiet=True)

    def _engine_ready(self, seconds: float) -> None:
        import torch

        devices = ["auto", "cpu"]
        if torch.cuda.is_available():
            devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            devices.append("mps")
        self.attack_panel.set_devices(devices)
        if self.options.device in devices:
            self.attack_panel.device.setCurrentText(self.options.device)
        self.attack_panel.set_engine_ready(True)
        self.engine_label.setObjectName("engine_ready")
        self.engine_label.setText(f"Engine ready ({seconds:.1f} s)")
        self._repolish(self.engine_label)
        if self._pending_model is not None:
            path, card, user_initiated = self._pending_model
            self._pending_model = None
            self.open_model(path, card=card, user_initiated=user_initiated)
        self._update_enabled()

    def _engine_failed(self, text: str) -> None:
        self.engine_label.setText("Engine failed to load")
        self.show_error("The engine could not be loaded",
                        "PyTorch or AdvExplorer's engine failed to import, so attacks cannot run. "
                        "Reinstall AdvExplorer (pip install advexplorer[gui]).", text)

    @staticmethod
    def _repolish(widget) -> None:
        widget.style().unpolish(widget)
        widget.style().polish(widget)

    # =================================================================================
    # models
    # =================================================================================
    def open_model_dialog(self) -> None:
        start = self.settings.value("last_model_dir", str(paths.MODELS_DIR))
        path, _ = QFileDialog.getOpenFileName(self, "Open model", start, MODEL_FILTER)
        if path:
            self.settings.setValue("last_model_dir", str(Path(path).parent))
            self.open_model(Path(path))

    def open_model(self, path, card=None, user_initiated: bool = True) -> None:
        """Load a model in the background (after the engine); errors become a dialog."""
        path = Path(path)
        if not self.engine.is_ready:
            self._pending_model = (path, card, user_initiated)
            self.model_info.setText(f"{path.name} — waiting for the engine…")
            return
        from superqt.utils import FunctionWorker

        device = self.attack_panel.device.currentText() or "auto"
        trust = self.options.trust_pickle

        def load():
            from advexplorer.io.models import load_model

            try:
                return load_model(path, card=card, device=device, trust_pickle=trust)
            except Exception as error:  # see worker.JobFailed: RuntimeErrors must not vanish
                raise JobFailed(error) from error

        self.model_loading = True
        self.model_info.setText(f"Loading {path.name} on {device}…")
        self._update_enabled()
        worker = FunctionWorker(load)
        self._model_workers.add(worker)
        worker.returned.connect(self._model_ready)
        worker.errored.connect(lambda error: self._model_failed(path, error, user_initiated))
        worker.finished.connect(lambda: self._model_workers.discard(worker))
        worker.start()

    def set_model(self, loaded) -> None:
        """Use an already loaded model (tests, embedding)."""
        self._model_ready(loaded)

    def _model_ready(self, loaded) -> None:
        self.model_loading = False
        self.model = loaded
        card = loaded.card
        self.model_card = card
        self.model_name.setText(card.name)
        accuracy = f"\nclean accuracy {card.clean_accuracy:.1%}" if card.clean_accuracy is not None else ""
        robust = card.extra.get("robust_accuracy")
        if isinstance(robust, dict) and isinstance(robust.get("value"), (int, float)):
            accuracy += f", robust {robust['value']:.1%} at ε={robust.get('eps_text', robust.get('eps'))}"
        classes = ", ".join(card.classes[:6]) + (" …" if len(card.classes) > 6 else "")
        self.model_info.setText(
            f"{Path(loaded.path).name} ({loaded.format}) on {loaded.device}\n"
            f"{card.num_classes} classes: {classes}\n"
            f"input {card.input_size[1]}×{card.input_size[0]}×{card.channels}, {card.resize}{accuracy}")
        self.model_info.setToolTip("\n\n".join(t for t in (card.description, card.training_data,
                                                            f"sha256 {loaded.sha256}") if t))
        self.attack_panel.set_classes(card.classes)
        self.cohort_panel.set_model(loaded)
        current = self.session.current
        if current is not None and current.label is not None:
            self.attack_panel.set_values(label=current.label)
        self._remember("recent_models", str(loaded.path))
        self.engine_label.setText(f"Device: {loaded.device}")
        self._update_window_title()
        self._update_enabled()
        self.model_loaded.emit(loaded)

    def _model_failed(self, path: Path, error, user_initiated: bool) -> None:
        self.model_loading = False
        failure = error if isinstance(error, JobFailed) else JobFailed(error)
        if self.model is None:
            self.model_name.setText("No model loaded")
            self.model_info.setText(f"{path.name} could not be loaded. File → Open model…")
        else:
            self.model_info.setText(self.model_info.text())
        self._update_enabled()
        if user_initiated or failure.is_user_error:
            self.show_error("Could not load the model", failure.message,
                            None if failure.is_user_error else failure.details)

    def _label_changed(self) -> None:
        entry = self.session.current
        if entry is not None:
            entry.label = self.attack_panel.true_label

    def _device_changed(self, device: str) -> None:
        if self.model is not None and self.engine.is_ready and not self.model_loading:
            if str(self.model.device) != device or device == "auto":
                self.open_model(self.model.path, card=self.model.card_path or None)

    # =================================================================================
    # images and masks
    # =================================================================================
    def open_images_dialog(self) -> None:
        start = self.settings.value("last_image_dir", str(paths.SAMPLES_DIR))
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", start, IMAGE_FILTER)
        if files:
            self.settings.setValue("last_image_dir", str(Path(files[0]).parent))
            self.add_images([Path(f) for f in files])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images",
                                                  self.settings.value("last_image_dir", ""))
        if folder:
            self.add_images([Path(folder)])

    def add_images(self, paths_, quiet: bool = False) -> list[ImageEntry]:
        """Add image files/folders; unreadable files are skipped and reported in one dialog."""
        from advexplorer.session.state import expand_image_paths

        good, problems = [], []
        for path in expand_image_paths(paths_):
            try:
                width, height = image_size(path)
            except UserError as error:
                problems.append(str(error))
                continue
            good.append((path, width, height))
        entries = []
        if good:
            before = self.session.current
            known = {id(entry) for entry in self.session.images}
            entries = self.session.add_images([p for p, _, _ in good])
            for entry, (_, width, height) in zip(entries, good):
                if id(entry) not in known:
                    known.add(id(entry))
                    entry.ensure_masks(width, height)
                    self._load_companions(entry)
                self._remember("recent_images", str(entry.path))
            if before is None and self.session.current is not None:
                self._show_entry(self.session.current)
            elif entries:
                self.session.set_current(self.session.index_of(entries[-1]) if len(entries) == 1
                                         else self.session.index_of(entries[0]))
        if problems and not quiet:
            self.show_error("Some files could not be opened", "\n".join(problems[:10]) +
                            (f"\n… and {len(problems) - 10} more" if len(problems) > 10 else ""))
        self._update_enabled()
        return entries

    def _load_companions(self, entry: ImageEntry) -> None:
        """Masks saved beside the image (``scan_protect.png``, ``scan_diagnostic.png``) load with it."""
        from advexplorer.io.filenames import companion_masks

        found = companion_masks(entry.path)
        for role in ("protect", "allowed"):
            if role in found:
                self._load_mask_into(entry, "attack", found[role], role)
                break
        if "diagnostic" in found:
            self._load_mask_into(entry, "diagnostic", found["diagnostic"])

    def remove_selected_images(self) -> None:
        rows = sorted({index.row() for index in self.image_list.selectedIndexes()})
        if self._run_entry is not None and any(self.session.images[r] is self._run_entry for r in rows):
            self.statusBar().showMessage("An image that is being attacked cannot be removed now.", 4000)
            return
        self.session.remove_images([self.session.images[r] for r in rows])

    def _refresh_image_list(self) -> None:
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for entry in self.session.images:
            item = QListWidgetItem(entry.name)
            item.setToolTip(str(entry.path))
            preview = thumbnail(entry.path)
            if preview is not None:
                item.setIcon(QIcon(QPixmap.fromImage(_qimage(preview))))
            self.image_list.addItem(item)
        if self.session.current_index is not None:
            self.image_list.setCurrentRow(self.session.current_index)
        self.image_list.blockSignals(False)

    def _image_row_changed(self, row: int) -> None:
        if row >= 0:
            self.session.set_current(row)

    def _show_entry(self, entry: ImageEntry | None) -> None:
        """Show an image on the canvas (file resolution) with its masks and its runs."""
        if entry is None:
            self.canvas.set_image(None, None)
            self._refresh_history()
            self._update_window_title()
            self._update_enabled()
            return
        row = self.session.index_of(entry)
        if self.image_list.currentRow() != row:
            self.image_list.blockSignals(True)
            self.image_list.setCurrentRow(row)
            self.image_list.blockSignals(False)
        try:
            image = read_display_image(entry.path)
        except UserError as error:
            self.canvas.set_image(None, None)
            self.show_error("Could not open the image", str(error))
            return
        height, width = image.shape[:2]
        masks = entry.ensure_masks(width, height)
        self.canvas.set_image(image, masks)
        self.mode_combo.blockSignals(True)
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(masks.mode))
        self.mode_combo.blockSignals(False)
        if self.attack_panel.classes:
            self.attack_panel.label.blockSignals(True)
            self.attack_panel.set_values(label=entry.label)
            self.attack_panel.label.blockSignals(False)
        self._refresh_history()
        if entry.runs:
            self.show_run(entry.runs[-1])
        self._update_window_title()
        self._update_enabled()

    def _load_mask_into(self, entry: ImageEntry, layer: str, path, mode: str | None = None) -> bool:
        if entry.masks is None:
            try:
                width, height = image_size(entry.path)
            except UserError as error:
                self.show_error("Could not open the image", str(error))
                return False
            entry.ensure_masks(width, height)
        masks = entry.masks
        height, width = masks.attack.shape
        try:
            array = read_mask_png(path, height, width)
        except UserError as error:
            self.show_error("Could not load the mask", str(error))
            return False
        target = masks.diagnostic if layer == "diagnostic" else masks.attack
        target.set_data(array, label="load")
        if layer == "diagnostic":
            masks.diagnostic_path = Path(path)
        else:
            masks.attack_path = Path(path)
            if mode is not None:
                masks.mode = mode
                if entry is self.session.current:
                    self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))
        if entry is self.session.current:
            self.canvas.refresh_overlays()
        return True

    def load_mask_dialog(self, layer: str) -> None:
        entry = self.session.current
        if entry is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load mask", str(entry.path.parent), "PNG (*.png);;All files (*)")
        if path:
            self._load_mask_into(entry, layer, Path(path))

    def save_mask_dialog(self, layer: str) -> None:
        entry = self.session.current
        if entry is None or entry.masks is None:
            return
        suffix = "diagnostic" if layer == "diagnostic" else entry.masks.mode
        suggestion = entry.path.with_name(f"{entry.path.stem}_{suffix}.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save mask", str(suggestion), "PNG (*.png)")
        if path:
            data = entry.masks.diagnostic.data if layer == "diagnostic" else entry.masks.attack.data
            try:
                written = write_mask_png(path, data)
            except UserError as error:
                self.show_error("Could not save the mask", str(error))
                return
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

    def undo(self) -> None:
        if self.canvas.layer is not None:
            self.canvas.layer.undo()
            self._update_enabled()

    def redo(self) -> None:
        if self.canvas.layer is not None:
            self.canvas.layer.redo()
            self._update_enabled()

    def invert_mask(self) -> None:
        if self.canvas.layer is not None:
            self.canvas.layer.invert()
            self._update_enabled()

    def clear_mask(self) -> None:
        if self.canvas.layer is not None:
            self.canvas.layer.clear()
            self._update_enabled()

    # =================================================================================
    # running
    # =================================================================================
    def make_job(self, entry: ImageEntry) -> RunJob:
        """Copies of everything a run of ``entry`` needs, taken now (the GUI thread)."""
        masks = entry.masks
        allowed = None if masks is None else masks.allowed_at_file_size()
        diagnostic = None if masks is None else masks.diagnostic_at_file_size()
        mask_mode = "none" if masks is None else masks.mask_mode
        # The form shows the current image's true class; other images keep their own.
        label = self.attack_panel.true_label if entry is self.session.current else entry.label
        return RunJob(
            model=self.model, image_path=entry.path, config_kwargs=self.attack_panel.config_kwargs(),
            allowed_at_file_size=allowed, mask_mode=mask_mode, diagnostic_at_file_size=diagnostic,
            mask_path=None, diagnostic_path=None, label=label,
            saliency=self.attack_panel.saliency_method, number=self.session.next_run_number(),
            command_line=["advexplorer", "gui"])

    def can_run(self) -> bool:
        return (self.engine.is_ready and self.model is not None and not self.model_loading
                and self.session.current is not None and self.attack_panel.is_valid()
                and not self.controller.running)

    def start_run(self) -> None:
        """Run the attack on the current image (Run button / Ctrl+R)."""
        if not self.can_run():
            if self.attack_panel.error:
                self.statusBar().showMessage(self.attack_panel.error, 6000)
            return
        entry = self.session.current
        try:
            job = self.make_job(entry)
        except UserError as error:
            self.show_error("Cannot run", str(error))
            return
        config = job.config_kwargs
        steps = 1 if config["method"] == "fgsm" else config["steps"]
        self._mode = "run"
        self._run_done = False
        self._run_saliency = job.saliency
        self._run_entry = entry
        self._run_started = time.perf_counter()
        self._run_steps = 0
        self._frames = 0
        self._latest = self._latest_images = None
        self._original_shown = False
        self._shown_run = None
        self.live.start(config["eps"], config["norm"])
        self.plots.start(self.model.card.classes, (steps + 1) * config["restarts"], job.label,
                         config["targeted"])
        self.prediction_table.setRowCount(0)
        self.result_summary.setText(f"Running run #{job.number} on {entry.name}…")
        self.run_progress.setRange(0, (steps + 1) * config["restarts"])
        self.run_progress.setValue(0)
        self.run_progress.setVisible(True)
        self.controller.start(run_job, job)
        self._update_enabled()

    def toggle_pause(self) -> None:
        self.controller.toggle_pause()

    def cancel_run(self) -> None:
        if self.controller.running:
            self.controller.cancel()
            self.statusBar().showMessage("Cancelling after the current step…", 3000)

    def _on_paused(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_action.setText("Resume" if paused else "Pause")
        self.step_label.setText(self.step_label.text().replace(" (paused)", "") + (" (paused)" if paused else ""))

    def _on_step(self, item) -> None:
        if self._mode == "batch":
            self._on_batch_item(item)
            return
        update: StepUpdate = item
        self._run_steps += update.count
        self.plots.add_rows(update.probabilities, update.losses)
        self._latest = update
        if update.adversarial is not None:
            self._latest_images = update
        if update.original is not None:
            self.live.strip.set_rgb("original", update.original)
            if self.model is not None:
                first = update.probabilities[0]
                top = int(np.argmax(first))
                self.live.strip.set_caption("original", f"{self.model.card.classes[top]} ({first[top]:.2f})")
        self._redraw()

    def _redraw_live(self) -> None:
        """At most ~30 times a second: curves, images, status."""
        if self._closing:
            return
        update = self._latest
        if update is None:
            return
        # Curves every third frame (~10 Hz): pyqtgraph's plot painting is the costliest part
        # of a frame and, holding the GIL, it slows the attack; images keep the full rate.
        self._frames += 1
        if self._frames % PLOT_EVERY == 1 or update.is_last or PLOT_EVERY == 1:
            self.plots.redraw()
        # Text changing 30×/s is unreadable anyway, and each change re-lays out its panel.
        now = time.perf_counter()
        text_due = update.is_last or now - self._status_time > 0.25
        images = self._latest_images
        if images is not None and self.model is not None:
            caption = ""
            if text_due:
                classes = self.model.card.classes
                latest = images.probabilities[-1]
                top = int(np.argmax(latest))
                caption = f"{classes[top]} ({latest[top]:.2f})"
            self.live.show_step(images.adversarial, images.perturbation, caption=caption)
            self._latest_images = None
        if text_due:
            self._status_time = now
            elapsed = max(update.elapsed_s, 1e-9)
            self.steps_label.setText(f"{self._run_steps / elapsed:.1f} steps/s")
            restart = f", restart {update.restart + 1}/{update.restarts}" if update.restarts > 1 else ""
            self.step_label.setText(f"step {update.index}/{update.total_steps}{restart}")
        self.run_progress.setValue(self._run_steps)
        if update.is_last and self.controller.running and not self._run_done:
            extra = " and computing the saliency maps and robustness numbers" if self._run_saliency else ""
            self.result_summary.setText(f"Last step done; scoring the 8-bit export{extra}…")

    def _on_finished(self, result) -> None:
        if self._mode == "batch":
            self._batch_finished(result)
            return
        summary: RunSummary = result
        entry = self._run_entry
        self._redraw.cancel()  # a throttled redraw still pending must not paint over the result
        self._redraw_live()
        self._run_done = True
        if entry is not None and entry in self.session.images:
            self.session.add_run(entry, summary)
        if entry is self.session.current:
            self.show_run(summary, plots=False)
            if self.plots.count != len(summary.probability_trajectory):
                self.plots.show_summary(summary)  # the live curves missed steps: redraw from the record
        verdict = "flipped" if summary.flipped else "did not flip"
        self.statusBar().showMessage(
            f"Run #{summary.number} finished in {summary.wall_time_s:.2f} s: the prediction {verdict}.", 8000)
        self.run_finished.emit(summary)

    def _on_failed(self, failure: JobFailed) -> None:
        self.show_error("The run failed" if not failure.is_user_error else "Cannot run",
                        failure.message, None if failure.is_user_error else failure.details)
        if self._mode == "run":
            self.result_summary.setText("The run failed; nothing was changed. Fix the problem and "
                                        "press Run again.")

    def _on_cancelled(self) -> None:
        self.plots.redraw()  # the curves may lag the images by a frame or two
        step = self._latest.index if self._latest is not None else 0
        self.statusBar().showMessage(f"Cancelled at step {step}.", 6000)
        if self._mode == "run":
            self.result_summary.setText(f"Run cancelled at step {step}; earlier runs are in the history.")
        elif self._mode == "batch":
            self.batch_progress.setFormat("cancelled at %v / %m images")

    def _on_stopped(self) -> None:
        self._mode = "idle"
        self._run_entry = None
        self.run_progress.setVisible(False)
        self.pause_button.setText("Pause")
        self.pause_action.setText("Pause")
        self._update_enabled()

    # -- showing a finished run -------------------------------------------------------------
    def show_run(self, summary: RunSummary, plots: bool = True) -> None:
        """Show a finished run in the live views, plots and table."""
        self._shown_run = summary
        self.live.show_summary(summary)
        if plots:
            self.plots.show_summary(summary)
        self.prediction_table.set_predictions(summary.classes, summary.probability_before,
                                              summary.probability_after)
        lines = dict(summary_lines(summary))
        verdict = ("<span style='color:#e07070'>prediction flipped</span>" if summary.flipped else
                   "<span style='color:#70c070'>prediction held</span>")
        exported = ""
        if "8-bit PNG still flips" in lines:
            exported = f" · 8-bit PNG still flips: {lines['8-bit PNG still flips']}"
        self.result_summary.setText(
            f"<b>Run #{summary.number}</b> — {verdict}: {lines['Before']} → {lines['After']}<br>"
            f"‖δ‖∞ {lines['‖δ‖∞']} · ‖δ‖₂ {lines['‖δ‖₂']} · {lines['Pixels changed']} px changed · "
            f"{lines['Mask']} mask · {lines['Wall time']}{exported}")

    def _runs_changed(self, entry: ImageEntry) -> None:
        if entry is self.session.current:
            self._refresh_history(select_last=True)

    def _refresh_history(self, select_last: bool = False) -> None:
        entry = self.session.current
        self.history.blockSignals(True)
        self.history.clear()
        for run in (entry.runs if entry is not None else []):
            item = QListWidgetItem(run.title)
            item.setToolTip("\n".join(f"{k}: {v}" for k, v in summary_lines(run)))
            self.history.addItem(item)
        if select_last and self.history.count():
            self.history.setCurrentRow(self.history.count() - 1)
        self.history.blockSignals(False)
        self._history_selection_changed(show=False)

    def selected_runs(self) -> list[RunSummary]:
        entry = self.session.current
        if entry is None:
            return []
        rows = sorted(index.row() for index in self.history.selectedIndexes())
        return [entry.runs[r] for r in rows if r < len(entry.runs)]

    def _history_selection_changed(self, show: bool = True) -> None:
        runs = self.selected_runs()
        self.compare_button.setEnabled(len(runs) == 2)
        self.save_run_button.setEnabled(len(runs) == 1 and runs[0].request is not None)
        self.report_button.setEnabled(bool(runs) and module_exists("advexplorer.report"))
        if show and len(runs) == 1 and not self.controller.running:
            self.show_run(runs[0])

    def compare_selected_runs(self):
        from advexplorer.gui.views import CompareDialog

        runs = self.selected_runs()
        if len(runs) != 2:
            self.statusBar().showMessage("Select exactly two runs to compare.", 4000)
            return None
        dialog = CompareDialog(runs[0], runs[1], self)
        dialog.show()
        self._compare_dialog = dialog
        return dialog

    def save_run_dialog(self) -> None:
        runs = self.selected_runs() or ([self._shown_run] if self._shown_run is not None else [])
        if len(runs) != 1 or runs[0].request is None:
            self.statusBar().showMessage("Select one run in the history to save.", 4000)
            return
        run = runs[0]
        suggestion = run.image_path.with_name(f"{run.image_path.stem}_run{run.number}")
        path, _ = QFileDialog.getSaveFileName(self, "Save run folder (a new folder)", str(suggestion), "")
        if path:
            self.save_run(run, Path(path))

    def save_run(self, run: RunSummary, folder: Path) -> Path | None:
        from advexplorer.session.runs import write_run_dir

        try:
            written = write_run_dir(folder, run.request, run.outcome, record=dict(run.record))
        except UserError as error:
            self.show_error("Could not save the run", str(error))
            return None
        except OSError as error:
            self.show_error("Could not save the run", f"{error}. Choose a folder you can write to.")
            return None
        self.statusBar().showMessage(f"Saved run #{run.number} to {written}", 6000)
        return written

    def report_dialog(self) -> None:
        runs = self.selected_runs()
        if not runs or not module_exists("advexplorer.report"):
            return
        path, _ = QFileDialog.getSaveFileName(self, "Write report", str(runs[0].image_path.with_suffix(".html")),
                                              "HTML (*.html);;PDF (*.pdf)")
        if not path:
            return
        if self.write_report(runs, Path(path)) is not None:
            self.statusBar().showMessage(f"Wrote {path}", 6000)

    def write_report(self, runs: list[RunSummary], path: Path) -> Path | None:
        """An HTML/PDF report of finished runs (via their run folders, as the CLI writes them)."""
        import tempfile

        try:
            from advexplorer.report import write_report

            with tempfile.TemporaryDirectory(prefix="advexplorer-report-") as tmp:
                folders = [self._write_temp_run(run, Path(tmp) / f"run{run.number}") for run in runs]
                return write_report(path, folders, overwrite=True)
        except UserError as error:
            self.show_error("Could not write the report", str(error))
        except Exception as error:  # report code is another module; keep the app alive
            self.show_error("Could not write the report", f"{type(error).__name__}: {error}")
        return None

    @staticmethod
    def _write_temp_run(run: RunSummary, folder: Path) -> Path:
        from advexplorer.session.runs import write_run_dir

        return write_run_dir(folder, run.request, run.outcome, record=dict(run.record))

    # -- cohort -----------------------------------------------------------------------------
    def show_cohort(self) -> None:
        """Show the Cohort panel with room for its curves (it needs height more than width)."""
        dock = self.cohort_dock
        if not dock.isVisible() and not dock.isFloating() and self.dockWidgetArea(dock) == \
                Qt.DockWidgetArea.BottomDockWidgetArea:
            # Its curves and table need a window's worth of room: float it over the main
            # window the first time (it can be docked anywhere from there).
            dock.setFloating(True)
            geometry = self.geometry()
            dock.resize(min(1100, geometry.width() - 80), min(760, geometry.height() - 80))
            dock.move(geometry.x() + 40, geometry.y() + 60)
        dock.show()
        dock.raise_()

    def open_from_cohort(self, path: Path, mask: Path | None, mode: str) -> None:
        """The cohort panel asked for one of its images: open it with its mask and attack it."""
        entries = self.add_images([path])
        if not entries:
            return
        entry = entries[0]
        if mask is not None and mode in ("allowed", "protect"):
            self._load_mask_into(entry, "attack", mask, mode)
        self.session.set_current(self.session.index_of(entry))
        if self.can_run():
            self.start_run()

    # -- batch ------------------------------------------------------------------------------
    def start_batch(self, entries: list[ImageEntry] | None = None) -> None:
        """Run the form's attack on every selected image (each with its own masks)."""
        if entries is None:
            rows = sorted({index.row() for index in self.image_list.selectedIndexes()})
            entries = [self.session.images[r] for r in rows] or list(self.session.images)
        if not entries or not self.can_run():
            return
        try:
            jobs = [self.make_job(entry) for entry in entries]
        except UserError as error:
            self.show_error("Cannot run", str(error))
            return
        self._mode = "batch"
        self._batch_rows = list(entries)
        self._batch_total = len(jobs)
        self.batch_dock.show()
        self.batch_dock.raise_()
        self.batch_table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            values = [entry.name, "", "", "", "", "", "queued"]
            for column, text in enumerate(values):
                self.batch_table.setItem(row, column, QTableWidgetItem(text))
        self.batch_progress.setFormat("%v / %m images")
        self.batch_progress.setRange(0, len(jobs))
        self.batch_progress.setValue(0)
        self.controller.start(batch_job, jobs)
        self._update_enabled()

    def _on_batch_item(self, item) -> None:
        kind, position, payload = item
        if kind == "step":
            self.batch_table.item(position, 6).setText(f"step {payload.index}/{payload.total_steps}")
            return
        entry = self._batch_rows[position]
        if isinstance(payload, JobFailed):
            self.batch_table.item(position, 6).setText(f"error: {payload.message}")
        else:
            summary: RunSummary = payload
            classes = summary.classes
            values = [entry.name,
                      f"{classes[summary.prediction_before]} ({summary.probability_before[summary.prediction_before]:.2f})",
                      f"{classes[summary.prediction_after]} ({summary.probability_after[summary.prediction_after]:.2f})",
                      "yes" if summary.flipped else "no",
                      f"{summary.norms['linf'] * 255:.2f}", f"{summary.wall_time_s:.2f}", "done"]
            for column, text in enumerate(values):
                self.batch_table.item(position, column).setText(text)
            if entry in self.session.images:
                self.session.add_run(entry, summary)
        self.batch_progress.setValue(position + 1)

    def _batch_finished(self, summaries) -> None:
        done = sum(1 for s in summaries if isinstance(s, RunSummary))
        flipped = sum(1 for s in summaries if isinstance(s, RunSummary) and s.flipped)
        self.statusBar().showMessage(f"Batch finished: {done} images attacked, {flipped} flipped.", 8000)
        current = self.session.current
        if current is not None and current.runs:
            self.show_run(current.runs[-1])

    # =================================================================================
    # enabling, settings, drag and drop, dialogs
    # =================================================================================
    def _update_enabled(self, *_args) -> None:
        running = self.controller.running
        can_run = self.can_run()
        self.run_button.setEnabled(can_run)
        self.run_action.setEnabled(can_run)
        self.batch_action.setEnabled(can_run and len(self.session.images) > 0)
        self.pause_button.setEnabled(running)
        self.pause_action.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.cancel_action.setEnabled(running)
        if not self.engine.is_ready:
            text = "Loading engine…"
        elif self.model_loading:
            text = "Loading model…"
        elif self.model is None:
            text = "Run (no model loaded)"
        elif running:
            text = "Running…"
        else:
            text = "Run"
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

    def _remember(self, key: str, value: str) -> None:
        if not self.options.remember:
            return
        items = [v for v in (self.settings.value(key) or []) if v != value] if \
            isinstance(self.settings.value(key), list) else []
        self.settings.setValue(key, [value, *items][:MAX_RECENT])
        self._refresh_recent_menus()

    def recent(self, key: str) -> list[str]:
        value = self.settings.value(key)
        if isinstance(value, str):
            return [value]
        return list(value or [])

    def _refresh_recent_menus(self) -> None:
        for menu, key, opener in ((self.recent_models_menu, "recent_models", self.open_model),
                                  (self.recent_images_menu, "recent_images", lambda p: self.add_images([p]))):
            menu.clear()
            for value in self.recent(key):
                action = menu.addAction(value)
                action.triggered.connect(lambda _=False, p=value, f=opener: f(Path(p)))
            menu.setEnabled(bool(menu.actions()))

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
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
        dropped = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        self.open_paths(dropped)
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
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "advexplorer.png", "PNG (*.png)")
        if path:
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
            "Ctrl+R run · Ctrl+P pause/resume · Esc cancel · Ctrl+Shift+R run on selected images"))

    def closeEvent(self, event):  # noqa: N802
        """Stop a running attack cleanly, remember the layout, then close."""
        self._closing = True
        if self.controller.running:
            self.controller.stop_and_wait(15000)
        if self.cohort_panel.running:
            self.cohort_panel.stop_and_wait(15000)
        self.save_layout()
        super().closeEvent(event)
