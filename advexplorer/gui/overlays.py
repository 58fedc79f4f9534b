"""Saliency (before/after) and perturbation overlays on the main canvas, with a legend.

:class:`CanvasOverlays` adds one image item per overlay to a :class:`~advexplorer.gui.canvas.MaskCanvas`'s
view, above the image and the masks, stretched over the image (maps are at the model's
input size; the canvas shows the file). :class:`OverlayLegend` lists every layer — attack
mask, diagnostic region, saliency before, saliency after, perturbation — with a colour
swatch and a visibility check box, and an opacity slider for the overlays.

Colours: saliency in *inferno* with low values transparent (so the tissue stays visible where
the model does not look); the perturbation in a diverging blue–white–red map, symmetric
about 0 (blue: the attack darkened the pixel, red: brightened it), scaled to its largest
absolute value, which the legend states.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QPixmap
from PySide6.QtWidgets import QCheckBox, QDockWidget, QGridLayout, QLabel, QMenu, QSlider, QWidget

from advexplorer.gui.canvas import LAYER_COLOURS
from advexplorer.gui.views import saliency_map

#: Overlay layers in drawing order, with their labels.
OVERLAYS = {"saliency_before": "Saliency before", "saliency_after": "Saliency after",
            "perturbation": "Perturbation"}
MASK_LAYERS = {"attack": "Attack mask", "diagnostic": "Diagnostic region"}


def saliency_lut() -> np.ndarray:
    """256×4 uint8: inferno, alpha rising with the value (0 fully transparent)."""
    lut = pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
    lut[:, 3] = np.clip(np.linspace(0, 1, 256) ** 0.7 * 255, 0, 255).astype(np.uint8)
    return lut


def perturbation_lut() -> np.ndarray:
    """256×4 uint8: blue (−) → transparent white (0) → red (+)."""
    t = np.linspace(-1, 1, 256)
    lut = np.zeros((256, 4), np.uint8)
    lut[:, 0] = np.where(t > 0, 255, (1 + t) * 255)
    lut[:, 1] = (1 - np.abs(t)) * 255
    lut[:, 2] = np.where(t < 0, 255, (1 - t) * 255)
    lut[:, 3] = np.clip(np.abs(t) * 1.5, 0, 1) * 255
    return lut


def _hw(array) -> np.ndarray:
    """A map as H×W float32: C×H×W or H×W×C are averaged over channels."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        channel_axis = 0 if array.shape[0] in (1, 3) and array.shape[2] not in (1, 3) else 2
        array = array.mean(axis=channel_axis)
    return np.ascontiguousarray(array)


