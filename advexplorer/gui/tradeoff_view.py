"""The trade-off view of the Train panel: every model the user evaluated, on two charts.

* left, **clean vs robust accuracy** at the training budget, both with their 95 % Wilson
  intervals: the original, each trained twin, and each defended variant — a defence is
  drawn twice, as the naive attack sees it (hollow triangle) and as the adaptive attack
  (BPDA, or EOT for a random defence) sees it (filled square), joined by a dotted arrow, so
  a defence that only hides the gradient is a long drop;
* right, **robustness curves**: held-out accuracy against ε of each of them on one chart
  (solid: the bare model; dashed: naive attack through the defence; dotted: adaptive),
  with interval bars.

Below, a row to choose a defence and compare it (the panel runs the measurement), and a
sentence per model saying what the comparison means. Plain pyqtgraph items; the view holds
no torch objects (curves arrive as :class:`~advexplorer.core.training.RobustnessCurve`, read
through their attributes only).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSplitter,
                               QVBoxLayout, QWidget)

from advexplorer.config import DEFENCE_KINDS, over_255, parse_defence
from advexplorer.errors import UserError

#: Model colours in the order models appear (the original first, then the twins).
PALETTE = ("#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
#: Line style per kind of curve: the bare model, the naive attack, the adaptive attack.
STYLES = {"model": Qt.PenStyle.SolidLine, "naive": Qt.PenStyle.DashLine,
          "bpda": Qt.PenStyle.DotLine, "eot": Qt.PenStyle.DotLine}
SYMBOLS = {"model": "o", "naive": "t", "bpda": "s", "eot": "s"}
#: A defence's parameter when the user first picks it (a common setting from the papers).
DEFAULT_VALUES = {"blur": "1.0", "jpeg": "75", "bits": "3", "median": "3", "noise": "0.05"}


def model_of(name: str) -> str:
    """'twin + jpeg:75 (BPDA)' → 'twin': the model a defended variant belongs to."""
    return name.split(" + ")[0]


def _interval_text(accuracy) -> str:
    low, high = accuracy.interval
    return f"{accuracy.value:.0%} [{low:.0%}, {high:.0%}]"


def defence_sentence(naive, adaptive, eps: float, bare=None) -> str:
    """What one model's naive and adaptive curves at ``eps`` mean together (one sentence);
    with the bare model's curve, also whether what is left beats no defence at all."""
    model = model_of(naive.name)
    mode = adaptive.kind.upper()
    a, b = naive.at(eps), adaptive.at(eps)
    said = (f"{model} + {naive.defence} at ε = {over_255(eps)}: naive {_interval_text(a)}, "
            f"{mode} {_interval_text(b)}")
    if bare is not None:
        said += f", no defence {_interval_text(bare.at(eps))}"
    hidden = a.interval[0] > b.interval[1]
    helps = bare is not None and b.interval[0] > bare.at(eps).interval[1]
    if hidden and bare is not None and not helps:
        return said + " — the defence only hides the gradient."
    if hidden:
        return said + (" — the naive attack overstates the defence (a hidden gradient); against "
                       f"{mode} it still helps." if helps else
                       " — the naive attack overstates the defence (a hidden gradient).")
    if helps:
        return said + f" — no sign of a hidden gradient, and it helps against {mode} too."
    return said + " — no sign of a hidden gradient (the naive and adaptive intervals overlap)."


