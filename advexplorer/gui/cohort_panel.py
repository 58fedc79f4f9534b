"""The Cohort panel: screen a folder (or .npz) in the worker, draw the curves live.

A dockable ``QWidget`` with a tiny public API (for the main window):

* ``CohortPanel(parent=None)``; ``set_model(loaded_model)`` (an
  :class:`advexplorer.io.models.LoadedModel`; the panel is disabled until one is set);
* ``set_source(images, masks=None, mask_mode="none")`` fills the form (``mask_mode``:
  ``none``, ``allowed-dir``, ``protect-dir``, ``allowed-file``, ``protect-file``);
* ``start()`` / ``cancel()`` / ``running``; ``stop_and_wait()`` when the window closes;
* ``result`` — the :class:`~advexplorer.core.screening.ScreenResult` of the last finished
  screen (worst cases, monotone check, cost), shown below the curves; ``naive_result`` the
  naive attack's beside an adaptive one (else None); ``summary`` the screen's
  ``summary.json`` dict (with ``defence``/``precision`` entries when a defence or another
  precision was screened); ``write_report(folder)`` writes it with ``report.html`` and the
  per-image CSVs, as ``advexplorer screen`` does;
* ``set_defence(defence, adaptive, precision)`` fills the defence row (``"jpeg:75"`` or None,
  ``none``/``bpda``/``eot``, a precision of :data:`advexplorer.config.PRECISIONS`);
* signals ``image_requested(Path, Path | None, str, dict)`` — the user double-clicked a
  table row, clicked a point of the curve or a worst case: open that image with its mask
  (mode ``allowed`` / ``protect`` / ``none``) and attack it with the settings in the dict
  (see :attr:`CohortPanel.image_requested`); ``screen_finished(list)`` — the ``per_eps``
  summary.

The screen is :func:`advexplorer.core.screening.screen_steps`, the generator the CLI runs,
driven by the app's task runner (cancel acts between engine calls). A defence and another
precision wrap the model with :func:`advexplorer.session.defended.defend_model`, the function
``advexplorer screen --defense/--adaptive/--precision`` calls; with an adaptive attack the
naive one is screened after it, and both robust accuracies are compared by
:func:`advexplorer.session.defended.screen_defence_summary`, as in the CLI's summary. Images are loaded in
the worker thread itself (no loader processes: forking a process that runs Qt threads is
unsafe). Importing this module imports neither torch nor :mod:`advexplorer.commands`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton,
                               QScrollArea, QSpinBox, QTableWidget, QTableWidgetItem, QTabWidget,
                               QToolButton, QVBoxLayout, QWidget)

from advexplorer.config import (DEFENCE_KINDS, METHOD_INFO, METHODS, NORM_LABELS, NORMS, PRECISIONS,
                                AttackConfig, eps_argument, format_budget, parse_number_list)
from advexplorer.errors import UserError
from advexplorer.gui.controllers.cohort import (ADAPTIVE_CHOICES, ADAPTIVE_TOOLTIP, PRECISION_TOOLTIP,
                                                CohortOutcome, defence_columns, defence_rows, defence_verdict,
                                                parse_defence_form, screen_summary, write_screen_folder)
from advexplorer.gui.tradeoff_view import DEFAULT_VALUES as DEFENCE_DEFAULTS
from advexplorer.gui.views import LegendLabel
from advexplorer.gui.worker import JobFailed, TaskRunner

MASK_MODES = {"none": "No mask", "protect-dir": "Protect masks (folder)",
              "allowed-dir": "Allowed masks (folder)", "protect-file": "One protect mask (file)",
              "allowed-file": "One allowed mask (file)"}
FLIP_COLOUR, ROBUST_COLOUR, NOISE_COLOUR, NAIVE_COLOUR = "#e15759", "#4e79a7", "#9a9a9a", "#f28e2b"
#: The curves: key, legend name, colour. ``naive``: the naive attack through a defence,
#: screened beside an adaptive one (robust accuracy, or the share not flipped without labels).
CURVES = (("flip", "flip rate", FLIP_COLOUR), ("robust", "robust accuracy", ROBUST_COLOUR),
          ("noise", "noise flip rate", NOISE_COLOUR), ("naive", "robust accuracy, naive attack", NAIVE_COLOUR))
DEFAULT_EPS = "0,1/255,2/255,4/255,8/255"  # the same default as `advexplorer screen`
#: Worst cases kept for the panel (the CLI's --worst default).
WORST_CASES = 8
#: The attack form's fields (AttackPanel.set_values keywords) a screen's settings fill in;
#: AttackConfig fields the form does not show are left out rather than refused by it.
FORM_FIELDS = ("method", "norm", "eps", "step_size", "steps", "targeted", "random_start", "seed",
               "restarts", "early_stop", "decay")
THUMBNAIL_PX = 112


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
    verify_monotone: int = 0
    worst_cases: int = WORST_CASES
    defence: str | None = None        # "jpeg:75", parsed by advexplorer.config
    adaptive: str = "none"
    precision: str = "float32"


def cohort_job(job: CohortJob):
    """Worker generator: ``("cohort", entries)``, then ``("progress", ScreenProgress)``…,
    with an adaptive attack then ``("naive", ScreenProgress)``… of the naive one; returns a
    :class:`~advexplorer.gui.controllers.cohort.CohortOutcome`."""
    try:
        return (yield from _cohort_job(job))
    except GeneratorExit:
        raise
    except Exception as error:  # superqt drops RuntimeErrors; carry everything as JobFailed
        raise JobFailed(error) from error


def _cohort_job(job: CohortJob):
    from advexplorer.core.screening import screen_steps
    from advexplorer.io.cohort import open_cohort
    from advexplorer.session.defended import cohort_calibration, defend_model, naive_classifier

    started = time.perf_counter()
    mode = job.mask_mode
    cohort = open_cohort(
        job.images, job.model.card,
        masks_dir=job.masks if mode == "allowed-dir" else None,
        protect_dir=job.masks if mode == "protect-dir" else None,
        mask=job.masks if mode == "allowed-file" else None,
        protect=job.masks if mode == "protect-file" else None)
    entries = {e.id: (e.path, e.mask_path or cohort.mask_source, cohort.mask_mode) for e in cohort.entries}
    yield ("cohort", entries)
    fingerprint = cohort.fingerprint()  # the image set's SHA-256, as the CLI records it
    # The defended / lower-precision model, as `advexplorer screen` builds it (int8-static is
    # calibrated on the cohort's first images).
    model, info = defend_model(job.model, job.defence, job.adaptive, job.precision,
                               calibration=lambda: cohort_calibration(cohort))
    config = AttackConfig(**job.config_kwargs)
    steps = screen_steps(model.classifier, cohort.loader(job.batch_size, num_workers=0), job.eps, config,
                         noise_baseline=job.noise_baseline, batch_size=job.batch_size,
                         verify_monotone=job.verify_monotone, worst_cases=job.worst_cases)
    # A generator function, not a generator expression: `yield from` hands back the
    # screen's ScreenResult only when the inner generator itself returns it.
    result = yield from _tagged("progress", steps)
    naive = naive_classifier(info)
    naive_result = None
    if naive is not None:  # the CLI's naive pass: the grid only (no noise baseline, no check)
        steps = screen_steps(naive, cohort.loader(job.batch_size, num_workers=0), job.eps, config,
                             batch_size=job.batch_size, worst_cases=job.worst_cases)
        naive_result = yield from _tagged("naive", steps)
    outcome = CohortOutcome(result=result, naive=naive_result, info=info, model=model, cohort=cohort,
                            fingerprint=fingerprint, elapsed_s=time.perf_counter() - started)
    # Built here, not on the GUI thread: the summary's flags run the model (a gradient probe).
    outcome.summary = screen_summary(job, outcome, list(result.rows))
    return outcome


def _tagged(kind: str, generator):
    """Re-yield a generator's items as ``(kind, item)`` and return its return value."""
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value
        yield (kind, item)


