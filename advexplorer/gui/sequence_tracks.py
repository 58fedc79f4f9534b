"""The sequence window's tracks: the residues, the allowed region and the plots under them.

* :class:`ResidueTrack`, the residues in cells with a ruler, the motifs and the allowed
  region the user paints by dragging;
* :class:`SequenceTracksMixin`, mixed into
  :class:`advexplorer.gui.sequence_window.SequenceWindow` (the form, the files and the
  probe's lifecycle live there): the scrollable track, the saliency bars before and after
  and the single-substitution heat map under it, kept aligned with the track's scroll
  position (pyqtgraph), and the drawing of a probe's saliency and scan into them.

Importing this module does not import torch.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

ALLOWED_COLOUR = QColor("#3d8fd1")
FORBIDDEN_COLOUR = QColor("#34373c")
SUBSTITUTED_COLOUR = QColor("#e15759")
MOTIF_COLOUR = QColor("#4cc38a")
TEXT_COLOUR = QColor("#d8dbe0")
MUTED_COLOUR = QColor("#8a919b")


# ----------------------------------------------------------------------------- the track

class ResidueTrack(QWidget):
    """The residues in cells, a ruler, the motifs and the paintable allowed region.

    Left-drag allows the positions it covers, right-drag forbids them; each drag is one
    change, announced by ``allowed_changed`` when the button is released.
    """

    allowed_changed = Signal()
    CELL = 16
    MARGIN = 10
    RULER, RESIDUES, ALLOWED, MOTIFS = 16, 22, 14, 10

    def __init__(self, parent=None):
        super().__init__(parent)
        self.sequence = ""
        self.allowed: list[bool] = []
        self.substitutions: dict[int, str] = {}
        self.motif_spans: list[tuple[int, int, str]] = []   # (start, end, 'present'|'created')
        self._drag: tuple[int, bool, list[bool]] | None = None
        self.setMouseTracking(False)
        self.setToolTip("Left-drag: allow these positions to change. Right-drag: forbid them.")
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        font.setPointSize(10)
        self.setFont(font)

    def set_sequence(self, sequence: str, allowed: list[bool]) -> None:
        self.sequence, self.allowed = sequence, list(allowed)
        self.substitutions, self.motif_spans = {}, []
        self.updateGeometry()
        self.resize(self.sizeHint())
        self.update()

    def set_allowed(self, allowed: list[bool]) -> None:
        self.allowed = list(allowed)
        self.update()

    def set_substitutions(self, substitutions: dict[int, str]) -> None:
        self.substitutions = dict(substitutions)
        self.update()

    def set_motifs(self, spans: list[tuple[int, int, str]]) -> None:
        self.motif_spans = list(spans)
        self.update()

    def sizeHint(self) -> QSize:
        height = self.RULER + self.RESIDUES + self.ALLOWED + self.MOTIFS + 8
        return QSize(2 * self.MARGIN + self.CELL * max(len(self.sequence), 1), height)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def position_at(self, x: float) -> int:
        """The 0-based position under an x coordinate, clamped to the sequence."""
        index = int((x - self.MARGIN) // self.CELL)
        return max(0, min(len(self.sequence) - 1, index))

    def x_of(self, position: int) -> int:
        return self.MARGIN + self.CELL * position

    # Painting the allowed region ------------------------------------------------------------
    def paint_range(self, first: int, last: int, value: bool) -> None:
        """Set positions first…last (0-based, inclusive, either order) as one change."""
        low, high = sorted((first, last))
        for position in range(max(low, 0), min(high, len(self.allowed) - 1) + 1):
            self.allowed[position] = value
        self.update()
        self.allowed_changed.emit()

    def mousePressEvent(self, event):
        if not self.sequence or event.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            return
        value = event.button() == Qt.MouseButton.LeftButton
        self._drag = (self.position_at(event.position().x()), value, list(self.allowed))
        self._drag_to(event.position().x())

    def mouseMoveEvent(self, event):
        if self._drag is not None:
            self._drag_to(event.position().x())

    def mouseReleaseEvent(self, event):
        if self._drag is not None:
            self._drag_to(event.position().x())
            self._drag = None
            self.allowed_changed.emit()

    def _drag_to(self, x: float) -> None:
        start, value, before = self._drag
        low, high = sorted((start, self.position_at(x)))
        self.allowed = [value if low <= i <= high else flag for i, flag in enumerate(before)]
        self.update()

    # Drawing --------------------------------------------------------------------------------
    def paintEvent(self, event):
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#1a1b1d"))
        if not self.sequence:
            painter.setPen(MUTED_COLOUR)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Open a FASTA file")
            return
        cell = self.CELL
        top_residues = self.RULER
        top_allowed = top_residues + self.RESIDUES + 2
        top_motifs = top_allowed + self.ALLOWED + 3
        visible = event.rect()
        first = max(0, self.position_at(visible.left()) - 1)
        last = min(len(self.sequence) - 1, self.position_at(visible.right()) + 1)
        small = QFont(self.font())
        small.setPointSize(7)
        for position in range(first, last + 1):
            x = self.x_of(position)
            if (position + 1) % 10 == 0 or position == 0:
                painter.setFont(small)
                painter.setPen(MUTED_COLOUR)
                painter.drawText(QRectF(x - cell, 0, 3 * cell, self.RULER),
                                 Qt.AlignmentFlag.AlignCenter, str(position + 1))
            replacement = self.substitutions.get(position)
            if replacement is not None:
                painter.fillRect(QRectF(x + 1, top_residues, cell - 2, self.RESIDUES), SUBSTITUTED_COLOUR)
            painter.setFont(self.font())
            painter.setPen(QColor("white") if replacement else TEXT_COLOUR)
            painter.drawText(QRectF(x, top_residues, cell, self.RESIDUES), Qt.AlignmentFlag.AlignCenter,
                             replacement or self.sequence[position])
            painter.fillRect(QRectF(x, top_allowed, cell - 1, self.ALLOWED),
                             ALLOWED_COLOUR if self.allowed[position] else FORBIDDEN_COLOUR)
        for start, end, kind in self.motif_spans:
            colour = SUBSTITUTED_COLOUR if kind == "created" else MOTIF_COLOUR
            if kind == "destroyed":
                colour = MUTED_COLOUR
            painter.setPen(QPen(colour, 3))
            painter.drawLine(self.x_of(start) + 2, top_motifs + 4, self.x_of(end) - 2, top_motifs + 4)
        painter.end()


# ----------------------------------------------------------------------------- the plots

class SequenceTracksMixin:
    """The track and the plots under it, mixed into
    :class:`~advexplorer.gui.sequence_window.SequenceWindow`.

    ``_build_tracks()`` makes the centre widget: the ``sequence_title``, the ``track`` in
    ``track_scroll`` (indented by ``track_indent`` in ``track_row``) and the ``plots``
    (``before_plot``/``before_bars``, ``after_plot``/``after_bars``, ``heat_plot``/
    ``heat_image``, ``heat_delta``); the rest draw a probe's saliency and scan into them and
    keep them under the track. They read the window's ``status_label`` and ``last_record``.
    """

    def _build_tracks(self) -> QWidget:
        """The title, the scrollable track and the x-linked plots below it (the centre widget)."""
        self.track = ResidueTrack()
        self.track_scroll = QScrollArea()
        self.track_scroll.setWidget(self.track)
        self.track_scroll.setWidgetResizable(False)
        self.track_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.track_scroll.setFixedHeight(self.track.sizeHint().height() + 22)
        self.track_scroll.horizontalScrollBar().valueChanged.connect(self._follow_scroll)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground("#1a1b1d")
        self.before_plot = self.plots.addPlot(row=0, col=0, title="saliency before")
        self.after_plot = self.plots.addPlot(row=1, col=0, title="saliency after")
        self.heat_plot = self.plots.addPlot(row=2, col=0, title="single substitutions: Δ probability")
        self.plots.ci.layout.setRowStretchFactor(2, 3)
        for plot in (self.before_plot, self.after_plot, self.heat_plot):
            plot.getAxis("left").setWidth(42)
            plot.setMenuEnabled(False)
        self.after_plot.setXLink(self.before_plot)
        self.heat_plot.setXLink(self.before_plot)
        self.before_bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#4e79a7")
        self.after_bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#e15759")
        self.before_plot.addItem(self.before_bars)
        self.after_plot.addItem(self.after_bars)
        self.heat_image = pg.ImageItem(axisOrder="row-major")
        self.heat_plot.addItem(self.heat_image)
        self.heat_plot.invertY(True)
        self.heat_plot.getAxis("bottom").setLabel("position")
        self.heat_plot.scene().sigMouseMoved.connect(self._hover_heatmap)
        self.heat_delta: np.ndarray | None = None
        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(4, 4, 4, 4)
        self.sequence_title = QLabel("")
        self.sequence_title.setObjectName("title")
        layout.addWidget(self.sequence_title)
        # The track is indented to start where the plots' data area starts (set in _follow_scroll).
        self.track_row = QWidget()
        row = QHBoxLayout(self.track_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.track_indent = QWidget()
        self.track_indent.setFixedWidth(0)
        row.addWidget(self.track_indent)
        row.addWidget(self.track_scroll, 1)
        layout.addWidget(self.track_row)
        layout.addWidget(self.plots, 1)
        return centre

    def _draw_saliency(self, saliency: dict) -> None:
        before = np.asarray(saliency["before"], dtype=np.float32)
        after = np.asarray(saliency["after"], dtype=np.float32)
        positions = np.arange(1, len(before) + 1, dtype=np.float32)
        scale = float(max(np.abs(before).max(), np.abs(after).max(), 1e-12))
        self.before_bars.setOpts(x=positions, height=before, width=0.8)
        self.after_bars.setOpts(x=positions, height=after, width=0.8)
        for plot, name in ((self.before_plot, saliency["class_before"]), (self.after_plot, saliency["class_after"])):
            plot.setYRange(-scale, scale, padding=0.05)
        self.before_plot.setTitle(f"saliency before ({saliency['method']}, for {saliency['class_before']})")
        self.after_plot.setTitle(f"saliency after (for {saliency['class_after']}, same scale)")

    def _draw_heatmap(self, scan: dict, sequence: str) -> None:
        """Δ probability as colours: red = the watched class rises, blue = it falls; grey =
        not allowed; black = the residue present."""
        delta = np.array([[np.nan if v is None else v for v in row] for row in scan["delta"]],
                         dtype=np.float32).T          # residues × positions
        self.heat_delta = delta
        alphabet = scan["alphabet"]
        scale = float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 1.0
        scale = scale or 1.0
        rgba = np.zeros(delta.shape + (4,), dtype=np.uint8)
        rgba[..., 3] = 255
        t = np.clip(np.nan_to_num(np.abs(delta)) / scale, 0, 1)
        shade = (255 * (1 - t)).astype(np.uint8)
        rising, falling = delta > 0, delta < 0
        rgba[rising] = np.stack([np.full_like(shade, 255), shade, shade, np.full_like(shade, 255)], -1)[rising]
        rgba[falling] = np.stack([shade, shade, np.full_like(shade, 255), np.full_like(shade, 255)], -1)[falling]
        rgba[delta == 0] = (255, 255, 255, 255)
        rgba[np.isnan(delta)] = (70, 72, 76, 255)
        for position, residue in enumerate(sequence):
            rgba[alphabet.index(residue), position] = (0, 0, 0, 255)
        self.heat_image.setImage(np.ascontiguousarray(rgba), autoLevels=False)
        self.heat_image.setRect(QRectF(0.5, -0.5, delta.shape[1], delta.shape[0]))
        self.heat_plot.getAxis("left").setTicks([[(i, letter) for i, letter in enumerate(alphabet)]])
        self.heat_plot.setYRange(-0.5, len(alphabet) - 0.5, padding=0)
        self.heat_plot.setTitle(f"single substitutions: Δ p({scan['watched_class']['name']}) "
                                f"(red up, blue down, ±{scale:.3f}); {scan['flips']} of "
                                f"{scan['candidates']} flip alone")

    def _hover_heatmap(self, point) -> None:
        if self.heat_delta is None or self.last_record is None:
            return
        where = self.heat_plot.vb.mapSceneToView(point)
        position, row = int(round(where.x())), int(round(where.y()))
        alphabet = self.last_record["results"][0]["scan"]["alphabet"]
        if not (1 <= position <= self.heat_delta.shape[1] and 0 <= row < len(alphabet)):
            return
        value = self.heat_delta[row, position - 1]
        original = self.track.sequence[position - 1]
        text = "not allowed" if np.isnan(value) else f"Δp = {value:+.4f}"
        self.status_label.setText(f"{original}{position}{alphabet[row]}: {text}")

    def _follow_scroll(self) -> None:
        """Show in the plots the positions visible in the track, each residue directly above
        its bars and heat-map column (same pixels per position, same left edge)."""
        if not self.track.sequence:
            return
        cell = ResidueTrack.CELL
        offset = self.track_scroll.horizontalScrollBar().value()
        track_left = self.track_scroll.viewport().mapTo(self, QPoint(0, 0)).x()
        box = self.before_plot.vb.sceneBoundingRect()
        plot_left = self.plots.mapTo(self, self.plots.mapFromScene(box.topLeft())).x()
        indent = max(0, plot_left - self.track_row.mapTo(self, QPoint(0, 0)).x())
        if indent != self.track_indent.width():
            self.track_indent.setFixedWidth(indent)
            QTimer.singleShot(0, self._follow_scroll)  # again, once the row has moved
            return
        # Data x = position (1-based) sits at the centre of its cell in the track.
        first = 1 - (track_left - plot_left + ResidueTrack.MARGIN + cell / 2 - offset) / cell
        width = max(box.width(), cell)
        self.before_plot.setXRange(first, first + width / cell, padding=0)