class CanvasOverlays:
    """The saliency and perturbation overlays of one canvas (plain object; the legend binds to it)."""

    def __init__(self, canvas):
        self.canvas = canvas
        self.items: dict[str, pg.ImageItem] = {}
        self.opacity = 0.6
        self.perturbation_scale = 0.0
        self.perturbation_zero = False  # a run's perturbation shown, and all zero
        for z, name in enumerate(OVERLAYS):
            item = pg.ImageItem(axisOrder="row-major")
            # Above the masks (1, 2): a translucent mask would tint the map; the legend hides masks.
            item.setZValue(2.5 + z * 0.1)
            item.setVisible(False)
            canvas.view.addItem(item)
            self.items[name] = item

    def _image_rect(self, box) -> QRectF:
        if box is not None:
            top, left, height, width = box
            return QRectF(left, top, width, height)
        image = self.canvas.image
        height, width = (image.shape[:2] if image is not None else (1, 1))
        return QRectF(0, 0, width, height)

    def set_saliency(self, before, after, box=None) -> None:
        """Show saliency maps (model-size H×W, any scale) over the image; ``box`` = (top, left,
        h, w) of the image region the model saw (a centre crop), default the whole image."""
        maps = {"saliency_before": _hw(before), "saliency_after": _hw(after)}
        # One scale for both maps, so before and after compare by brightness. Its top is the
        # 99th percentile, not the maximum: gradient maps are spiky, and a scale set by a few
        # pixels would leave the rest of the map transparent on the canvas.
        top = max(float(np.percentile(np.abs(m), 99)) for m in maps.values()) or \
            max(float(np.abs(m).max()) for m in maps.values()) or 1.0
        for name, values in maps.items():
            item = self.items[name]
            item.setImage(np.minimum(np.abs(values) / top, 1.0), autoLevels=False, levels=(0.0, 1.0))
            item.setLookupTable(saliency_lut())
            item.setRect(self._image_rect(box))
        self.show_only("saliency_after")

    def set_perturbation(self, perturbation, box=None) -> None:
        """Show a perturbation (C×H×W or H×W×C, pixel units) as a signed, channel-averaged map."""
        values = _hw(perturbation)
        self.perturbation_scale = float(np.abs(values).max())  # 0: the attack changed nothing
        self.perturbation_zero = self.perturbation_scale == 0.0
        levels = self.perturbation_scale or 1.0
        item = self.items["perturbation"]
        item.setImage(values, autoLevels=False, levels=(-levels, levels))
        item.setLookupTable(perturbation_lut())
        item.setRect(self._image_rect(box))

    def clear(self) -> None:
        """Remove every overlay (a new image was chosen)."""
        for item in self.items.values():
            item.clear()
            item.setVisible(False)
        self.perturbation_scale, self.perturbation_zero = 0.0, False  # the legend's scale line goes too

    def has(self, name: str) -> bool:
        return self.items[name].image is not None

    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide one layer: an overlay, or the canvas's ``attack`` / ``diagnostic`` mask."""
        if name in MASK_LAYERS:
            getattr(self.canvas, f"{name}_item").setVisible(visible)
            return
        item = self.items[name]
        item.setVisible(bool(visible) and item.image is not None)
        item.setOpacity(self.opacity)

    def is_visible(self, name: str) -> bool:
        if name in MASK_LAYERS:
            return getattr(self.canvas, f"{name}_item").isVisible()
        return self.items[name].isVisible()

    def show_only(self, name: str) -> None:
        """Show one overlay and hide the other overlays (the masks keep their state)."""
        for other in OVERLAYS:
            self.set_visible(other, other == name)

    def set_opacity(self, opacity: float) -> None:
        """Opacity of every overlay (0–1)."""
        self.opacity = float(min(1.0, max(0.0, opacity)))
        for item in self.items.values():
            item.setOpacity(self.opacity)


def _swatch(colour: tuple[int, int, int] | np.ndarray) -> QLabel:
    label = QLabel()
    pixmap = QPixmap(28, 12)
    if isinstance(colour, np.ndarray):  # a colour bar from a lookup table
        from PySide6.QtGui import QImage

        bar = np.ascontiguousarray(np.repeat(colour[None, ::9, :3], 12, axis=0))
        image = QImage(bar.data, bar.shape[1], bar.shape[0], bar.strides[0], QImage.Format.Format_RGB888)
        pixmap = QPixmap.fromImage(image.copy()).scaled(28, 12)
    else:
        pixmap.fill(QColor(*colour))
    label.setPixmap(pixmap)
    return label


