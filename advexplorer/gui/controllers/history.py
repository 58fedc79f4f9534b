"""Finished runs of the current image: the history list, compare, save, export a report."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QListWidgetItem, QWidget

from advexplorer.errors import UserError
from advexplorer.gui.controllers.settings import Preferences, user_folder
from advexplorer.gui.engine import module_exists
from advexplorer.gui.panels import HistoryPanel
from advexplorer.gui.views import summary_lines
from advexplorer.session.state import RunSummary, Session

REPORT_FILTER = "HTML (*.html);;PDF (*.pdf)"


def save_run_folder(run: RunSummary, folder: Path) -> Path:
    """Write ``run`` as a run folder ``advexplorer reproduce`` and ``report`` read: painted
    masks stored in it, and the equivalent ``advexplorer attack`` command in its record."""
    from advexplorer.session.runs import write_run_folder

    return write_run_folder(folder, run.request, run.outcome, record=dict(run.record))


class HistoryController(QObject):
    """Owns the history list of the current image and what can be done with its runs.

    Signals: ``show_requested(RunSummary)``, ``message(text, ms)``, ``error(title, message)``.
    """

    show_requested = Signal(object)
    message = Signal(str, int)
    error = Signal(str, str)

    def __init__(self, session: Session, panel: HistoryPanel, preferences: Preferences,
                 dialog_parent: QWidget, parent=None):
        super().__init__(parent)
        self.session = session
        self.panel = panel
        self.preferences = preferences
        self.dialog_parent = dialog_parent
        self.busy = lambda: False      # the window says when a run is drawing live
        self.compare_dialog = None
        panel.list.itemSelectionChanged.connect(self.selection_changed)
        panel.compare_button.clicked.connect(self._compare_clicked)

    def _compare_clicked(self) -> None:
        self.compare_selected()

    def refresh(self, select_last: bool = False) -> None:
        entry = self.session.current
        widget = self.panel.list
        widget.blockSignals(True)
        widget.clear()
        for run in (entry.runs if entry is not None else []):
            item = QListWidgetItem(run.title)
            item.setToolTip("\n".join(f"{k}: {v}" for k, v in summary_lines(run)))
            widget.addItem(item)
        if select_last and widget.count():
            widget.setCurrentRow(widget.count() - 1)
        widget.blockSignals(False)
        self.selection_changed(show=False)

    def selected_runs(self) -> list[RunSummary]:
        entry = self.session.current
        if entry is None:
            return []
        rows = sorted(index.row() for index in self.panel.list.selectedIndexes())
        return [entry.runs[r] for r in rows if r < len(entry.runs)]

    def selection_changed(self, show: bool = True) -> None:
        runs = self.selected_runs()
        self.panel.compare_button.setEnabled(len(runs) == 2)
        self.panel.save_button.setEnabled(len(runs) == 1 and runs[0].request is not None)
        self.panel.report_button.setEnabled(bool(runs) and module_exists("advexplorer.report"))
        if show and len(runs) == 1 and not self.busy():
            self.show_requested.emit(runs[0])

    def compare_selected(self):
        from advexplorer.gui.views import CompareDialog

        runs = self.selected_runs()
        if len(runs) != 2:
            self.message.emit("Select exactly two runs to compare.", 4000)
            return None
        dialog = CompareDialog(runs[0], runs[1], self.dialog_parent)
        dialog.show()
        self.compare_dialog = dialog
        return dialog

    # -- run folders -------------------------------------------------------------------
    def save_run_dialog(self, shown: RunSummary | None) -> None:
        runs = self.selected_runs() or ([shown] if shown is not None else [])
        if len(runs) != 1 or runs[0].request is None:
            self.message.emit("Select one run in the history to save.", 4000)
            return
        run = runs[0]
        start = Path(self.preferences.folder("run", user_folder(run.image_path)))
        suggestion = start / f"{run.image_path.stem}_run{run.number}"
        path, _ = QFileDialog.getSaveFileName(self.dialog_parent, "Save run folder (a new folder)",
                                              str(suggestion), "")
        if path:
            self.preferences.set_folder("run", Path(path).parent)
            self.save_run(run, Path(path))

    def save_run(self, run: RunSummary, folder: Path) -> Path | None:
        try:
            written = save_run_folder(run, folder)
        except UserError as error:
            self.error.emit("Could not save the run", str(error))
            return None
        except OSError as error:
            self.error.emit("Could not save the run", f"{error}. Choose a folder you can write to.")
            return None
        self.message.emit(f"Saved run #{run.number} to {written}", 6000)
        return written

    # -- reports -----------------------------------------------------------------------
    def report_dialog(self) -> Path | None:
        """File → Export report… (Ctrl+E): the selected runs (else the current image's last)."""
        runs = self.selected_runs()
        entry = self.session.current
        if not runs and entry is not None and entry.runs:
            runs = [entry.runs[-1]]
        if not runs:
            self.message.emit("Run an attack first: a report describes finished runs.", 5000)
            return None
        if not module_exists("advexplorer.report"):
            return None
        start = Path(self.preferences.folder("report", Path.home()))
        suggestion = start / f"{runs[0].image_path.stem}_report.html"
        path, _ = QFileDialog.getSaveFileName(self.dialog_parent, "Export report", str(suggestion),
                                              REPORT_FILTER)
        if not path:
            return None
        self.preferences.set_folder("report", path)
        written = self.write_report(runs, Path(path))
        if written is not None:
            from advexplorer.report.run import runs_folder_for

            self.message.emit(f"Wrote {written} (run folders in {runs_folder_for(written).name}/)", 8000)
        return written

    def write_report(self, runs: list[RunSummary], path: Path) -> Path | None:
        """An HTML/PDF report of finished runs, with their run folders saved beside it.

        The folders stay (``<report>_runs/run-<N>``), so the report's ``advexplorer
        reproduce`` lines point to folders that exist.
        """
        try:
            from advexplorer.report.run import write_report_with_runs

            # The save dialog has already asked before replacing an existing report.
            return write_report_with_runs(path, runs, overwrite=True)
        except UserError as error:
            self.error.emit("Could not write the report", str(error))
        except OSError as error:
            self.error.emit("Could not write the report", f"{error}. Choose a folder you can write to.")
        except Exception as error:  # report code is another module; keep the app alive
            self.error.emit("Could not write the report", f"{type(error).__name__}: {error}")
        return None