def attack_settings(config_kwargs: dict, eps: float) -> dict:
    """The attack form's values (:meth:`AttackPanel.set_values` keys) for one image of a screen.

    The screen's own settings at budget ``eps``, written as the form shows it ('3/255'),
    with early stop on because the screen counts an image as flipped at the first iterate
    that flips it.
    """
    config = AttackConfig(**{**config_kwargs, "eps": eps})
    settings = {key: value for key, value in config.to_json().items() if key in FORM_FIELDS}
    settings["eps"] = eps_argument(eps) if config.norm == "linf" else repr(float(eps))
    settings["early_stop"] = True
    return settings


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


class CohortPanel(QWidget):
    """Screen a cohort with the loaded model; see the module docstring for the API."""

    #: ``image_requested(path, mask, mask_mode, attack_settings)``: open ``path`` (with
    #: ``mask`` as an ``allowed``/``protect`` mask, or none) and attack it.
    #: ``attack_settings`` is a dict of :meth:`AttackPanel.set_values` keywords — method,
    #: norm, eps (text such as '3/255'), step_size, steps, targeted, random_start, seed,
    #: restarts, early_stop, decay — the screen's own settings with ε = the smallest
    #: screened ε at which this image flipped (the largest screened ε if it never did).
    image_requested = Signal(object, object, str, object)
    screen_finished = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = None
        self.controller = TaskRunner(self)
        self.entries: dict[str, tuple] = {}
        self.rows: list = []
        self.rows_by_file: dict[str, object] = {}
        self.eps: tuple[float, ...] = ()
        self.job: CohortJob | None = None
        self.result = None
        self.naive_result = None
        self.outcome: CohortOutcome | None = None
        self.summary: dict | None = None
        self.naive_progress = None
        self.last_progress = None
        self._defence_shown: str | None = None  # the defence kind the row last showed
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
        self.eps_edit = QLineEdit(DEFAULT_EPS)
        self.eps_edit.setToolTip("Budgets in pixel units, fractions allowed; 0 is the clean image.")
        self.attack = QComboBox()
        for position, name in enumerate(METHODS):
            info = METHOD_INFO[name]
            self.attack.addItem(info.label, name)  # short: the panel often sits in a narrow dock
            self.attack.setItemData(position, info.description, Qt.ItemDataRole.ToolTipRole)
        self.norm = QComboBox()
        for name in NORMS:
            self.norm.addItem(NORM_LABELS[name], name)
        self.steps = QSpinBox()
        self.steps.setMaximumWidth(100)
        self.steps.setRange(1, 1000)
        self.steps.setValue(10)
        self.batch = QSpinBox()
        self.batch.setMaximumWidth(100)
        self.batch.setRange(1, 1024)
        self.batch.setValue(32)
        self.noise = QCheckBox("Random-noise baseline")
        self.verify = QSpinBox()
        self.verify.setMaximumWidth(130)
        self.verify.setRange(0, 100000)
        self.verify.setSpecialValueText("off")
        self.verify.setSuffix(" images")
        self.verify.setToolTip("Re-attack up to N flipped images at every larger ε the monotone "
                               "shortcut skipped, and report where the attack disagrees.")
        # The defence row: what sits in front of the model, how the attack treats it, precision.
        self.defence_kind = QComboBox()
        self.defence_kind.addItem("No defence", None)
        for name, kind in DEFENCE_KINDS.items():
            self.defence_kind.addItem(kind.label, name)
            self.defence_kind.setItemData(self.defence_kind.count() - 1, kind.citation,
                                          Qt.ItemDataRole.ToolTipRole)
        self.defence_kind.setToolTip("A preprocessing defence in front of the model (advexplorer screen --defense).")
        self.defence_value = QLineEdit()
        self.defence_value.setMaximumWidth(70)
        self.defence_parameter = QLabel("")
        self.adaptive = QComboBox()
        for position, (key, label, text) in enumerate(ADAPTIVE_CHOICES):
            self.adaptive.addItem(label, key)
            self.adaptive.setItemData(position, text, Qt.ItemDataRole.ToolTipRole)
        self.adaptive.setToolTip(ADAPTIVE_TOOLTIP)
        self.precision = QComboBox()
        for name in PRECISIONS:
            self.precision.addItem(name, name)
        self.precision.setToolTip(PRECISION_TOOLTIP)
        self.defence_kind.currentIndexChanged.connect(self._defence_kind_changed)
        self.run_button = QPushButton("Screen")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.report_button = QPushButton("Report…")
        self.report_button.setToolTip("Write the finished screen into a new folder as advexplorer screen "
                                      "does: report.html, summary.json and the per-image CSVs.")
        self.report_button.clicked.connect(self._browse_report)
        self.report_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("Load a model, choose images, then Screen.")
        self.status.setWordWrap(True)
        self.monotone = QLabel("")
        self.monotone.setWordWrap(True)
        self.monotone.setVisible(False)

        form = QFormLayout()
        form.addRow("Images", _row(self.images_edit, browse_images))
        form.addRow("Masks", _row(self.mask_mode, self.masks_edit, browse_masks))
        form.addRow("ε list", _row(self.eps_edit, self.norm))
        form.addRow("Attack", _row(self.attack, QLabel("steps"), self.steps, QLabel("batch"), self.batch,
                                   stretch=True))
        verify_label = QLabel("check monotone on")
        verify_label.setToolTip(self.verify.toolTip())
        form.addRow("", _row(self.noise, verify_label, self.verify, stretch=True))
        adaptive_label = QLabel("attack through it")
        adaptive_label.setToolTip(ADAPTIVE_TOOLTIP)
        precision_label = QLabel("precision")
        precision_label.setToolTip(PRECISION_TOOLTIP)
        form.addRow("Defence", _row(self.defence_kind, self.defence_parameter, self.defence_value, stretch=True))
        form.addRow("", _row(adaptive_label, self.adaptive, precision_label, self.precision, stretch=True))

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

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(_row(self.run_button, self.cancel_button, self.report_button, self.progress,
                              layout_only=True))
        layout.addWidget(self.status)
        layout.addWidget(self.monotone)
        layout.addWidget(self.legend)
        layout.addWidget(self.plot, 2)
        layout.addWidget(self.tabs, 3)

        self.eps_edit.textChanged.connect(self._form_changed)
        self.norm.currentIndexChanged.connect(self._form_changed)
        self.controller.step.connect(self._on_step)
        self.controller.finished_run.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.cancelled.connect(lambda: self._set_status("Cancelled; the images screened so far are shown."))
        self.controller.stopped.connect(self._on_stopped)
        self._form_changed()
        self._defence_kind_changed()
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

    def set_defence(self, defence: str | None, adaptive: str = "none", precision: str = "float32") -> None:
        """Fill the defence row: ``"jpeg:75"`` (or None for no defence), the adaptive mode and
        the precision, as ``--defense``/``--adaptive``/``--precision`` take them."""
        kind, _colon, value = (defence or "").partition(":")
        self.defence_kind.setCurrentIndex(max(0, self.defence_kind.findData(kind or None)))
        if kind:
            self.defence_value.setText(value)
        self.adaptive.setCurrentIndex(max(0, self.adaptive.findData(adaptive)))
        self.precision.setCurrentIndex(max(0, self.precision.findData(precision)))

    def write_report(self, folder) -> Path:
        """Write the last finished screen into ``folder`` (new or empty): ``report.html`` with
        its defence section, ``summary.json``, ``per_image.csv`` (and ``per_image_naive.csv``).
        Returns the report's path; raises :class:`UserError` when there is nothing to write or
        the folder cannot take it."""
        if self.outcome is None or self.summary is None or self.running:
            raise UserError("Finish a screen first; the report is written from a finished screen.")
        return write_screen_folder(folder, self.summary, self.outcome, self.rows, self.job.model.card)

    def start(self) -> None:
        """Start a screen with the form's settings (errors go to the status line)."""
        if self.running:
            return
        try:
            job = self._job()
        except UserError as error:
            self._set_status(str(error), error=True)
            return
        self.job, self.result, self.naive_result, self.outcome, self.summary = job, None, None, None, None
        self.entries, self.rows, self.rows_by_file, self.last_progress = {}, [], {}, None
        self.naive_progress = None
        self.tabs.setTabVisible(2, False)
        self.eps = tuple(sorted(set(job.eps)))
        self.table.setRowCount(0)
        self._show_worst_cases([])
        self.monotone.setVisible(False)
        self._reset_plot(self.eps)
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

    @property
    def _norm(self) -> str:
        return self.job.config_kwargs["norm"] if self.job is not None else self.norm.currentData()

    @property
    def _x_scale(self) -> float:
        """Plot x in 8-bit levels (ε × 255) for L∞ budgets, in plain units for L2."""
        return 255.0 if self._norm == "linf" else 1.0

    def _job(self) -> CohortJob:
        if self.model is None:
            raise UserError("Load a model first.")
        images = self.images_edit.text().strip()
        if not images:
            raise UserError("Choose a folder of images or a .npz file to screen.")
        mode = self.mask_mode.currentData()
        masks = self.masks_edit.text().strip() or None
        if mode != "none" and masks is None:
            raise UserError(f"Choose the mask {'file' if mode.endswith('file') else 'folder'}, or set Masks to 'No mask'.")
        eps = parse_number_list(self.eps_edit.text(), "ε list")
        config_kwargs = {"method": self.attack.currentData(), "norm": self.norm.currentData(),
                         "steps": self.steps.value(), "seed": 0}
        AttackConfig(**config_kwargs, eps=max(eps)).validate()
        # The CLI's parsers, before the engine runs: a bad value is one line in the status.
        defence = parse_defence_form(self.defence_kind.currentData(), self.defence_value.text(),
                                     self.adaptive.currentData(), self.precision.currentData())
        return CohortJob(model=self.model, images=Path(images), masks=Path(masks) if masks else None,
                         mask_mode=mode, eps=eps, config_kwargs=config_kwargs,
                         noise_baseline=self.noise.isChecked(), batch_size=self.batch.value(),
                         verify_monotone=self.verify.value(), defence=defence["defence"],
                         adaptive=defence["adaptive"], precision=defence["precision"])

    def _defence_kind_changed(self, *_args) -> None:
        """Show the chosen defence's parameter with a common value; the adaptive mode only
        means something with a defence (BPDA by default, EOT for a random one)."""
        kind = self.defence_kind.currentData()
        previous, self._defence_shown = self._defence_shown, kind
        self.defence_value.setVisible(kind is not None)
        self.defence_parameter.setVisible(kind is not None)
        self.adaptive.setEnabled(kind is not None)
        if kind is None:
            self.adaptive.setCurrentIndex(self.adaptive.findData("none"))
            self.defence_value.clear()
            return
        info = DEFENCE_KINDS[kind]
        self.defence_parameter.setText(info.parameter)
        self.defence_value.setText(DEFENCE_DEFAULTS.get(kind, ""))
        self.defence_value.setToolTip(f"{info.label}: {info.parameter}. {info.citation}")
        if previous is None:  # a defence was just switched on: attack it adaptively by default
            self.adaptive.setCurrentIndex(self.adaptive.findData("eot" if info.random else "bpda"))

    def _browse_report(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New or empty folder for the screen's report")
        if not folder:
            return
        try:
            path = self.write_report(folder)
        except UserError as error:
            self._set_status(str(error), error=True)
            return
        self._set_status(f"Wrote {path} with summary.json and the per-image CSVs.")

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
        self.report_button.setEnabled(self.outcome is not None and not running)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e15759;" if error else "")

    def _form_changed(self, *_args) -> None:
        """Before a screen, the axes follow the form's ε list and norm."""
        if self.running or self.rows:
            return  # the curves on show belong to a screen; keep its axes
        self.job = None  # no screen yet: the form decides the units
        try:
            eps = parse_number_list(self.eps_edit.text(), "ε list")
        except UserError:
            eps = []
        self._reset_plot(eps)

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

    def _on_step(self, item) -> None:
        kind, payload = item
        if kind == "cohort":
            self.entries = payload
            return
        if kind == "naive":  # the naive attack through the defence, after the adaptive screen
            self.naive_progress = payload
            total = payload.images_total or 0
            self.progress.setMaximum(max(total, 1))
            self.progress.setValue(payload.images_done)
            self._set_status(f"Naive attack through the defence, for comparison: {payload.images_done} of "
                             f"{total} images")
            self._draw(self.last_progress or payload)
            return
        progress = payload
        self.last_progress = progress
        self._add_rows(progress.rows_done)
        total = progress.images_total or 0
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(progress.images_done)
        if progress.phase == "verify":
            self._set_status(f"{progress.images_done} of {total} images · checking the monotone shortcut…")
        else:
            eta = "" if progress.eta_s is None else f" · about {_clock(progress.eta_s)} left"
            skipped = f" · {len(progress.skipped)} unreadable skipped" if progress.skipped else ""
            self._set_status(f"{progress.images_done} of {total} images{eta}{skipped}")
        self._draw(progress)

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

    def request_image(self, file_id: str) -> None:
        """Ask for ``file_id`` (a screened image) to be opened and attacked where it flipped."""
        path, mask, mode = self.entries.get(file_id, (None, None, "none"))
        if path is None:  # .npz rows have no file of their own
            self._set_status(f"{file_id} comes from a .npz archive and cannot be opened as a file.", error=True)
            return
        row = self.rows_by_file.get(file_id)
        eps = row.flip_eps if row is not None and row.flip_eps is not None else max(self.eps)
        settings = attack_settings(self.job.config_kwargs, eps)
        self.image_requested.emit(Path(path), None if mask is None else Path(mask), mode, settings)

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

    def _on_finished(self, outcome: CohortOutcome) -> None:
        result = outcome.result
        self.outcome, self.result, self.naive_result = outcome, result, outcome.naive
        noise = bool(self.job is not None and self.job.noise_baseline)
        per_eps = result.summary(self.rows, noise_baseline=noise)
        self.summary = outcome.summary if outcome.summary is not None else \
            screen_summary(self.job, outcome, self.rows)
        last = per_eps[-1] if per_eps else None
        if last and last["n"]:
            self._set_status(f"Done: {last['flipped']} of {last['n']} images flipped at ε = "
                             f"{format_budget(last['eps'], self._norm)} ({100 * last['flip_rate']:.1f} %, "
                             f"95 % CI {100 * last['flip_rate_ci95'][0]:.1f}–"
                             f"{100 * last['flip_rate_ci95'][1]:.1f} %) in "
                             f"{_clock(time.monotonic() - self.started_at)}.")
        self.monotone.setText(monotone_text(result.monotone_check, self._norm))
        self.monotone.setVisible(True)
        self._show_worst_cases(result.worst_cases)
        self._show_defence(self.summary)
        self._update_enabled()
        self.screen_finished.emit(per_eps)

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
        columns = defence_columns(defence)
        self.defence_table.clear()
        self.defence_table.setColumnCount(len(columns))
        self.defence_table.setHorizontalHeaderLabels(columns)
        header = self.defence_table.horizontalHeader()
        for column in range(len(columns)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        rows = defence_rows(defence)
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


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _row(*widgets, layout_only: bool = False, stretch: bool = False):
    box = QHBoxLayout()
    box.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        box.addWidget(widget)
    if stretch:  # keep short fields short; the free room goes to the right
        box.addStretch(1)
    if layout_only:
        return box
    holder = QWidget()
    holder.setLayout(box)
    return holder
