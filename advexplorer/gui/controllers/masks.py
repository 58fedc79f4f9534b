"""The mask tools: the toolbar's size/layer/mode/opacity bound to the canvas, and edits
(undo, redo, invert, clear) that keep every readout of the mask current; annotations
(QuPath GeoJSON, ImageJ ROIs) loaded as masks and masks saved as GeoJSON."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QVBoxLayout,
)

from advexplorer.errors import UserError
from advexplorer.gui.canvas import MaskCanvas
from advexplorer.gui.panels import MaskToolBar
from advexplorer.session.state import ImageEntry, Session


class MaskToolsController(QObject):
    """Binds the mask toolbar and the canvas both ways; ``edited()`` after any mask change."""

    edited = Signal()

    def __init__(self, session: Session, canvas: MaskCanvas, toolbar: MaskToolBar, tool_actions: dict,
                 parent=None):
        super().__init__(parent)
        self.session, self.canvas, self.toolbar = session, canvas, toolbar
        self.tool_actions = tool_actions
        canvas.tool_changed.connect(self._tool_changed)
        canvas.brush_size_changed.connect(toolbar.brush_size.setValue)
        canvas.mask_edited.connect(self.edited)
        toolbar.brush_size.valueChanged.connect(canvas.set_brush_size)
        toolbar.layer.currentIndexChanged.connect(self._layer_changed)
        toolbar.mode.currentIndexChanged.connect(self._mode_changed)
        toolbar.opacity.valueChanged.connect(self._opacity_changed)

    def _tool_changed(self, tool: str) -> None:
        self.tool_actions[tool].setChecked(True)

    def _opacity_changed(self, percent: int) -> None:
        self.canvas.set_opacity(percent / 100)

    def show_masks_of(self, entry: ImageEntry) -> None:
        """The toolbar's mode follows the shown image's masks (without echoing back)."""
        if entry is self.session.current and entry.masks is not None:
            mode = self.toolbar.mode
            mode.blockSignals(True)
            mode.setCurrentIndex(mode.findData(entry.masks.mode))
            mode.blockSignals(False)
            self.canvas.refresh_overlays()

    def _layer_changed(self) -> None:
        self.canvas.active_layer = self.toolbar.layer.currentData()
        self.toolbar.mode.setEnabled(self.canvas.active_layer == "attack")

    def _mode_changed(self) -> None:
        entry = self.session.current
        if entry is not None and entry.masks is not None:
            entry.masks.mode = self.toolbar.mode.currentData()
            self.canvas.refresh_overlays()
        self.edited.emit()

    def edit(self, operation: str) -> None:
        """'undo', 'redo', 'invert' or 'clear' on the active layer."""
        layer = self.canvas.layer
        if layer is None:
            return
        getattr(layer, operation)()
        # The status bar's pixel readout (mask 0/1 under the cursor) must not show the old value.
        point = self.canvas._last_point
        if point is not None:
            self.canvas._hover(self.canvas.view.mapViewToScene(point))
        self.edited.emit()


ANNOTATION_FILTER = "Annotations (*.geojson *.json *.roi *.zip);;All files (*)"


class AnnotationClassesDialog(QDialog):
    """Which annotation classes become the protect mask and which the diagnostic region."""

    def __init__(self, file_name: str, classes: list[str], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Annotations as masks")
        self.lists: dict[str, QListWidget] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Classes in {file_name}: tick those that become each layer."))
        row = QHBoxLayout()
        for role, title in (("protect", "Protect mask (the attack must not change it)"),
                            ("diagnostic", "Diagnostic region")):
            column = QVBoxLayout()
            column.addWidget(QLabel(title))
            widget = QListWidget()
            for name in classes:
                item = QListWidgetItem(name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Unchecked)
                widget.addItem(item)
            column.addWidget(widget)
            row.addLayout(column)
            self.lists[role] = widget
        layout.addLayout(row)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def check(self, role: str, name: str, on: bool = True) -> None:
        widget = self.lists[role]
        for row in range(widget.count()):
            if widget.item(row).text() == name:
                widget.item(row).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def chosen(self, role: str) -> list[str]:
        widget = self.lists[role]
        return [widget.item(row).text() for row in range(widget.count())
                if widget.item(row).checkState() == Qt.CheckState.Checked]


class AnnotationsController(QObject):
    """Mask → Load annotations as masks… (QuPath GeoJSON, ImageJ .roi / ROI Manager .zip) and
    Mask → Save mask as GeoJSON… (for QuPath). A tile cut from a slide is placed by its region
    (level-0 offset and downsample), so slide annotations land on the right pixels and exported
    masks on the right place of the slide."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.load_action = QAction("Load annotations as masks…", window)
        self.load_action.setStatusTip("QuPath GeoJSON or ImageJ ROIs: chosen classes become the protect mask "
                                      "or the diagnostic region.")
        self.load_action.triggered.connect(lambda _checked=False: self.load_dialog())
        self.export_action = QAction("Save mask as GeoJSON…", window)
        self.export_action.setStatusTip("The active layer as QuPath annotations (on the slide, for a cut tile).")
        self.export_action.triggered.connect(lambda _checked=False: self.export_dialog())

    def install(self, mask_menu) -> None:
        mask_menu.addSeparator()
        mask_menu.addAction(self.load_action)
        mask_menu.addAction(self.export_action)

    @staticmethod
    def geometry(entry) -> tuple[tuple[float, float], float]:
        """(level-0 offset, downsample) of the image: a slide tile's region, else (0, 0) and 1."""
        from advexplorer.io.slides import tile_region

        region = tile_region(entry.path)
        if region is None:
            return (0.0, 0.0), 1.0
        downsample = float(region.get("downsample") or 1.0)
        return (region["x"] * downsample, region["y"] * downsample), downsample

    def load_dialog(self) -> bool:
        from PySide6.QtWidgets import QFileDialog

        from advexplorer.gui.controllers.settings import user_folder

        entry = self.window.session.current
        if entry is None:
            return False
        start = self.window.preferences.folder("annotations", user_folder(entry.path))
        path, _ = QFileDialog.getOpenFileName(self.window, "Load annotations", start, ANNOTATION_FILTER)
        if not path:
            return False
        self.window.preferences.set_folder("annotations", path)
        return self.load(Path(path))

    def load(self, path: Path, protect_classes: list[str] | None = None,
             diagnostic_classes: list[str] | None = None) -> bool:
        """Rasterise the chosen classes of ``path`` into the current image's layers (asks which
        classes when not given); each changed layer is one undo step."""
        from advexplorer.io.annotations import class_names, rasterise, read_annotations, select

        entry = self.window.session.current
        if entry is None or entry.masks is None:
            return False
        try:
            annotations = read_annotations(path)
            if protect_classes is None and diagnostic_classes is None:
                dialog = AnnotationClassesDialog(path.name, class_names(annotations), self.window)
                if dialog.exec() != QDialog.DialogCode.Accepted:
                    return False
                protect_classes, diagnostic_classes = dialog.chosen("protect"), dialog.chosen("diagnostic")
            offset, downsample = self.geometry(entry)
            masks = entry.masks
            shape = masks.attack.shape
            layers = []
            for role, classes in (("protect", protect_classes or []), ("diagnostic", diagnostic_classes or [])):
                if classes:
                    mask = rasterise(select(annotations, classes, path), shape, offset=offset, downsample=downsample)
                    if not mask.any():
                        raise UserError(f"The {', '.join(classes)} annotations in {path.name} lie entirely outside "
                                        f"{entry.name}; choose annotations drawn on this image or slide region.")
                    layers.append((role, classes, mask))
        except UserError as error:
            self.window.show_error("Could not load the annotations", str(error))
            return False
        for role, classes, mask in layers:
            if role == "protect":
                self.window.mode_combo.setCurrentIndex(self.window.mode_combo.findData("protect"))
                masks.attack.set_data(mask, label="annotations")
            else:
                masks.diagnostic.set_data(mask, label="annotations")
        if layers:
            last = "diagnostic" if layers[-1][0] == "diagnostic" else "attack"
            self.window.layer_combo.setCurrentIndex(self.window.layer_combo.findData(last))
            self.window.canvas.mask_edited.emit()
            self.window.statusBar().showMessage(
                "; ".join(f"{role}: {', '.join(classes)} ({mask.mean():.1%} of pixels)"
                          for role, classes, mask in layers) + f" from {path.name}", 8000)
        return bool(layers)

    def export_dialog(self) -> Path | None:
        from PySide6.QtWidgets import QFileDialog

        from advexplorer.gui.controllers.settings import user_folder

        entry = self.window.session.current
        layer = self.window.canvas.layer
        if entry is None or layer is None:
            return None
        role = "diagnostic" if self.window.canvas.active_layer == "diagnostic" else entry.masks.mode
        start = Path(self.window.preferences.folder("annotations", user_folder(entry.path)))
        path, _ = QFileDialog.getSaveFileName(self.window, "Save mask as GeoJSON",
                                              str(start / f"{entry.path.stem}_{role}.geojson"), "GeoJSON (*.geojson)")
        if not path:
            return None
        self.window.preferences.set_folder("annotations", path)
        return self.export(Path(path), layer.data, role.capitalize(), entry)

    def export(self, path: Path, mask, class_name: str, entry) -> Path | None:
        """Write ``mask`` as QuPath annotations of ``class_name`` (the dialog already asked before
        replacing a file)."""
        from advexplorer.io.annotations import save_mask_geojson

        offset, downsample = self.geometry(entry)
        try:
            written = save_mask_geojson(path, mask, class_name, offset=offset, downsample=downsample,
                                        overwrite=True)
        except UserError as error:
            self.window.show_error("Could not save the annotations", str(error))
            return None
        self.window.statusBar().showMessage(f"Saved {written} (QuPath: File → Import objects)", 6000)
        return written
