"""The mask tools: the toolbar's size/layer/mode/opacity bound to the canvas, and edits
(undo, redo, invert, clear) that keep every readout of the mask current."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

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
