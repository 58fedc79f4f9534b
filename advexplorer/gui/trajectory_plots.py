"""The live trajectory plots of a run: confidence of the tracked classes, loss and margin per step.

Moved out of :mod:`advexplorer.gui.views` (which keeps the image strip, the live views, the
prediction table and the comparison); it draws into preallocated buffers, so a redraw costs
the same at step 1 and step 1000.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from advexplorer.gui.views import LegendLabel, paints_opaquely
from advexplorer.session.state import RunSummary

PALETTE = ["#56B4E9", "#E69F00", "#009E73", "#F0E442", "#CC79A7", "#D55E00", "#0072B2", "#999999"]
AXIS_WIDTH = 46  # px for the y tick labels of the trajectory plots ("-0.25", "12.5")


class TrajectoryPlots(QWidget):
    """Confidence of the tracked classes, loss, and margin, per step, as steps arrive."""

    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False)
        # One graphics view for the three plots: each view costs a paint pass per frame. No
        # grid: grid lines belong to the axes, which then repaint whenever a curve moves
        # (measured ~25 % of a frame).
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#1e1f22")
        paints_opaquely(self.graphics)
        self.graphics.ci.setContentsMargins(0, 0, 0, 0)
        self.confidence = self.graphics.addPlot(row=0, col=0, colspan=2)
        self.loss = self.graphics.addPlot(row=1, col=0)
        self.margin = self.graphics.addPlot(row=1, col=1)
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        self.confidence.setLabel("bottom", "step")
        self.confidence.setLabel("left", "probability")
        self.confidence.setYRange(0, 1, padding=0.02)
        # The legend is the confidence plot's title line, above the curves rather than on them.
        self.legend = LegendLabel("Confidence per class")
        self.legend.setContentsMargins(6, 0, 6, 0)
        self.loss.setTitle("Loss", size="9pt", color="#d0d0d0")
        self.loss.setLabel("bottom", "step")
        self.margin.setTitle("Margin p(ref) − max other", size="9pt", color="#d0d0d0")
        self.margin.setLabel("bottom", "step")
        self.margin.addItem(pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen("#777", style=Qt.PenStyle.DashLine)))
        # Bare PlotCurveItems: PlotDataItem's extra layer costs more than the drawing here.
        self.loss_curve = pg.PlotCurveItem(pen=pg.mkPen("#E69F00", width=2))
        self.margin_curve = pg.PlotCurveItem(pen=pg.mkPen("#56B4E9", width=2))
        self.loss.addItem(self.loss_curve)
        self.margin.addItem(self.margin_curve)
        for plot in (self.confidence, self.loss, self.margin):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            # A fixed label column: tick labels that change width would re-lay out the plot
            # (and re-generate its other axis) whenever the range changes.
            plot.getAxis("left").setWidth(AXIS_WIDTH)
        self.graphics.setMinimumHeight(240)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.legend)
        layout.addWidget(self.graphics)
        self.classes: tuple[str, ...] | None = None
        self.curves: dict[int, pg.PlotCurveItem] = {}
        self.count = 0
        self.steps_x = np.zeros(0)
        self.probabilities = np.zeros((0, 0), dtype=np.float32)
        self.losses = np.zeros(0, dtype=np.float32)
        self.margins = np.zeros(0, dtype=np.float32)
        self.reference: int | None = None
        self.target: int | None = None
        self.label: int | None = None
        self._y_ranges: dict[str, tuple[float, float]] = {}
        for plot in (self.loss, self.margin):
            plot.enableAutoRange(x=False, y=False)

    def start(self, classes, capacity: int, label: int | None = None, target: int | None = None) -> None:
        """A new run with room for ``capacity`` steps (buffers are preallocated).

        The curves (and their legend entries) of the previous run are reused when the
        classes, label and target are the same, and the x range is kept when the
        capacity is: re-creating them costs more than a whole short run's drawing.
        """
        classes = tuple(classes)
        capacity = max(int(capacity), 1)
        same_curves = (classes, label, target) == (self.classes, self.label, self.target)
        self.classes = classes
        if capacity != len(self.steps_x):
            self.steps_x = np.arange(capacity, dtype=np.float64)
            for plot in (self.confidence, self.loss, self.margin):
                plot.setXRange(0, max(capacity - 1, 1), padding=0.02)
        self.probabilities = np.zeros((capacity, max(len(self.classes), 1)), dtype=np.float32)
        self.losses = np.zeros(capacity, dtype=np.float32)
        self.margins = np.zeros(capacity, dtype=np.float32)
        self.count = 0
        self.label, self.target = label, target
        self.reference = label
        self._y_ranges: dict[str, tuple[float, float]] = {}
        if same_curves:
            for curve in self.curves.values():
                curve.setData([], [])
        else:
            for curve in self.curves.values():
                self.confidence.removeItem(curve)
            self.legend.set_entries([])
            self.curves = {}
        self.confidence.enableAutoRange(x=False, y=False)
        self.loss_curve.setData([], [])
        self.margin_curve.setData([], [])
        for index in (label, target):
            if index is not None:
                self._track(index)

    def _track(self, index: int) -> None:
        if index in self.curves or not 0 <= index < len(self.classes):
            return
        colour = PALETTE[len(self.curves) % len(PALETTE)]
        name = self.classes[index]
        if index == self.target:
            name += " (target)"
        elif index == self.label:
            name += " (true)"
        width = 3 if index in (self.label, self.target) else 2
        curve = pg.PlotCurveItem(pen=pg.mkPen(colour, width=width))
        self.confidence.addItem(curve)
        self.curves[index] = curve
        self.legend.set_entries([*self.legend.entries, (name, colour, width == 3)])

    def add(self, probabilities: np.ndarray, loss: float) -> None:
        """Append one step (cheap; the curves are redrawn by :meth:`redraw`)."""
        self.add_rows(np.asarray(probabilities, dtype=np.float32)[None], np.array([loss], np.float32))

    def add_rows(self, probabilities: np.ndarray, losses: np.ndarray) -> None:
        """Append a batch of steps: probabilities (n×K) and losses (n,)."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        n = len(probabilities)
        if n == 0:
            return
        while self.count + n > len(self.losses):  # more steps than planned (should not happen)
            self.start_grow()
        rows = slice(self.count, self.count + n)
        k = probabilities.shape[1]
        self.probabilities[rows, :k] = probabilities
        self.losses[rows] = losses
        if self.reference is None:
            self.reference = int(np.argmax(probabilities[0]))
        reference = self.target if self.target is not None else self.reference
        others = probabilities.copy()
        others[:, reference] = -np.inf
        self.margins[rows] = probabilities[:, reference] - (others.max(axis=1) if k > 1 else 0.0)
        if self.count == 0:  # the classes that matter: top 3 at the start, and any new leader
            for index in np.argsort(probabilities[0])[::-1][:3]:
                self._track(int(index))
        for index in np.unique(np.argmax(probabilities, axis=1)):
            self._track(int(index))
        self.count += n

    def start_grow(self) -> None:
        extra = max(len(self.losses), 1)
        self.steps_x = np.arange(len(self.steps_x) + extra, dtype=np.float64)
        self.probabilities = np.vstack([self.probabilities, np.zeros_like(self.probabilities[:extra])])
        self.losses = np.concatenate([self.losses, np.zeros(extra, np.float32)])
        self.margins = np.concatenate([self.margins, np.zeros(extra, np.float32)])

    def redraw(self) -> None:
        n = self.count
        x = self.steps_x[:n]
        for index, curve in self.curves.items():
            curve.setData(x, self.probabilities[:n, index], skipFiniteCheck=True)
        self.loss_curve.setData(x, self.losses[:n], skipFiniteCheck=True)
        self.margin_curve.setData(x, self.margins[:n], skipFiniteCheck=True)
        if n:
            self._fit_y(self.loss, "loss", self.losses[:n])
            self._fit_y(self.margin, "margin", self.margins[:n])

    def _fit_y(self, plot, key: str, values: np.ndarray) -> None:
        """Grow the y range only when the data leave it, and then by at least its own width:
        every change re-generates the axis (and, as its labels change width, the plot's
        layout), which costs more than the curve. Growing geometrically, a loss that climbs
        steadily over a run changes the range a handful of times instead of at every frame."""
        low, high = float(values.min()), float(values.max())
        current = self._y_ranges.get(key)
        if current is not None and current[0] <= low and high <= current[1]:
            return
        if current is None:
            span = max(high - low, abs(high) * 0.05, 1e-3)
            new = (low - 0.25 * span, high + 0.25 * span)
        else:
            width = current[1] - current[0]
            new = (min(current[0], low - width) if low < current[0] else current[0],
                   max(current[1], high + width) if high > current[1] else current[1])
        self._y_ranges[key] = new
        plot.setYRange(*new, padding=0)

    def show_summary(self, summary: RunSummary) -> None:
        trajectory = summary.probability_trajectory
        self.start(summary.classes, len(trajectory), summary.label, summary.target)
        self.add_rows(trajectory, summary.loss_trajectory)
        self.redraw()