class OverlayLegend(QWidget):
    """The layers with visibility check boxes and an overlay opacity slider.

    Signal: ``changed()`` after a toggle or an opacity change.
    """

    changed = Signal()

    def __init__(self, overlays: CanvasOverlays, parent=None):
        super().__init__(parent)
        self.overlays = overlays
        self.checks: dict[str, QCheckBox] = {}
        self.swatches: dict[str, QLabel] = {}
        self._attack_mode = getattr(getattr(overlays.canvas, "masks", None), "mode", "protect")
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        mode = getattr(getattr(overlays.canvas, "masks", None), "mode", "protect")
        layer_colours = self._layer_colours()
        self._shown_colours = (mode, layer_colours.get(mode), layer_colours["diagnostic"])
        colours = {"attack": layer_colours.get(mode, layer_colours["protect"]),
                   "diagnostic": layer_colours["diagnostic"],
                   "saliency_before": saliency_lut(), "saliency_after": saliency_lut(),
                   "perturbation": perturbation_lut()}
        for row, (name, label) in enumerate({**MASK_LAYERS, **OVERLAYS}.items()):
            check = QCheckBox(label)
            check.setChecked(overlays.is_visible(name))
            check.toggled.connect(lambda on, name=name: self._toggle(name, on))
            swatch = _swatch(colours[name])
            self.swatches[name] = swatch
            grid.addWidget(swatch, row, 0)
            grid.addWidget(check, row, 1)
            self.checks[name] = check
        self.scale_label = QLabel("")
        grid.addWidget(self.scale_label, len(self.checks), 0, 1, 2)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(round(overlays.opacity * 100)))
        self.opacity_slider.setToolTip("Opacity of the saliency and perturbation overlays")
        self.opacity_slider.valueChanged.connect(self._opacity)
        grid.addWidget(QLabel("Overlay opacity"), len(self.checks) + 1, 0, 1, 2)
        grid.addWidget(self.opacity_slider, len(self.checks) + 2, 0, 1, 2)
        self.scale_label.setWordWrap(True)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(len(self.checks) + 3, 1)  # keep the rows together at the top
        self.sync()

    def _layer_colours(self) -> dict:
        """The canvas's mask colours (Preferences → Overlay colours), else the defaults."""
        return getattr(self.overlays.canvas, "colours", None) or LAYER_COLOURS

    def sync(self) -> None:
        """Bring the boxes in line with what is shown (after new maps arrived or the mask's mode
        changed: the attack mask's swatch is cyan for protect, orange for allowed)."""
        mode = getattr(getattr(self.overlays.canvas, "masks", None), "mode", self._attack_mode)
        colours = self._layer_colours()
        if mode in colours and (mode, colours[mode], colours["diagnostic"]) != self._shown_colours:
            self._attack_mode = mode  # the mask's mode, or the Preferences' colours, changed
            self._shown_colours = (mode, colours[mode], colours["diagnostic"])
            self.swatches["attack"].setPixmap(_swatch(colours[mode]).pixmap())
            self.swatches["diagnostic"].setPixmap(_swatch(colours["diagnostic"]).pixmap())
        for name, check in self.checks.items():
            check.blockSignals(True)
            check.setChecked(self.overlays.is_visible(name))
            check.setEnabled(name in MASK_LAYERS or self.overlays.has(name))
            check.blockSignals(False)
        scale = self.overlays.perturbation_scale
        text = f"perturbation ±{scale * 255:.3g}/255 (blue −, red +)" if scale else ""
        if self.overlays.perturbation_zero and self.overlays.has("perturbation"):
            text = "perturbation: zero everywhere (the attack changed no pixel)"
        self.scale_label.setText(text)
        self.scale_label.setToolTip("Saliency: dark → bright = low → high, one scale for before and "
                                    "after (its top 1 % saturated). Perturbation: channel mean, "
                                    "blue = darkened, red = brightened.")

    def _toggle(self, name: str, on: bool) -> None:
        self.overlays.set_visible(name, on)
        self.changed.emit()

    def _opacity(self, value: int) -> None:
        self.overlays.set_opacity(value / 100)
        self.changed.emit()


#: What the View → Canvas overlay menu offers, in order ("none" hides every overlay).
OVERLAY_CHOICES = {"none": "None", **OVERLAYS}


def model_box(summary) -> tuple[int, int, int, int] | None:
    """(top, left, h, w) of the shown image that a run's model input came from, or None (whole image).

    A centre-cropping card sees only the middle of a non-square image, so its maps must be
    stretched over that part of the canvas, not over the whole image."""
    request = getattr(summary, "request", None)
    if request is None:
        return None
    from pathlib import Path

    from advexplorer.io.images import crop_box  # the engine is loaded: a run finished

    # A crop of the shown file (the model frame the user moved): the maps lie over that crop.
    # A tile cut from a slide is the shown PNG itself, so it needs no offset.
    region = (getattr(request.image, "provenance", None) or {}).get("region") or {}
    top = left = 0
    if region and Path(region["slide"]).resolve() == Path(summary.image_path).resolve():
        top, left = int(region["y"]), int(region["x"])
    width, height = request.image.file_size
    crop_top, crop_left, h, w = crop_box(int(height), int(width), request.model.card)
    return top + crop_top, left + crop_left, h, w


