"""One run or one batch at a time: start, live drawing, pause, cancel, the work after the
last step, and the result.

The GUI thread owns the session; a run gets copies of the image path, the masks and the
form's values taken when Run is pressed (:meth:`RunController.make_job`). Redraws are
throttled to 25 per second whatever the attack's speed, and each redraw only
touches what changed since the last one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QLabel, QProgressBar, QTableWidgetItem
from superqt.utils import qthrottled

from advexplorer.errors import UserError
from advexplorer.gui import attack_process
from advexplorer.gui.attack_panel import AttackPanel
from advexplorer.gui.controllers.transfer import SurrogateController
from advexplorer.gui.panels import BatchPanel, ResultsPanel
from advexplorer.gui.views import LiveViews, summary_lines
from advexplorer.gui.worker import JobFailed, Phase, RunJob, StepUpdate, TaskRunner, batch_job, run_job
from advexplorer.io.slides import tile_region
from advexplorer.session.state import ImageEntry, RunSummary, Session

REDRAW_MS = 40  # 25 Hz: smooth to the eye; every frame's painting holds the GIL the attack needs
#: Trajectory plots refresh at most 4 times a second: repainting the three plots costs ~3× a
#: frame of the images (measured 7 ms vs 2.5 ms of GUI-thread CPU on a 2-core box), and Qt
#: paints holding the GIL the attack needs; a curve that grows 4 times a second still reads as live.
PLOT_INTERVAL_S = 0.25
TEXT_EVERY_S = 0.25  # status texts change at 4 Hz: faster is unreadable and re-lays out panels


def step_text(update: StepUpdate, method: str) -> str:
    """'step 3/10'; 'query 40/1000' for Square (its steps count queries); the ensemble's stage first."""
    stage = update.stage
    unit = "query" if "square" in (method, stage) else "step"
    text = f"{unit} {update.index}/{update.total_steps}"
    if stage:
        name = stage.upper() if stage.startswith("apgd") else stage.capitalize()
        text = f"{name} · {text}"
    return text


def progress_total(config: dict, num_classes: int) -> int:
    """What the status bar's progress bar counts to for a run: every yielded step, start
    included, per restart. Square yields one step per query batch, so its queries; the
    ensemble runs APGD-CE, APGD-T (one run per aimed-at class) and Square in turn, so the sum
    of their budgets — an upper bound, since a stage runs only while the image still stands."""
    method, restarts = config["method"], int(config.get("restarts") or 1)
    steps = 1 if method == "fgsm" else int(config["steps"])
    queries = int(config.get("queries") or 0)
    if method == "square":
        per_restart = queries + 1
    elif method == "ensemble":
        from advexplorer.core.attacks.ensemble import TARGET_CLASSES  # the engine is loaded: a run starts

        aims = 1 if config.get("targeted") is not None else max(1, min(TARGET_CLASSES, num_classes - 1))
        per_restart = (steps + 1) * (1 + aims) + queries + 1
    else:
        per_restart = steps + 1
    return per_restart * restarts


def flag_line(flag: dict) -> str:
    """'⚠ Title (what was measured). What to do.' — one recorded flag as the Results panel shows it."""
    detail = f" ({flag['detail']})" if flag.get("detail") else ""
    return f"⚠ {flag['title']}{detail}. {flag['suggestion']}"


@dataclass
class StatusWidgets:
    """The status bar: pixel readout, run progress, step, steps/s, engine/device."""

    cursor: QLabel
    progress: QProgressBar
    step: QLabel
    rate: QLabel
    engine: QLabel

    @classmethod
    def create(cls, status_bar) -> "StatusWidgets":
        widgets = cls(QLabel(""), QProgressBar(), QLabel(""), QLabel(""), QLabel("Loading engine…"))
        widgets.engine.setObjectName("engine_loading")
        widgets.progress.setFixedWidth(200)
        widgets.progress.setTextVisible(False)
        widgets.progress.setVisible(False)
        # Fixed widths: a step counter that changes width 4 times a second would re-lay out
        # (and repaint) the whole status bar and the window beneath it each time.
        metrics = widgets.step.fontMetrics()
        widgets.step.setFixedWidth(metrics.horizontalAdvance("APGD-T query 10000/10000, restart 10/10") + 8)
        widgets.rate.setFixedWidth(metrics.horizontalAdvance("9999.9 steps/s") + 8)
        for label in (widgets.step, widgets.rate):  # fixed in both directions: Qt then skips the relayout
            label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            label.setFixedHeight(label.sizeHint().height())
        status_bar.addWidget(widgets.cursor, 1)
        for widget in (widgets.progress, widgets.step, widgets.rate, widgets.engine):
            status_bar.addPermanentWidget(widget)
        return widgets


