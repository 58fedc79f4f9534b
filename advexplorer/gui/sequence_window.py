"""The sequence window: single-residue probes of a protein classifier, live.

A ``QMainWindow`` for biologists' version of the masked histology probe:

* the sequence as residues in a horizontally scrollable track, with a ruler, the motifs it
  holds and, under it, the **allowed region** as a coloured track the user paints by
  dragging (left button allows, right button forbids; the positions field shows the same
  region as text such as ``40-55`` and can be typed into);
* the probe settings (substitutions, most substitutions, target, saliency method,
  exhaustive scan, the editable motif list ``NAME = REGEX``);
* per-position saliency **before** and **after** (bars, one shared scale) and the
  **single-substitution heat map** (position × residue → Δ probability), all x-linked and
  following the track's scroll position (pyqtgraph);
* the substitutions found, their probabilities before/after, the motifs created or
  destroyed, and a progress bar fed live by the worker.

The probe is :func:`advexplorer.session.probes.probe_run_steps`, the generator the CLI
runs, driven by the app's :class:`~advexplorer.gui.worker.TaskRunner`. Importing this
module does not import torch: the engine is imported inside the worker's jobs.

The track and the plots are drawn by :mod:`advexplorer.gui.sequence_tracks`; this module
holds the window, its form, its files and the probe's lifecycle (the worker's jobs).

Open it with :func:`open_sequence_window`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QFileDialog,
                               QFormLayout, QHeaderView, QLabel, QLineEdit, QMainWindow, QMessageBox,
                               QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QTableWidget,
                               QTableWidgetItem, QToolBar, QWidget)

from advexplorer.core.residues import (DEFAULT_MOTIFS, find_motifs, format_positions,
                                       parse_motifs, position_flags)
from advexplorer.errors import UserError
from advexplorer.gui.sequence_tracks import SequenceTracksMixin
from advexplorer.gui.worker import JobFailed, TaskRunner, call_task
from advexplorer.io.sequences import (DEMO_SEQUENCE_MODEL, SAMPLE_FASTA, FastaRecord,
                                      check_sequences, load_sequence_card, read_fasta)

SUBSTITUTION_CHOICES = (("blosum62", "BLOSUM62 score ≥ 0"), ("any", "any residue"))
SALIENCY_CHOICES = (("input-x-gradient", "gradient × input"),
                    ("integrated-gradients", "integrated gradients"), ("none", "none"))


def default_motif_text() -> str:
    """The motif editor's initial text: one ``NAME = REGEX  # meaning`` line per motif."""
    return "\n".join(f"{m.name} = {m.pattern}  # {m.meaning}" for m in DEFAULT_MOTIFS)


# ----------------------------------------------------------------------------- worker jobs

@dataclass
class ProbeUpdate:
    """One progress report from the worker, in plain Python (safe to keep on the GUI thread)."""

    phase: str
    done: int
    total: int
    message: str
    substitutions: list[tuple[int, str]]   # (0-based position, replacement) so far


def load_model_job(path: str | Path):
    """Load a sequence model off the GUI thread (imports torch there)."""
    from advexplorer.io.sequences import load_sequence_model

    return (yield from call_task(load_sequence_model, path, device="cpu"))


def probe_job(model, record: FastaRecord, allowed: list[bool], settings: dict[str, Any],
              fasta_path: Path | None, stop: threading.Event | None = None):
    """Probe one record; yield :class:`ProbeUpdate`; return the ``record.json`` dict.

    Every exception is re-raised as :class:`JobFailed` (superqt would swallow a
    RuntimeError). ``stop`` is checked after every engine batch.
    """
    try:
        from advexplorer.session.probes import ProbeRequest, build_probe_record, probe_run_steps

        started = time.perf_counter()
        request = ProbeRequest(
            model=model, records=[record], allowed=[list(allowed)],
            substitutions=settings["substitutions"], max_substitutions=settings["max_substitutions"],
            target=settings["target"], scan=settings["scan"],
            saliency=None if settings["saliency"] == "none" else settings["saliency"],
            motifs=settings["motifs"], fasta_path=fasta_path,
            command_line=["advexplorer", "gui", "(sequence window)"])
        request.check()
        steps = probe_run_steps(request)
        while True:
            try:
                _, progress = next(steps)
            except StopIteration as finished:
                probes = finished.value
                break
            yield ProbeUpdate(progress.phase, progress.done, progress.total, progress.message,
                              [(s.position, s.replacement) for s in progress.substitutions])
            if stop is not None and stop.is_set():
                return None
        return build_probe_record(request, probes, time.perf_counter() - started)
    except GeneratorExit:
        raise
    except Exception as error:
        raise JobFailed(error) from error


