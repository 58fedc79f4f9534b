"""Live result views: images, perturbation, saliency, prediction table, comparison (the
trajectory plots are in :mod:`advexplorer.gui.trajectory_plots`).

All of them take numpy arrays (never tensors) and draw with explicit levels into
preallocated buffers, so a redraw costs the same at step 1 and step 1000.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel, QSizePolicy, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from advexplorer.config import format_budget, method_label, norm_label, over_255
from advexplorer.session.state import RunSummary

#: Class curve colours (Okabe–Ito, readable by colour-blind users).
PLOT_BACKGROUND = "#1e1f22"
DIVERGING = "CET-D1"   # blue – white – red: negative / zero / positive perturbation
SEQUENTIAL = "inferno"


def paints_opaquely(view: pg.GraphicsView) -> None:
    """Tell Qt that ``view`` paints every pixel of itself (its background is filled), so a
    frame repaints only the view — not, beneath it, the splitter, the dock and the main window
    with their style sheets, which doubled the GUI thread's work per live frame. Qt paints
    holding the GIL the attack's thread needs."""
    for widget in (view, view.viewport()):
        widget.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)


def display_image(image_hwc: np.ndarray) -> np.ndarray:
    """H×W×C float [0,1] → what ImageItem shows (H×W for one channel), contiguous float32."""
    image = np.asarray(image_hwc, dtype=np.float32)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return np.ascontiguousarray(image)


def signed_perturbation(perturbation_hwc: np.ndarray) -> np.ndarray:
    """The per-pixel signed perturbation shown on the diverging map: the channel mean."""
    delta = np.asarray(perturbation_hwc, dtype=np.float32)
    return np.ascontiguousarray(delta.mean(axis=2) if delta.ndim == 3 else delta)


def saliency_map(value) -> np.ndarray | None:
    """Any saliency array (H×W, 1×H×W, C×H×W, N×C×H×W) as a non-negative H×W map."""
    if value is None:
        return None
    try:
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    except Exception:
        return None
    array = np.squeeze(np.asarray(array, dtype=np.float32))
    while array.ndim > 2:
        array = np.abs(array).mean(axis=0)
    if array.ndim != 2:
        return None
    return np.ascontiguousarray(np.abs(array))


class LegendLabel(QLabel):
    """A plot's legend as a line of text above the plot, never on it: a legend drawn inside
    the plot hides whichever curve passes under it. Lists only the entries it is given
    (callers pass the curves that have data)."""

    def __init__(self, prefix: str = "", parent=None, *, empty_text: str = ""):
        super().__init__(parent)
        self.prefix = prefix
        self.empty_text = empty_text  # shown while no curve has data
        self.entries: list[tuple[str, str, bool]] = []
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        # The plots' own background, so the legend reads as part of the plot.
        self.setStyleSheet(f"background: {PLOT_BACKGROUND}; color: #d0d0d0; padding: 2px 6px;")
        self.setMinimumHeight(self.fontMetrics().height() + 4)  # no jump when entries arrive
        self._render()

    def set_entries(self, entries) -> None:
        """``[(name, colour)]`` or ``[(name, colour, bold)]``, in the order to show them."""
        entries = [(str(e[0]), str(e[1]), bool(e[2]) if len(e) > 2 else False) for e in entries]
        if entries != self.entries:  # setText re-lays out the panel: only on change
            self.entries = entries
            self._render()

    def names(self) -> list[str]:
        return [name for name, _colour, _bold in self.entries]

    def _render(self) -> None:
        parts = []
        for name, colour, bold in self.entries:
            weight = "font-weight:bold;" if bold else ""
            parts.append(f'<span style="color:{colour};">━━</span>&nbsp;'
                         f'<span style="{weight}">{html.escape(name).replace(" ", "&nbsp;")}</span>')
        if not parts:
            self.setText(html.escape(self.prefix or self.empty_text))
            return
        prefix = f"{html.escape(self.prefix)}:&nbsp;&nbsp;" if self.prefix else ""
        self.setText(prefix + " &nbsp; ".join(parts))


