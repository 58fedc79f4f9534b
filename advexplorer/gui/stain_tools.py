"""Stain-aware mask tools in the window: Mask → Select by stain… and the magic wand.

*Select by stain* (a small non-modal dialog): choose hematoxylin, eosin or DAB and an
optical-density threshold; the pixels above it are previewed live over the canvas (yellow)
while the slider moves, with the share of the image they cover. Apply puts them into the
protect mask, the allowed mask or the diagnostic region — replacing it or added to it — as
one undo step, like a brush stroke. The colour deconvolution is :mod:`advexplorer.core.stain`
(Ruifrok & Johnston 2001); a stain's densities are computed once per image (band by band,
so a large image never holds all three stains as float64), and moving the slider only
compares numbers.

*Magic wand* (W), a tool beside the brush: a click adds the connected pixels whose colour is
within the toolbar's tolerance of the clicked pixel to the active layer, one undo step.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QMenu,
    QSlider, QVBoxLayout, QWidget,
)

from advexplorer.core.stain import STAIN_LABELS, STAINS, stain_channel
from advexplorer.errors import UserError
from advexplorer.gui import icons
from advexplorer.gui.worker import TaskRunner, call_task

#: Where a selection can go: the attack mask in either mode, or the diagnostic region.
TARGETS = {"protect": "Protect mask (the attack must not change it)",
           "allowed": "Allowed mask (the attack may change only it)",
           "diagnostic": "Diagnostic region (for the saliency checks)"}
COMBINE = {"replace": "Replace the layer", "add": "Add to the layer"}
#: The threshold slider's range in optical density, and its resolution (0.01 OD per notch).
MAX_DENSITY, DENSITY_STEP = 1.5, 0.01
#: Starting thresholds: about "all nuclei" for hematoxylin, "clearly positive" for DAB.
DEFAULT_THRESHOLDS = {"hematoxylin": 0.10, "eosin": 0.10, "dab": 0.15}
PREVIEW_RGB = (255, 230, 0)
#: Images above this many pixels get their stain density computed off the GUI thread (about
#: 1.2 s for 16 Mpx on one core): the window keeps answering, the preview follows when ready.
BACKGROUND_PIXELS = 2_000_000


def _preview_lut() -> np.ndarray:
    lut = np.zeros((2, 4), np.uint8)
    lut[1] = (*PREVIEW_RGB, 170)
    return lut


class StainSelectDialog(QDialog):
    """Mask → Select by stain…: stain, threshold with a live preview, target layer, Apply.

    Signal ``apply_requested(selection H×W bool, target, combine)``; the controller applies it.
    """

    apply_requested = Signal(object, str, str)

    def __init__(self, canvas, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Select by stain")
        self.setModal(False)
        self.canvas = canvas
        self._density: dict[str, np.ndarray] = {}     # stain → H×W density of the shown image
        self._density_of: np.ndarray | None = None  # the image the densities were computed for
        self._wanted: tuple | None = None           # (image, stain) the user asks for now
        self._running: tuple | None = None          # (image, stain) being computed
        self.tasks = TaskRunner(self)
        self.tasks.finished_run.connect(self._density_ready)
        self.tasks.failed.connect(self._density_failed)
        self.tasks.stopped.connect(self._task_stopped)
        self.preview = pg.ImageItem(axisOrder="row-major")
        self.preview.setZValue(3.8)  # over the masks and overlays: this is what Apply will paint
        self.preview.setLookupTable(_preview_lut())
        self.preview.setVisible(False)
        canvas.view.addItem(self.preview, ignoreBounds=True)

        self.stain = QComboBox()
        for stain in STAINS:
            self.stain.addItem(STAIN_LABELS[stain], stain)
        self.stain.setToolTip("Colour deconvolution (Ruifrok & Johnston 2001): how much of this stain "
                              "each pixel holds, as optical density.")
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, int(round(MAX_DENSITY / DENSITY_STEP)))
        self.threshold.setToolTip("Pixels whose optical density of the stain is above this are selected.")
        self.threshold_label = QLabel()
        self.threshold_label.setMinimumWidth(70)
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(self.threshold, 1)
        threshold_row.addWidget(self.threshold_label)
        self.coverage = QLabel()
        self.coverage.setWordWrap(True)
        self.target = QComboBox()
        for name, label in TARGETS.items():
            self.target.addItem(label, name)
        self.combine = QComboBox()
        for name, label in COMBINE.items():
            self.combine.addItem(label, name)
        form = QFormLayout()
        form.addRow("Stain", self.stain)
        form.addRow("Threshold (OD)", threshold_row)
        form.addRow("", self.coverage)
        form.addRow("Apply to", self.target)
        form.addRow("", self.combine)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply |
                                       QDialogButtonBox.StandardButton.Close)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.setToolTip("Put the yellow pixels into the chosen layer (Ctrl+Z undoes it).")
        self.apply_button.clicked.connect(self.apply)
        self.buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)

        # A slider drag sends many values; the preview follows at most once per 30 ms.
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(30)
        self._preview_timer.timeout.connect(self.update_preview)
        self.stain.currentIndexChanged.connect(self._stain_changed)
        self.threshold.valueChanged.connect(self._threshold_changed)
        self._stain_changed()

    # -- values ------------------------------------------------------------------------
    @property
    def threshold_value(self) -> float:
        return self.threshold.value() * DENSITY_STEP

    def set_threshold(self, density: float) -> None:
        self.threshold.setValue(int(round(density / DENSITY_STEP)))

    def _stain_changed(self) -> None:
        self.set_threshold(DEFAULT_THRESHOLDS[self.stain.currentData()])
        self.update_preview()

    def _threshold_changed(self) -> None:
        self.threshold_label.setText(f"{self.threshold_value:.2f}")
        if not self._preview_timer.isActive():
            self._preview_timer.start()

    # -- the selection -----------------------------------------------------------------
    def density(self) -> np.ndarray | None:
        """H×W optical density of the chosen stain in the shown image (cached per image and
        stain, computed band by band); None without an image, or while a large image's is
        being computed off the GUI thread (the preview appears when it is ready)."""
        image = self.canvas.image
        if image is None:
            return None
        if self._density_of is not image:
            self._density, self._density_of = {}, image
        stain = self.stain.currentData()
        if stain not in self._density:
            stain_channel(image[:1, :1], stain)  # a grey image is refused at once, in one line
            if image.shape[0] * image.shape[1] <= BACKGROUND_PIXELS:
                self._density[stain] = stain_channel(image, stain)
            else:
                self._compute_in_background(image, stain)
                return None
        return self._density[stain]

    @property
    def computing(self) -> bool:
        """A large image's stain density is being computed in the background."""
        return self.tasks.running

    def _compute_in_background(self, image: np.ndarray, stain: str) -> None:
        self._wanted = (image, stain)
        if not self.tasks.running:
            self._running = (image, stain)
            self.tasks.start(call_task, stain_channel, image, stain)

    def _density_ready(self, density) -> None:
        image, stain = self._running
        if image is self._density_of:
            self._density[stain] = density

    def _density_failed(self, failure) -> None:
        self.coverage.setText(failure.message)

    def _task_stopped(self) -> None:
        image, stain = self._wanted or (None, None)
        if image is not None and image is self.canvas.image and stain not in self._density \
                and image is self._density_of:
            self._compute_in_background(image, stain)  # the user moved on while it ran
            return
        self.update_preview()

    def selection(self) -> np.ndarray | None:
        """H×W bool: the pixels the current stain and threshold select (None: nothing to select).
        The same comparison as :func:`advexplorer.core.stain.select_by_stain`."""
        try:
            density = self.density()
        except UserError as error:  # a grey image has no colours to deconvolve
            self.coverage.setText(str(error))
            return None
        if density is None:
            image = self.canvas.image
            self.coverage.setText("Open an image first." if image is None else
                                  f"Computing the stain densities of this {image.shape[1]}×{image.shape[0]} "
                                  "image…")
            return None
        return density > np.float32(self.threshold_value)

    def update_preview(self) -> None:
        """Redraw the yellow preview and the coverage line for the current settings."""
        self.threshold_label.setText(f"{self.threshold_value:.2f}")
        selected = self.selection()
        self.apply_button.setEnabled(selected is not None)
        if selected is None:
            self.preview.setVisible(False)
            return
        self.preview.setImage(selected.astype(np.uint8), autoLevels=False, levels=(0, 1))
        self.preview.setVisible(self.isVisible())
        share = float(selected.mean()) if selected.size else 0.0
        self.coverage.setText(f"{int(selected.sum()):,} pixels selected ({share:.1%} of the image)")

    def apply(self) -> None:
        selected = self.selection()
        if selected is not None:
            self.apply_requested.emit(selected, self.target.currentData(), self.combine.currentData())

    # -- showing -----------------------------------------------------------------------
    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.update_preview()

    def hideEvent(self, event):  # noqa: N802
        self.preview.setVisible(False)  # the preview belongs to the open dialog only
        super().hideEvent(event)


