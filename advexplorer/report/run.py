"""A finished run as a report sees it: the record plus the arrays beside it.

:func:`load_run` reads a run folder written by ``advexplorer attack --out DIR`` (or by the
GUI); :meth:`RunView.from_outcome` builds the same view from a run still in memory, so the
GUI can export a report without writing a run folder first. Nothing here imports torch,
so ``advexplorer report`` starts quickly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from advexplorer.errors import UserError

DEFAULT_FILES = {"input": "input.npy", "perturbation": "perturbation.npy",
                 "adversarial": "adversarial.png", "mask": "mask.png",
                 "saliency_before": "saliency_before.npy", "saliency_after": "saliency_after.npy",
                 "diagnostic": "diagnostic.png"}


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


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def _read_npy(path: Path) -> np.ndarray:
    # allow_pickle=False: a run folder from someone else must not be able to run code.
    return np.load(path, allow_pickle=False)


def load_run(run_dir: str | Path) -> RunView:
    """Read a run folder (``record.json`` + arrays) into a :class:`RunView`.

    Raises :class:`UserError` if the folder is not a run folder or a file in it is damaged.
    Optional files (saliency maps, diagnostic mask) are simply absent from the view; a
    missing optional file that the record names becomes a warning shown in the report.
    """
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder. Give the folder written by "
                        "'advexplorer attack --out DIR'.")
    record_path = run_dir / "record.json"
    if not record_path.is_file():
        raise UserError(f"{run_dir} is not a run folder: it has no record.json. Give the folder "
                        "written by 'advexplorer attack --out DIR'.")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{record_path} is not valid JSON ({error}); the run folder is damaged.") from None
    if not isinstance(record, dict) or "advexplorer_record" not in record:
        raise UserError(f"{record_path} is not an AdvExplorer run record (no 'advexplorer_record' key).")
    files = dict(DEFAULT_FILES)
    files.update({k: v for k, v in (record.get("files") or {}).items() if isinstance(v, str)})
    channels = ((record.get("model") or {}).get("card") or {}).get("channels")
    warnings: list[str] = []

    def path_of(key: str) -> Path:
        name = files[key]
        candidate = (run_dir / name).resolve()
        # A record names files inside its own folder; refuse anything that points elsewhere.
        if run_dir.resolve() not in candidate.parents:
            raise UserError(f"{record_path} names {name!r} for {key}, which is outside the run folder.")
        return candidate

    def read(key: str, reader, required: bool):
        path = path_of(key)
        if not path.is_file():
            if required:
                raise UserError(f"The run folder {run_dir} has no {files[key]}; it is incomplete. "
                                "Re-run the attack with --out to a new folder.")
            if key in (record.get("files") or {}):
                warnings.append(f"{files[key]} is named in the record but missing from the folder.")
            return None
        try:
            return reader(path)
        except (OSError, ValueError, UnidentifiedImageError) as error:
            raise UserError(f"{path} could not be read ({error}); the run folder is damaged.") from None

    input_image = read("input", _read_npy, True)
    perturbation = read("perturbation", _read_npy, True)
    try:
        input_image = _hwc(input_image, channels)
        perturbation = _hwc(perturbation, channels)
    except ValueError as error:
        raise UserError(f"{run_dir}: {error}; the run folder is damaged.") from None
    if input_image.shape != perturbation.shape:
        raise UserError(f"{run_dir}: input {input_image.shape} and perturbation {perturbation.shape} "
                        "have different shapes; the run folder is damaged.")
    height, width = input_image.shape[:2]

    def plane(key: str, reader, kind: str) -> np.ndarray | None:
        array = read(key, reader, False)
        if array is None:
            return None
        array = np.asarray(array)
        if array.ndim == 3:
            array = array.any(axis=2) if kind == "mask" else array[..., 0]
        if array.shape != (height, width):
            warnings.append(f"{files[key]} is {array.shape[1]}×{array.shape[0]} but the input is "
                            f"{width}×{height}; it is left out.")
            return None
        return array != 0 if kind == "mask" else array.astype(np.float32)

    allowed = plane("mask", _read_png, "mask")
    if allowed is not None and bool(allowed.all()):
        allowed = None if (record.get("mask") or {}).get("mode", "none") == "none" else allowed
    diagnostic = plane("diagnostic", _read_png, "mask")
    before = plane("saliency_before", _read_npy, "map") if "saliency" in record else None
    after = plane("saliency_after", _read_npy, "map") if "saliency" in record else None
    exported = read("adversarial", _read_png, False)
    if exported is not None and exported.shape[:2] != (height, width):
        warnings.append(f"{files['adversarial']} does not have the input's size; it is left out.")
        exported = None
    for key in ("success", "prediction_before", "prediction_after"):
        if key not in record:
            warnings.append(f"The record has no '{key}'.")
    return RunView(record=record, input_image=input_image, perturbation=perturbation,
                   allowed_mask=allowed, diagnostic_mask=diagnostic, saliency_before=before,
                   saliency_after=after, exported=exported, run_dir=run_dir.resolve(),
                   warnings=warnings)


def finite(value: Any) -> bool:
    """True for a real, finite number (records keep NaN for 'not measured')."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
