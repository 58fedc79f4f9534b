"""The Cohort panel's results views: the live curves, the Images table, the Worst cases and
Defence tabs, and what they draw from a screen's progress and result.

Mixed into :class:`advexplorer.gui.cohort_panel.CohortPanel` (the form and the screen's
lifecycle live there). Importing this module imports neither torch nor
:mod:`advexplorer.commands`.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QScrollArea, QTableWidget,
                               QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from advexplorer.config import format_budget
from advexplorer.gui.controllers.cohort import defence_table_cells, defence_verdict
from advexplorer.gui.views import LegendLabel

FLIP_COLOUR, ROBUST_COLOUR, NOISE_COLOUR, NAIVE_COLOUR = "#e15759", "#4e79a7", "#9a9a9a", "#f28e2b"
#: The curves: key, legend name, colour. ``naive``: the naive attack through a defence,
#: screened beside an adaptive one (robust accuracy, or the share not flipped without labels).
CURVES = (("flip", "flip rate", FLIP_COLOUR), ("robust", "robust accuracy", ROBUST_COLOUR),
          ("noise", "noise flip rate", NOISE_COLOUR), ("naive", "robust accuracy, naive attack", NAIVE_COLOUR))
THUMBNAIL_PX = 112


def monotone_text(check, norm: str = "linf") -> str:
    """One line on the monotone shortcut: unchecked, or how many re-attacks disagreed."""
    if check is None:
        return ("Monotone shortcut: an image flipped at ε is counted as flipped at every larger ε "
                "without a new attack; not checked (set “check monotone” to re-attack N flipped images).")
    if not check.pairs_checked:
        return "Monotone check: no flipped image had a larger ε to re-attack."
    found = len(check.disagreements)
    text = (f"Monotone check: re-attacked {check.images_checked} flipped images at "
            f"{check.pairs_checked} larger ε — {found} disagreement{'' if found == 1 else 's'}")
    if found:
        examples = [f"{d['file']} flipped at {format_budget(d['flipped_at'], norm)}, not at "
                    f"{format_budget(d['not_flipped_at'], norm)}" for d in check.disagreements[:3]]
        text += " (" + "; ".join(examples) + (" …" if found > 3 else "") + ")"
    return text + "."


class PercentAxis(pg.AxisItem):
    """A 0–1 axis labelled in per cent (0 %, 20 %, …, 100 %), never SI-scaled."""

    def __init__(self, orientation: str = "left", **kwargs):
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph's name)
        return [f"{round(100 * v * scale, 6):g} %" for v in values]


class CohortResultsMixin:
    """The Cohort panel's results views, mixed into :class:`~advexplorer.gui.cohort_panel.CohortPanel`.

    ``_build_results()`` makes the curves (``plot``, ``curves``, ``bars``, ``legend``) and the
    tabs (``tabs``: the Images ``table``, the Worst cases buttons, the ``defence_page``);
    the rest draw a screen into them. They read the panel's ``job``, ``model``, ``rows``,
    ``rows_by_file``, ``eps``, ``naive_progress``, ``monotone`` label, ``_norm`` and
    ``request_image``.
    """

    def _build_results(self) -> None:
        """The curves with their error bars and legend, and the Images / Worst cases / Defence tabs."""
        self.plot = pg.PlotWidget(background="#1e1f22", axisItems={"left": PercentAxis("left")})
        self.plot.setLabel("left", "share of images")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.setMenuEnabled(False)
        self.plot.setMinimumHeight(120)
        # The legend sits above the plot, not on it, and lists only curves with data.
        self.legend = LegendLabel(empty_text="The curves appear here as images finish.")
        self.curves = {}
        self.bars = {}
        for key, _name, colour in CURVES:
            style = Qt.PenStyle.DashLine if key == "naive" else Qt.PenStyle.SolidLine
            curve = self.plot.plot([], [], pen=pg.mkPen(colour, width=2, style=style), symbol="o", symbolSize=8,
                                   symbolBrush=colour)
            curve.sigPointsClicked.connect(self._point_clicked)
            bars = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), bottom=np.zeros(0),
                                   beam=0.15, pen=pg.mkPen(colour))
            self.plot.addItem(bars)
            self.curves[key], self.bars[key] = curve, bars

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["image", "label", "clean prediction", "first flipping ε"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):  # the names and budgets are short: show them whole
            self.table.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.cellDoubleClicked.connect(self._row_activated)
        self.table.setToolTip("Double-click an image to attack it at the ε where it flipped.")

        self.worst_cases = QWidget()
        self.worst_layout = QHBoxLayout(self.worst_cases)
        self.worst_layout.setContentsMargins(4, 4, 4, 4)
        self.worst_layout.addStretch(1)
        self.worst_buttons: list[QToolButton] = []
        worst_scroll = QScrollArea()
        worst_scroll.setWidgetResizable(True)
        worst_scroll.setWidget(self.worst_cases)
        worst_page = QWidget()
        worst_column = QVBoxLayout(worst_page)
        worst_column.setContentsMargins(0, 4, 0, 0)
        worst_hint = QLabel("The images that flipped at the smallest ε, each as clean (left) | "
                            "adversarial (right). Click one to attack it at that ε.")
        worst_hint.setWordWrap(True)
        worst_column.addWidget(worst_hint)
        worst_column.addWidget(worst_scroll, 1)
        # Naive vs adaptive robust accuracy per ε, shown only after a defended screen.
        self.defence_page = QWidget()
        defence_column = QVBoxLayout(self.defence_page)
        defence_column.setContentsMargins(0, 4, 0, 0)
        self.defence_verdict = QLabel("")
        self.defence_verdict.setWordWrap(True)
        self.defence_table = QTableWidget(0, 2)
        self.defence_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.defence_table.verticalHeader().setVisible(False)
        defence_column.addWidget(self.defence_verdict)
        defence_column.addWidget(self.defence_table, 1)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Images")
        self.tabs.addTab(worst_page, "Worst cases")
        self.tabs.addTab(self.defence_page, "Defence")
        self.tabs.setTabVisible(2, False)

    @property
    def _x_scale(self) -> float:
        """Plot x in 8-bit levels (ε × 255) for L∞ budgets, in plain units for L2."""
        return 255.0 if self._norm == "linf" else 1.0

    def _reset_plot(self, eps) -> None:
        """Empty curves, no legend entries; x over the ε list's budgets, y 0–100 %."""
        self.plot.setLabel("bottom", "budget ε (×255)" if self._norm == "linf" else "budget ε (L2)")
        for key, curve in self.curves.items():
            curve.setData([], [])
            self.bars[key].setData(x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), bottom=np.zeros(0))
        self.legend.set_entries([])
        self._set_ranges(eps)

    def _set_ranges(self, eps) -> None:
        low, high = (min(eps), max(eps)) if eps else (0.0, 8 / 255)
        low, high = low * self._x_scale, high * self._x_scale
        if high <= low:
            high = low + 1.0
        self.plot.setXRange(low, high, padding=0.05)
        self.plot.setYRange(0.0, 1.0, padding=0.03)

    def _draw(self, progress) -> None:
        x = np.array([e * self._x_scale for e in progress.eps], dtype=float)
        series = {"flip": progress.flipped}
        if progress.n_labelled:
            series["robust"] = progress.robust
        if progress.noise_flipped is not None:
            series["noise"] = progress.noise_flipped
        naive = self.naive_progress
        if naive is not None and naive.n:  # robust accuracy, or the share not flipped without labels
            series["naive"] = (naive.robust if naive.n_labelled else
                               tuple(naive.n - k for k in naive.flipped))
        from advexplorer.core.screening import wilson_interval

        shown = []
        for key, name, colour in CURVES:
            curve, counts = self.curves[key], series.get(key)
            n = progress.n_labelled if key == "robust" else progress.n
            if key == "naive" and naive is not None:
                n = naive.n_labelled or naive.n
            name = self._curve_name(key, name, naive)
            if counts is None or n == 0:
                curve.setData([], [])
                self.bars[key].setData(x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), bottom=np.zeros(0))
                continue
            rate = np.array([k / n for k in counts])
            intervals = np.array([wilson_interval(int(k), n) for k in counts])
            curve.setData(x, rate)
            self.bars[key].setData(x=x, y=rate, top=intervals[:, 1] - rate, bottom=rate - intervals[:, 0])
            shown.append((name, colour))
        self.legend.set_entries(shown)
        self._set_ranges(progress.eps)

    def _curve_name(self, key: str, name: str, naive) -> str:
        """Legend names that say which attack a robust accuracy comes from, with a defence."""
        job = self.job
        if job is None or not job.defence:
            return name
        if key == "robust":
            return f"robust accuracy, {'naive' if job.adaptive == 'none' else job.adaptive.upper()} attack"
        if key == "naive" and naive is not None and not naive.n_labelled:
            return "not flipped, naive attack"
        return name

    def _add_rows(self, rows) -> None:
        if not rows:
            return
        classes = tuple(self.model.card.classes) if self.model is not None else ()
        self.table.setSortingEnabled(False)
        for row in rows:
            self.rows.append(row)
            self.rows_by_file[row.file] = row
            r = self.table.rowCount()
            self.table.insertRow(r)
            flip = "not flipped" if row.flip_eps is None else format_budget(row.flip_eps, self._norm)
            cells = [row.file, "—" if row.label is None else _name(classes, row.label),
                     f"{_name(classes, row.clean_prediction)} ({100 * row.clean_probability:.0f} %)", flip]
            for c, text in enumerate(cells):
                item = _SortItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row.file)
                if c == 3:  # sort by the number, not the text
                    item.setData(Qt.ItemDataRole.UserRole + 1,
                                 math.inf if row.flip_eps is None else row.flip_eps)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)

    def _row_activated(self, row: int, _column: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.request_image(item.data(Qt.ItemDataRole.UserRole))

    def _point_clicked(self, _curve, points, *_args) -> None:
        """Select the images that first flipped at the clicked ε; open the first of them."""
        if not len(points) or not self.eps:
            return
        value = points[0].pos().x() / self._x_scale
        j = int(np.argmin([abs(e - value) for e in self.eps]))
        matches = [r.file for r in self.rows if r.flip_eps is not None and abs(r.flip_eps - self.eps[j]) < 1e-12]
        selection = self.table.selectionModel()
        selection.clearSelection()
        flags = selection.SelectionFlag.Select | selection.SelectionFlag.Rows
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) in matches:
                selection.select(self.table.model().index(r, 0), flags)
        if matches:
            self.tabs.setCurrentWidget(self.table)
            self.request_image(matches[0])

    def _show_defence(self, summary: dict) -> None:
        """The Defence tab: naive and (with BPDA/EOT) adaptive robust accuracy per ε with their
        intervals, and what they mean; hidden after a screen without a defence."""
        defence = summary.get("defence")
        precision = summary.get("precision")
        if not defence:
            self.tabs.setTabVisible(2, False)
            if precision:
                self.monotone.setText(self.monotone.text() + f" Precision: {precision['how']}.")
            return
        columns, rows = defence_table_cells(defence)
        self.defence_table.clear()
        self.defence_table.setColumnCount(len(columns))
        self.defence_table.setHorizontalHeaderLabels(columns)
        header = self.defence_table.horizontalHeader()
        for column in range(len(columns)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.defence_table.setRowCount(len(rows))
        for r, (cells, hidden) in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if hidden and c == len(cells) - 1:
                    item.setForeground(QColor(FLIP_COLOUR))
                self.defence_table.setItem(r, c, item)
        verdict = defence_verdict(defence)
        if precision:
            verdict += f" Precision: {precision['how']}."
        self.defence_verdict.setText(verdict)
        self.tabs.setTabVisible(2, True)
        self.tabs.setCurrentWidget(self.defence_page)

    def _show_worst_cases(self, cases) -> None:
        """One button per worst case: clean | adversarial, the file and what it became."""
        for button in self.worst_buttons:
            self.worst_layout.removeWidget(button)
            button.deleteLater()
        self.worst_buttons = []
        classes = tuple(self.model.card.classes) if self.model is not None else ()
        for case in cases:
            button = QToolButton()
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            pixmap = _thumbnail(np.concatenate([case.clean, case.adversarial], axis=1), THUMBNAIL_PX)
            button.setIcon(QIcon(pixmap))
            button.setIconSize(pixmap.size())
            button.setText(f"{case.file}\n{format_budget(case.flip_eps, self._norm)}: "
                           f"{_name(classes, case.clean_prediction)} → "
                           f"{_name(classes, case.adversarial_prediction)} "
                           f"({100 * case.adversarial_probability:.0f} %)")
            button.setToolTip("Clean (left) and adversarial (right). Click to attack this image "
                              "at the ε where it flipped.")
            button.clicked.connect(lambda _checked=False, file_id=case.file: self.request_image(file_id))
            self.worst_layout.insertWidget(len(self.worst_buttons), button)
            self.worst_buttons.append(button)
        title = f"Worst cases ({len(cases)})" if cases else "Worst cases"
        self.tabs.setTabText(self.tabs.indexOf(self.tabs.widget(1)), title)


class _SortItem(QTableWidgetItem):
    """Sorts by the number stored under UserRole+1 when there is one (ε), else by text."""

    def __lt__(self, other) -> bool:
        mine, theirs = self.data(Qt.ItemDataRole.UserRole + 1), other.data(Qt.ItemDataRole.UserRole + 1)
        if mine is not None and theirs is not None:
            return mine < theirs
        return self.text() < other.text()


def _thumbnail(image_hwc: np.ndarray, height: int) -> QPixmap:
    """A uint8 H×W×C picture as a pixmap ``height`` pixels tall (pixels kept sharp)."""
    image = np.asarray(image_hwc, dtype=np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3])
    h, w = image.shape[:2]
    qimage = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimage).scaled(QSize(max(1, round(w * height / h)), height),
                                            Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.FastTransformation)


def _name(classes, index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)