class RunController(QObject):
    """Owns the run/batch lifecycle on one :class:`TaskRunner` (``self.tasks``).

    Signals: ``run_finished(RunSummary)``, ``state_changed()`` (started/stopped/paused),
    ``message(text, ms)`` for the status bar, ``error(title, message, details)``.
    """

    run_finished = Signal(object)
    state_changed = Signal()
    message = Signal(str, int)
    error = Signal(str, str, object)

    def __init__(self, session: Session, models, form: AttackPanel, live: LiveViews,
                 results: ResultsPanel, status: StatusWidgets, batch: BatchPanel,
                 batch_dock: QDockWidget, parent=None):
        super().__init__(parent)
        self.session, self.models, self.form = session, models, form
        self.live, self.results, self.status = live, results, status
        self.batch, self.batch_dock = batch, batch_dock
        self.tasks = TaskRunner(self)
        # (entry, job) → job: the canvas's model frame puts a chosen crop in (controllers.images).
        self.adjust_job = lambda entry, job: job
        self.mode = "idle"                     # idle | run | batch
        self.entry: ImageEntry | None = None   # the image being attacked
        self.batch_entries: list[ImageEntry] = []
        self.shown_run: RunSummary | None = None
        self.closing = False
        self.in_process = False  # the current/last run went to the attack process
        self._latest: StepUpdate | None = None
        self._latest_images: StepUpdate | None = None
        self._steps_seen = 0
        self._method = ""
        self._plot_time = 0.0
        self._text_time = 0.0
        self._phase: Phase | None = None
        self._square_start = 0     # the ensemble: where its Square stage starts on the progress bar
        self._transfer: dict | None = None  # a transfer run's live columns (see _start_transfer)
        self.surrogates = SurrogateController(form, models, self)
        self.surrogates.error.connect(self.error)
        self.redraw = qthrottled(self.redraw_live, timeout=REDRAW_MS, leading=True)
        self.tasks.step.connect(self._on_item)
        self.tasks.finished_run.connect(self._on_finished)
        self.tasks.failed.connect(self._on_failed)
        self.tasks.cancelled.connect(self._on_cancelled)
        self.tasks.stopped.connect(self._on_stopped)
        self.tasks.paused_changed.connect(self._paused_changed)

    @property
    def running(self) -> bool:
        return self.tasks.running

    # -- starting ----------------------------------------------------------------------
    def make_job(self, entry: ImageEntry) -> RunJob:
        """Copies of everything a run of ``entry`` needs, taken now (the GUI thread)."""
        masks = entry.masks
        # The form shows the current image's true class; other images keep their own.
        label = self.form.true_label if entry is self.session.current else entry.label
        return self.adjust_job(entry, RunJob(
            model=self.models.model, image_path=entry.path, config_kwargs=self.form.config_kwargs(),
            allowed_at_file_size=None if masks is None else masks.allowed_at_file_size(),
            mask_mode="none" if masks is None else masks.mask_mode,
            diagnostic_at_file_size=None if masks is None else masks.diagnostic_at_file_size(),
            label=label, saliency=self.form.saliency_method, number=self.session.next_run_number(),
            command_line=["advexplorer", "gui"], surrogate=self.surrogates.for_run(),
            trust_pickle=bool(self.models.trust_pickle), region=tile_region(entry.path),
            dicom_window=entry.dicom_window))

    def start_run(self, entry: ImageEntry) -> bool:
        """Attack ``entry`` with the form's settings; False (with a dialog) if it cannot start."""
        try:
            job = self.make_job(entry)
        except UserError as error:
            self.error.emit("Cannot run", str(error), None)
            return False
        config = job.config_kwargs
        classes = self.models.model.card.classes
        total = progress_total(config, len(classes))
        self.mode, self.entry = "run", entry
        self._reset_live()
        self.live.start(config["eps"], config["norm"])
        self.results.plots.start(classes, total, job.label, config["targeted"])
        self.results.prediction_table.setRowCount(0)
        self.results.summary.setText(f"Running run #{job.number} on {entry.name}…")
        # Counters start from zero now, not from the previous run's "50/50".
        self._method = config["method"]
        queries = config.get("queries")
        self.status.step.setText(f"query 0/{queries}" if self._method == "square" and queries else
                                 f"step 0/{1 if self._method == 'fgsm' else config['steps']}")
        self.status.rate.setText("")
        self._square_start = total - (int(queries or 0) + 1) * int(config["restarts"])
        self._start_transfer(job)
        self.status.progress.setRange(0, total)
        self.status.progress.setValue(0)
        self.status.progress.setTextVisible(False)
        self.status.progress.setVisible(True)
        self.tasks.start(*self._runner_for(job))
        self.state_changed.emit()
        return True

    def _runner_for(self, job: RunJob) -> tuple:
        """The attack process when it has this model ready (drawing then never slows the
        attack); a worker thread otherwise — and the process is readied for the next run."""
        process = attack_process.shared() if attack_process.enabled() else None
        self.in_process = process is not None and process.can_run(job)
        if self.in_process:
            return process.run, job
        if job.surrogate is None:
            attack_process.prepare(job.model, job.trust_pickle)
        return run_job, job

    def start_batch(self, entries: list[ImageEntry]) -> bool:
        """Run the form's attack on every image of ``entries`` (each with its own masks)."""
        try:
            jobs = [self.make_job(entry) for entry in entries]
        except UserError as error:
            self.error.emit("Cannot run", str(error), None)
            return False
        self._clear_counters()  # the batch's progress is in its table; no step counter is its
        self.mode, self.batch_entries = "batch", list(entries)
        self._reset_live()
        self.batch_dock.show()
        self.batch_dock.raise_()
        table = self.batch.table
        table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            for column, text in enumerate([entry.name, "", "", "", "", "", "queued"]):
                table.setItem(row, column, QTableWidgetItem(text))
        self.batch.progress.setFormat("%v / %m images")
        self.batch.progress.setRange(0, len(jobs))
        self.batch.progress.setValue(0)
        self.tasks.start(batch_job, jobs)
        self.state_changed.emit()
        return True

    def _start_transfer(self, job: RunJob) -> None:
        """A transfer run shows the surrogate and the target side by side, live; others hide it."""
        table = self.results.transfer
        if job.surrogate is None:
            self._transfer = None
            table.setVisible(False)
            return
        surrogate = Path(getattr(job.surrogate, "path", job.surrogate)).name
        self._transfer = {"surrogate_before": None, "target_before": None, "target_now": None}
        table.show_models(surrogate, Path(job.model.path).name, live=True)
        table.set_probabilities(job.model.card.classes, [None] * 4)
        table.setVisible(True)

    def _reset_live(self) -> None:
        self._latest = self._latest_images = None
        self._steps_seen = 0
        self._phase = None
        self.shown_run = None

    def _paused_changed(self, paused: bool) -> None:
        if paused:  # the curves and counters may lag the last step by a quarter second
            self.redraw_live()
        self.state_changed.emit()

    def toggle_pause(self) -> None:
        self.tasks.toggle_pause()

    def cancel(self) -> None:
        if self.tasks.running:
            self.tasks.cancel()
            self.message.emit("Cancelling after the current step…", 3000)

    # -- progress ----------------------------------------------------------------------
    def _on_item(self, item) -> None:
        if self.mode == "batch":
            self._on_batch_item(item)
        elif isinstance(item, Phase):
            self._on_phase(item)
        else:
            self._on_step(item)

    def _on_step(self, update: StepUpdate) -> None:
        self._steps_seen += update.count
        self.results.plots.add_rows(update.probabilities, update.losses)
        if self._transfer is not None:
            if self._transfer["surrogate_before"] is None:
                self._transfer["surrogate_before"] = update.probabilities[0]
            if update.target_before is not None:
                self._transfer["target_before"] = update.target_before
            if update.target_probabilities is not None:
                self._transfer["target_now"] = update.target_probabilities
        self._latest = update
        if update.adversarial is not None:
            self._latest_images = update
        if update.original is not None:
            self.live.strip.set_rgb("original", update.original)
            # Captions are the attacked model's verdict: the target's in a transfer run.
            first = update.probabilities[0] if update.target_before is None else update.target_before
            top = int(np.argmax(first))
            self.live.strip.set_caption("original", f"{self.models.model.card.classes[top]} ({first[top]:.2f})")
        self.redraw()

    def _on_phase(self, phase: Phase) -> None:
        """The attack is over; scoring/saliency/robustness is its own progress, not a 100 % bar."""
        self.redraw.cancel()
        self.redraw_live()  # the last step on screen before the phase text
        self._phase = phase
        progress = self.status.progress
        progress.setRange(0, phase.total)
        progress.setValue(phase.index - 1)
        progress.setFormat(f"after the attack {phase.index}/{phase.total}")
        progress.setTextVisible(True)
        self.status.step.setText(phase.label)
        self.results.summary.setText(f"Last step done. {phase.label} ({phase.index}/{phase.total})")

    def redraw_live(self) -> None:
        """At most 25 times a second: images; curves at 5 Hz, texts at 4 Hz."""
        update = self._latest
        if self.closing or update is None or self.mode != "run":
            return
        # pyqtgraph's plot painting is the costliest part of a frame and, holding the GIL,
        # it slows the attack; the images keep the full rate.
        now = time.perf_counter()
        # Paused (or last): the steps stop coming, so this frame stays up: show all of it.
        settled = update.is_last or self.tasks.paused
        if settled or now - self._plot_time >= PLOT_INTERVAL_S:
            self._plot_time = now
            self.results.plots.redraw()
        text_due = settled or now - self._text_time > TEXT_EVERY_S
        images = self._latest_images
        if images is not None:
            caption = ""
            if text_due:
                latest = images.probabilities[-1] if images.target_probabilities is None \
                    else images.target_probabilities
                top = int(np.argmax(latest))
                caption = f"{self.models.model.card.classes[top]} ({latest[top]:.2f})"
            self.live.show_step(images.adversarial, images.perturbation, caption=caption)
            self._latest_images = None  # drawn: the next frame skips the images unless new ones came
        if text_due and self._phase is None:
            self._text_time = now
            if update.elapsed_s > 0:  # steps after the first, over the time since it
                self.status.rate.setText(f"{(self._steps_seen - 1) / update.elapsed_s:.1f} steps/s")
            restart = f", restart {update.restart + 1}/{update.restarts}" if update.restarts > 1 else ""
            self.status.step.setText(f"{step_text(update, self._method)}{restart}")
            if self._transfer is not None:
                transfer = self._transfer
                self.results.transfer.set_probabilities(
                    self.models.model.card.classes,
                    [transfer["surrogate_before"], update.probabilities[-1], transfer["target_before"],
                     transfer["target_now"]])
        if self._phase is None and text_due:  # a styled progress bar repaints at ~3 ms a value
            done = self._steps_seen
            if update.stage == "square":  # the ensemble may skip stages: Square's part is its own
                done = max(done, self._square_start + update.restart * (update.total_steps + 1) + update.index)
            self.status.progress.setValue(done)

    def _on_batch_item(self, item) -> None:
        kind, position, payload = item
        table = self.batch.table
        if kind == "step":
            text = payload.label if isinstance(payload, Phase) else \
                f"step {payload.index}/{payload.total_steps}"
            table.item(position, 6).setText(text)
            return
        entry = self.batch_entries[position]
        if isinstance(payload, JobFailed):
            table.item(position, 6).setText(f"error: {payload.message}")
        else:
            summary: RunSummary = payload
            classes = summary.classes
            before, after = summary.prediction_before, summary.prediction_after
            values = [entry.name, f"{classes[before]} ({summary.probability_before[before]:.2f})",
                      f"{classes[after]} ({summary.probability_after[after]:.2f})",
                      "yes" if summary.flipped else "no", f"{summary.norms['linf'] * 255:.2f}",
                      f"{summary.wall_time_s:.2f}", "done"]
            for column, text in enumerate(values):
                table.item(position, column).setText(text)
            if entry in self.session.images:
                self.session.add_run(entry, summary)
        self.batch.progress.setValue(position + 1)

    # -- ending ------------------------------------------------------------------------
    def _on_finished(self, result) -> None:
        if self.mode == "batch":
            done = [s for s in result if isinstance(s, RunSummary)]
            for summary in done[:1]:
                self.surrogates.keep(getattr(summary.request, "surrogate", None))
            flipped = sum(1 for s in done if s.flipped)
            self.message.emit(f"Batch finished: {len(done)} images attacked, {flipped} flipped.", 8000)
            current = self.session.current
            if current is not None and current.runs:
                self.show_run(current.runs[-1])
            return
        summary: RunSummary = result
        entry = self.entry
        self.redraw.cancel()  # a throttled redraw still pending must not paint over the result
        self._phase = None
        self.redraw_live()
        if entry is not None and entry in self.session.images:
            self.session.add_run(entry, summary)
        self.surrogates.keep(getattr(summary.request, "surrogate", None))
        if entry is self.session.current:
            self.show_run(summary, plots=False)
            if self.results.plots.count != len(summary.probability_trajectory):
                self.results.plots.show_summary(summary)  # the live curves missed steps
        verdict = "flipped" if summary.flipped else "did not flip"
        self.message.emit(f"Run #{summary.number} finished in {summary.wall_time_s:.2f} s: the "
                          f"prediction {verdict}.", 8000)
        self.run_finished.emit(summary)

    def _on_failed(self, failure: JobFailed) -> None:
        self.error.emit("The run failed" if not failure.is_user_error else "Cannot run",
                        failure.message, None if failure.is_user_error else failure.details)
        if self.mode == "run":
            self.results.summary.setText("The run failed; nothing was changed. Fix the problem and "
                                         "press Run again.")

    def _on_cancelled(self) -> None:
        self.results.plots.redraw()  # the curves may lag the images by a frame or two
        step = self._latest.index if self._latest is not None else 0
        self.message.emit(f"Cancelled at step {step}.", 6000)
        if self.mode == "run":
            self.results.summary.setText(f"Run cancelled at step {step}; earlier runs are in the history.")
        elif self.mode == "batch":
            self.batch.progress.setFormat("cancelled at %v / %m images")

    def _on_stopped(self) -> None:
        self.mode, self.entry = "idle", None
        self.status.progress.setVisible(False)
        self.state_changed.emit()

    # -- showing -----------------------------------------------------------------------
    def show_run(self, summary: RunSummary, plots: bool = True) -> None:
        """Show a finished run in the live views, plots, table and summary line."""
        self.shown_run = summary
        self.live.show_summary(summary)
        if plots:  # a stored run, not the one that just ended: the live counters are not its
            self.results.plots.show_summary(summary)
            self._clear_counters()
        self.results.prediction_table.set_predictions(summary.classes, summary.probability_before,
                                                      summary.probability_after)
        lines = dict(summary_lines(summary))
        verdict = ("<span style='color:#e07070'>prediction flipped</span>" if summary.flipped else
                   "<span style='color:#70c070'>prediction held</span>")
        exported = ""
        if "8-bit PNG still flips" in lines:
            exported = f" · 8-bit PNG still flips: {lines['8-bit PNG still flips']}"
        self.results.summary.setText(
            f"<b>Run #{summary.number}</b> — {verdict}: {lines['Before']} → {lines['After']}<br>"
            f"‖δ‖∞ {lines['‖δ‖∞']} · ‖δ‖₂ {lines['‖δ‖₂']} · {lines['Pixels changed']} px changed · "
            f"{lines['Mask']} mask · {lines['Wall time']}{exported}")
        flags = [flag_line(flag) for flag in summary.record.get("flags") or ()]
        self.results.flags.setText("\n".join(flags))
        self.results.flags.setVisible(bool(flags))
        self._show_transfer(summary)

    def _clear_counters(self) -> None:
        """The status bar's step and rate describe a live run; none is on screen (unless one runs)."""
        if self.mode == "idle":
            self.status.step.setText("")
            self.status.rate.setText("")

    def _show_transfer(self, summary: RunSummary) -> None:
        """A finished transfer run: both models' confidences before and after, from its record."""
        transfer = summary.record.get("transfer") if isinstance(summary.record, dict) else None
        table = self.results.transfer
        if not transfer or "surrogate_probabilities_before" not in transfer:
            table.setVisible(False)
            return
        target = Path(str((summary.record.get("model") or {}).get("path") or summary.model_name)).name
        table.show_models(Path(str(transfer["surrogate"]["path"])).name, target, live=False)
        table.set_probabilities(summary.classes, [
            np.asarray(transfer["surrogate_probabilities_before"][0]),
            np.asarray(transfer["surrogate_probabilities_after"][0]),
            summary.probability_before, summary.probability_after])
        table.setVisible(True)

    def clear_results(self, image_name: str | None = None) -> None:
        """No run to show (another image without runs): empty views, not the last image's run."""
        self.shown_run = None
        self._clear_counters()
        self.live.start(1.0, "linf")
        classes = self.models.model.card.classes if self.models.model is not None else ()
        self.results.plots.start(classes, 1)
        self.results.plots.redraw()
        self.results.prediction_table.setRowCount(0)
        prompt = ResultsPanel.PROMPT
        if image_name:
            prompt = f"No run on {image_name} yet. {prompt}"
        self.results.summary.setText(prompt)
        self.results.flags.setText("")
        self.results.flags.setVisible(False)
        self.results.transfer.setVisible(False)