class FittedLabel(pg.LabelItem):
    """A title or caption that never widens its grid column: text longer than the column
    wraps instead. (pyqtgraph's LabelItem makes its text's width the column's minimum, so
    one long caption — "DAB-negative → DAB-positive (1.00)" — made its picture larger than
    the others.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        option = self.item.document().defaultTextOption()
        option.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.item.document().setDefaultTextOption(option)

    def setText(self, text, **options):  # noqa: N802 (pyqtgraph's name)
        """New text; the strip is laid out again only if the caption's height changed.

        pyqtgraph's LabelItem invalidates its layout on every text change, which re-lays out
        and repaints the whole strip (every panel, every colour bar) — four times a second
        during a run, for a caption such as "DAB-positive (0.97)" that keeps its height."""
        height = self.itemRect().height()
        self._same_size = True
        try:
            super().setText(text, **options)
        finally:
            self._same_size = False
        if self.itemRect().height() != height:
            self.updateGeometry()

    def updateGeometry(self):  # noqa: N802 (Qt's name)
        if not getattr(self, "_same_size", False):
            super().updateGeometry()

    def updateMin(self):  # noqa: N802 (pyqtgraph's name)
        height = self.itemRect().height()
        self.setMinimumWidth(0)
        self.setMinimumHeight(height)
        self._sizeHint = {Qt.SizeHint.MinimumSize: (0, height), Qt.SizeHint.PreferredSize: (0, height),
                          Qt.SizeHint.MaximumSize: (-1, -1), Qt.SizeHint.MinimumDescent: (0, 0)}
        self.updateGeometry()

    def resizeEvent(self, event):  # noqa: N802
        width = self.rect().width()
        if width > 0 and self.item.textWidth() != width:
            self.item.setTextWidth(width)
        super().resizeEvent(event)


class ImageStrip(pg.GraphicsLayoutWidget):
    """A row of titled image panels; some with a colour bar."""

    def __init__(self, titles: list[tuple[str, str]], parent=None):
        super().__init__(parent)
        self.setBackground("#1e1f22")
        paints_opaquely(self)
        self.ci.setContentsMargins(2, 2, 26, 2)  # room for the last colour bar's labels
        self.ci.layout.setHorizontalSpacing(4)
        self.items: dict[str, pg.ImageItem] = {}
        self.views: dict[str, pg.ViewBox] = {}
        self.titles: dict[str, pg.LabelItem] = {}
        self.captions: dict[str, pg.LabelItem] = {}
        self.bars: dict[str, pg.ColorBarItem] = {}
        self._view_columns: list[int] = []
        self._bar_columns: list[int] = []
        column = 0
        for key, title in titles:
            label = FittedLabel(title, size="9pt", color="#d0d0d0")
            self.addItem(label, row=0, col=column, colspan=2 if key in ("perturbation", "saliency_after") else 1)
            view = self.addViewBox(row=1, col=column, lockAspect=True, invertY=True, enableMenu=False)
            view.setMouseEnabled(False, False)
            # Equal preferred widths, so a narrow strip shrinks every panel alike.
            view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            view.setMinimumWidth(40)
            view.setPreferredWidth(100)
            item = pg.ImageItem(axisOrder="row-major")
            view.addItem(item)
            caption = FittedLabel("", size="8pt", color="#a8a8a8")
            self.addItem(caption, row=2, col=column, colspan=2 if key in ("perturbation", "saliency_after") else 1)
            self.items[key], self.views[key] = item, view
            self._view_columns.append(column)
            self.titles[key], self.captions[key] = label, caption
            column += 1
            if key in ("perturbation", "saliency_after"):
                colour_map = pg.colormap.get(DIVERGING if key == "perturbation" else SEQUENTIAL)
                bar = pg.ColorBarItem(values=(-1, 1) if key == "perturbation" else (0, 1),
                                      colorMap=colour_map, interactive=False, width=12,
                                      colorMapMenu=False)
                self.addItem(bar, row=1, col=column)
                bar.setVisible(False)  # a colour bar with nothing to describe only confuses
                self.bars[key] = bar
                self._bar_columns.append(column)
                column += 1
        self.setMinimumHeight(170)

    BAR_WIDTH = 72

    def resizeEvent(self, event):  # noqa: N802
        """Give every image panel the same width (the grid would favour some columns)."""
        if not getattr(self, "_view_columns", None):  # still being constructed
            super().resizeEvent(event)
            return
        layout = self.ci.layout
        spacing = layout.horizontalSpacing() * (len(self._view_columns) + len(self._bar_columns))
        free = event.size().width() - 56 - spacing - self.BAR_WIDTH * len(self._bar_columns)
        width = max(40.0, free / max(len(self._view_columns), 1))
        for column in self._view_columns:
            layout.setColumnFixedWidth(column, width)
        for column in self._bar_columns:
            layout.setColumnFixedWidth(column, self.BAR_WIDTH)
        super().resizeEvent(event)

    def set_rgb(self, key: str, image_hwc: np.ndarray | None) -> None:
        item = self.items[key]
        if image_hwc is None:
            item.clear()
            return
        first = item.image is None
        item.setImage(display_image(image_hwc), autoLevels=False, levels=(0.0, 1.0))
        if first:
            self.views[key].autoRange(padding=0.0)

    def set_scalar(self, key: str, array: np.ndarray | None, levels: tuple[float, float],
                   colour_map: str) -> None:
        item = self.items[key]
        bar = self.bars.get(key) or (self.bars.get("saliency_after") if key == "saliency_before" else None)
        if array is None:
            item.clear()
            if bar is not None and key != "saliency_before":
                bar.setVisible(False)
            return
        if bar is not None and not bar.isVisible():
            bar.setVisible(True)
        first = item.image is None
        item.setImage(np.ascontiguousarray(array, dtype=np.float32), autoLevels=False, levels=levels)
        if getattr(item, "_colour_map_name", None) != colour_map:
            item.setColorMap(pg.colormap.get(colour_map))
            item._colour_map_name = colour_map
        if first:
            self.views[key].autoRange(padding=0.0)

    def set_caption(self, key: str, text: str) -> None:
        if self.captions[key].text != text:  # setText re-lays out the whole strip
            self.captions[key].setText(text)

    def clear_all(self) -> None:
        for key, item in self.items.items():
            item.clear()
            self.captions[key].setText("")
        for bar in self.bars.values():
            bar.setVisible(False)


class LiveViews(QWidget):
    """Original, adversarial, perturbation, saliency before/after — plus the similarity verdict."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.strip = ImageStrip([("original", "Original (model input)"),
                                 ("adversarial", "Adversarial"),
                                 ("perturbation", "Perturbation δ (channel mean)"),
                                 ("saliency_before", "Saliency before"),
                                 ("saliency_after", "Saliency after")])
        self.verdict = QLabel("")
        self.verdict.setObjectName("verdict")
        self.verdict.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.strip, 1)
        layout.addWidget(self.verdict)
        self.scale = 1.0
        self.norm = "linf"
        self._bar_scale = None

    def start(self, eps: float, norm: str, original: np.ndarray | None = None) -> None:
        """A new run: fix the perturbation's colour scale to ±ε (L∞) for the whole run."""
        self.norm = norm
        self.scale = float(eps) if norm == "linf" else 0.0
        self._bar_scale = None
        self.strip.clear_all()
        self.verdict.setText("")
        if original is not None:
            self.strip.set_rgb("original", original)

    def show_step(self, adversarial: np.ndarray, perturbation: np.ndarray,
                  original: np.ndarray | None = None, caption: str = "") -> None:
        if original is not None:
            self.strip.set_rgb("original", original)
        self.strip.set_rgb("adversarial", adversarial)
        delta = signed_perturbation(perturbation)
        if self.norm != "linf":  # an L2 budget has no per-pixel bound: scale to the largest change
            self.scale = max(self.scale, float(np.abs(delta).max()), 1e-6)
        scale = max(self.scale, 1e-6)
        self.strip.set_scalar("perturbation", delta, (-scale, scale), DIVERGING)
        if scale != self._bar_scale:  # the colour bar re-renders on every setLevels: only on change
            self._bar_scale = scale
            self.strip.bars["perturbation"].setLevels((-scale, scale))
            self.strip.set_caption("perturbation", f"range ±{over_255(scale)} (×{0.5 / scale:.3g})")
        if caption:
            self.strip.set_caption("adversarial", caption)

    def show_saliency(self, explanation) -> None:
        """Before/after maps on one shared scale, and the similarity numbers and verdict."""
        if explanation is None:
            for key in ("saliency_before", "saliency_after"):
                self.strip.set_scalar(key, None, (0, 1), SEQUENTIAL)
                self.strip.set_caption(key, "")
            self.verdict.setText("")
            return
        before = saliency_map(getattr(explanation, "before", None))
        after = saliency_map(getattr(explanation, "after", None))
        top = max([float(m.max()) for m in (before, after) if m is not None] + [1e-12])
        self.strip.set_scalar("saliency_before", before, (0.0, top), SEQUENTIAL)
        self.strip.set_scalar("saliency_after", after, (0.0, top), SEQUENTIAL)
        self.strip.bars["saliency_after"].setLevels((0.0, top))
        method = getattr(explanation, "method", "")
        self.strip.set_caption("saliency_before", f"{method}, scale 0–{top:.3g}")
        self.strip.set_caption("saliency_after", "same scale")
        self.verdict.setText(similarity_text(explanation))

    def show_summary(self, summary: RunSummary) -> None:
        self.start(summary.config.get("eps", 1.0), summary.config.get("norm", "linf"), summary.original)
        classes = summary.classes
        caption = (f"{classes[summary.prediction_before]} → {classes[summary.prediction_after]} "
                   f"({summary.probability_after[summary.prediction_after]:.2f})")
        self.show_step(summary.adversarial, summary.perturbation, caption=caption)
        self.strip.set_caption("original", f"{classes[summary.prediction_before]} "
                                           f"({summary.probability_before[summary.prediction_before]:.2f})")
        self.show_saliency(summary.saliency)


