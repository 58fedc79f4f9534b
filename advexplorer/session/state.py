"""The state a user works on in the app: the image list, the current image, run history.

Plain Python with simple change notifications (:class:`Event`); no widgets and no torch,
so the window can show it before the engine has loaded. The GUI thread owns the session;
an attack worker receives copies (see :meth:`advexplorer.session.masks.ImageMasks`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advexplorer.config import method_label
from advexplorer.io.filenames import IMAGE_SUFFIXES, is_companion_mask
from advexplorer.session.masks import ImageMasks



class Event:
    """A list of callbacks: ``event.connect(f)``, ``event.emit(*args)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@dataclass
class RunSummary:
    """A finished run as the app keeps it: what was run, what came out, ready to draw.

    Arrays are numpy copies (H×W×C float32 in [0,1] at model input size for images,
    T×K for the probability trajectory). ``record`` is the same dict ``record.json``
    holds for a CLI run; ``request``/``outcome`` are kept so the run can be saved as a
    run folder later.
    """

    number: int
    image_path: Path
    model_name: str
    classes: tuple[str, ...]
    config: dict
    mask_mode: str
    original: np.ndarray
    adversarial: np.ndarray
    perturbation: np.ndarray
    probability_trajectory: np.ndarray
    loss_trajectory: np.ndarray
    step_index: np.ndarray
    prediction_before: int
    prediction_after: int
    probability_before: np.ndarray
    probability_after: np.ndarray
    success: bool
    label: int | None
    target: int | None
    norms: dict[str, float]
    wall_time_s: float
    record: dict = field(default_factory=dict)
    saliency: Any = None
    request: Any = None
    outcome: Any = None

    @property
    def flipped(self) -> bool:
        return self.prediction_before != self.prediction_after

    @property
    def title(self) -> str:
        """A one-line name for lists: number, method, ε, mask, result."""
        eps = self.config.get("eps", 0.0)
        method = method_label(self.config.get("method")) or "?"
        norm = "L∞" if self.config.get("norm") == "linf" else "L2"
        eps_text = f"{eps * 255:.3g}/255" if self.config.get("norm") == "linf" else f"{eps:.3g}"
        result = "flipped" if self.flipped else "held"
        return (f"#{self.number} {method} {norm} ε={eps_text} · {self.mask_mode} mask · "
                f"{self.model_name} · {result}")


@dataclass
class ImageEntry:
    """One image of the session: its file, its masks (once its size is known), its runs."""

    path: Path
    masks: ImageMasks | None = None
    runs: list[RunSummary] = field(default_factory=list)
    label: int | None = None
    file_size: tuple[int, int] | None = None  # (W, H)
    #: A DICOM file's display and attack window (centre, width); None: the file's own.
    dicom_window: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def ensure_masks(self, width: int, height: int) -> ImageMasks:
        """Create the (empty) masks the first time the image's size is known."""
        if self.masks is None or self.masks.attack.shape != (height, width):
            self.masks = ImageMasks(height, width)
        self.file_size = (width, height)
        return self.masks


def expand_image_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the image files (sorted, DICOM too) directly inside any folder given.

    In a folder, companion masks (``scan_protect.png`` beside ``scan.png``) are not
    listed as images of their own.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                     and not p.name.startswith(".")]
            names = {p.name for p in files}
            out.extend(sorted(p for p in files if not is_companion_mask(p, names)))
        else:
            out.append(path)
    return out


class Session:
    """The images open in the app, which one is current, and each image's run history.

    Events: ``images_changed()``, ``current_changed(entry | None)``,
    ``runs_changed(entry)``.
    """

    def __init__(self) -> None:
        self.images: list[ImageEntry] = []
        self.current_index: int | None = None
        self._run_numbers = itertools.count(1)
        self.images_changed = Event()
        self.current_changed = Event()
        self.runs_changed = Event()

    @property
    def current(self) -> ImageEntry | None:
        if self.current_index is None or not self.images:
            return None
        return self.images[self.current_index]

    def add_images(self, paths: Iterable[str | Path]) -> list[ImageEntry]:
        """Add files (folders expand to their images); already-open files are not repeated.

        Returns the entries for the given paths (new or existing), in order.
        """
        entries = []
        known = {entry.path.resolve(): entry for entry in self.images}
        added = False
        for path in expand_image_paths(paths):
            key = path.resolve()
            entry = known.get(key)
            if entry is None:
                entry = ImageEntry(path=key)
                self.images.append(entry)
                known[key] = entry
                added = True
            entries.append(entry)
        if added:
            self.images_changed.emit()
        if self.current_index is None and self.images:
            self.set_current(0)
        return entries

    def remove_images(self, entries: Iterable[ImageEntry]) -> None:
        """Close images (their masks and runs go with them)."""
        doomed = {id(e) for e in entries}
        if not doomed:
            return
        current = self.current
        self.images = [e for e in self.images if id(e) not in doomed]
        self.images_changed.emit()
        if current is not None and id(current) in doomed:
            self.current_index = None
            self.set_current(0 if self.images else None)
        elif current is not None:
            self.current_index = self.images.index(current)

    def set_current(self, index: int | None) -> None:
        """Make image ``index`` current (None: no image)."""
        if index is not None and not 0 <= index < len(self.images):
            index = None
        if index == self.current_index:
            return
        self.current_index = index
        self.current_changed.emit(self.current)

    def index_of(self, entry: ImageEntry) -> int:
        return self.images.index(entry)

    def next_run_number(self) -> int:
        return next(self._run_numbers)

    def add_run(self, entry: ImageEntry, run: RunSummary) -> None:
        """Keep a finished run in the image's history."""
        entry.runs.append(run)
        self.runs_changed.emit(entry)
