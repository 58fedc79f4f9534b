"""The main window's actions, menus and toolbars (what a user clicks), wired to its slots."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMessageBox, QToolBar

from advexplorer.gui import icons
from advexplorer.gui.panels import MaskToolBar


def _without_result(slot):
    """``slot`` as a Qt slot that takes Qt's ``checked`` argument and returns nothing.

    Qt passes ``checked`` to a connected callable: Run on selected images once received it as
    its list of images. And a value returned to a signal is best dropped: PySide6 has been
    seen to mis-count references to it (a rare bool/None dealloc abort at exit)."""
    def triggered(_checked: bool = False) -> None:
        slot()

    return triggered


def _action(window, text: str, slot, shortcut=None, tip: str = "", icon: str | None = None,
            checkable: bool = False) -> QAction:
    """An action; ``slot`` is called WITHOUT Qt's ``checked`` argument (it would land
    in the slot's first parameter: Run on selected images once got ``entries=False``)."""
    action = QAction(text, window)
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
        action.triggered.connect(_without_result(slot))
    window.addAction(action)  # shortcuts work even when a toolbar is hidden
    return action


def build_actions(window) -> None:
    """Every action of the menus and toolbars, as attributes of ``window`` (``window.run_action``…)."""
    def a(*args, **kwargs):
        return _action(window, *args, **kwargs)

    images = window.images
    window.open_images_action = a("Open images…", window.images.open_images_dialog, QKeySequence.StandardKey.Open,
                                  "Add image files to the session.", "open")
    window.open_folder_action = a("Open folder…", window.images.open_folder_dialog, "Ctrl+Shift+O",
                                  "Add every image of a folder.")
    window.open_model_action = a("Open model…", window.open_model_dialog, "Ctrl+M",
                                 "Load a classifier and its model card.", "model")
    window.load_mask_action = a("Load mask…", lambda: images.load_mask_dialog("attack"), None,
                                "Load an allowed/protect mask PNG for the current image.")
    window.load_diagnostic_action = a("Load diagnostic region…", lambda: images.load_mask_dialog("diagnostic"))
    window.save_mask_action = a("Save mask…", lambda: images.save_mask_dialog("attack"),
                                "Ctrl+Alt+M", "Save the painted mask as a PNG at the image's size.")
    window.save_diagnostic_action = a("Save diagnostic region…",
                                      lambda: images.save_mask_dialog("diagnostic"))
    window.save_run_action = a("Save run folder…", lambda: window.runs_history.save_run_dialog(
        window.runs.shown_run), "Ctrl+Alt+S", "Write the shown run as a run folder (record.json and files).")
    window.report_action = a("Export report…", window.runs_history.report_dialog, "Ctrl+E",
                             "HTML/PDF report of the selected runs (else the last run), with their "
                             "run folders saved beside it for `advexplorer reproduce`.")
    window.screenshot_action = a("Save screenshot…", window.screenshot_dialog, None,
                                 "Save a PNG of the whole window.")
    window.quit_action = a("Quit", window.close, QKeySequence.StandardKey.Quit)
    window.undo_action = a("Undo", lambda: window.mask_tools.edit("undo"), ["Ctrl+Z"],
                           "Undo the last stroke on the active layer.", "undo")
    window.redo_action = a("Redo", lambda: window.mask_tools.edit("redo"), ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo.", "redo")
    window.invert_action = a("Invert mask", lambda: window.mask_tools.edit("invert"), "I",
                             "Swap painted and unpainted pixels.", "invert")
    window.clear_action = a("Clear mask", lambda: window.mask_tools.edit("clear"), None,
                            "Erase the whole active layer.", "clear")
    window.tool_group = QActionGroup(window)
    window.tool_actions = {}
    for tool, text, key, tip in (
            ("brush", "Brush", "B", "Paint on the active layer (B). [ and ] change the size."),
            ("eraser", "Eraser", "E", "Erase from the active layer (E)."),
            ("fill", "Fill", "F", "Flood-fill the clicked region (F)."),
            ("rectangle", "Rectangle", "R", "Drag a rectangle to paint (R)."),
            ("pan", "Pan / zoom", "P", "Drag to pan, wheel to zoom (P). Space-drag pans with any tool.")):
        action = a(text, lambda t=tool: window.canvas.set_tool(t), key, tip, tool, checkable=True)
        window.tool_group.addAction(action)
        window.tool_actions[tool] = action
    window.tool_actions["brush"].setChecked(True)
    window.smaller_action = a("Smaller brush", lambda: window.canvas.grow_brush(1 / 1.25), "[")
    window.larger_action = a("Larger brush", lambda: window.canvas.grow_brush(1.25), "]")
    window.fit_action = a("Zoom to fit", lambda: window.canvas.view.autoRange(padding=0.02), "Ctrl+0",
                          "Show the whole image.")
    window.run_action = a("Run", window.start_run, "Ctrl+R", "Run the attack on the current image.", "run")
    window.pause_action = a("Pause", window.toggle_pause, "Ctrl+P", "Pause/resume between steps.", "pause")
    window.cancel_action = a("Cancel", window.cancel_run, "Esc", "Stop after the current step.", "stop")
    window.batch_action = a("Run on selected images", window.start_batch, "Ctrl+Shift+R",
                            "Run the same attack on every selected image, each with its own mask.")
    window.cohort_action = a("Screen a cohort…", window.show_cohort, "Ctrl+Shift+C",
                             "Flip rate and robust accuracy against ε over a folder of images.")
    window.about_action = a("About AdvExplorer", lambda: about(window))
    window.shortcuts_action = a("Keyboard shortcuts", lambda: show_shortcuts(window), "F1")

def build_menus_and_toolbars(window) -> None:
    """The menu bar and the File, Mask tools and Run toolbars of ``window``."""
    def menu(title, *items):
        added = window.menuBar().addMenu(title)
        for item in items:
            added.addSeparator() if item is None else added.addAction(item)
        return added

    window.file_menu = menu("&File", window.open_images_action, window.open_folder_action, window.open_model_action)
    window.recent_models_menu = window.file_menu.addMenu("Recent models")
    window.recent_images_menu = window.file_menu.addMenu("Recent images")
    for item in (None, window.load_mask_action, window.load_diagnostic_action, window.save_mask_action,
                 window.save_diagnostic_action, None, window.save_run_action, window.report_action,
                 window.screenshot_action, None, window.quit_action):
        window.file_menu.addSeparator() if item is None else window.file_menu.addAction(item)
    menu("&Edit", window.undo_action, window.redo_action, window.invert_action, window.clear_action)
    window.mask_menu = menu("&Mask", *window.tool_actions.values(), None, window.smaller_action,
                            window.larger_action)
    window.attack_menu = menu("&Attack", window.run_action, window.pause_action, window.cancel_action,
                              window.batch_action, window.cohort_action)
    window.view_menu = menu("&View", window.fit_action, None, *(dock.toggleViewAction() for dock in (
        window.images_dock, window.model_dock, window.history_dock, window.attack_dock, window.results_dock,
        window.batch_dock, window.cohort_dock)))
    from advexplorer.gui.overlays import OverlayController  # run overlays + layer legend (issue 12)

    window.overlay_layers = OverlayController(window)
    window.overlay_layers.add_to_menu(window.view_menu)
    from advexplorer.gui.controllers.images import ModelFrameController  # the model's crop (issue 12)

    window.model_frame = ModelFrameController(window)
    window.model_frame.add_to_menu(window.view_menu)
    from advexplorer.gui.dicom_window import DicomWindowController  # a DICOM image's window (issue 12)

    window.dicom_window = DicomWindowController(window)
    window.dicom_window.add_to_menu(window.view_menu)
    menu("&Help", window.shortcuts_action, window.about_action)
    bar = QToolBar("File")
    bar.setObjectName("file_toolbar")
    bar.setIconSize(QSize(20, 20))
    bar.addAction(window.open_images_action)
    bar.addAction(window.open_model_action)
    window.addToolBar(bar)
    window.mask_toolbar = MaskToolBar(window.tool_actions.values(), (
        window.invert_action, window.clear_action, window.undo_action, window.redo_action),
        window.canvas.brush_size, window.canvas.opacity, window)
    window.addToolBar(window.mask_toolbar)
    from advexplorer.gui.stain_tools import StainToolsController  # select by stain, magic wand (issue 12)

    window.stain_tools = StainToolsController(window)
    window.stain_tools.install(window.mask_menu, window.mask_toolbar)
    from advexplorer.gui.controllers.masks import AnnotationsController  # GeoJSON / ImageJ ROIs (issue 12)

    window.annotations = AnnotationsController(window)
    window.annotations.install(window.mask_menu)
    window.brush_size, window.opacity = window.mask_toolbar.brush_size, window.mask_toolbar.opacity
    window.layer_combo, window.mode_combo = window.mask_toolbar.layer, window.mask_toolbar.mode
    run = QToolBar("Run")
    run.setObjectName("run_toolbar")
    run.setIconSize(QSize(20, 20))
    run.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for action in (window.run_action, window.pause_action, window.cancel_action):
        run.addAction(action)
    window.addToolBar(run)



def refresh_recent_menus(window) -> None:
    """File → Recent models / Recent images from the remembered paths."""
    for menu, key, opener in ((window.recent_models_menu, "recent_models", window.open_model),
                              (window.recent_images_menu, "recent_images", lambda p: window.add_images([p]))):
        menu.clear()
        for value in window.preferences.recent(key):
            action = menu.addAction(value)
            action.triggered.connect(lambda _=False, p=value, f=opener: f(Path(p)))
        menu.setEnabled(bool(menu.actions()))


def about(window) -> None:
    from advexplorer import __version__

    QMessageBox.about(window, "About AdvExplorer",
                      f"<b>AdvExplorer {__version__}</b><br>Probe image classifiers with masked "
                      "adversarial attacks (FGSM, PGD, MI-FGSM) and see whether explanations "
                      "follow the prediction.")


def show_shortcuts(window) -> None:
    QMessageBox.information(window, "Keyboard shortcuts", (
        "B brush · E eraser · F fill · W magic wand · R rectangle · P pan\n"
        "[ / ] brush size · Space + drag pan · wheel zoom · Ctrl+0 fit\n"
        "Ctrl+Z undo · Ctrl+Shift+Z redo · I invert\n"
        "Ctrl+R run · Ctrl+P pause/resume · Esc cancel · Ctrl+Shift+R run on selected images\n"
        "Ctrl+E export report · Ctrl+S save run folder"))
