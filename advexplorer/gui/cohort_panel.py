"""The Cohort panel: screen a folder (or .npz) in the worker, draw the curves live.

A dockable ``QWidget`` with a tiny public API (for the main window):

* ``CohortPanel(parent=None)``; ``set_model(loaded_model)`` (an
  :class:`advexplorer.io.models.LoadedModel`; the panel is disabled until one is set);
* ``set_source(images, masks=None, mask_mode="none")`` fills the form (``mask_mode``:
  ``none``, ``allowed-dir``, ``protect-dir``, ``allowed-file``, ``protect-file``);
* ``start()`` / ``cancel()`` / ``running``; ``stop_and_wait()`` when the window closes;
* signals ``image_requested(Path, Path | None, str)`` — the user double-clicked a table row
  or clicked a point of the curve: open that image with its mask (mode ``allowed`` /
  ``protect`` / ``none``) and run it; ``screen_finished(list)`` — the ``per_eps`` summary.

The screen is :func:`advexplorer.core.screening.screen_steps`, the generator the CLI runs,
driven by the app's :class:`~advexplorer.gui.worker.RunController` (cancel acts between
engine calls). Images are loaded in the worker thread itself (no loader processes: forking
a process that runs Qt threads is unsafe).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton,
                               QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from advexplorer.errors import UserError
from advexplorer.gui.worker import JobFailed, RunController

MASK_MODES = {"none": "No mask", "protect-dir": "Protect masks (folder)",
              "allowed-dir": "Allowed masks (folder)", "protect-file": "One protect mask (file)",
              "allowed-file": "One allowed mask (file)"}
FLIP_COLOUR, ROBUST_COLOUR, NOISE_COLOUR = "#e15759", "#4e79a7", "#9a9a9a"


@dataclass
class CohortJob:
    """What a screen needs, taken on the GUI thread when Run was pressed."""

    model: object
    images: Path
    masks: Path | None
    mask_mode: str
    eps: list[float]
    config_kwargs: dict
    noise_baseline: bool
    batch_size: int


def cohort_job(job: CohortJob):
    """Worker generator: ``("cohort", entries)``, then ``("progress", ScreenProgress)``…;
    returns the :class:`~advexplorer.core.screening.ScreenResult`."""
    try:
        return (yield from _cohort_job(job))
    except GeneratorExit:
        raise
    except Exception as error:  # superqt drops RuntimeErrors; carry everything as JobFailed
        raise JobFailed(error) from error


def _cohort_job(job: CohortJob):
    from advexplorer.core.attacks import AttackConfig
    from advexplorer.core.screening import screen_steps
    from advexplorer.io.cohort import open_cohort

    mode = job.mask_mode
    cohort = open_cohort(
        job.images, job.model.card,
        masks_dir=job.masks if mode == "allowed-dir" else None,
        protect_dir=job.masks if mode == "protect-dir" else None,
        mask=job.masks if mode == "allowed-file" else None,
        protect=job.masks if mode == "protect-file" else None)
    entries = {e.id: (e.path, e.mask_path or cohort.mask_source, cohort.mask_mode) for e in cohort.entries}
    yield ("cohort", entries)
    config = AttackConfig(**job.config_kwargs)
    loader = cohort.loader(job.batch_size, num_workers=0)
    result = yield from (("progress", p) for p in _steps(screen_steps(
        job.model.classifier, loader, job.eps, config, noise_baseline=job.noise_baseline,
        batch_size=job.batch_size, worst_cases=0)))
    return result


def _steps(generator):
    """Re-yield a generator's items and return its value (so ``yield from`` keeps it)."""
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value
        yield item