class OverlayController(QObject):
    """Draws each finished run's saliency or perturbation over the main canvas, with the
    Layers legend in a dock and View → Canvas overlay to choose what is shown.

    After a run the overlay the user last chose is drawn again (first time: the saliency
    after the attack, else the perturbation); "None" stays none. A different image shows
    its own last run's overlays, or none.
    """

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.overlays = CanvasOverlays(window.canvas)
        self.legend = OverlayLegend(self.overlays)
        self.legend.changed.connect(self._legend_changed)
        self.legend.setAutoFillBackground(True)  # a tabbed dock must not show its neighbour through
        self.choice = "auto"          # what the user asked to see; "auto" until they choose
        self.shown_run = None
        self._raised_once = False
        self.dock = QDockWidget("Layers", window)
        self.dock.setObjectName("layers_dock")
        self.dock.setWidget(self.legend)
        self.dock.setToolTip("The canvas's layers: masks and the last run's saliency or perturbation.")
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        # Under the run history (whose runs it draws); hidden until the first run has maps.
        window.splitDockWidget(window.history_dock, self.dock, Qt.Orientation.Vertical)
        self.dock.hide()
        self.dock_action = self.dock.toggleViewAction()
        self.dock_action.setText("Layers and overlays")
        self.dock_action.setShortcut("Ctrl+Shift+Y")
        self.dock_action.setStatusTip("Show the layer legend: mask visibility, overlay and its opacity.")
        window.addAction(self.dock_action)  # the shortcut works with the menu closed
        self.group = QActionGroup(window)
        self.choice_actions: dict[str, QAction] = {}
        self.menu = QMenu("Canvas overlay", window)
        for name, label in OVERLAY_CHOICES.items():
            action = QAction(label, window)
            action.setCheckable(True)
            action.setStatusTip(f"Draw {label.lower()} of the shown run over the image" if name != "none"
                                else "Draw no overlay over the image")
            action.triggered.connect(lambda _checked=False, name=name: self.choose(name))
            self.group.addAction(action)
            self.menu.addAction(action)
            self.choice_actions[name] = action
        window.session.runs_changed.connect(self._runs_changed)
        window.session.current_changed.connect(self._current_changed)
        window.runs_history.show_requested.connect(self.show_run)
        window.canvas.overlays_refreshed.connect(self.legend.sync)  # e.g. the mask's mode changed
        self._sync_menu()

    def add_to_menu(self, view_menu: QMenu) -> None:
        """View → Layers and overlays, and the Canvas overlay submenu."""
        view_menu.addSeparator()
        view_menu.addAction(self.dock_action)
        view_menu.addMenu(self.menu)

    # -- what to show ------------------------------------------------------------------
    def show_run(self, summary) -> None:
        """Put ``summary``'s maps on the canvas (if it is a run of the shown image)."""
        entry = self.window.session.current
        if summary is None or entry is None or summary not in entry.runs:
            return
        self.shown_run = summary
        self.overlays.clear()
        box = model_box(summary)
        explanation = summary.saliency
        before = saliency_map(getattr(explanation, "before", None))
        after = saliency_map(getattr(explanation, "after", None))
        if before is not None and after is not None:
            self.overlays.set_saliency(before, after, box)
        self.overlays.set_perturbation(summary.perturbation, box)
        self._apply_choice()
        if not self._raised_once:
            self._raised_once = True  # the first overlay of the session: show where its controls are
            self.dock.show()
            height = self.legend.sizeHint().height() + 30
            self.window.resizeDocks([self.dock], [height], Qt.Orientation.Vertical)

    def clear(self) -> None:
        self.shown_run = None
        self.overlays.clear()
        self.legend.sync()
        self._sync_menu()

    def choose(self, name: str) -> None:
        """Show one overlay ('saliency_before', 'saliency_after', 'perturbation') or 'none'."""
        self.choice = name
        self._apply_choice()

    def _apply_choice(self) -> None:
        name = self.choice
        if name == "auto":
            name = "saliency_after" if self.overlays.has("saliency_after") else "perturbation"
        if name != "none" and not self.overlays.has(name):
            name = "perturbation"  # e.g. saliency asked for, but this run has no maps
        self.overlays.show_only(name if name != "none" else "")
        self.legend.sync()
        self._sync_menu()

    def shown_overlay(self) -> str:
        """The overlay drawn now ('none' when none is)."""
        return next((name for name in OVERLAYS if self.overlays.is_visible(name)), "none")

    def _sync_menu(self) -> None:
        shown = self.shown_overlay()
        for name, action in self.choice_actions.items():
            action.setEnabled(name == "none" or self.overlays.has(name))
            action.setChecked(name == shown)

    # -- events ------------------------------------------------------------------------
    def _legend_changed(self) -> None:
        self.choice = self.shown_overlay()  # a box ticked in the legend is a choice too
        self._sync_menu()

    def _runs_changed(self, entry) -> None:
        if entry is self.window.session.current and entry.runs:
            self.show_run(entry.runs[-1])

    def _current_changed(self, entry) -> None:
        if entry is not None and entry.runs:
            self.show_run(entry.runs[-1])
        else:
            self.clear()
