"""The rooms beside the image canvas, and the project around it all.

One controller owns what the main window opens from its Tools and Edit menus — the protein
sequence probe, the Train panel (adversarial training of the loaded model), the slide view
(cut a model-sized tile from a whole-slide image), the Preferences dialog — and the project
session (Save/Open project, autosave, restore after a crash, the question before quitting).
Each room is built the first time the user asks for it, so start-up pays for none of them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QFileDialog

from advexplorer.gui.project_session import ProjectSession


class WorkspaceController(QObject):
    """Tools → Sequence probe / Train / Open slide, Edit → Preferences, and the project."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.project = ProjectSession(window)
        self.sequence_window = None
        self.train_dock: QDockWidget | None = None
        self.slide_dock: QDockWidget | None = None
        self._build_menus()
        window.model_loaded.connect(self._model_loaded)

    # ------------------------------------------------------------------ menus
    def _action(self, text: str, slot, shortcut: str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(shortcut)
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.window.addAction(action)
        return action

    def _build_menus(self) -> None:
        window = self.window
        self.sequence_action = self._action(
            "Protein sequence probe…", self.show_sequence_probe, "Ctrl+Shift+Q",
            "Flip a protein classifier with the fewest residue changes in a region that should not matter.")
        self.train_action = self._action(
            "Train a robust twin…", self.show_train_panel, "Ctrl+Shift+T",
            "Fine-tune the loaded model (clean, PGD-AT, TRADES or fast-AT) on a labelled folder.")
        self.slide_action = self._action(
            "Open slide…", self.open_slide_dialog, "Ctrl+Shift+L",
            "Open a whole-slide image and cut a model-sized tile from it.")
        self.preferences_action = self._action(
            "Preferences…", self.show_preferences, "Ctrl+,",
            "Device, torch threads, default ε and steps, overlay colours, recent files.")
        window.tools_menu = window.menuBar().addMenu("&Tools")
        for action in (self.slide_action, self.train_action, self.sequence_action):
            window.tools_menu.addAction(action)
        edit_menu = next((a.menu() for a in window.menuBar().actions() if a.text() == "&Edit"), None)
        if edit_menu is not None:
            edit_menu.addSeparator()
            edit_menu.addAction(self.preferences_action)
        # Keep Help last.
        help_action = next((a for a in window.menuBar().actions() if a.text() == "&Help"), None)
        if help_action is not None:
            window.menuBar().removeAction(help_action)
            window.menuBar().addAction(help_action)

    def _dock(self, title: str, name: str, widget) -> QDockWidget:
        dock = QDockWidget(title, self.window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        dock.setFloating(True)  # beside the canvas, never growing the window past the screen
        screen = self.window.screen().availableGeometry()
        dock.resize(min(1000, screen.width() - 80), min(760, screen.height() - 80))
        dock.move(screen.center() - dock.rect().center())
        return dock

    # ------------------------------------------------------------------ rooms
    def show_sequence_probe(self) -> None:
        """Tools → Protein sequence probe…: the sequence window on the bundled demo model."""
        from advexplorer.gui.sequence_window import open_sequence_window

        if self.sequence_window is None:
            self.sequence_window = open_sequence_window(self.window)
        self.sequence_window.show()
        self.sequence_window.raise_()

    def show_train_panel(self) -> None:
        """Tools → Train a robust twin…: the Train panel for the loaded model."""
        from advexplorer.gui.train_panel import TrainPanel

        if self.train_dock is None:
            self.train_panel = TrainPanel()
            self.train_panel.model_trained.connect(self._twin_trained)
            self.train_dock = self._dock("Train", "train_dock", self.train_panel)
            if self.window.model is not None:
                self.train_panel.set_model(self.window.model)
        self.train_dock.show()
        self.train_dock.raise_()

    def open_slide_dialog(self) -> None:
        """Tools → Open slide…: pick a slide, show it; a cut tile joins the image list."""
        start = self.window.preferences.folder("slides", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self.window, "Open slide", start,
                                              "Slides (*.svs *.ndpi *.tif *.tiff *.scn *.bif);;All files (*)")
        if path:
            self.window.preferences.set_folder("slides", Path(path).parent)
            self.open_slide(path)

    def open_slide(self, path) -> None:
        from advexplorer.gui.slide_view import SlideView

        if self.slide_dock is None:
            model = self.window.model
            side = int(model.card.input_size[-1]) if model is not None else 224
            self.slide_view = SlideView(tile_size=side)
            self.slide_view.failed.connect(lambda text: self.window.show_error("Slide", text))
            self.slide_view.status.connect(lambda text: self.window.statusBar().showMessage(text, 8000))
            self.slide_view.region_picked.connect(self._tile_cut)
            self.slide_dock = self._dock("Slide", "slide_dock", self.slide_view)
        self.slide_dock.show()
        self.slide_dock.raise_()
        self.slide_view.open_slide(str(path))

    def show_preferences(self) -> None:
        """Edit → Preferences…; a change applies the defaults to the attack form at once."""
        from advexplorer.gui.preferences import PreferencesDialog

        dialog = PreferencesDialog(self.window.settings, self.window)
        dialog.preferences_changed.connect(self.apply_preferences)
        dialog.exec()

    def apply_preferences(self, preferences, starting: bool = False) -> None:
        """Every preference where it lives: the form's ε and steps, the mask colours, how many
        recent files the menus list, the attack threads, and the device (at start, unless
        ``--device`` chose one; on OK, at once: the model is loaded again on it)."""
        from advexplorer.gui import engine

        window = self.window
        window.attack_panel.set_values(eps=preferences.default_eps_text, steps=preferences.default_steps)
        window.canvas.set_colours(preferences.overlay_colours)
        window.preferences.limit = preferences.recent_files
        window._recent_menus()
        engine.set_threads_preference(preferences.torch_threads)
        from advexplorer.gui import attack_process

        attack_process.set_preference(preferences.attack_process)
        attack_process.prepare(window.models.model, bool(window.models.trust_pickle))
        device = "cuda:0" if preferences.device == "cuda" else preferences.device
        models = window.models
        if starting:
            if models.start_device == "auto":
                models.start_device = device
            return
        models.start_device = device
        form = window.attack_panel.device
        if window.engine.is_ready and form.findText(device) >= 0 and form.currentText() != device:
            form.setCurrentText(device)  # as if picked in the form: the model follows

    # ------------------------------------------------------------------ events
    def _model_loaded(self, loaded) -> None:
        if self.train_dock is not None:
            self.train_panel.set_model(loaded)

    def _twin_trained(self, weights: Path, _card) -> None:
        self.window.statusBar().showMessage(f"Trained twin written to {weights}; opening it.", 10000)
        self.window.open_model(Path(weights))

    def _tile_cut(self, region, pixels) -> None:
        from advexplorer.io.slides import save_region_png

        folder = Path(self.window.preferences.folder("tiles", str(Path.home() / "advexplorer_tiles")))
        folder.mkdir(parents=True, exist_ok=True)
        self.window.add_images([save_region_png(region, pixels, folder)])

    def start(self) -> None:
        from advexplorer.gui.preferences import read_preferences

        self.apply_preferences(read_preferences(self.window.settings), starting=True)
        self.project.start()  # a recovered or opened project's form comes after the defaults

    def confirm_close(self) -> bool:
        """Ask before closing with unsaved work or a run; stop every room's background work."""
        if not self.project.confirm_close():
            return False
        for room in (self.sequence_window, getattr(self, "train_panel", None)):
            if room is not None:
                room.stop_and_wait(15000)
        if self.slide_dock is not None:
            self.slide_view.stop()
        return True

    def closed(self) -> None:
        self.project.closed()
