"""The main window's dock contents and mask toolbar: plain widgets, no behaviour.

The controllers fill them and the window wires their buttons; keeping construction here
leaves :mod:`advexplorer.gui.main_window` a shell.
"""

from __future__ import annotations

import re

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QListWidget, QProgressBar,
    QPushButton, QSizePolicy, QSlider, QSpinBox, QTableWidget, QTableWidgetItem, QToolBar, QVBoxLayout,
    QWidget,
)

from advexplorer.gui.attack_panel import AttackPanel
from advexplorer.gui.trajectory_plots import TrajectoryPlots
from advexplorer.gui.views import PredictionTable

_BREAK_AFTER = re.compile(r"([/\\_.\-×,])")


def breakable(text: str) -> str:
    """Text a word-wrapping label can break inside long file names (after / _ . - × ,)."""
    return _BREAK_AFTER.sub("\\1\u200b", text)



def read_only_table(columns: list[str]) -> QTableWidget:
    """A table the user reads but does not edit: first column stretched, the others fitted."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    return table

class WrappingLabel(QLabel):
    """A label that wraps (even inside long file names) instead of being cut off, and
    shows its whole text as a tooltip; it never asks its dock to grow wider."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.full_text = ""
        self.set_full_text(text)

    def set_full_text(self, text: str, tooltip: str | None = None) -> None:
        self.full_text = text
        self.setText(breakable(text))
        self.setToolTip(tooltip if tooltip is not None else text)


def _column(widget: QWidget, *items, margins=(4, 4, 4, 4)) -> QVBoxLayout:
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(*margins)
    for item in items:
        if isinstance(item, tuple):
            layout.addWidget(*item)
        elif isinstance(item, QHBoxLayout):
            layout.addLayout(item)
        else:
            layout.addWidget(item)
    return layout


def _row(*buttons) -> QHBoxLayout:
    row = QHBoxLayout()
    for button in buttons:
        row.addWidget(*button) if isinstance(button, tuple) else row.addWidget(button)
    return row


class ImagesPanel(QWidget):
    """The session's images with thumbnails; Add… / Remove."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setIconSize(QSize(48, 48))
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setToolTip("Images of this session. Drop files or folders on the window to add "
                             "them; select several and use Attack → Run on selected images.")
        self.add_button = QPushButton("Add…")
        self.remove_button = QPushButton("Remove")
        _column(self, self.list, _row(self.add_button, self.remove_button))


class ModelPanel(QWidget):
    """The loaded model: name, file, classes, input size; and the button to open another."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.name = WrappingLabel("No model loaded")
        self.name.setObjectName("title")
        self.info = WrappingLabel("File → Open model… (TorchScript, state_dict + card, "
                                  "safetensors, .pt2)")
        self.info.setObjectName("hint")
        self.open_button = QPushButton("Open model…")
        layout = _column(self, self.name, self.info, self.open_button, margins=(6, 4, 6, 4))
        layout.addStretch(1)


class HistoryPanel(QWidget):
    """Finished runs on the current image; Compare / Save… / Report…."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setToolTip("Finished runs on this image. Click one to show it; select two and "
                             "press Compare to see them side by side.")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Show the two selected runs side by side.")
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Write the selected run as a run folder (record.json, "
                                    "adversarial.png, …) like `advexplorer attack --out`.")
        self.report_button = QPushButton("Report…")
        self.report_button.setToolTip("Export an HTML or PDF report of the selected runs (Ctrl+E).")
        _column(self, self.list, _row(self.compare_button, self.save_button, self.report_button))


class AttackDock(QWidget):
    """The attack form, a note on how the image will be fed to the model, and Run/Pause/Cancel."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.panel = AttackPanel()
        self.input_note = WrappingLabel("")
        self.input_note.setObjectName("hint")
        self.input_note.setVisible(False)
        self.run_button = QPushButton("Loading engine…")
        self.run_button.setObjectName("run")
        self.run_button.setToolTip("Run the attack on the current image with its mask (Ctrl+R).")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause or resume between two steps.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run after the current step (Esc).")
        _column(self, self.panel, self.input_note,
                _row((self.run_button, 2), (self.pause_button, 1), (self.cancel_button, 1)),
                margins=(0, 0, 0, 4))