def similarity_text(explanation) -> str:
    """The saliency comparison numbers and the verdict in one line (from ``to_json()``)."""
    try:
        data = explanation.to_json()
    except Exception:
        return ""
    names = (("spearman", "Spearman ρ {:.2f}"), ("topk_intersection", "top-10 % overlap {:.2f}"),
             ("ssim", "SSIM {:.2f}"), ("center_of_mass_shift_px", "centre shift {:.1f} px"))
    parts = [template.format(data[key]) for key, template in names
             if isinstance(data.get(key), (int, float))]
    masses = [data.get("relevance_mass_before"), data.get("relevance_mass_after")]
    if any(isinstance(mass, (int, float)) for mass in masses):  # None: that map is all zero
        before, after = (f"{mass:.2f}" if isinstance(mass, (int, float)) else "none (empty map)"
                         for mass in masses)
        parts.append(f"relevance in diagnostic region {before} → {after}")
    verdict = data.get("verdict")
    text = " · ".join(parts)
    if verdict:
        text = f"<b>Verdict: {verdict}</b>" + (f" — {text}" if text else "")
    return text


class PredictionTable(QTableWidget):
    """Top classes before and after the attack, with the change."""

    def __init__(self, parent=None):
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(["Class", "Before", "After", "Δ"])
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            self.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.setMinimumHeight(100)

    def set_predictions(self, classes, before: np.ndarray, after: np.ndarray | None) -> None:
        """Fill with the top-5 classes of either distribution."""
        after_values = after if after is not None else np.full_like(before, np.nan)
        chosen = list(dict.fromkeys([int(i) for i in np.argsort(before)[::-1][:5]] +
                                    ([int(i) for i in np.argsort(after)[::-1][:5]] if after is not None else [])))
        chosen.sort(key=lambda i: -max(before[i], 0 if np.isnan(after_values[i]) else after_values[i]))
        chosen = chosen[:6]
        self.setRowCount(len(chosen))
        bold = QFont()
        bold.setBold(True)
        top_before = int(np.argmax(before))
        top_after = None if after is None else int(np.argmax(after))
        for row, index in enumerate(chosen):
            delta = after_values[index] - before[index]
            values = [classes[index], f"{before[index]:.3f}",
                      "" if np.isnan(after_values[index]) else f"{after_values[index]:.3f}",
                      "" if np.isnan(delta) else f"{delta:+.3f}"]
            for column, text in enumerate(values):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if (column == 1 and index == top_before) or (column == 2 and index == top_after):
                    item.setFont(bold)
                if column == 3 and not np.isnan(delta):
                    item.setForeground(QColor("#e07070" if delta < 0 else "#70c070"))
                self.setItem(row, column, item)


