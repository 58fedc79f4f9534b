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
* ``form_state()`` / ``set_form_state(dict)`` — the whole form as plain values (what a
  project keeps; absent keys take :data:`FORM_DEFAULTS`);
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

This module holds the form and the screen's lifecycle; the results views (curves, Images
table, Worst cases and Defence tabs) are in :mod:`advexplorer.gui.cohort_results`, and the
worker's side (:class:`~advexplorer.gui.controllers.cohort.CohortJob`,
:func:`~advexplorer.gui.controllers.cohort.cohort_job`) in :mod:`advexplorer.gui.controllers.cohort`.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from advexplorer.config import (DEFENCE_KINDS, METHOD_INFO, METHODS, NORM_LABELS, NORMS, PRECISIONS,
                                AttackConfig, format_budget, parse_number_list)
from advexplorer.errors import UserError
from advexplorer.gui.cohort_results import CohortResultsMixin, monotone_text
from advexplorer.gui.controllers.cohort import (ADAPTIVE_CHOICES, ADAPTIVE_TOOLTIP, PRECISION_TOOLTIP, CohortJob,
                                                CohortOutcome, attack_settings, cohort_job, parse_defence_form,
                                                screen_summary, write_screen_folder)
from advexplorer.gui.tradeoff_view import DEFAULT_VALUES as DEFENCE_DEFAULTS
from advexplorer.gui.worker import JobFailed, TaskRunner

MASK_MODES = {"none": "No mask", "protect-dir": "Protect masks (folder)",
              "allowed-dir": "Allowed masks (folder)", "protect-file": "One protect mask (file)",
              "allowed-file": "One allowed mask (file)"}
DEFAULT_EPS = "0,1/255,2/255,4/255,8/255"  # the same default as `advexplorer screen`
#: The form as a fresh panel shows it, in :meth:`CohortPanel.form_state`'s keys: what a
#: project saved without the Cohort panel's form (format 2 and older) opens with.
FORM_DEFAULTS = {"images": "", "mask_mode": "none", "masks": "", "eps": DEFAULT_EPS, "norm": NORMS[0],
                 "method": METHODS[0], "steps": 10, "batch": 32, "noise_baseline": False,
                 "verify_monotone": 0, "defence": None, "adaptive": "none", "precision": PRECISIONS[0]}


class CohortPanel(CohortResultsMixin, QWidget):
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

        self._build_results()

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

    def form_state(self) -> dict:
        """The form as plain JSON values (what a project keeps): the images and masks fields
        as typed, the mask mode, ε list as typed, norm, attack, steps, batch, noise baseline,
        check-monotone count, and the defence row (``"bits:3"`` as ``--defense`` takes it, the
        parameter as typed; None for no defence), adaptive mode and precision."""
        kind = self.defence_kind.currentData()
        return {"images": self.images_edit.text(), "mask_mode": self.mask_mode.currentData(),
                "masks": self.masks_edit.text(), "eps": self.eps_edit.text(),
                "norm": self.norm.currentData(), "method": self.attack.currentData(),
                "steps": self.steps.value(), "batch": self.batch.value(),
                "noise_baseline": self.noise.isChecked(), "verify_monotone": self.verify.value(),
                "defence": None if kind is None else f"{kind}:{self.defence_value.text()}",
                "adaptive": self.adaptive.currentData(), "precision": self.precision.currentData()}

    def set_form_state(self, state: dict | None) -> None:
        """Fill the form from :meth:`form_state`'s values; a key that is absent, or a value
        this version does not offer (an unknown attack, a wrong type), takes the fresh
        panel's default (:data:`FORM_DEFAULTS`). Paths are set as text, not checked: a folder
        gone since is reported by Screen, as for a path typed by hand."""
        given = state if isinstance(state, dict) else {}
        values = dict(FORM_DEFAULTS)
        for key, default in FORM_DEFAULTS.items():
            value = given.get(key)
            kind = str if key == "defence" else type(default)
            if isinstance(value, kind) and (kind is not int or not isinstance(value, bool)):
                values[key] = value

        def choose(combo, data, default):
            index = combo.findData(data)
            combo.setCurrentIndex(index if index >= 0 else combo.findData(default))

        def count(spin, value):  # clamped first: a number past a C int would not even reach Qt
            spin.setValue(min(max(value, spin.minimum()), spin.maximum()))

        self.images_edit.setText(values["images"])
        choose(self.mask_mode, values["mask_mode"], FORM_DEFAULTS["mask_mode"])
        self.masks_edit.setText(values["masks"])
        self.eps_edit.setText(values["eps"])
        choose(self.norm, values["norm"], FORM_DEFAULTS["norm"])
        choose(self.attack, values["method"], FORM_DEFAULTS["method"])
        count(self.steps, values["steps"])
        count(self.batch, values["batch"])
        self.noise.setChecked(values["noise_baseline"])
        count(self.verify, values["verify_monotone"])
        defence = values["defence"]
        if defence is not None and self.defence_kind.findData(defence.partition(":")[0]) < 0:
            defence = None  # a defence kind this version does not know
        # An adaptive mode only means something with a defence (the row shows naive without).
        adaptive = values["adaptive"] if defence is not None else FORM_DEFAULTS["adaptive"]
        self.set_defence(defence, adaptive, values["precision"])  # unknown modes: the first, the default

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
        self.clear_results()
        self.job, self.eps = job, tuple(sorted(set(job.eps)))
        self._reset_plot(self.eps)
        self.started_at = time.monotonic()
        self._set_status("Reading the cohort…")
        self.controller.start(cohort_job, job)
        self._update_enabled()

    def clear_results(self) -> None:
        """No screen on show: empty table, tabs, curves, progress and status (before a new
        screen, and when a project brings another form: its results are not the form's)."""
        if self.running:
            return
        self.job = self.result = self.naive_result = self.outcome = self.summary = None
        self.entries, self.rows, self.rows_by_file, self.last_progress = {}, [], {}, None
        self.naive_progress = None
        self.tabs.setTabVisible(2, False)
        self.table.setRowCount(0)
        self._show_worst_cases([])
        self.monotone.setVisible(False)
        self.progress.setValue(0)
        self._set_status("")
        self._form_changed()  # the axes follow the form again
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

    def _on_failed(self, failure: JobFailed) -> None:
        self._set_status(failure.message, error=True)

    def _on_stopped(self) -> None:
        self._update_enabled()


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
