"""The central canvas: the image at file resolution, zoom/pan, and mask painting.

pyqtgraph draws the image (``imageAxisOrder='row-major'``, explicit levels, so nothing is
re-levelled per frame) and two overlays: the attack mask (allowed or protect) and the
diagnostic region. The user paints on the *active* layer with a brush or eraser (a
circle shows the brush size), fills, adds similar colours with the magic wand, or drags a
rectangle; every stroke is one undo item
in :class:`advexplorer.session.masks.MaskLayer`. Wheel zooms, right/middle drag or
Space + left drag pans — as in napari.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsRectItem

from advexplorer.session.masks import ImageMasks, MaskLayer

TOOLS = ("brush", "eraser", "fill", "wand", "rectangle", "pan")
#: Above this many pixels the magic wand and the fill tool work in a worker: ~30 ms per
#: megapixel on a small machine, so the GUI thread never blocks longer than the 50 ms a user feels.
WAND_BACKGROUND_PIXELS = 1_000_000
#: Overlay colours (RGB): protect = cyan ("keep this"), allowed = orange ("attack here"),
#: diagnostic region = magenta.
LAYER_COLOURS = {"protect": (0, 200, 255), "allowed": (255, 150, 0), "diagnostic": (255, 0, 200)}
MIN_BRUSH, MAX_BRUSH = 1, 500


def _lut(rgb: tuple[int, int, int]) -> np.ndarray:
    lut = np.zeros((2, 4), dtype=np.uint8)
    lut[1] = (*rgb, 255)
    return lut


def _outline_lut(rgb: tuple[int, int, int]) -> np.ndarray:
    """0 transparent, 1 a faint fill, 2 the opaque edge: the diagnostic region reads as an
    outline, so it does not hide the tissue or the attack mask under it."""
    lut = np.zeros((3, 4), dtype=np.uint8)
    lut[1] = (*rgb, 50)
    lut[2] = (*rgb, 255)
    return lut


def _with_outline(mask: np.ndarray) -> np.ndarray:
    """mask + its 4-connected inner boundary (values 0, 1, 2)."""
    inside = mask.astype(bool)
    interior = inside.copy()
    interior[1:, :] &= inside[:-1, :]
    interior[:-1, :] &= inside[1:, :]
    interior[:, 1:] &= inside[:, :-1]
    interior[:, :-1] &= inside[:, 1:]
    return inside.astype(np.uint8) + (inside & ~interior).astype(np.uint8)


class _CanvasViewBox(pg.ViewBox):
    """A ViewBox whose left button paints with the current tool (unless panning)."""

    def __init__(self, canvas: "MaskCanvas"):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._canvas = canvas

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        canvas = self._canvas
        if ev.button() == Qt.MouseButton.LeftButton and canvas.paints_with_left_button():
            ev.accept()
            position = self.mapSceneToView(ev.scenePos())
            if ev.isStart():
                canvas.press(self.mapSceneToView(ev.buttonDownScenePos()))
                canvas.drag_to(position)
            elif ev.isFinish():
                canvas.drag_to(position)
                canvas.release(position)
            else:
                canvas.drag_to(position)
            return
        if ev.button() in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            # Right/middle drag pans whatever the tool (pyqtgraph would zoom on right drag).
            ev.accept()
            delta = self.mapSceneToView(ev.lastScenePos()) - self.mapSceneToView(ev.scenePos())
            self.translateBy(x=delta.x(), y=delta.y())
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):  # noqa: N802
        canvas = self._canvas
        if ev.button() == Qt.MouseButton.LeftButton and canvas.paints_with_left_button():
            ev.accept()
            canvas.click(self.mapSceneToView(ev.scenePos()))
            return
        super().mouseClickEvent(ev)


class MaskCanvas(pg.GraphicsView):
    """Shows an image with its mask overlays and lets the user paint them.

    Signals: ``tool_changed(str)``, ``brush_size_changed(int)``, ``mask_edited()`` (after
    each finished edit), ``cursor_moved(str)`` (a status text: pixel position and value),
    ``overlays_refreshed()`` (the mask layers were redrawn, e.g. after a mode change).
    """

    tool_changed = Signal(str)
    brush_size_changed = Signal(int)
    mask_edited = Signal()
    cursor_moved = Signal(str)
    overlays_refreshed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent, background="#1e1f22")
        self.view = _CanvasViewBox(self)
        self.setCentralItem(self.view)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.attack_item = pg.ImageItem(axisOrder="row-major")
        self.diagnostic_item = pg.ImageItem(axisOrder="row-major")
        for z, item in enumerate((self.image_item, self.diagnostic_item, self.attack_item)):
            item.setZValue(z)
            self.view.addItem(item)
        self.cursor_item = QGraphicsEllipseItem()
        self.cursor_item.setPen(pg.mkPen((255, 255, 255, 220), width=1.5, cosmetic=True))
        self.cursor_item.setZValue(10)
        self.cursor_item.setVisible(False)
        self.view.addItem(self.cursor_item, ignoreBounds=True)
        self.rubber_band = QGraphicsRectItem()
        pen = QPen(QColor(255, 255, 255))
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.rubber_band.setPen(pen)
        self.rubber_band.setZValue(11)
        self.rubber_band.setVisible(False)
        self.view.addItem(self.rubber_band, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._hover)

        self.masks: ImageMasks | None = None
        self.image: np.ndarray | None = None
        self.active_layer = "attack"  # or "diagnostic"
        self.tool = "brush"
        self.brush_size = 20  # diameter in image pixels
        self.colours = dict(LAYER_COLOURS)  # Preferences → Overlay colours (set_colours)
        self.wand_tolerance = 0.1  # magic wand: largest colour difference per channel, [0, 1] units
        self._wand_tasks = None    # a TaskRunner, made for the first large image's selection
        self._wand_target = (None, None, None)  # (layer, image, undo label) of a pending selection
        self.opacity = 0.4
        self.space_held = False
        self._last_point: QPointF | None = None
        self._press_point: QPointF | None = None
        # Painting notifies on every dab; overlays are redrawn at most once per frame.
        self._dirty: set[str] = set()
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(16)
        self._redraw_timer.timeout.connect(self._redraw_overlays)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip("")

    # -- content -----------------------------------------------------------------------
    def set_image(self, image: np.ndarray | None, masks: ImageMasks | None) -> None:
        """Show an H×W×C (C = 1 or 3) uint8 or [0,1] float image and its masks."""
        if self.masks is not None:
            self.masks.attack.disconnect(self._attack_changed)
            self.masks.diagnostic.disconnect(self._diagnostic_changed)
        self.image, self.masks = image, masks
        if image is None:
            self.image_item.clear()
            self.attack_item.clear()
            self.diagnostic_item.clear()
            return
        display = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        levels = (0, 255) if display.dtype == np.uint8 else (0.0, 1.0)
        self.image_item.setImage(np.ascontiguousarray(display), autoLevels=False, levels=levels)
        if masks is not None:
            masks.attack.on_change(self._attack_changed)
            masks.diagnostic.on_change(self._diagnostic_changed)
        self._dirty = {"attack", "diagnostic"}
        self._redraw_overlays()
        self.view.autoRange(padding=0.02)

    def _attack_changed(self, _box) -> None:
        self._schedule("attack")

    def _diagnostic_changed(self, _box) -> None:
        self._schedule("diagnostic")

    def _schedule(self, layer: str) -> None:
        self._dirty.add(layer)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def refresh_overlays(self) -> None:
        """Redraw both overlays now (after a mode or opacity change)."""
        self._dirty = {"attack", "diagnostic"}
        self._redraw_overlays()
        self.overlays_refreshed.emit()

    def set_colours(self, colours: dict) -> None:
        """The layers' overlay colours (RGB per ``protect``/``allowed``/``diagnostic``), redrawn now."""
        self.colours = {**LAYER_COLOURS, **{k: tuple(v) for k, v in colours.items() if k in LAYER_COLOURS}}
        self.refresh_overlays()

    def _redraw_overlays(self) -> None:
        masks = self.masks
        if masks is None:
            self._dirty.clear()
            return
        if "attack" in self._dirty:
            self.attack_item.setLookupTable(_lut(self.colours[masks.mode]))
            self.attack_item.setImage(masks.attack.data, autoLevels=False, levels=(0, 1))
        if "diagnostic" in self._dirty:
            self.diagnostic_item.setLookupTable(_outline_lut(self.colours["diagnostic"]))
            self.diagnostic_item.setImage(_with_outline(masks.diagnostic.data), autoLevels=False,
                                          levels=(0, 2))
        self.attack_item.setOpacity(self.opacity)
        self.diagnostic_item.setOpacity(min(1.0, self.opacity * 2))
        self._dirty.clear()

    @property
    def layer(self) -> MaskLayer | None:
        """The layer the tools act on."""
        if self.masks is None:
            return None
        return self.masks.diagnostic if self.active_layer == "diagnostic" else self.masks.attack

    # -- tool state ----------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(tool)
        self.tool = tool
        self.cursor_item.setVisible(False)
        self._update_cursor_shape()
        self.tool_changed.emit(tool)

    def set_brush_size(self, size: int) -> None:
        size = int(min(max(size, MIN_BRUSH), MAX_BRUSH))
        if size != self.brush_size:
            self.brush_size = size
            self.brush_size_changed.emit(size)
        if self._last_point is not None:
            self._place_cursor(self._last_point)

    def grow_brush(self, factor: float) -> None:
        """``]`` and ``[``: change the brush by a step that feels even at any size."""
        step = max(1, round(self.brush_size * (factor - 1))) if factor > 1 else \
            -max(1, round(self.brush_size * (1 - factor)))
        self.set_brush_size(self.brush_size + step)

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(min(max(opacity, 0.0), 1.0))
        self.attack_item.setOpacity(self.opacity)
        self.diagnostic_item.setOpacity(min(1.0, self.opacity * 2))

    def paints_with_left_button(self) -> bool:
        return self.tool != "pan" and not self.space_held and self.layer is not None

    def _update_cursor_shape(self) -> None:
        if self.space_held or self.tool == "pan":
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif self.tool in ("brush", "eraser"):
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        else:
            self.viewport().setCursor(Qt.CursorShape.PointingHandCursor if self.tool in ("fill", "wand")
                                      else Qt.CursorShape.CrossCursor)

    # -- painting (called by the view box; tests may call them directly) -----------------
    @staticmethod
    def _pixel(point: QPointF) -> tuple[float, float]:
        """View coordinates → pixel-centre coordinates (x = column, y = row)."""
        return point.x() - 0.5, point.y() - 0.5

    def press(self, point: QPointF) -> None:
        layer = self.layer
        if layer is None:
            return
        self._press_point = point
        self._last_point = point
        if self.tool in ("brush", "eraser"):
            layer.begin_stroke(self.tool)
            x, y = self._pixel(point)
            layer.paint_line(x, y, x, y, self.brush_size / 2, 1 if self.tool == "brush" else 0)
        elif self.tool == "rectangle":
            self.rubber_band.setRect(QRectF(point, point))
            self.rubber_band.setVisible(True)

    def drag_to(self, point: QPointF) -> None:
        layer = self.layer
        if layer is None or self._press_point is None:
            return
        if self.tool in ("brush", "eraser") and layer.in_stroke:
            x0, y0 = self._pixel(self._last_point)
            x1, y1 = self._pixel(point)
            layer.paint_line(x0, y0, x1, y1, self.brush_size / 2, 1 if self.tool == "brush" else 0)
        elif self.tool == "rectangle":
            self.rubber_band.setRect(QRectF(self._press_point, point).normalized())
        self._last_point = point
        self._place_cursor(point)

    def release(self, point: QPointF) -> None:
        layer = self.layer
        if layer is None or self._press_point is None:
            return
        if self.tool in ("brush", "eraser"):
            layer.end_stroke()
        elif self.tool == "rectangle":
            self.rubber_band.setVisible(False)
            # Corners are the pixels under the press and the release, both included.
            layer.fill_rectangle(np.floor(self._press_point.x()), np.floor(self._press_point.y()),
                                 np.floor(point.x()), np.floor(point.y()))
        self._press_point = None
        self.mask_edited.emit()

    def click(self, point: QPointF) -> None:
        """A click without a drag: a single dab, a flood fill, or a magic-wand selection."""
        layer = self.layer
        if layer is None:
            return
        x, y = self._pixel(point)
        if self.tool == "fill":
            if layer.data.size > WAND_BACKGROUND_PIXELS:  # the same flood fill, in a worker
                row, column = int(round(y)), int(round(x))
                height, width = layer.data.shape
                if 0 <= row < height and 0 <= column < width and not layer.data[row, column]:
                    self._select_later(layer, layer.data.copy(), (row, column), 0.0, "fill")
                return
            layer.fill(x, y, 1)
        elif self.tool == "wand":
            # A large image's selection comes later, from a worker (and says mask_edited then).
            if self.select_similar(int(np.floor(point.y())), int(np.floor(point.x()))) in (None, "pending"):
                return
        elif self.tool in ("brush", "eraser"):
            layer.paint_line(x, y, x, y, self.brush_size / 2, 1 if self.tool == "brush" else 0)
        else:
            return
        self.mask_edited.emit()

    def select_similar(self, row: int, column: int):
        """Magic wand: add the connected pixels of colour within :attr:`wand_tolerance` of
        (row, column) to the active layer, as one undo step. None when the point is outside
        (or a selection is still being computed); "pending" when an image larger than
        :data:`WAND_BACKGROUND_PIXELS` is selected in a worker — the layer changes when it ends."""
        from advexplorer.core.stain import magic_wand

        layer, image = self.layer, self.image  # uint8 or [0, 1] float: the wand takes either
        if layer is None or image is None:
            return None
        height, width = image.shape[:2]
        if not (0 <= row < height and 0 <= column < width):
            return None
        if height * width <= WAND_BACKGROUND_PIXELS:
            region = magic_wand(image, (row, column), self.wand_tolerance)
            return layer.set_data(layer.data.astype(bool) | region, label="wand")
        return self._select_later(layer, image, (row, column), self.wand_tolerance, "wand")

    def _select_later(self, layer, pixels: np.ndarray, seed: tuple[int, int], tolerance: float, label: str):
        """A large image's wand selection or flood fill, in a worker: the 4-connected region of
        ``pixels`` (the image, or the mask itself with tolerance 0 for a fill) around ``seed``
        is added to ``layer`` when it ends. "pending", or None if one is still being computed."""
        from advexplorer.core.stain import magic_wand
        from advexplorer.gui.worker import TaskRunner, call_task

        if self._wand_tasks is None:
            self._wand_tasks = TaskRunner(self)
            self._wand_tasks.finished_run.connect(self._wand_ready)
        if self._wand_tasks.running:
            return None  # one selection at a time: the click before this one is still counting
        self._wand_target = (layer, self.image, label)
        self._wand_tasks.start(call_task, magic_wand, pixels, seed, tolerance)
        return "pending"

    def _wand_ready(self, region: np.ndarray) -> None:
        """A worker's region: added to the layer it was clicked on, if that image is still shown."""
        layer, image, label = self._wand_target
        self._wand_target = (None, None, None)
        if layer is None or image is not self.image or layer.data.shape != region.shape:
            return  # another image meanwhile: the selection belongs to none on screen
        layer.set_data(layer.data.astype(bool) | region, label=label)
        self.mask_edited.emit()

    # -- cursor ------------------------------------------------------------------------
    def _hover(self, scene_pos) -> None:
        if self.image is None:
            return
        point = self.view.mapSceneToView(scene_pos)
        self._last_point = point if self._press_point is None else self._last_point
        self._place_cursor(point)
        col, row = int(np.floor(point.x())), int(np.floor(point.y()))
        height, width = self.image.shape[:2]
        if 0 <= row < height and 0 <= col < width:
            value = self.image[row, col]
            value_text = ", ".join(f"{v:.3g}" for v in np.ravel(value))
            mask_text = ""
            if self.masks is not None:
                mask_text = f" · mask {int(self.masks.attack.data[row, col])}" \
                            f" · diagnostic {int(self.masks.diagnostic.data[row, col])}"
            self.cursor_moved.emit(f"x={col} y={row} · value ({value_text}){mask_text}")
        else:
            self.cursor_moved.emit("")

    def _place_cursor(self, point: QPointF) -> None:
        visible = self.tool in ("brush", "eraser") and not self.space_held and self.image is not None
        self.cursor_item.setVisible(visible)
        if visible:
            radius = self.brush_size / 2
            self.cursor_item.setRect(point.x() - radius, point.y() - radius, 2 * radius, 2 * radius)

    # -- keys: Space held = pan --------------------------------------------------------
    def keyPressEvent(self, event):  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.space_held = True
            self.cursor_item.setVisible(False)
            self._update_cursor_shape()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event):  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.space_held = False
            self._update_cursor_shape()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event):  # noqa: N802
        self.cursor_item.setVisible(False)
        super().leaveEvent(event)