class TradeoffView(QWidget):
    """Scatter and curves side by side, and the defence comparison row."""

    compare_requested = Signal(str)   # the defence, e.g. "jpeg:75"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: list[dict] = []
        self.curves: list = []
        self.eps: float | None = None          # the budget the scatter's robust accuracy is at
        self.colours: dict[str, str] = {}
        self.scatter_items: list = []
        self.curve_items: list = []
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.scatter_plot = pg.PlotWidget(background="#1e1f22", title="clean vs robust accuracy (95 % Wilson)")
        self.scatter_plot.setLabel("bottom", "clean accuracy")
        self.scatter_plot.setLabel("left", "robust accuracy")
        self.scatter_plot.setXRange(0, 1.02)
        self.scatter_plot.setYRange(0, 1.02)
        self.curves_plot = pg.PlotWidget(background="#1e1f22", title="robust accuracy vs ε (95 % Wilson)")
        self.curves_plot.setLabel("bottom", "ε (/255)")
        self.curves_plot.setLabel("left", "held-out accuracy")
        self.curves_plot.setYRange(0, 1.02)
        # Bottom left: curves start near the top at ε = 0, so that corner stays empty.
        self.curves_legend = self.curves_plot.addLegend(offset=(8, -8), labelTextSize="8pt",
                                                        brush=pg.mkBrush(30, 31, 34, 225))
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.scatter_plot)
        splitter.addWidget(self.curves_plot)
        splitter.setChildrenCollapsible(False)

        self.defence_combo = QComboBox()
        for key, info in DEFENCE_KINDS.items():
            self.defence_combo.addItem(info.label, key)
        self.defence_combo.setCurrentIndex(list(DEFENCE_KINDS).index("jpeg"))
        self.defence_combo.currentIndexChanged.connect(self._kind_changed)
        self.value_edit = QLineEdit(DEFAULT_VALUES["jpeg"])
        self.value_edit.setMaximumWidth(70)
        self.compare_button = QPushButton("Compare defence")
        self.compare_button.setToolTip("Put each model behind this defence and measure its robustness curve "
                                       "on the held-out images twice: with the naive attack (gradients through "
                                       "the defence as implemented) and with the adaptive one (BPDA, or EOT for "
                                       "a random defence)")
        self.compare_button.clicked.connect(self._compare)
        self.verdict = QLabel("Train a twin, or compare a defence, to fill these charts.")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Defence"))
        row.addWidget(self.defence_combo)
        self.value_label = QLabel()
        row.addWidget(self.value_label)
        row.addWidget(self.value_edit)
        row.addWidget(self.compare_button)
        row.addStretch(1)
        self._kind_changed()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter, stretch=1)
        layout.addLayout(row)
        layout.addWidget(self.verdict)

    def _kind_changed(self) -> None:
        kind = self.defence_combo.currentData()
        info = DEFENCE_KINDS[kind]
        self.value_label.setText(info.parameter)
        self.value_edit.setText(DEFAULT_VALUES[kind])
        self.defence_combo.setToolTip(info.citation)

    # ------------------------------------------------------------------ public API
    def defence_text(self) -> str:
        """The chosen defence as ``kind:value``; a bad value raises :class:`UserError`."""
        return parse_defence(f"{self.defence_combo.currentData()}:{self.value_edit.text().strip()}").text()

    def set_busy(self, busy: bool) -> None:
        self.compare_button.setEnabled(not busy)

    def add_point(self, name: str, clean, robust, kind: str = "model", original: bool = False) -> None:
        """One model on the scatter (``clean``/``robust``: objects with ``value`` and ``interval``)."""
        self.points.append({"name": name, "clean": clean.value, "robust": robust.value,
                            "clean_interval": clean.interval, "robust_interval": robust.interval,
                            "original": original, "kind": kind, "model": model_of(name)})
        self._draw_scatter()

    def add_curves(self, curves, eps: float | None = None) -> None:
        """Robustness curves (``core.training.RobustnessCurve``); defended variants also
        become scatter points at ``eps`` (default: the view's budget)."""
        eps = self.eps if eps is None else eps
        if self.eps is None:
            self.eps = eps
        for curve in curves:
            self.curves = [c for c in self.curves if c.name != curve.name] + [curve]
            if curve.kind != "model" and eps is not None:
                self.points = [p for p in self.points if p["name"] != curve.name]
                self.points.append({"name": curve.name, "clean": curve.at(0).value, "robust": curve.at(eps).value,
                                    "clean_interval": curve.at(0).interval, "robust_interval": curve.at(eps).interval,
                                    "original": False, "kind": curve.kind, "model": model_of(curve.name)})
        self._draw_scatter()
        self._draw_curves()
        self._say_defence(curves, eps)

    # ------------------------------------------------------------------ drawing
    def colour(self, model: str) -> str:
        if model not in self.colours:
            self.colours[model] = PALETTE[len(self.colours) % len(PALETTE)]
        return self.colours[model]

    def _clear(self, plot, items: list) -> None:
        for item in items:
            plot.removeItem(item)
        items.clear()

    def _add(self, plot, items: list, *new) -> None:
        for item in new:
            plot.addItem(item)
            items.append(item)

    def _draw_scatter(self) -> None:
        self._clear(self.scatter_plot, self.scatter_items)
        if self.eps is not None:
            self.scatter_plot.setTitle(f"clean vs robust accuracy at ε = {over_255(self.eps)} (95 % Wilson)")
        by_name = {p["name"]: p for p in self.points}
        for point in self.points:
            if point["kind"] in ("bpda", "eot"):  # the drop from the naive to the adaptive number
                naive = by_name.get(point["name"].rsplit(" (", 1)[0] + " (naive)")
                if naive is not None:
                    arrow = pg.PlotDataItem([naive["clean"], point["clean"]], [naive["robust"], point["robust"]],
                                            pen=pg.mkPen(self.colour(point["model"]), width=1.5,
                                                         style=Qt.PenStyle.DotLine))
                    self._add(self.scatter_plot, self.scatter_items, arrow)
        for point in self.points:
            colour = self.colour(point["model"])
            x, y = point["clean"], point["robust"]
            (xl, xh), (yl, yh) = point["clean_interval"], point["robust_interval"]
            bars = pg.ErrorBarItem(x=np.array([x]), y=np.array([y]), left=np.array([x - xl]),
                                   right=np.array([xh - x]), bottom=np.array([y - yl]), top=np.array([yh - y]),
                                   beam=0.01, pen=pg.mkPen(colour))
            hollow = point["kind"] == "naive"
            dot = pg.ScatterPlotItem([x], [y], size=11, symbol=SYMBOLS.get(point["kind"], "o"),
                                     brush=pg.mkBrush("#1e1f22" if hollow else colour), pen=pg.mkPen(colour, width=2))
            # Labels of points near the right edge go to their left, so they stay visible.
            label = pg.TextItem(point["name"], color=colour, anchor=(1.05, 1) if x > 0.6 else (-0.05, 1))
            label.setPos(x, y)
            self._add(self.scatter_plot, self.scatter_items, bars, dot, label)

    def _draw_curves(self) -> None:
        self._clear(self.curves_plot, self.curve_items)
        self.curves_legend.clear()
        count = len(self.curves)
        widest = max((max(c.eps) for c in self.curves), default=0) * 255
        for k, curve in enumerate(self.curves):
            colour = self.colour(model_of(curve.name))
            # Curves sit a little apart along ε, so equal values and their bars stay visible.
            shift = (k - (count - 1) / 2) * 0.008 * max(widest, 1)
            x = np.asarray(curve.eps, dtype=float) * 255 + shift
            values = np.asarray([a.value for a in curve.accuracy], dtype=float)
            line = pg.PlotDataItem(x, values, pen=pg.mkPen(colour, width=2, style=STYLES.get(curve.kind)),
                                   symbol=SYMBOLS.get(curve.kind, "o"), symbolSize=7, symbolPen=pg.mkPen(colour),
                                   symbolBrush=pg.mkBrush("#1e1f22" if curve.kind == "naive" else colour),
                                   name=curve.name)
            low = values - np.asarray([a.interval[0] for a in curve.accuracy])
            high = np.asarray([a.interval[1] for a in curve.accuracy]) - values
            bars = pg.ErrorBarItem(x=x, y=values, top=high, bottom=low, beam=0.08 * max(widest, 1) / 8,
                                   pen=pg.mkPen(colour, width=1))
            self._add(self.curves_plot, self.curve_items, bars, line)

    def _say_defence(self, curves, eps: float | None) -> None:
        by_model: dict[str, dict] = {}
        for curve in curves:
            if curve.kind != "model":
                by_model.setdefault(model_of(curve.name), {})[
                    "naive" if curve.kind == "naive" else "adaptive"] = curve
        bare = {c.name: c for c in self.curves if c.kind == "model"}
        sentences = [defence_sentence(pair["naive"], pair["adaptive"], eps, bare.get(model))
                     for model, pair in by_model.items()
                     if "naive" in pair and "adaptive" in pair and eps is not None]
        if sentences:
            self.verdict.setText("\n".join(sentences))
        elif self.curves and not any(c.kind != "model" for c in self.curves):
            self.verdict.setText(f"{len(self.curves)} model(s) measured. Compare a defence: each is put behind "
                                 "it and measured with the naive and the adaptive attack.")

    def _compare(self) -> None:
        try:
            text = self.defence_text()
        except UserError as error:
            self.verdict.setText(str(error))
            return
        self.compare_requested.emit(text)
