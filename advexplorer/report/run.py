"""A finished run as a report sees it: the record plus the arrays beside it.

:func:`load_run` reads a run folder written by ``advexplorer attack --out DIR`` (or by the
GUI); :meth:`RunView.from_outcome` builds the same view from a run still in memory, and
:func:`write_report_with_runs` saves runs held in memory beside a report (``REPORT_runs/``)
so its "reproduce" line names a folder that exists. Reading goes through
:mod:`advexplorer.io.runfolder`; nothing here imports torch at module level, so
``advexplorer report`` starts quickly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advexplorer.errors import UserError
from advexplorer.io.runfolder import RunFolder


def _hwc(array: np.ndarray, channels: int | None) -> np.ndarray:
    """C×H×W (as run folders store images) → H×W×C; H×W×C and H×W are accepted too."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected an image array, got shape {array.shape}")
    if channels is None:
        channels = array.shape[0] if array.shape[0] in (1, 3) else array.shape[2]
    if array.shape[0] == channels:  # channel-first wins: it is what run folders hold
        return np.ascontiguousarray(np.transpose(array, (1, 2, 0)))
    if array.shape[2] == channels:
        return array
    raise ValueError(f"an image array of shape {array.shape} does not have {channels} channel(s)")


@dataclass
class RunView:
    """Everything a report shows about one run.

    ``input_image`` and ``perturbation`` are H×W×C float32 at the model's input size (the
    image as the model saw it, and adversarial − input); masks are H×W bool at the same size
    (``allowed_mask`` True where the attack could act); saliency maps are H×W float32 on
    the shared before/after scale; ``exported`` is the adversarial PNG as saved (uint8).
    """

    record: dict[str, Any]
    input_image: np.ndarray
    perturbation: np.ndarray
    allowed_mask: np.ndarray | None = None
    diagnostic_mask: np.ndarray | None = None
    saliency_before: np.ndarray | None = None
    saliency_after: np.ndarray | None = None
    exported: np.ndarray | None = None
    run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def adversarial(self) -> np.ndarray:
        """The float adversarial image (before 8-bit rounding), H×W×C in [0,1]."""
        return np.clip(self.input_image + self.perturbation, 0.0, 1.0)

    @property
    def classes(self) -> list[str]:
        return list(((self.record.get("model") or {}).get("card") or {}).get("classes") or [])

    @property
    def name(self) -> str:
        """A short name for tables: the image file name, else the run folder's name."""
        image_path = (self.record.get("image") or {}).get("path")
        if image_path:
            return Path(str(image_path)).name
        return self.run_dir.name if self.run_dir is not None else "run"

    def input_files(self) -> set[Path]:
        """Every file this run was made from or consists of: a report never replaces one."""
        record = self.record
        paths: set[Path] = set()
        if self.run_dir is not None:
            paths.add((self.run_dir / "record.json").resolve())
            paths |= {(self.run_dir / name).resolve() for name in (record.get("files") or {}).values()
                      if isinstance(name, str)}
        for entry in (record.get("model"), record.get("image"), record.get("mask"), record.get("diagnostic")):
            for key in ("path", "card_path"):
                if isinstance(entry, dict) and entry.get(key):
                    paths.add(Path(str(entry[key])).expanduser().resolve())
        return paths

    @classmethod
    def from_outcome(cls, request, outcome, record: dict[str, Any] | None = None,
                     run_dir: str | Path | None = None) -> "RunView":
        """Build a view from an in-memory run (``advexplorer.session.runs``) for the GUI."""
        from advexplorer.session.runs import build_record

        record = record if record is not None else build_record(request, outcome)
        image = request.image.tensor.detach().cpu().numpy()
        perturbation = np.asarray(outcome.perturbation, dtype=np.float32)
        allowed = None if request.allowed_mask is None else \
            request.allowed_mask.detach().cpu().numpy() != 0
        diagnostic = None if request.diagnostic_mask is None else \
            request.diagnostic_mask.detach().cpu().numpy() != 0
        before = after = None
        if outcome.explanation is not None:
            before = np.asarray(outcome.explanation.before, dtype=np.float32)
            after = np.asarray(outcome.explanation.after, dtype=np.float32)
        channels = image.shape[0]
        return cls(record=record, input_image=_hwc(image, channels),
                   perturbation=_hwc(perturbation, channels), allowed_mask=allowed,
                   diagnostic_mask=diagnostic, saliency_before=before, saliency_after=after,
                   exported=np.asarray(outcome.exported, dtype=np.uint8),
                   run_dir=Path(run_dir) if run_dir is not None else None)