class ModelFrame(QObject):
    """The part of the image the model sees, drawn as a dashed frame over the canvas.

    Read-only it shows the model card's rule (the whole image stretched, or its centre crop).
    Made *movable* (:meth:`set_movable`) it is the crop the user chooses: drag inside it to move
    it, drag its corner handle to resize it (the model's aspect ratio is kept). Coordinates are
    image pixels; ``changed((x, y, w, h))`` after each move or resize.
    """

    changed = Signal(tuple)

    def __init__(self, canvas: MaskCanvas):
        super().__init__(canvas)
        self.canvas = canvas
        pen = pg.mkPen((255, 255, 255), width=2, style=Qt.PenStyle.DashLine, cosmetic=True)
        self.roi = pg.ROI([0, 0], [1, 1], pen=pen, hoverPen=pg.mkPen((255, 230, 0), width=2, cosmetic=True),
                          movable=False, rotatable=False, resizable=False, removable=False,
                          aspectLocked=True, snapSize=1.0, translateSnap=True, scaleSnap=True)
        self.roi.setZValue(12)
        self.handle = self.roi.addScaleHandle([1, 1], [0, 0], lockAspect=True)
        # Inside the frame's top-left corner: above it, the caption of a frame at the image's
        # top edge would be cut off.
        self.label = pg.TextItem("", color=(255, 255, 255), fill=pg.mkBrush(0, 0, 0, 150), anchor=(0, 0))
        self.label.setZValue(12)
        for item in (self.roi, self.label):
            item.setVisible(False)
            canvas.view.addItem(item, ignoreBounds=True)
        self.roi.sigRegionChangeFinished.connect(self._finished)
        self.roi.sigRegionChanged.connect(self._place_label)
        self.set_movable(False)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the frame in image pixels."""
        x, y = self.roi.pos()
        w, h = self.roi.size()
        return int(round(x)), int(round(y)), int(round(w)), int(round(h))

    @property
    def movable(self) -> bool:
        return bool(self.roi.translatable)

    def show_box(self, box: tuple[int, int, int, int], text: str) -> None:
        """Draw the frame at ``box`` (x, y, w, h) with a caption above it."""
        image = self.canvas.image
        if image is not None:
            height, width = image.shape[:2]
            self.roi.maxBounds = QRectF(0, 0, width, height)  # the frame never leaves the image
        x, y, w, h = box
        self.roi.setPos((x, y), update=False, finish=False)
        self.roi.setSize((w, h), update=True, finish=False)
        self.label.setText(text)
        self._place_label()
        self.roi.setVisible(True)
        self.label.setVisible(True)

    def hide(self) -> None:
        self.roi.setVisible(False)
        self.label.setVisible(False)

    def is_visible(self) -> bool:
        return self.roi.isVisible()

    def set_movable(self, movable: bool) -> None:
        """Movable: drags inside the frame move it (instead of painting) and the corner resizes it."""
        self.roi.translatable = bool(movable)
        self.roi.resizable = bool(movable)
        self.handle.setVisible(bool(movable))

    def set_caption(self, text: str) -> None:
        self.label.setText(text)

    def _place_label(self, *_args) -> None:
        x, y = self.roi.pos()
        self.label.setPos(x, y)

    def _finished(self, *_args) -> None:
        if self.roi.isVisible():
            self.changed.emit(self.box)