class CohortPanel(QWidget):
    """Screen a cohort with the loaded model; see the module docstring for the API."""

    image_requested = Signal(object, object, str)
    screen_finished = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = None
        self.controller = RunController(self)
        self.entries: dict[str, tuple] = {}
        self.rows: list = []
        self.eps: tuple[float, ...] = ()
        self.last_progress = None
        self.started_at = 0.0

        self.images_edit = QLineEdit()
        self.images_edit.setPlaceholderText("folder of images (class sub-folders = labels) or .npz")
        browse_images = QPushButton("Browse…")
        browse_images.clicked.connect(self._browse_images)
        self.mask_mode = QComboBox()
        for key, text in MASK_MODES.items():
            self.mask_mode.addItem(text, key)
        self.masks_edit = QLineEdit()
        browse_masks = QPushButton("Browse…")
        browse_masks.clicked.connect(self._browse_masks)
        self.eps_edit = QLineEdit("0,1/255,2/255,4/255,8/255")
        self.eps_edit.setToolTip("Budgets in pixel units, fractions allowed; 0 is the clean image.")
        self.attack = QComboBox()
        self.attack.addItems(["pgd", "fgsm", "mifgsm", "noise"])
        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)
        self.steps.setValue(10)
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(32)
        self.noise = QCheckBox("Random-noise baseline")
        self.run_button = QPushButton("Screen")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("Load a model, choose images, then Screen.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Images", _row(self.images_edit, browse_images))
        form.addRow("Masks", _row(self.mask_mode, self.masks_edit, browse_masks))
        form.addRow("ε list", self.eps_edit)
        form.addRow("Attack", _row(self.attack, QLabel("steps"), self.steps, QLabel("batch"), self.batch))
        form.addRow("", self.noise)

        pg.setConfigOptions(antialias=True)
        self.plot = pg.PlotWidget(background="#1e1f22")
        self.plot.setLabel("bottom", "budget ε (×255)")
        self.plot.setLabel("left", "share of images")
        self.plot.setYRange(0, 1)
        self.plot.addLegend(offset=(10, 10))
        self.curves = {}
        self.bars = {}
        for key, name, colour in (("flip", "flip rate", FLIP_COLOUR), ("robust", "robust accuracy", ROBUST_COLOUR),
                                  ("noise", "noise flip rate", NOISE_COLOUR)):
            curve = self.plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=8,
                                   symbolBrush=colour, name=name)
            curve.sigPointsClicked.connect(self._point_clicked)
            bars = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), bottom=np.zeros(0),
                                   beam=0.15, pen=pg.mkPen(colour))
            self.plot.addItem(bars)
            self.curves[key], self.bars[key] = curve, bars

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["image", "label", "clean prediction", "first flipping ε"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.cellDoubleClicked.connect(self._row_activated)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(_row(self.run_button, self.cancel_button, self.progress, layout_only=True))
        layout.addWidget(self.status)
        layout.addWidget(self.plot, 2)
        layout.addWidget(self.table, 3)

        self.controller.step.connect(self._on_step)
        self.controller.finished_run.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.cancelled.connect(lambda: self._set_status("Cancelled; the images screened so far are shown."))
        self.controller.stopped.connect(self._on_stopped)
        self._update_enabled()

    # --- public API ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.controller.running

    def set_model(self, loaded_model) -> None:
        """Screen with this :class:`~advexplorer.io.models.LoadedModel` from now on."""
        self.model = loaded_model
        self._update_enabled()

    def set_source(self, images, masks=None, mask_mode: str = "none") -> None:
        """Fill the form: the image folder/.npz, the mask folder/file and its mode."""
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {', '.join(MASK_MODES)}")
        self.images_edit.setText(str(images))
        self.masks_edit.setText("" if masks is None else str(masks))
        self.mask_mode.setCurrentIndex(list(MASK_MODES).index(mask_mode))

    def start(self) -> None:
        """Start a screen with the form's settings (errors go to the status line)."""
        if self.running:
            return
        try:
            job = self._job()
        except UserError as error:
            self._set_status(str(error), error=True)
            return
        self.entries, self.rows, self.eps, self.last_progress = {}, [], tuple(sorted(set(job.eps))), None
        self.table.setRowCount(0)
        self.progress.setValue(0)
        self.started_at = time.monotonic()
        self._set_status("Reading the cohort…")
        self.controller.start(cohort_job, job)
        self._update_enabled()

    def cancel(self) -> None:
        """Stop after the current engine call; finished images stay in the table."""
        self.controller.cancel()

    def stop_and_wait(self, timeout_ms: int = 10000) -> bool:
        return self.controller.stop_and_wait(timeout_ms)

    # --- internals -------------------------------------------------------------------

    def _job(self) -> CohortJob:
        from advexplorer.commands._args import number_list

        if self.model is None:
            raise UserError("Load a model first.")
        images = self.images_edit.text().strip()
        if not images:
            raise UserError("Choose a folder of images or a .npz file to screen.")
        mode = self.mask_mode.currentData()
        masks = self.masks_edit.text().strip() or None
        if mode != "none" and masks is None:
            raise UserError(f"Choose the mask {'file' if mode.endswith('file') else 'folder'}, or set Masks to 'No mask'.")
        try:
            eps = number_list(self.eps_edit.text())
        except Exception as error:  # argparse's error type carries the message
            raise UserError(f"ε list: {error}") from None
        return CohortJob(model=self.model, images=Path(images), masks=Path(masks) if masks else None,
                         mask_mode=mode, eps=eps,
                         config_kwargs={"method": self.attack.currentText(), "steps": self.steps.value()},
                         noise_baseline=self.noise.isChecked(), batch_size=self.batch.value())

    def _browse_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.images_edit.setText(folder)

    def _browse_masks(self) -> None:
        if str(self.mask_mode.currentData()).endswith("file"):
            path, _ = QFileDialog.getOpenFileName(self, "Mask", "", "Images (*.png *.tif *.tiff *.bmp)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Folder of masks named like the images")
        if path:
            self.masks_edit.setText(path)

    def _update_enabled(self) -> None:
        running = self.running
        self.run_button.setEnabled(self.model is not None and not running)
        self.cancel_button.setEnabled(running)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e15759;" if error else "")

    def _on_step(self, item) -> None:
        kind, payload = item
        if kind == "cohort":
            self.entries = payload
            return
        progress = payload
        self.last_progress = progress
        self._add_rows(progress.rows_done)
        total = progress.images_total or 0
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(progress.images_done)
        eta = "" if progress.eta_s is None else f" · about {_clock(progress.eta_s)} left"
        skipped = f" · {len(progress.skipped)} unreadable skipped" if progress.skipped else ""
        self._set_status(f"{progress.images_done} of {total} images{eta}{skipped}")
        self._draw(progress)

    def _draw(self, progress) -> None:
        x = np.array([e * 255 for e in progress.eps], dtype=float)
        series = {"flip": progress.flipped}
        if progress.n_labelled:
            series["robust"] = progress.robust
        if progress.noise_flipped is not None:
            series["noise"] = progress.noise_flipped
        from advexplorer.core.screening import wilson_interval

        for key, curve in self.curves.items():
            counts = series.get(key)
            n = progress.n_labelled if key == "robust" else progress.n
            if counts is None or n == 0:
                curve.setData([], [])
                self.bars[key].setData(x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), bottom=np.zeros(0))
                continue
            rate = np.array([k / n for k in counts])
            intervals = np.array([wilson_interval(int(k), n) for k in counts])
            curve.setData(x, rate)
            self.bars[key].setData(x=x, y=rate, top=intervals[:, 1] - rate, bottom=rate - intervals[:, 0])

    def _add_rows(self, rows) -> None:
        if not rows:
            return
        from advexplorer.core.screening import eps_label

        classes = tuple(self.model.card.classes) if self.model is not None else ()
        self.table.setSortingEnabled(False)
        for row in rows:
            self.rows.append(row)
            r = self.table.rowCount()
            self.table.insertRow(r)
            flip = "not flipped" if row.flip_eps is None else eps_label(row.flip_eps)
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

    def _request(self, file_id: str) -> None:
        path, mask, mode = self.entries.get(file_id, (None, None, "none"))
        if path is None:  # .npz rows have no file of their own
            self._set_status(f"{file_id} comes from a .npz archive and cannot be opened as a file.", error=True)
            return
        self.image_requested.emit(Path(path), None if mask is None else Path(mask), mode)

    def _row_activated(self, row: int, _column: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self._request(item.data(Qt.ItemDataRole.UserRole))

    def _point_clicked(self, _curve, points, *_args) -> None:
        """Select the images that first flipped at the clicked ε; open the first of them."""
        if not len(points) or not self.eps:
            return
        value = points[0].pos().x() / 255
        j = int(np.argmin([abs(e - value) for e in self.eps]))
        matches = [r.file for r in self.rows if r.flip_eps is not None and abs(r.flip_eps - self.eps[j]) < 1e-12]
        selection = self.table.selectionModel()
        selection.clearSelection()
        flags = selection.SelectionFlag.Select | selection.SelectionFlag.Rows
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) in matches:
                selection.select(self.table.model().index(r, 0), flags)
        if matches:
            self._request(matches[0])

    def _on_finished(self, result) -> None:
        from advexplorer.core.screening import summarize

        per_eps = summarize(self.rows, self.eps, noise_baseline=bool(
            self.last_progress is not None and self.last_progress.noise_flipped is not None))
        last = per_eps[-1] if per_eps else None
        if last:
            self._set_status(f"Done: {last['flipped']} of {last['n']} images flipped at ε = "
                             f"{last['eps_label']} ({100 * last['flip_rate']:.1f} %, 95 % CI "
                             f"{100 * last['flip_rate_ci95'][0]:.1f}–{100 * last['flip_rate_ci95'][1]:.1f} %)"
                             f" in {_clock(time.monotonic() - self.started_at)}.")
        self.screen_finished.emit(per_eps)

    def _on_failed(self, failure: JobFailed) -> None:
        self._set_status(failure.message, error=True)

    def _on_stopped(self) -> None:
        self._update_enabled()


class _SortItem(QTableWidgetItem):
    """Sorts by the number stored under UserRole+1 when there is one (ε), else by text."""

    def __lt__(self, other) -> bool:
        mine, theirs = self.data(Qt.ItemDataRole.UserRole + 1), other.data(Qt.ItemDataRole.UserRole + 1)
        if mine is not None and theirs is not None:
            return mine < theirs
        return self.text() < other.text()


def _name(classes, index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _row(*widgets, layout_only: bool = False):
    box = QHBoxLayout()
    box.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        box.addWidget(widget)
    if layout_only:
        return box
    holder = QWidget()
    holder.setLayout(box)
    return holder