def summary_lines(summary: RunSummary) -> list[tuple[str, str]]:
    """The numbers that describe a run, for the comparison and the results summary."""
    classes = summary.classes
    config = summary.config
    record = summary.record or {}
    rows = [
        ("Model", summary.model_name),
        ("Attack", f"{method_label(config.get('method', '?'))} {norm_label(config.get('norm', ''))} "
                   f"ε={format_budget(config.get('eps', 0), config.get('norm', 'linf'))}, "
                   f"{config.get('steps', '?')} steps"),
        ("Mask", summary.mask_mode),
        ("Before", f"{classes[summary.prediction_before]} "
                   f"({summary.probability_before[summary.prediction_before]:.3f})"),
        ("After", f"{classes[summary.prediction_after]} "
                  f"({summary.probability_after[summary.prediction_after]:.3f})"),
        ("Success", "yes" if summary.success else "no"),
        ("‖δ‖∞", format_budget(summary.norms.get('linf', 0), "linf")),
        ("‖δ‖₂", f"{summary.norms.get('l2', 0):.4g}"),
        ("Pixels changed", f"{int(summary.norms.get('l0_pixels', 0))}"),
        ("Wall time", f"{summary.wall_time_s:.2f} s"),
    ]
    exported = record.get("exported_png") or {}
    if exported:
        rows.append(("8-bit PNG still flips", "yes" if exported.get("still_flips") else "no"))
    if summary.saliency is not None:
        rows.append(("Saliency", similarity_text(summary.saliency).replace("<b>", "").replace("</b>", "")))
    return rows