# ----------------------------------------------------------------------------- the window

class SequenceWindow(SequenceTracksMixin, QMainWindow):
    """The sequence probe window (see the module docstring)."""

    model_loaded = Signal(object)
    probe_finished = Signal(dict)

    def __init__(self, parent=None, model=None, fasta: str | Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("AdvExplorer — protein sequence probe")
        self.resize(1400, 860)
        self.model = None                    # LoadedSequenceModel once loaded
        self.card = None                     # its SequenceCard (read without torch)
        self.model_path: Path | None = None
        self.fasta_path: Path | None = None
        self.records: list[FastaRecord] = []
        self.allowed_by_record: dict[str, list[bool]] = {}
        self.last_record: dict | None = None
        self.history: list[dict] = []        # every finished probe of this window, in order
        self.last_error: str | None = None
        self.non_interactive = False         # errors go to stderr, not a dialog (scripts)
        self.runner = TaskRunner(self)
        self.runner.step.connect(self._on_step)
        self.runner.finished_run.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.stopped.connect(self._update_enabled)
        self._task = None
        self._build()
        # The card first: it checks the FASTA's letters and suggests the allowed region.
        if model is not None and not isinstance(model, (str, Path)):
            self.set_model(model)
        else:
            self.load_model(model or DEMO_SEQUENCE_MODEL)
        if fasta is not None or model is None:
            self.open_fasta(fasta or SAMPLE_FASTA)

    # Building ---------------------------------------------------------------------------------
    def _build(self) -> None:
        toolbar = QToolBar("Probe", self)
        toolbar.setObjectName("sequence_toolbar")
        self.addToolBar(toolbar)
        self.open_fasta_action = toolbar.addAction("Open FASTA…", self.open_fasta_dialog)
        self.open_model_action = toolbar.addAction("Open model…", self.open_model_dialog)
        toolbar.addSeparator()
        self.run_action = toolbar.addAction("Probe", self.start_probe)
        self.cancel_action = toolbar.addAction("Cancel", self.runner.cancel)
        toolbar.addSeparator()
        self.allow_all_action = toolbar.addAction("Allow all", lambda: self._set_all_allowed(True))
        self.clear_region_action = toolbar.addAction("Clear region", lambda: self._set_all_allowed(False))
        self.save_action = toolbar.addAction("Save run folder…", self.save_run_dialog)

        # The settings form, docked on the left.
        form_widget = QWidget()
        form = QFormLayout(form_widget)
        self.model_label = QLabel("loading…")
        self.model_label.setWordWrap(True)
        self.record_combo = QComboBox()
        self.record_combo.currentIndexChanged.connect(self._show_record)
        self.positions_edit = QLineEdit()
        self.positions_edit.setPlaceholderText("e.g. 40-55,60 (1-based)")
        self.positions_edit.editingFinished.connect(self._positions_typed)
        self.substitutions_combo = QComboBox()
        for key, text in SUBSTITUTION_CHOICES:
            self.substitutions_combo.addItem(text, key)
        self.max_subs_spin = QSpinBox()
        self.max_subs_spin.setRange(1, 20)
        self.max_subs_spin.setValue(3)
        self.target_combo = QComboBox()
        self.saliency_combo = QComboBox()
        for key, text in SALIENCY_CHOICES:
            self.saliency_combo.addItem(text, key)
        self.scan_check = QCheckBox("every single substitution (heat map)")
        self.scan_check.setChecked(True)
        self.motifs_edit = QPlainTextEdit(default_motif_text())
        self.motifs_edit.setFixedHeight(64)
        self.motifs_edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.motifs_edit.setToolTip("One motif per line: NAME = REGEX  # meaning (x = any residue)")
        self.motifs_edit.textChanged.connect(self._refresh_motifs)
        self.run_button = QPushButton("Probe")
        self.run_button.clicked.connect(self.start_probe)
        form.addRow("Model", self.model_label)
        form.addRow("Sequence", self.record_combo)
        form.addRow("Allowed", self.positions_edit)
        form.addRow("Substitutions", self.substitutions_combo)
        form.addRow("At most", self.max_subs_spin)
        form.addRow("Target", self.target_combo)
        form.addRow("Saliency", self.saliency_combo)
        form.addRow("Scan", self.scan_check)
        form.addRow("Motifs", self.motifs_edit)
        form.addRow(self.run_button)
        self.verdict_label = QLabel("")
        self.verdict_label.setObjectName("summary")
        self.verdict_label.setWordWrap(True)
        form.addRow(self.verdict_label)
        self.results_table = QTableWidget(0, 4)
        self.results_table.setHorizontalHeaderLabels(["substitution", "BLOSUM62", "p before", "p after"])
        self.results_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.results_table.verticalHeader().setVisible(False)
        self.results_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results_table.setMinimumHeight(120)
        form.addRow(self.results_table)
        self.history_combo = QComboBox()
        self.history_combo.setToolTip("Every probe of this session; pick one to show it again")
        self.history_combo.activated.connect(self.show_history)
        form.addRow("History", self.history_combo)
        dock = QDockWidget("Probe", self)
        dock.setObjectName("probe_dock")
        dock.setWidget(form_widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        dock.setMinimumWidth(340)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

        # The track (scrolls horizontally) and the plots below it.
        self.setCentralWidget(self._build_tracks())
        self.track.allowed_changed.connect(self._painted)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.status_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self._update_enabled()

    # State ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.runner.running

    def can_run(self) -> bool:
        return self.model is not None and bool(self.records) and not self.runner.running

    def _update_enabled(self) -> None:
        running = self.runner.running
        for widget in (self.run_action, self.run_button):
            widget.setEnabled(self.can_run())
        self.cancel_action.setEnabled(running and self._task == "probe")
        # While a probe runs the sequence and its region stay as they were when it started.
        for widget in (self.open_fasta_action, self.open_model_action, self.record_combo,
                       self.history_combo, self.positions_edit, self.allow_all_action,
                       self.clear_region_action):
            widget.setEnabled(not running)
        self.track.setEnabled(not running)
        self.save_action.setEnabled(self.last_record is not None and not running)

    def current_record(self) -> FastaRecord | None:
        index = self.record_combo.currentIndex()
        return self.records[index] if 0 <= index < len(self.records) else None

    def allowed(self) -> list[bool]:
        """The allowed region of the current record (True = may change)."""
        return list(self.track.allowed)

    def show_error(self, title: str, message: str) -> None:
        self.last_error = message
        self.status_label.setText(f"{title}: {message}")
        if self.non_interactive:
            print(f"advexplorer: error: {title}: {' '.join(message.split())}")
            return
        QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self).exec()

    # Files --------------------------------------------------------------------------------------
    def open_fasta_dialog(self) -> None:
        start = str(self.fasta_path.parent if self.fasta_path else SAMPLE_FASTA.parent)
        path, _ = QFileDialog.getOpenFileName(self, "Open FASTA", start,
                                              "FASTA (*.fasta *.fa *.faa *.fas *.txt);;All files (*)")
        if path:
            self.open_fasta(path)

    def open_fasta(self, path: str | Path) -> bool:
        """Read a FASTA file (checked against the model's alphabet when one is known)."""
        try:
            records = read_fasta(path)
            if self.card is not None:
                check_sequences(records, self.card.alphabet, self.card.max_length, Path(path).name)
        except UserError as error:
            self.show_error("Cannot open the FASTA file", str(error))
            return False
        self.fasta_path, self.records = Path(path), records
        self.allowed_by_record = {}
        self.last_record = None
        self.record_combo.blockSignals(True)
        self.record_combo.clear()
        for record in records:
            self.record_combo.addItem(f"{record.name} ({len(record)} aa)")
        self.record_combo.blockSignals(False)
        self._show_record()
        self.status_label.setText(f"{len(records)} sequence(s) from {Path(path).name}")
        return True

    def open_model_dialog(self) -> None:
        start = str(self.model_path.parent if self.model_path else DEMO_SEQUENCE_MODEL.parent)
        path, _ = QFileDialog.getOpenFileName(self, "Open sequence model", start,
                                              "Models (*.pt *.pth *.ts);;All files (*)")
        if path:
            self.load_model(path)

    def load_model(self, path: str | Path) -> None:
        """Read the card now (no torch) and load the weights in the worker."""
        try:
            card = load_sequence_card(Path(path).with_suffix(".json"))
            if self.records:
                check_sequences(self.records, card.alphabet, card.max_length,
                                self.fasta_path.name if self.fasta_path else "the FASTA file")
        except UserError as error:
            self.show_error("Cannot open the model", str(error))
            return
        self.card, self.model_path, self.model = card, Path(path), None
        self.model_label.setText(f"{card.name} — loading…")
        self._fill_targets()
        self._task = "model"
        self.runner.start(load_model_job, path)
        self._update_enabled()

    def set_model(self, model) -> None:
        """Use an already loaded :class:`~advexplorer.io.sequences.LoadedSequenceModel`."""
        self.model, self.card, self.model_path = model, model.card, Path(model.path)
        self.model_label.setText(f"{model.card.name}\n{', '.join(model.card.classes)}")
        if model.card.synthetic:
            self.model_label.setToolTip(model.card.training_data)
        self._fill_targets()
        if self.records and not self.allowed_by_record:
            self._show_record()
        self._update_enabled()
        self.model_loaded.emit(model)

    def _fill_targets(self) -> None:
        self.target_combo.clear()
        self.target_combo.addItem("any other class", None)
        for index, name in enumerate(self.card.classes if self.card else ()):
            self.target_combo.addItem(name, index)

    # The allowed region ---------------------------------------------------------------------------
    def _default_allowed(self, record: FastaRecord) -> list[bool]:
        """The card's suggested positions when they fit this sequence, else every position."""
        suggested = self.card.suggested_positions if self.card else None
        if suggested:
            try:
                return position_flags(suggested, len(record))
            except UserError:
                pass
        return [True] * len(record)

    def _show_record(self) -> None:
        record = self.current_record()
        if record is None:
            self.track.set_sequence("", [])
            return
        allowed = self.allowed_by_record.setdefault(record.name, self._default_allowed(record))
        self.track.set_sequence(record.sequence, allowed)
        self.sequence_title.setText(f"{record.name}  {record.description}")
        self.positions_edit.setText(format_positions(allowed))
        self._clear_results()
        self._refresh_motifs()
        self._follow_scroll()

    def set_positions(self, text: str) -> None:
        """Set the allowed region from text such as ``40-55,60``."""
        self.positions_edit.setText(text)
        self._positions_typed()

    def _positions_typed(self) -> None:
        record = self.current_record()
        if record is None:
            return
        try:
            allowed = position_flags(self.positions_edit.text(), len(record))
        except UserError as error:
            self.positions_edit.setProperty("invalid", True)
            self.positions_edit.style().polish(self.positions_edit)
            self.status_label.setText(str(error))
            return
        self.positions_edit.setProperty("invalid", False)
        self.positions_edit.style().polish(self.positions_edit)
        self.allowed_by_record[record.name] = allowed
        self.track.set_allowed(allowed)

    def _painted(self) -> None:
        record = self.current_record()
        if record is not None:
            self.allowed_by_record[record.name] = self.allowed()
            self.positions_edit.setText(format_positions(self.allowed()))

    def _set_all_allowed(self, value: bool) -> None:
        if self.track.sequence:
            self.track.paint_range(0, len(self.track.sequence) - 1, value)

    # Motifs ---------------------------------------------------------------------------------------
    def motifs(self):
        """The motif list as the user edited it (a :class:`UserError` if a line is wrong)."""
        return parse_motifs(self.motifs_edit.toPlainText())

    def _refresh_motifs(self) -> None:
        try:
            motifs = self.motifs()
        except UserError:
            return  # the run refuses it with the message; while typing, keep the old marks
        spans = [(h.start, h.end, "present") for h in find_motifs(self.track.sequence, motifs)]
        if self.last_record is not None:
            result = self.last_record["results"][0]
            spans += [(m["start"], m["end"], "created") for m in result["motifs_created"]]
        self.track.set_motifs(spans)

    # Running --------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"substitutions": self.substitutions_combo.currentData(),
                "max_substitutions": self.max_subs_spin.value(), "target": self.target_combo.currentData(),
                "saliency": self.saliency_combo.currentData(), "scan": self.scan_check.isChecked(),
                "motifs": self.motifs()}

    def start_probe(self) -> None:
        """Probe the current sequence with the allowed region and settings as they are now."""
        record = self.current_record()
        if not self.can_run() or record is None:
            return
        try:
            settings = self.settings()
        except UserError as error:
            self.show_error("Motif list", str(error))
            return
        if not any(self.allowed()):
            self.show_error("Nothing to change", "The allowed region is empty, so the probe could "
                            "change nothing. Paint the positions that may change (drag on the track).")
            return
        self._clear_results()
        self.progress.setRange(0, 0)
        self.status_label.setText(f"probing {record.name}…")
        self._task = "probe"
        self._started = time.perf_counter()
        self.runner.start(probe_job, self.model, record, self.allowed(), settings, self.fasta_path)
        self._update_enabled()

    def _on_step(self, update) -> None:
        if not isinstance(update, ProbeUpdate):
            return
        if update.total > 0:
            self.progress.setRange(0, update.total)
            self.progress.setValue(update.done)
        self.status_label.setText(update.message)
        self.track.set_substitutions({p: r for p, r in update.substitutions})

    def _on_finished(self, value) -> None:
        task, self._task = self._task, None
        if task == "model":
            self.set_model(value)
            self.status_label.setText(f"model {value.card.name} loaded")
        elif value is not None:
            self.show_result(value)
            self._remember(value)
            self.probe_finished.emit(value)
        self._update_enabled()

    def _on_failed(self, failure: JobFailed) -> None:
        task, self._task = self._task, None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        title = "Cannot load the model" if task == "model" else "The probe failed"
        if task == "model":
            self.model_label.setText("no model")
        self.show_error(title, failure.message)
        self._update_enabled()

    def cancel(self) -> None:
        self.runner.cancel()

    def stop_and_wait(self, timeout_ms: int = 10000) -> bool:
        return self.runner.stop_and_wait(timeout_ms)

    def closeEvent(self, event):
        self.runner.stop_and_wait(10000)
        super().closeEvent(event)

    # Results --------------------------------------------------------------------------------------
    def _clear_results(self) -> None:
        self.last_record = None
        self.results_table.setRowCount(0)
        self.verdict_label.setText("")
        self.before_bars.setOpts(x=[], height=[])
        self.after_bars.setOpts(x=[], height=[])
        self.heat_image.clear()
        self.heat_delta = None
        self.track.set_substitutions({})
        self._update_enabled()

    def show_result(self, record: dict) -> None:
        """Draw a finished probe (its ``record.json`` dict)."""
        self.last_record = record
        result = record["results"][0]
        before, after = result["prediction_before"], result["prediction_after"]
        labels = [s["label"] for s in result["substitutions"]]
        if result["success"] and labels:
            verdict = (f"{', '.join(labels)} flips {before['class']} → {after['class']} "
                       f"({after['probabilities'][after['class']]:.3f})"
                       + (" — the fewest possible." if result["minimal"] else "."))
        elif result["success"]:
            verdict = f"Already {after['class']}."
        else:
            verdict = (f"No flip within {self.max_subs_spin.value()} substitution(s); "
                       f"{before['class']} holds ({after['probabilities'][before['class']]:.3f}).")
        created = [f"created {m['motif']} {m['text']} at {m['start'] + 1}" for m in result["motifs_created"]]
        destroyed = [f"destroyed {m['motif']} {m['text']} at {m['start'] + 1}" for m in result["motifs_destroyed"]]
        if created or destroyed:
            verdict += "\n" + "; ".join(created + destroyed)
        self.verdict_label.setText(verdict)
        self.results_table.setRowCount(len(result["substitutions"]))
        for row, s in enumerate(result["substitutions"]):
            cells = (s["label"], "—" if s["blosum62"] is None else str(s["blosum62"]),
                     f"{s['probability_before']:.3f}", f"{s['probability_after']:.3f}")
            for column, text in enumerate(cells):
                self.results_table.setItem(row, column, QTableWidgetItem(text))
        watched = result["watched_class"]["name"]
        for column, when in ((2, "before"), (3, "after")):
            self.results_table.horizontalHeaderItem(column).setToolTip(
                f"probability of {watched} {when} this substitution")
        if result["success"]:
            self.track.set_substitutions({s["position"] - 1: s["to"] for s in result["substitutions"]})
        else:
            self.track.set_substitutions({})
        self._refresh_motifs()
        if "saliency" in result:
            self._draw_saliency(result["saliency"])
        if "scan" in result:
            self._draw_heatmap(result["scan"], result["sequence"])
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        forward = result["forward_passes"] + result.get("scan", {}).get("forward_passes", 0)
        self.status_label.setText(f"done in {result['wall_time_s']:.2f} s: {forward} forward and "
                                  f"{result['backward_passes']} backward passes")
        self._follow_scroll()
        self._update_enabled()

    def _remember(self, record: dict) -> None:
        result = record["results"][0]
        labels = ", ".join(s["label"] for s in result["substitutions"]) or "no change"
        self.history.append(record)
        self.history_combo.addItem(f"{len(self.history)}. {result['name']}: {labels}"
                                   f"{'' if result['success'] else ' (held)'}")
        self.history_combo.setCurrentIndex(len(self.history) - 1)

    def show_history(self, index: int) -> None:
        """Show an earlier probe again: its sequence, its allowed region and its results."""
        if not 0 <= index < len(self.history):
            return
        record = self.history[index]
        result = record["results"][0]
        names = [r.name for r in self.records]
        if result["name"] not in names:
            self.show_error("History", f"{result['name']} is not in the open FASTA file any more.")
            return
        self.allowed_by_record[result["name"]] = position_flags(result["allowed_positions"], result["length"])
        self.record_combo.setCurrentIndex(names.index(result["name"]))
        self._show_record()
        self.show_result(record)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        QTimer.singleShot(0, self._follow_scroll)  # after the layouts have settled

    # Saving -----------------------------------------------------------------------------------------
    def save_run_dialog(self) -> None:
        if self.last_record is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Save the run folder (new or empty)")
        if folder:
            self.save_run(folder)

    def save_run(self, folder: str | Path) -> Path | None:
        """Write the last probe's run folder (record.json + report.html), all or nothing."""
        from advexplorer.report.sequences import write_probe_folder

        try:
            path = write_probe_folder(folder, self.last_record)
        except UserError as error:
            self.show_error("Cannot save the run folder", str(error))
            return None
        self.status_label.setText(f"saved {path}")
        return path


def open_sequence_window(parent=None, model=None, fasta: str | Path | None = None) -> SequenceWindow:
    """Open and show the sequence probe window.

    ``model``: a loaded :class:`~advexplorer.io.sequences.LoadedSequenceModel`, a path, or
    None for the bundled synthetic demo; ``fasta``: a FASTA path, or None for the sample
    (when the model is the demo). Creates the QApplication if there is none.
    """
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        from advexplorer.gui.app import application

        application()
    window = SequenceWindow(parent, model=model, fasta=fasta)
    if parent is not None:
        window.setWindowFlag(Qt.WindowType.Window, True)
    window.show()
    return window