class StainToolsController(QObject):
    """Adds Mask → Select by stain… and the magic wand (tool W and its tolerance) to ``window``."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.canvas = window.canvas
        self.dialog: StainSelectDialog | None = None
        self.select_action = QAction("Select by stain…", window)
        self.select_action.setStatusTip("Select pixels by hematoxylin, eosin or DAB density, with a live "
                                        "preview, into the protect or allowed mask or the diagnostic region.")
        self.select_action.triggered.connect(lambda _checked=False: self.show_dialog())
        window.addAction(self.select_action)
        self.wand_action = QAction(icons.icon("wand"), "Magic wand", window)
        self.wand_action.setShortcut(QKeySequence("W"))
        tip = "Click to add the connected pixels of similar colour to the active layer (W)."
        self.wand_action.setToolTip(tip)
        self.wand_action.setStatusTip(tip)
        self.wand_action.setCheckable(True)
        self.wand_action.triggered.connect(lambda _checked=False: self.canvas.set_tool("wand"))
        window.addAction(self.wand_action)
        window.tool_group.addAction(self.wand_action)
        window.tool_actions["wand"] = self.wand_action
        self.tolerance = QDoubleSpinBox()
        self.tolerance.setRange(0.0, 1.0)
        self.tolerance.setSingleStep(0.01)
        self.tolerance.setDecimals(2)
        self.tolerance.setValue(self.canvas.wand_tolerance)
        self.tolerance.setToolTip("Magic wand: the largest difference per colour channel (0–1) from "
                                  "the clicked pixel that still counts as similar.")
        self.tolerance.valueChanged.connect(self._tolerance_changed)
        self.canvas.tool_changed.connect(self._tool_changed)
        window.session.current_changed.connect(self._image_changed)

    def install(self, mask_menu: QMenu, toolbar) -> None:
        """The wand beside the fill tool (menu and toolbar), its tolerance, and Select by stain…."""
        rectangle = self.window.tool_actions["rectangle"]
        mask_menu.insertAction(rectangle, self.wand_action)
        mask_menu.addSeparator()
        mask_menu.addAction(self.select_action)
        toolbar.insertAction(rectangle, self.wand_action)
        label_action = next((a for a in toolbar.actions() if toolbar.widgetForAction(a) is toolbar.layer), None)
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("  Tolerance "))
        row.addWidget(self.tolerance)
        index = toolbar.actions().index(label_action) - 1 if label_action is not None else -1
        before = toolbar.actions()[index] if index >= 0 else None
        self.tolerance_action = toolbar.insertWidget(before, box) if before is not None else toolbar.addWidget(box)
        self.tolerance_action.setVisible(False)  # shown while the wand is the tool

    # -- the wand ----------------------------------------------------------------------
    def _tolerance_changed(self, value: float) -> None:
        self.canvas.wand_tolerance = float(value)

    def _tool_changed(self, tool: str) -> None:
        if hasattr(self, "tolerance_action"):
            self.tolerance_action.setVisible(tool == "wand")

    # -- select by stain ---------------------------------------------------------------
    def show_dialog(self) -> StainSelectDialog:
        """Mask → Select by stain…: the dialog beside the canvas, previewing at once."""
        if self.dialog is None:
            self.dialog = StainSelectDialog(self.canvas, self.window)
            self.dialog.apply_requested.connect(self.apply)
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _image_changed(self, _entry) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            QTimer.singleShot(0, self.dialog.update_preview)  # after the canvas shows the new image

    def apply(self, selection: np.ndarray, target: str, combine: str) -> None:
        """Put ``selection`` into ``target`` ('protect', 'allowed' or 'diagnostic') as one undo step.

        The attack mask has one mode: applying as *protect* to an *allowed* mask (or the
        reverse) switches the mode and replaces the layer, since adding pixels of one meaning
        to pixels of the other would mean nothing.
        """
        window = self.window
        entry = window.session.current
        if entry is None or entry.masks is None or selection.shape != entry.masks.attack.shape:
            return
        masks = entry.masks
        layer_name = "diagnostic" if target == "diagnostic" else "attack"
        if layer_name == "attack" and masks.mode != target:
            if combine == "add" and not masks.attack.is_empty:
                window.statusBar().showMessage(f"The mask was in {masks.mode} mode: the selection replaces it "
                                               f"as the {target} mask.", 8000)
            combine = "replace"
            window.mode_combo.setCurrentIndex(window.mode_combo.findData(target))  # the toolbar's own path
        # Ctrl+Z acts on the active layer: make it the layer just changed.
        window.layer_combo.setCurrentIndex(window.layer_combo.findData(layer_name))
        layer = masks.diagnostic if layer_name == "diagnostic" else masks.attack
        new = selection | layer.data.astype(bool) if combine == "add" else selection
        if layer.set_data(new, label="stain") is not None:
            self.canvas.mask_edited.emit()
            window.statusBar().showMessage(f"Selected {int(selection.sum()):,} pixels by stain into the "
                                           f"{TARGETS[target].split(' (')[0].lower()}.", 6000)