class CompareDialog(QDialog):
    """Two runs, one above the other: the same pictures at the same size on shared scales,
    then the numbers of each and both confidence trajectories. The pictures take the room
    the dialog gives them (at least ``MIN_PICTURE_PX`` at the default size)."""

    MIN_PICTURE_PX = 200

    def __init__(self, first: RunSummary, second: RunSummary, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Compare run #{first.number} and run #{second.number}")
        self.resize(*self._default_size())
        runs = (first, second)
        scale = max(max(float(np.abs(signed_perturbation(r.perturbation)).max()), 1e-6) for r in runs)
        if all(r.config.get("norm") == "linf" for r in runs):
            scale = max(float(r.config.get("eps", scale)) for r in runs)
        salient = [(saliency_map(getattr(r.saliency, "before", None)),
                    saliency_map(getattr(r.saliency, "after", None))) for r in runs]
        top = max([float(m.max()) for pair in salient for m in pair if m is not None] + [1e-12])
        any_saliency = any(m is not None for pair in salient for m in pair)
        panels = [("original", "Original"), ("adversarial", "Adversarial"),
                  ("perturbation", "Perturbation δ")]
        if any_saliency:
            panels += [("saliency_before", "Saliency before"), ("saliency_after", "Saliency after")]

        layout = QVBoxLayout(self)
        self.strips: list[ImageStrip] = []
        self.tables: list[QTableWidget] = []
        numbers = QHBoxLayout()
        # Both runs get the same panels in a strip as wide as the dialog, so every picture
        # has the same size, and the strips share the height the dialog has to give.
        for run, (before, after) in zip(runs, salient):
            title = QLabel(f"<b>{run.title}</b>")
            title.setWordWrap(True)
            strip = ImageStrip(panels)
            strip.set_rgb("original", run.original)
            strip.set_rgb("adversarial", run.adversarial)
            strip.set_scalar("perturbation", signed_perturbation(run.perturbation), (-scale, scale), DIVERGING)
            strip.bars["perturbation"].setLevels((-scale, scale))
            strip.set_caption("perturbation", f"shared range ±{over_255(scale)}")
            if any_saliency:
                strip.set_scalar("saliency_before", before, (0.0, top), SEQUENTIAL)
                strip.set_scalar("saliency_after", after, (0.0, top), SEQUENTIAL)
                strip.bars["saliency_after"].setLevels((0.0, top))
                strip.set_caption("saliency_after", "shared scale")
            layout.addWidget(title)
            layout.addWidget(strip, 3)
            self.strips.append(strip)
            self.tables.append(self._numbers_table(run))
            numbers.addWidget(self.tables[-1], 1)

        plot = pg.PlotWidget(background=PLOT_BACKGROUND)
        plot.setLabel("bottom", "step")
        plot.setYRange(0, 1)
        legend = LegendLabel("Confidence in the clean prediction")
        entries = []
        for run, colour in zip(runs, ("#56B4E9", "#E69F00")):
            values = run.probability_trajectory[:, run.prediction_before]
            plot.plot(np.arange(len(values)), values, pen=pg.mkPen(colour, width=2))
            entries.append((f"#{run.number} {run.classes[run.prediction_before]}", colour))
        legend.set_entries(entries)
        plot.setMinimumHeight(140)
        trajectories = QWidget()
        trajectories.setMaximumHeight(max(t.maximumHeight() for t in self.tables))
        column = QVBoxLayout(trajectories)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(legend)
        column.addWidget(plot, 1)
        numbers.addWidget(trajectories, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addLayout(numbers, 0)
        layout.addWidget(buttons)

    @staticmethod
    def _numbers_table(run: RunSummary) -> QTableWidget:
        table = QTableWidget(0, 2)
        table.horizontalHeader().setVisible(False)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        lines = summary_lines(run)
        table.setRowCount(len(lines))
        for row, (key, value) in enumerate(lines):
            table.setItem(row, 0, QTableWidgetItem(key))
            item = QTableWidgetItem(value)
            item.setToolTip(value)
            table.setItem(row, 1, item)
        # As tall as its lines and no taller: the pictures get the rest of the dialog.
        content = table.verticalHeader().length() + 2 * table.frameWidth()
        table.setMinimumHeight(min(140, content))
        table.setMaximumHeight(content)
        return table

    @staticmethod
    def _default_size() -> tuple[int, int]:
        """Large enough for pictures of ``MIN_PICTURE_PX``, never larger than the screen."""
        width, height = 1320, 980
        screen = QGuiApplication.primaryScreen()
        if screen is not None:
            available = screen.availableGeometry()
            width, height = min(width, available.width() - 40), min(height, available.height() - 60)
        return width, height