class TransferTable(QWidget):
    """A transfer run's two models side by side: the surrogate the attack was crafted on and
    the target that judges it, each class's confidence before and after (or now, live)."""

    COLUMNS = ["Class", "Surrogate\nbefore", "Surrogate\nafter", "Target\nbefore", "Target\nafter"]

    def __init__(self, parent=None):
        super().__init__(parent)
        self.caption = QLabel()
        self.caption.setObjectName("hint")
        self.caption.setWordWrap(True)
        self.table = read_only_table(self.COLUMNS)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setMinimumHeight(90)
        _column(self, self.caption, self.table, margins=(0, 0, 0, 0))

    def show_models(self, surrogate: str, target: str, live: bool) -> None:
        """Name the two models; ``live``: the last columns are the current step, not the result."""
        after = "now" if live else "after"
        # Two-line headers keep the four number columns narrow enough to leave the class names room.
        self.table.setHorizontalHeaderLabels(["Class", "Surrogate\nbefore", f"Surrogate\n{after}",
                                              "Target\nbefore", f"Target\n{after}"])
        self.caption.setText(f"Transfer: crafted on <b>{surrogate}</b> (surrogate), judged on "
                             f"<b>{target}</b> (target). The curves above are the surrogate's.")

    def set_probabilities(self, classes, columns: list[np.ndarray | None]) -> None:
        """Fill with the top classes of any of the four distributions (None: not known yet)."""
        known = [values for values in columns if values is not None]
        if not known:
            self.table.setRowCount(0)
            return
        chosen = list(dict.fromkeys(int(i) for values in known for i in np.argsort(values)[::-1][:3]))
        chosen.sort(key=lambda i: -max(float(values[i]) for values in known))
        chosen = chosen[:6]
        self.table.setRowCount(len(chosen))
        bold = QFont()
        bold.setBold(True)
        tops = [None if values is None else int(np.argmax(values)) for values in columns]
        for row, index in enumerate(chosen):
            self.table.setItem(row, 0, QTableWidgetItem(str(classes[index])))
            for column, values in enumerate(columns, start=1):
                item = QTableWidgetItem("" if values is None else f"{float(values[index]):.3f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if index == tops[column - 1]:
                    item.setFont(bold)
                    # The top class after the attack, in red where it is not the top class before.
                    before = tops[column - 2] if column in (2, 4) else None
                    if before is not None and before != index:
                        item.setForeground(QColor("#e07070"))
                self.table.setItem(row, column, item)


class ResultsPanel(QWidget):
    """The shown run's summary line, its reliability flags, its trajectories, its prediction
    table and, for a transfer run, both models' confidences side by side."""

    PROMPT = "Paint a mask (or none), choose an attack and press Run."

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary = QLabel(self.PROMPT)
        self.summary.setObjectName("summary")
        self.summary.setWordWrap(True)
        # The shown run's reliability flags, one '⚠ title — suggestion' line each ('' if none).
        self.flags = QLabel()
        self.flags.setObjectName("flags")
        self.flags.setStyleSheet("color: #e0a040")
        self.flags.setWordWrap(True)
        self.flags.setVisible(False)
        self.plots = TrajectoryPlots()
        self.prediction_table = PredictionTable()
        self.transfer = TransferTable()
        self.transfer.setVisible(False)
        _column(self, self.summary, self.flags, (self.plots, 3), (self.prediction_table, 1), (self.transfer, 1))


class BatchPanel(QWidget):
    """One row per image of a batch run, and the batch's progress."""

    COLUMNS = ["Image", "Before", "After", "Flipped", "‖δ‖∞ (/255)", "Time (s)", "Status"]

    def __init__(self, parent=None):
        super().__init__(parent)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m images")
        self.table = read_only_table(self.COLUMNS)
        _column(self, self.progress, self.table)


class MaskToolBar(QToolBar):
    """Brush/eraser/… actions, brush size, layer, mode and overlay opacity."""

    def __init__(self, tool_actions, edit_actions, brush_size: int, opacity: float, parent=None):
        super().__init__("Mask tools", parent)
        self.setObjectName("mask_toolbar")
        self.setIconSize(QSize(20, 20))
        for action in tool_actions:
            self.addAction(action)
        self.addSeparator()
        self.addWidget(QLabel(" Size "))
        self.brush_size = QSpinBox()
        self.brush_size.setRange(1, 500)
        self.brush_size.setValue(brush_size)
        self.brush_size.setSuffix(" px")
        self.brush_size.setToolTip("Brush diameter in image pixels ([ and ] change it).")
        self.addWidget(self.brush_size)
        self.addWidget(QLabel("  Layer "))
        self.layer = QComboBox()
        self.layer.addItem("Attack mask", "attack")
        self.layer.addItem("Diagnostic region", "diagnostic")
        self.layer.setToolTip("Which layer the tools paint: the attack mask (protect/allowed) or "
                              "the diagnostic region used by the saliency checks.")
        self.addWidget(self.layer)
        self.addWidget(QLabel("  Mode "))
        self.mode = QComboBox()
        self.mode.addItem("Protect (keep painted pixels)", "protect")
        self.mode.addItem("Allowed (attack only painted pixels)", "allowed")
        self.mode.setToolTip("Protect: the attack must not change painted pixels. Allowed: it may "
                             "change only painted pixels. Nothing painted = no mask.")
        self.addWidget(self.mode)
        self.addWidget(QLabel("  Opacity "))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(opacity * 100))
        self.opacity.setFixedWidth(90)
        self.opacity.setToolTip("Mask overlay opacity.")
        self.addWidget(self.opacity)
        self.addSeparator()
        for action in edit_actions:
            self.addAction(action)
