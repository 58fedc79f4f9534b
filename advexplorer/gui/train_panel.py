"""The Train panel: fine-tune the loaded model into a robust twin and watch it learn.

A dockable ``QWidget`` with a small public API (for the main window):

* ``TrainPanel(parent=None)``; ``set_model(loaded_model)`` (a
  :class:`~advexplorer.io.models.LoadedModel`; the panel is disabled until one is set);
* ``set_images(path)`` / ``set_out_dir(path)`` fill the form;
* ``start()``, ``toggle_pause()``, ``cancel()``, ``running``; ``stop_and_wait()`` on close;
* signal ``model_trained(Path, dict)`` — the twin's weights path and card: open it beside
  the original to compare.

Three tabs, redrawn per batch at most ~10 times a second: the training loss (per batch,
smoothed, and the epoch means), held-out clean and robust accuracy per epoch with 95 %
Wilson intervals, and the trade-off (:class:`~advexplorer.gui.tradeoff_view.TradeoffView`) —
clean against robust accuracy, with both intervals, beside the robustness curves (accuracy
against ε) of the original, every twin trained in this session and every defended variant
compared there (naive and adaptive attack side by side).

The job is :func:`advexplorer.session.training_job.training_job`, the generator the CLI
runs, driven by the app's :class:`~advexplorer.gui.worker.TaskRunner`: Pause holds it
between batches, Cancel stops it at the next batch and the twin is still written from the
best weights. Importing this module imports neither torch nor :mod:`advexplorer.commands`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from advexplorer.config import over_255, parse_number
from advexplorer.errors import UserError
from advexplorer.gui.tradeoff_view import TradeoffView
from advexplorer.gui.worker import JobFailed, TaskRunner

#: Training methods (= advexplorer.core.training.TRAINING_METHODS, kept torch-free here).
METHOD_LABELS = {"clean": "Clean (standard)", "pgd": "PGD-AT (Madry et al. 2018)",
                 "trades": "TRADES (Zhang et al. 2019)", "fast": "Fast FGSM-AT (Wong et al. 2020)"}
LOSS_COLOUR, SMOOTH_COLOUR = "#7f7f7f", "#f28e2b"
CLEAN_COLOUR, ROBUST_COLOUR = "#59a14f", "#4e79a7"
REDRAW_S = 0.1
ACCURACY_OFFSET = 0.04


def _interval_bars(x, values, intervals, colour) -> pg.ErrorBarItem:
    low = np.array([v - i[0] for v, i in zip(values, intervals)], dtype=float)
    high = np.array([i[1] - v for v, i in zip(values, intervals)], dtype=float)
    return pg.ErrorBarItem(x=np.asarray(x, dtype=float), y=np.asarray(values, dtype=float),
                           top=high, bottom=low, beam=0.06, pen=pg.mkPen(colour))


class TrainPanel(QWidget):
    model_trained = Signal(object, object)   # weights Path, card dict

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("TrainPanel")
        self.model = None
        self.runner = TaskRunner(self)
        self.runner.step.connect(self._on_step)
        self.runner.finished_run.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.stopped.connect(self._on_stopped)
        self.runner.paused_changed.connect(self._on_paused)
        self._reset_series()
        self.compared: list[tuple[str, object]] = []   # (name, Classifier): original and twins
        self.held_out = None           # the held-out split of the last training (LabelledImages)
        self.curve_eps: tuple[float, ...] | None = None
        self._last_draw = 0.0
        self._build()
        self._update_enabled()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        form = QFormLayout()
        self.images_edit = QLineEdit()
        self.images_edit.setPlaceholderText("folder with one subfolder per class, or manifest.csv")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_images)
        form.addRow("Images", _row(self.images_edit, browse))
        self.method_combo = QComboBox()
        for key, label in METHOD_LABELS.items():
            self.method_combo.addItem(label, key)
        self.method_combo.setCurrentIndex(1)
        form.addRow("Method", self.method_combo)
        self.eps_edit = QLineEdit("4/255")
        self.eps_edit.setToolTip("L∞ training and evaluation budget in pixel units (fractions allowed)")
        self.steps_spin = _spin(1, 100, 7)
        self.epochs_spin = _spin(1, 1000, 5)
        form.addRow("ε", _row(self.eps_edit, QLabel("steps"), self.steps_spin, QLabel("epochs"), self.epochs_spin))
        self.lr_edit = QLineEdit("1e-3")
        self.held_out_edit = QLineEdit("0.2")
        self.batch_spin = _spin(1, 4096, 64)
        form.addRow("Learning rate", _row(self.lr_edit, QLabel("held out"), self.held_out_edit,
                                          QLabel("batch"), self.batch_spin))
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("new or empty folder for the trained twin")
        form.addRow("Output", self.out_edit)

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop at the next batch; the twin is written from the best weights so far")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.status = QLabel("Load a model to train it.")
        self.status.setWordWrap(True)

        self.loss_plot = pg.PlotWidget(background="#1e1f22", title="training loss")
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.batch_curve = self.loss_plot.plot([], [], pen=pg.mkPen(LOSS_COLOUR, width=1), name="per batch")
        self.smooth_curve = self.loss_plot.plot([], [], pen=pg.mkPen(SMOOTH_COLOUR, width=2), name="smoothed")
        self.epoch_loss_curve = self.loss_plot.plot([], [], pen=None, symbol="o", symbolBrush=SMOOTH_COLOUR,
                                                    name="epoch mean")
        self.accuracy_plot = pg.PlotWidget(background="#1e1f22", title="held-out accuracy (95 % Wilson)")
        self.accuracy_plot.setLabel("bottom", "epoch")
        self.accuracy_plot.setYRange(0, 1)
        self.accuracy_plot.addLegend(offset=(-10, -10))
        self.clean_curve = self.accuracy_plot.plot([], [], pen=pg.mkPen(CLEAN_COLOUR, width=2), symbol="o",
                                                   symbolBrush=CLEAN_COLOUR, name="clean")
        self.robust_curve = self.accuracy_plot.plot([], [], pen=pg.mkPen(ROBUST_COLOUR, width=2), symbol="s",
                                                    symbolBrush=ROBUST_COLOUR, name="robust (PGD at ε)")
        self.accuracy_bars: list[pg.ErrorBarItem] = []
        self.tradeoff = TradeoffView()
        self.tradeoff_plot = self.tradeoff.scatter_plot
        self.tradeoff.compare_requested.connect(self.compare_defence)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.loss_plot, "Loss")
        self.tabs.addTab(self.accuracy_plot, "Accuracy")
        self.tabs.addTab(self.tradeoff, "Trade-off")

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(_row(self.start_button, self.pause_button, self.cancel_button, self.progress,
                              layout_only=True))
        layout.addWidget(self.status)
        layout.addWidget(self.tabs, stretch=1)

    # ------------------------------------------------------------------ public API
    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def points(self) -> list[dict]:
        """The trade-off points: name, clean, robust, their intervals, kind."""
        return self.tradeoff.points

    def set_model(self, loaded_model) -> None:
        # The trade-off points stay: a twin opened after training joins its original there.
        self.model = loaded_model
        self._set_status(f"Train a twin of {loaded_model.card.name}." if loaded_model else "Load a model to train it.")
        self._update_enabled()

    def set_images(self, path) -> None:
        self.images_edit.setText(str(path))

    def set_out_dir(self, path) -> None:
        self.out_edit.setText(str(path))

    def start(self) -> None:
        if self.running or self.model is None:
            return
        try:
            job = self._job()
        except UserError as error:
            self._set_status(str(error), error=True)
            return
        from advexplorer.session.training_job import training_job  # torch: only when training starts

        self._reset_series()
        self._clear_accuracy_bars()
        self._redraw()
        self.progress.setRange(0, job.recipe.epochs)
        self.progress.setValue(0)
        self._set_status(f"Measuring the original, then training ({METHOD_LABELS[job.recipe.method]}) …")
        self.runner.start(training_job, job)
        self._update_enabled()

    def toggle_pause(self) -> None:
        self.runner.toggle_pause()

    def cancel(self) -> None:
        if self.running:
            self._set_status("Cancelling: finishing this batch, then writing the best weights …")
            self.runner.stop_event.set()  # the job writes the twin from the best weights

    def stop_and_wait(self, timeout_ms: int = 10000) -> bool:
        return self.runner.stop_and_wait(timeout_ms)

    # ------------------------------------------------------------------ the form
    def _job(self):
        from advexplorer.core.training import TrainConfig
        from advexplorer.session.runs import check_output_dir
        from advexplorer.session.training_job import TrainJob, save_format

        images = self.images_edit.text().strip()
        if not images:
            raise UserError("Choose the training images: a folder with one subfolder per class, or a CSV manifest.")
        out = self.out_edit.text().strip()
        if not out:
            raise UserError("Choose an output folder (new or empty) for the trained twin.")
        recipe = TrainConfig(method=self.method_combo.currentData(), eps=parse_number(self.eps_edit.text(), "ε"),
                             steps=self.steps_spin.value(), epochs=self.epochs_spin.value(),
                             lr=parse_number(self.lr_edit.text(), "learning rate"),
                             batch_size=self.batch_spin.value()).validate()
        save_format(self.model)
        from advexplorer.core.training import curve_budgets

        return TrainJob(model=self.model, images=Path(images), recipe=recipe, out_dir=check_output_dir(out),
                        held_out=parse_number(self.held_out_edit.text(), "held-out fraction"),
                        curve_eps=curve_budgets(recipe.eps))

    def compare_defence(self, defence: str) -> None:
        """Measure every compared model behind ``defence`` (e.g. ``"jpeg:75"``) on the held-out
        images, naive and adaptive; the curves and points join the trade-off view."""
        if self.running or self.model is None:
            return
        from advexplorer.core.training import curve_budgets
        from advexplorer.session.training_job import DefenceJob, defence_job

        try:
            eps = self.tradeoff.eps if self.tradeoff.eps is not None else parse_number(self.eps_edit.text(), "ε")
            images = self.images_edit.text().strip()
            if self.held_out is None and not images:
                raise UserError("Choose the images to measure the defence on: a folder with one subfolder "
                                "per class, or a CSV manifest (its held-out split is used).")
            job = DefenceJob(models=self.compared or [("original", self.model.classifier)], defence=defence,
                             eps_list=self.curve_eps or curve_budgets(eps), steps=self.steps_spin.value(),
                             data=self.held_out, images=Path(images) if images else None, card=self.model.card,
                             held_out=parse_number(self.held_out_edit.text(), "held-out fraction"),
                             device=self.model.device, bare=not self.compared)
        except UserError as error:
            self._set_status(str(error), error=True)
            return
        self.tradeoff.eps = eps
        self.progress.setRange(0, len(job.models) * len(job.eps_list) * (3 if job.bare else 2))
        self.progress.setValue(0)
        self._set_status(f"Measuring {defence} naively and adaptively on the held-out images …")
        self.runner.start(defence_job, job)
        self._update_enabled()

    def _browse_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Training images (one subfolder per class)")
        if folder:
            self.images_edit.setText(folder)

    # ------------------------------------------------------------------ progress
    def _reset_series(self) -> None:
        self.batch_x, self.batch_loss, self.batch_smooth = [], [], []
        self.epoch_x, self.epoch_loss, self.clean, self.robust = [], [], [], []
        self.clean_intervals, self.robust_intervals = [], []

    def _on_step(self, item) -> None:
        from advexplorer.core.training import BatchProgress, CurveProgress, EpochProgress

        if isinstance(item, CurveProgress):
            if self.progress.maximum() != item.total:
                self.progress.setRange(0, item.total)
            self.progress.setValue(item.done)
            self.status.setText(f"robustness curve of {item.name}: ε = {over_255(item.eps)}, accuracy "
                                f"{item.accuracy.value:.1%} ({item.done}/{item.total})")
            return
        if isinstance(item, BatchProgress):
            self.batch_x.append(item.epoch - 1 + item.batch / item.batches)
            self.batch_loss.append(item.loss)
            self.batch_smooth.append(item.smoothed_loss)
            self.status.setText(f"epoch {item.epoch}, batch {item.batch}/{item.batches}: loss {item.loss:.4f} "
                                f"(smoothed {item.smoothed_loss:.4f}), batch accuracy {item.accuracy:.0%}")
        elif isinstance(item, EpochProgress):
            self.epoch_x.append(item.epoch)
            self.epoch_loss.append(item.train_loss)
            self.clean.append(item.clean.value)
            self.robust.append(item.robust.value)
            self.clean_intervals.append(item.clean.interval)
            self.robust_intervals.append(item.robust.interval)
            self.progress.setValue(item.epoch)
            self._set_status(f"epoch {item.epoch}/{item.epochs} in {item.seconds:.1f} s: clean {item.clean.value:.1%}, "
                             f"robust {item.robust.value:.1%}" + ("  — best so far, checkpoint saved" if item.best else ""))
            self._last_draw = 0.0
        now = time.monotonic()
        if now - self._last_draw >= REDRAW_S:
            self._last_draw = now
            self._redraw()

    def _redraw(self) -> None:
        self.batch_curve.setData(np.asarray(self.batch_x, dtype=np.float32), np.asarray(self.batch_loss, dtype=np.float32))
        self.smooth_curve.setData(np.asarray(self.batch_x, dtype=np.float32),
                                  np.asarray(self.batch_smooth, dtype=np.float32))
        self.epoch_loss_curve.setData(np.asarray(self.epoch_x, dtype=np.float32),
                                      np.asarray(self.epoch_loss, dtype=np.float32))
        # Clean and robust sit a little left and right of the epoch, so equal values and
        # their interval bars do not hide each other.
        epochs = np.asarray(self.epoch_x, dtype=np.float32)
        self.clean_curve.setData(epochs - ACCURACY_OFFSET, np.asarray(self.clean, dtype=np.float32))
        self.robust_curve.setData(epochs + ACCURACY_OFFSET, np.asarray(self.robust, dtype=np.float32))
        self._clear_accuracy_bars()
        for values, intervals, colour, shift in ((self.clean, self.clean_intervals, CLEAN_COLOUR, -ACCURACY_OFFSET),
                                                 (self.robust, self.robust_intervals, ROBUST_COLOUR, ACCURACY_OFFSET)):
            if values:
                bars = _interval_bars(epochs + shift, values, intervals, colour)
                self.accuracy_plot.addItem(bars)
                self.accuracy_bars.append(bars)

    def _clear_accuracy_bars(self) -> None:
        for bars in self.accuracy_bars:
            self.accuracy_plot.removeItem(bars)
        self.accuracy_bars = []

    def add_tradeoff_point(self, name: str, clean, robust, original: bool = False) -> None:
        """Put a model on the trade-off plot (``clean``/``robust``: core.training.Accuracy)."""
        self.tradeoff.add_point(name, clean, robust, original=original)

    def _on_finished(self, outcome) -> None:
        if isinstance(outcome, list):  # a defence comparison: robustness curves
            self._defence_measured(outcome)
            return
        result = outcome.result
        self.tradeoff.eps = result.config.eps
        self.curve_eps = tuple(outcome.curves[0].eps) if outcome.curves else self.curve_eps
        if outcome.held_out is not None:
            self.held_out = outcome.held_out
        twin_name = f"{result.config.method} twin"
        if not any(p["original"] for p in self.points):
            self.add_tradeoff_point("original", result.original_clean, result.original_robust, original=True)
            self.compared = [("original", self.model.classifier)] if self.model is not None else []
        names = {name for name, _ in self.compared}
        while twin_name in names:  # a second twin of the same method gets its own name
            twin_name += "′"
        self.add_tradeoff_point(twin_name, result.clean, result.robust)
        if outcome.twin is not None:
            self.compared.append((twin_name, outcome.twin))
        curves = [replace_name(c, twin_name) if c.name != "original" else c for c in outcome.curves]
        if any(c.name == "original" for c in self.tradeoff.curves):
            curves = [c for c in curves if c.name != "original"]
        self.tradeoff.add_curves(curves, result.config.eps)
        self._redraw()
        self._set_status(outcome.card["compared_with_original"]["statement"]
                         + f" Wrote {outcome.weights_path.name}"
                         + (" (cancelled: best weights so far)." if result.stopped == "cancelled" else "."))
        self.model_trained.emit(outcome.weights_path, outcome.card)

    def _defence_measured(self, curves) -> None:
        eps = self.tradeoff.eps
        for curve in curves:
            if curve.kind == "model" and not any(p["name"] == curve.name for p in self.points):
                self.add_tradeoff_point(curve.name, curve.at(0), curve.at(eps), original=curve.name == "original")
                if not self.compared:
                    self.compared = [(curve.name, self.model.classifier)]
        self.tradeoff.add_curves(curves, eps)
        self.progress.setValue(self.progress.maximum())
        self._set_status(self.tradeoff.verdict.text().split("\n")[0] if curves else "Stopped.")

    def _on_failed(self, failure: JobFailed) -> None:
        self._set_status(failure.message, error=True)

    def _on_stopped(self) -> None:
        self.pause_button.setText("Pause")
        self._update_enabled()

    def _on_paused(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        if paused:
            self.status.setText("Paused between batches.")

    def _update_enabled(self) -> None:
        running = self.running
        self.start_button.setEnabled(self.model is not None and not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.tradeoff.set_busy(running or self.model is None)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e15759;" if error else "")


def replace_name(curve, name: str):
    """The same curve under another name (a twin named after its place in this session)."""
    from dataclasses import replace

    return replace(curve, name=name)


def _spin(low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin


def _row(*widgets, layout_only: bool = False):
    layout = QHBoxLayout()
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    if layout_only:
        return layout
    holder = QWidget()
    holder.setLayout(layout)
    return holder
