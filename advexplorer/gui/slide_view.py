"""The slide view: a whole-slide image's overview, zoom across pyramid levels, and a region
picker that cuts a model-sized tile.

Everything is drawn in **level-0 coordinates**: the overview (a coarse level) is stretched
over the slide's full extent, and when the user zooms in, the visible part is read again
from the finest level that gives about one slide pixel per screen pixel and laid over it.
The picker is a square of the model's input size at the chosen level (so its level-0 size is
``tile × downsample``); *Cut tile* reads exactly that region and emits
:attr:`SlideView.region_picked` with the :class:`~advexplorer.io.slides.Region` and its pixels.

Slide reading never happens on the GUI thread: every read (open + overview, detail, cut) is a
task on a :class:`~advexplorer.gui.worker.TaskRunner`; a request made while one is running
replaces any earlier waiting one, so dragging and zooming never queue up stale reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget)

from advexplorer.gui.worker import TaskRunner, call_task
from advexplorer.io.slides import Region, Slide

#: The longest side, in pixels, of an overview or of a detail read for the visible area.
OVERVIEW_SIDE = 1024
DETAIL_SIDE = 1536


def _open(path: str, overview_side: int = OVERVIEW_SIDE) -> dict:
    """(worker thread) Open a slide and read its overview."""
    with Slide(path) as slide:
        level, overview = slide.thumbnail(overview_side)
        return {"path": str(slide.path), "levels": slide.level_dimensions,
                "downsamples": slide.level_downsamples, "mpp": [slide.mpp(i) for i in range(slide.level_count)],
                "overview_level": level, "overview": overview}


def detail_level(downsamples, visible_width: float, visible_height: float, side: int = DETAIL_SIDE) -> int:
    """The finest level at which the visible level-0 area is at most ``side`` pixels a side."""
    for level, downsample in enumerate(downsamples):
        if max(visible_width, visible_height) / downsample <= side:
            return level
    return len(downsamples) - 1


def _read(path: str, level: int, box: tuple[int, int, int, int], with_region: bool) -> dict:
    """(worker thread) Read a rectangle at a level: a detail for the view, or the picked tile."""
    from advexplorer.io.slides import _to_uint8

    with Slide(path) as slide:
        if with_region:
            region, pixels = slide.region(level, *box)
            return {"region": region, "pixels": pixels, "level": level, "box": box}
        pixels = slide.read_level_region(level, *box)
        return {"pixels": _to_uint8(pixels), "level": level, "box": box}


class _Reader:
    """One TaskRunner with at most one waiting request (the newest replaces older ones)."""

    def __init__(self, parent, on_result, on_error):
        self.runner = TaskRunner(parent)
        self.runner.finished_run.connect(on_result)
        self.runner.failed.connect(lambda failure: on_error(failure.message if hasattr(failure, "message")
                                                            else str(failure)))
        self.runner.stopped.connect(self._next)
        self.waiting = None

    def request(self, function, *args) -> None:
        self.waiting = (function, args)
        if not self.runner.running:
            self._next()

    def _next(self) -> None:
        if self.waiting is None or self.runner.running:
            return
        function, args = self.waiting
        self.waiting = None
        self.runner.start(call_task, function, *args)

    @property
    def busy(self) -> bool:
        return self.runner.running or self.waiting is not None


class SlideView(QWidget):
    """Overview + zoom + region picker for one slide.

    Signals: ``opened(str)`` (the slide's path, once the overview is shown),
    ``region_picked(object, object)`` (:class:`Region`, H×W×C raw pixels), ``failed(str)``
    (a one-line message for the window's dialog), ``status(str)``.
    """

    opened = Signal(str)
    region_picked = Signal(object, object)
    failed = Signal(str)
    status = Signal(str)

    def __init__(self, parent=None, tile_size: int = 224, overview_side: int = OVERVIEW_SIDE):
        super().__init__(parent)
        self.tile_size = int(tile_size)
        self.overview_side = int(overview_side)
        self.info: dict | None = None
        self.plot = pg.GraphicsLayoutWidget()
        self.view = self.plot.addViewBox(lockAspect=True, invertY=True)
        self.overview_item = pg.ImageItem(axisOrder="row-major")
        self.detail_item = pg.ImageItem(axisOrder="row-major")
        self.detail_item.setZValue(1)
        self.view.addItem(self.overview_item)
        self.view.addItem(self.detail_item)
        self.picker = pg.RectROI((0, 0), (tile_size, tile_size), pen=pg.mkPen((0, 255, 120), width=2),
                                 movable=True, resizable=False, rotatable=False, removable=False)
        for handle in list(self.picker.getHandles()):
            self.picker.removeHandle(handle)
        self.picker.setZValue(5)
        self.picker.sigRegionChanged.connect(self._picker_moved)
        self.view.addItem(self.picker)
        self.level_box = QComboBox()
        self.level_box.setToolTip("Pyramid level of the tile (0 = full resolution)")
        self.level_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.level_box.currentIndexChanged.connect(self._level_changed)
        self.cut_button = QPushButton("Cut tile")
        self.cut_button.setToolTip("Read the region under the green square at the chosen level "
                                   "and add it to the image list")
        self.cut_button.clicked.connect(self.cut_tile)
        self.cut_button.setEnabled(False)
        self.info_label = QLabel("No slide open")
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Tile level"))
        controls.addWidget(self.level_box)
        controls.addWidget(self.cut_button)
        controls.addWidget(self.info_label, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.plot, 1)
        layout.addLayout(controls)
        self._loader = _Reader(self, self._loaded, self._failed)
        self._detail = _Reader(self, self._detail_loaded, self._failed)
        self._cutter = _Reader(self, self._cut_done, self._failed)
        self._detail_timer = QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(120)
        self._detail_timer.timeout.connect(self._request_detail)
        self.view.sigRangeChanged.connect(lambda *_: self._detail_timer.start())

    # -- opening ---------------------------------------------------------------------
    def open_slide(self, path: str | Path) -> None:
        """Open ``path`` off the GUI thread; ``opened`` or ``failed`` follows."""
        self.status.emit(f"Opening {Path(path).name}…")
        self._loader.request(_open, str(path), self.overview_side)

    def _loaded(self, info: dict) -> None:
        self.info = info
        width, height = info["levels"][0]
        self.overview_item.setImage(info["overview"], autoLevels=False, levels=(0, 255))
        self.overview_item.setRect(QRectF(0, 0, width, height))
        self.detail_item.clear()
        self.level_box.blockSignals(True)
        self.level_box.clear()
        for level, ((w, h), downsample, mpp) in enumerate(zip(info["levels"], info["downsamples"], info["mpp"])):
            text = f"{level}: {w}×{h} (÷{downsample:g}" + (f", {mpp:.3g} µm/px)" if mpp else ")")
            self.level_box.addItem(text)
        self.level_box.blockSignals(False)
        self.level_box.setCurrentIndex(0)
        self._level_changed(0)
        self.picker.setPos((max(0, width / 2 - self.tile_size / 2), max(0, height / 2 - self.tile_size / 2)))
        self.view.autoRange(padding=0.02)
        self.cut_button.setEnabled(True)
        self.opened.emit(info["path"])
        self.status.emit(f"{Path(info['path']).name}: {width}×{height}, {len(info['levels'])} level(s)")

    def _failed(self, message: str) -> None:
        self.status.emit(message)
        self.failed.emit(message)

    # -- the picker ------------------------------------------------------------------
    @property
    def level(self) -> int:
        return max(0, self.level_box.currentIndex())

    def _level_changed(self, _index: int) -> None:
        if self.info is None:
            return
        side = self.tile_size * self.info["downsamples"][self.level]
        self.picker.setSize((side, side))
        self._picker_moved()

    def picked_box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the picker in the chosen level's pixels, kept inside the level."""
        level = self.level
        downsample = self.info["downsamples"][level]
        width, height = self.info["levels"][level]
        x0, y0 = self.picker.pos()
        w = min(self.tile_size, width)
        h = min(self.tile_size, height)
        x = int(round(min(max(0.0, x0 / downsample), width - w)))
        y = int(round(min(max(0.0, y0 / downsample), height - h)))
        return x, y, w, h

    def set_picked_box(self, level: int, x: int, y: int) -> None:
        """Place the picker at level-``level`` pixel (x, y) (tests, and typing a position)."""
        self.level_box.setCurrentIndex(level)
        downsample = self.info["downsamples"][level]
        self.picker.setPos((x * downsample, y * downsample))

    def _picker_moved(self, *_args) -> None:
        if self.info is None:
            return
        x, y, w, h = self.picked_box()
        mpp = self.info["mpp"][self.level]
        size = f", {w * mpp:.0f}×{h * mpp:.0f} µm" if mpp else ""
        self.info_label.setText(f"level {self.level}: {x},{y} {w}×{h}{size}")

    def cut_tile(self) -> None:
        """Read the picked region at the chosen level (off the GUI thread); ``region_picked`` follows."""
        if self.info is None:
            return
        self.status.emit("Cutting tile…")
        self._cutter.request(_read, self.info["path"], self.level, self.picked_box(), True)

    def _cut_done(self, result: dict) -> None:
        region: Region = result["region"]
        self.status.emit(f"Cut {region.text()}")
        self.region_picked.emit(region, result["pixels"])

    # -- zoom across levels ----------------------------------------------------------
    def _request_detail(self) -> None:
        if self.info is None:
            return
        (left, right), (top, bottom) = self.view.viewRange()
        width, height = self.info["levels"][0]
        left, top = max(0.0, left), max(0.0, top)
        right, bottom = min(float(width), right), min(float(height), bottom)
        if right <= left or bottom <= top:
            return
        level = detail_level(self.info["downsamples"], right - left, bottom - top)
        if level >= self.info["overview_level"]:
            self.detail_item.clear()  # the overview is already this sharp
            return
        downsample = self.info["downsamples"][level]
        level_width, level_height = self.info["levels"][level]
        x, y = int(left / downsample), int(top / downsample)
        w = max(1, min(level_width - x, int(np.ceil((right - left) / downsample)) + 1))
        h = max(1, min(level_height - y, int(np.ceil((bottom - top) / downsample)) + 1))
        self._detail.request(_read, self.info["path"], level, (x, y, w, h), False)

    def _detail_loaded(self, result: dict) -> None:
        level, (x, y, w, h) = result["level"], result["box"]
        downsample = self.info["downsamples"][level]
        self.detail_item.setImage(result["pixels"], autoLevels=False, levels=(0, 255))
        self.detail_item.setRect(QRectF(x * downsample, y * downsample, w * downsample, h * downsample))
        self.status.emit(f"showing level {level} ({w}×{h} px)")

    @property
    def busy(self) -> bool:
        """Whether a slide read is running or waiting."""
        return self._loader.busy or self._detail.busy or self._cutter.busy

    def stop(self, timeout_ms: int = 5000) -> None:
        """Stop all reads and wait for their threads (closing the window)."""
        for reader in (self._loader, self._detail, self._cutter):
            reader.waiting = None
            reader.runner.stop_and_wait(timeout_ms)