def load_run(run_dir: str | Path) -> RunView:
    """Read a run folder (``record.json`` + arrays, via :class:`~advexplorer.io.runfolder.RunFolder`)
    into a :class:`RunView`.

    Raises :class:`UserError` if the folder is not a run folder or a file in it is damaged.
    Optional files (saliency maps, diagnostic mask) are simply absent from the view; a
    missing optional file that the record names becomes a warning shown in the report.
    """
    folder = RunFolder.open(run_dir)
    record = folder.record
    channels = ((record.get("model") or {}).get("card") or {}).get("channels")
    warnings: list[str] = []
    try:
        input_image = _hwc(folder.input_image, channels)
        perturbation = _hwc(folder.perturbation, channels)
    except ValueError as error:
        raise UserError(f"{folder.path}: {error}; the run folder is damaged.") from None
    if input_image.shape != perturbation.shape:
        raise UserError(f"{folder.path}: input {input_image.shape} and perturbation {perturbation.shape} "
                        "have different shapes; the run folder is damaged.")
    height, width = input_image.shape[:2]

    def optional(role: str) -> np.ndarray | None:
        array = folder.array(role)
        if array is None and folder.names(role):
            warnings.append(f"{folder.file_name(role)} is named in the record but missing from the folder.")
        return array

    def plane(role: str, kind: str) -> np.ndarray | None:
        array = optional(role)
        if array is None:
            return None
        array = np.asarray(array)
        if array.ndim == 3:
            array = array.any(axis=2) if kind == "mask" else array[..., 0]
        if array.shape != (height, width):
            warnings.append(f"{folder.file_name(role)} is {array.shape[1]}×{array.shape[0]} but the "
                            f"input is {width}×{height}; it is left out.")
            return None
        return array != 0 if kind == "mask" else array.astype(np.float32)

    allowed = plane("mask", "mask")
    if allowed is not None and bool(allowed.all()):
        allowed = None if (record.get("mask") or {}).get("mode", "none") == "none" else allowed
    diagnostic = plane("diagnostic", "mask")
    before = plane("saliency_before", "map") if "saliency" in record else None
    after = plane("saliency_after", "map") if "saliency" in record else None
    exported = optional("adversarial")
    if exported is not None and exported.shape[:2] != (height, width):
        warnings.append(f"{folder.file_name('adversarial')} does not have the input's size; it is left out.")
        exported = None
    for key in ("success", "prediction_before", "prediction_after"):
        if key not in record:
            warnings.append(f"The record has no '{key}'.")
    return RunView(record=record, input_image=input_image, perturbation=perturbation,
                   allowed_mask=allowed, diagnostic_mask=diagnostic, saliency_before=before,
                   saliency_after=after, exported=exported, run_dir=folder.path,
                   warnings=warnings)


def finite(value: Any) -> bool:
    """True for a real, finite number (records keep NaN for 'not measured')."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def runs_folder_for(report_path: str | Path) -> Path:
    """Where a report written from the app keeps its runs: ``REPORT_runs`` beside ``REPORT.html``."""
    path = Path(report_path).expanduser()
    return path.with_name(f"{path.stem}_runs")


def write_report_with_runs(report_path: str | Path, runs, *, overwrite: bool = False,
                           title: str | None = None) -> Path:
    """Write a report of runs held in memory, saving each run beside it first.

    ``runs`` are finished runs with attributes ``number``, ``request``, ``outcome`` and
    ``record`` (the GUI's run summaries). Each is saved as ``REPORT_runs/run-N/`` with
    :func:`advexplorer.session.runs.write_run_folder`, so the report's "reproduce" line names
    a folder that exists and its command is the equivalent ``advexplorer attack`` command.
    Existing files are replaced only with ``overwrite``. Returns the report's path.
    """
    from advexplorer.io.atomic import check_destination
    from advexplorer.report import write_report
    from advexplorer.session.runs import write_run_folder

    check_destination(report_path, overwrite=overwrite)  # refuse before writing any run
    runs_dir = runs_folder_for(report_path)
    folders = [write_run_folder(runs_dir / f"run-{run.number}", run.request, run.outcome,
                                record=None if run.record is None else dict(run.record),
                                overwrite=overwrite)
               for run in runs]
    return write_report(report_path, folders, overwrite=overwrite, title=title)
