"""AdvExplorer projects: one ``.advx`` file holding a morning's work, to save and reopen.

A project is a zip file::

    project.json                 format version, model (path + card), attack form, the Cohort
                                 panel's form, image list
                                 (each image: path, SHA-256, DICOM window, model crop)
    masks/<i>-attack.png         image i's attack layer as painted (255 = painted), current
    masks/<i>-diagnostic.png     state only: the undo history is not kept
    runs/<i>/run-<n>/...         image i's finished runs, as run folders (io/runfolder.py)

Images are *not* copied into the project (slides are large and often not the user's to
copy): the list keeps each file's path and SHA-256. Opening a project whose images moved
reports them as missing (:attr:`OpenedProject.missing`) so the app can ask where they are
(:meth:`OpenedProject.relocate` takes a folder or a mapping); a file whose content changed
since the project was saved (the hash differs) is reported (:attr:`OpenedProject.changed`)
and is never used unless the caller accepts it (:meth:`OpenedProject.accept_changed`).

Saving is atomic (:mod:`advexplorer.io.atomic`): the zip is written under a temporary
name beside the destination and renamed into place when complete, and an existing file is
replaced only with ``overwrite=True``. A file that is not a project, is damaged, or was
saved by a newer AdvExplorer is one :class:`~advexplorer.errors.UserError` line.

Plain Python + numpy (no Qt, no torch): the autosave (:mod:`advexplorer.session.recovery`)
writes the same format.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Union

import numpy as np

import advexplorer
from advexplorer.errors import UserError
from advexplorer.io.atomic import atomic_path
from advexplorer.io.hashing import sha256_file
from advexplorer.io.runfolder import RECORD, RunFolder, jsonable
from advexplorer.session.masks import MASK_MODES

__all__ = ["PROJECT_SUFFIX", "FORMAT_VERSION", "ImageState", "ModelState", "ProjectState",
           "OpenedProject", "ImageProblem", "save_project", "open_project", "read_project_info",
           "snapshot_session", "apply_masks", "run_summary_from_folder", "run_source"]

PROJECT_SUFFIX = ".advx"
#: The project format this version writes and the newest it reads. Version 2 added each
#: image's ``dicom_window`` and ``crop`` and the form's ``queries``, ``diversity`` and
#: ``surrogate``; version 1 files still open (those keys take their defaults). Version 3
#: added ``cohort_form`` (the Cohort panel's form); older files open with the panel's defaults.
FORMAT_VERSION = 3
MANIFEST = "project.json"
#: The key that marks project.json as ours (a zip with another project.json is not a project).
MARKER = "advexplorer_project"
#: Largest total size a project may unpack to (a hostile zip must not fill the disk).
MAX_UNPACKED_BYTES = 8 * 1024 ** 3

#: A run in a project: an existing run folder, or a function that writes one into a given
#: (new, empty) folder, e.g. ``lambda folder: write_run_folder(folder, run.request, run.outcome)``.
RunSource = Union[Path, Callable[[Path], Any]]


# --------------------------------------------------------------------------- the state


@dataclass
class ImageState:
    """One image of a project: its file, the file's SHA-256, its masks and runs.

    ``attack_mask`` / ``diagnostic_mask`` are the painted layers (H×W, non-zero = painted)
    at the image file's size, or None when nothing is painted; ``mask_mode`` says how the
    attack layer is read (``allowed`` or ``protect``). ``runs`` are run sources when saving
    and opened :class:`~advexplorer.io.runfolder.RunFolder` objects after opening.
    ``status`` is ``ok``, ``missing`` (no file at ``path``) or ``changed`` (the file's hash
    differs from ``sha256``); only ``ok`` images should be loaded. ``dicom_window`` is a
    DICOM file's chosen window (centre, width), None for the file's own; ``crop`` the
    model's crop chosen on the canvas (x, y, w, h at file resolution), None for the card's rule.
    """

    path: Path
    sha256: str | None = None
    size: tuple[int, int] | None = None  # (W, H) of the file, known once it was read
    mask_mode: str = "protect"
    attack_mask: np.ndarray | None = None
    diagnostic_mask: np.ndarray | None = None
    label: int | None = None
    runs: list = field(default_factory=list)
    status: str = "ok"
    dicom_window: tuple[float, float] | None = None
    crop: tuple[int, int, int, int] | None = None


@dataclass
class ModelState:
    """The model a project was working with: its file, its card (path and content), device."""

    path: Path | None = None
    card_path: Path | None = None
    card: dict | None = None
    device: str = "auto"


@dataclass
class ProjectState:
    """Everything a project holds. ``attack_form`` is the attack panel's values (plain JSON:
    method, norm, ε as typed, steps, ...), restored with ``AttackPanel.set_values``.
    ``cohort_form`` is the Cohort panel's form (``CohortPanel.form_state``: images folder,
    masks, ε list, attack, steps, batch, noise baseline, check-monotone, defence row), empty
    when a project did not keep it. A screen's results are not kept: a screen is re-run from
    its form, not stored."""

    images: list[ImageState] = field(default_factory=list)
    model: ModelState = field(default_factory=ModelState)
    attack_form: dict = field(default_factory=dict)
    current_index: int | None = None
    cohort_form: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImageProblem:
    """An image of an opened project that cannot be used as is: what, where, and why."""

    index: int
    path: Path
    reason: str   # "missing" or "changed"

    @property
    def message(self) -> str:
        if self.reason == "missing":
            return f"{self.path.name} is no longer at {self.path.parent}."
        return (f"{self.path} has changed since the project was saved (its SHA-256 differs); "
                "its masks and runs belong to the old content.")


# --------------------------------------------------------------------------- saving


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((np.asarray(mask) != 0).astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def _file_hash(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def project_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.advx`` suffix (added when the user typed a name without it)."""
    path = Path(path).expanduser()
    return path if path.suffix.lower() == PROJECT_SUFFIX else path.with_name(path.name + PROJECT_SUFFIX)


def _manifest(state: ProjectState, images: list[dict], extra: Mapping[str, Any] | None) -> dict:
    model = state.model
    manifest = {
        MARKER: True,
        "format_version": FORMAT_VERSION,
        "saved_by": f"AdvExplorer {advexplorer.__version__}",
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": str(model.path) if model.path else None,
                  "card_path": str(model.card_path) if model.card_path else None,
                  "card": model.card, "device": model.device},
        "attack_form": dict(state.attack_form),
        "cohort_form": dict(state.cohort_form),
        "current_index": state.current_index,
        "images": images,
    }
    if extra:
        manifest.update(extra)
    return jsonable(manifest)


def _add_folder(archive: zipfile.ZipFile, folder: Path, prefix: str) -> None:
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            archive.write(file, f"{prefix}/{file.relative_to(folder).as_posix()}")


def _write_run(source: RunSource, archive: zipfile.ZipFile, prefix: str, scratch: Path) -> str:
    if isinstance(source, RunFolder):
        source = source.path
    if isinstance(source, (str, os.PathLike)):
        folder = RunFolder.open(source).path  # refuses what is not a run folder, by name
    else:
        folder = scratch / prefix.replace("/", "_")
        source(folder)
        RunFolder.open(folder)
    _add_folder(archive, folder, prefix)
    return prefix


def save_project(path: str | os.PathLike, state: ProjectState, *, overwrite: bool = False,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``state`` as one ``.advx`` file at ``path`` (the suffix is added if missing).

    Atomic: the file appears complete or not at all. An existing file is replaced only with
    ``overwrite=True`` (else :class:`UserError`). Each image's SHA-256 is taken now from
    its file (kept from ``state`` when the file cannot be read, e.g. it is still missing).
    ``extra`` adds top-level keys to ``project.json`` (the autosave records its process).
    Returns the path written.
    """
    path = project_path(path)
    with atomic_path(path, overwrite=overwrite) as temporary:
        with tempfile.TemporaryDirectory(prefix="advexplorer-project-") as scratch:
            _write_archive(temporary, state, Path(scratch), extra)
        # On disk before the rename: a power cut leaves the old file or the new one.
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
    return path


def _write_archive(temporary: Path, state: ProjectState, scratch: Path,
                   extra: Mapping[str, Any] | None) -> None:
    images: list[dict] = []
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index, image in enumerate(state.images):
            image_path = Path(image.path).expanduser()
            entry: dict[str, Any] = {
                "path": str(image_path.resolve() if image_path.exists() else image_path),
                # A changed or missing image keeps the hash it was saved with: saving must
                # not make a changed file look like the one the masks were painted on.
                "sha256": (_file_hash(image_path) if image.status == "ok" else None) or image.sha256,
                "size": list(image.size) if image.size else None,
                "mask_mode": image.mask_mode, "label": image.label,
                "dicom_window": [float(v) for v in image.dicom_window] if image.dicom_window else None,
                "crop": [int(v) for v in image.crop] if image.crop else None,
                "attack_mask": None, "diagnostic_mask": None, "runs": []}
            for key, mask in (("attack_mask", image.attack_mask), ("diagnostic_mask", image.diagnostic_mask)):
                if mask is None or not np.asarray(mask).any():
                    continue
                name = f"masks/{index}-{key.split('_')[0]}.png"
                archive.writestr(name, _png_bytes(mask))
                entry[key] = name
                entry["size"] = entry["size"] or [int(mask.shape[1]), int(mask.shape[0])]
            for number, source in enumerate(image.runs, start=1):
                entry["runs"].append(_write_run(source, archive, f"runs/{index}/run-{number}", scratch))
            images.append(entry)
        manifest = _manifest(state, images, extra)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, allow_nan=False))


# --------------------------------------------------------------------------- opening


def _not_a_project(path: Path, why: str) -> UserError:
    return UserError(f"{path} is not an AdvExplorer project ({why}); open a {PROJECT_SUFFIX} "
                     "file saved with File → Save project.")


def _open_archive(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise UserError(f"{path}: no such file.")
    if path.is_dir():
        raise UserError(f"{path} is a folder; open a {PROJECT_SUFFIX} project file.")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise _not_a_project(path, "not a zip file, or a damaged one") from None
    except OSError as error:
        raise UserError(f"{path} could not be read ({error.strerror or error}).") from None


def _read_manifest(path: Path, archive: zipfile.ZipFile) -> dict:
    try:
        raw = archive.read(MANIFEST)
    except KeyError:
        raise _not_a_project(path, f"it has no {MANIFEST}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(f"{path} is damaged ({error}); it cannot be opened.") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is damaged: its {MANIFEST} is not valid JSON.") from None
    if not isinstance(manifest, dict) or manifest.get(MARKER) is not True:
        raise _not_a_project(path, f"its {MANIFEST} is not AdvExplorer's")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{path} is damaged: its format version {version!r} is not a number.")
    if version > FORMAT_VERSION:
        raise UserError(f"{path} was saved by a newer AdvExplorer ({manifest.get('saved_by', '?')}, "
                        f"project format {version}; this version reads up to {FORMAT_VERSION}); "
                        "update AdvExplorer to open it.")
    if not isinstance(manifest.get("images"), list):
        raise UserError(f"{path} is damaged: its {MANIFEST} has no image list.")
    return manifest


def read_project_info(path: str | os.PathLike) -> dict:
    """The ``project.json`` of a project, checked (format, version), without unpacking it."""
    path = Path(path).expanduser()
    with _open_archive(path) as archive:
        return _read_manifest(path, archive)


def _read_mask(path: Path, archive: zipfile.ZipFile, name: Any, size: Any) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    if not name:
        return None
    try:
        with Image.open(io.BytesIO(archive.read(str(name)))) as image:
            mask = (np.asarray(image.convert("L")) != 0).astype(np.uint8)
    except (KeyError, OSError, UnidentifiedImageError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is damaged: the mask {name} cannot be read ({error}).") from None
    if size and tuple(mask.shape[::-1]) != tuple(size):
        raise UserError(f"{path} is damaged: the mask {name} is {mask.shape[1]}×{mask.shape[0]} "
                        f"but its image is {size[0]}×{size[1]}.")
    return mask


def _safe_member(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and ":" not in parts[0]


def _extract_runs(path: Path, archive: zipfile.ZipFile, destination: Path) -> None:
    members = [info for info in archive.infolist() if info.filename.startswith("runs/")]
    if sum(info.file_size for info in members) > MAX_UNPACKED_BYTES:
        raise UserError(f"{path} would unpack to more than {MAX_UNPACKED_BYTES // 1024 ** 3} GB; "
                        "it is not a project this app saved.")
    for info in members:
        if info.is_dir():
            continue
        if not _safe_member(info.filename):
            raise UserError(f"{path} is damaged: it holds a file outside the project ({info.filename}).")
        target = destination / info.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise UserError(f"{path} is damaged: {info.filename} cannot be read ({error}).") from None


@dataclass
class OpenedProject:
    """A project read back: its state, and what needs the user before it can be used.

    ``missing``: images not found at their recorded path (ask where they are, then
    :meth:`relocate`). ``changed``: images whose file is there but whose content differs
    from the saved SHA-256 (say so; use only after :meth:`accept_changed`). ``runs_dir``:
    the folder the project's run folders were unpacked into. ``notes``: run folders that
    could not be read (the rest of the project opens).
    """

    path: Path
    state: ProjectState
    runs_dir: Path
    saved_by: str = ""
    saved_at: str = ""
    notes: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict, repr=False)

    def _problems(self, reason: str) -> list[ImageProblem]:
        return [ImageProblem(i, image.path, reason) for i, image in enumerate(self.state.images)
                if image.status == reason]

    @property
    def missing(self) -> list[ImageProblem]:
        return self._problems("missing")

    @property
    def changed(self) -> list[ImageProblem]:
        return self._problems("changed")

    @property
    def usable_images(self) -> list[ImageState]:
        """Images whose file is where it was, with the content it had: safe to load."""
        return [image for image in self.state.images if image.status == "ok"]

    def relocate(self, where: str | os.PathLike | Mapping[str | os.PathLike, str | os.PathLike]
                 ) -> list[ImageProblem]:
        """Find missing images in a folder (by file name, searched recursively) or through
        a mapping ``{recorded path: new path}``. A candidate is used only when its SHA-256
        is the saved one; one with the same name but other content becomes ``changed``.
        Returns the problems left (missing or changed) so the app can ask again."""
        if isinstance(where, Mapping):
            candidates = {Path(old).expanduser(): [Path(new).expanduser()] for old, new in where.items()}
            lookup = lambda image: candidates.get(Path(image.path), [])  # noqa: E731
        else:
            folder = Path(where).expanduser()
            if not folder.is_dir():
                raise UserError(f"{folder} is not a folder; choose the folder the images are in now.")
            by_name: dict[str, list[Path]] = {}
            for file in folder.rglob("*"):
                if file.is_file():
                    by_name.setdefault(file.name, []).append(file)
            lookup = lambda image: by_name.get(Path(image.path).name, [])  # noqa: E731
        for image in self.state.images:
            if image.status != "missing":
                continue
            found = [c for c in lookup(image) if c.is_file()]
            match = next((c for c in found if image.sha256 is None or _file_hash(c) == image.sha256), None)
            if match is not None:
                image.path, image.status = match.resolve(), "ok"
            elif found:
                image.path, image.status = found[0].resolve(), "changed"
        return self.missing + self.changed

    def accept_changed(self, index: int) -> None:
        """The user chose to use image ``index`` as it is now: its new hash is taken, and
        masks that no longer fit its size are dropped (runs stay: they record the old hash)."""
        image = self.state.images[index]
        if image.status != "changed":
            return
        image.sha256 = _file_hash(Path(image.path))
        image.status = "ok"
        try:
            from PIL import Image

            with Image.open(image.path) as opened:
                size = opened.size
        except OSError:
            return
        if image.size and tuple(image.size) != tuple(size):
            image.attack_mask = image.diagnostic_mask = None
            image.crop = None  # a crop of the old content's frame
        image.size = tuple(size)

    def problem_lines(self) -> list[str]:
        """One line per image that needs the user, for a dialog."""
        return [problem.message for problem in self.missing + self.changed] + list(self.notes)


def _image_status(path: Path, sha256: str | None) -> str:
    if not path.is_file():
        return "missing"
    if sha256 is not None and _file_hash(path) != sha256:
        return "changed"
    return "ok"


def _optional_path(value: Any) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _dicom_window(value: Any) -> tuple[float, float] | None:
    """A saved ``[centre, width]`` (width > 0), or None (absent, or not a window)."""
    if isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value) and value[1] > 0:
        return float(value[0]), float(value[1])
    return None


def _crop(value: Any, size: tuple[int, int] | None) -> tuple[int, int, int, int] | None:
    """A saved ``[x, y, w, h]`` inside the image (when its size is known), or None."""
    if not (isinstance(value, list) and len(value) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return None
    x, y, w, h = value
    if x < 0 or y < 0 or w < 1 or h < 1 or (size is not None and (x + w > size[0] or y + h > size[1])):
        return None
    return x, y, w, h


def open_project(path: str | os.PathLike, *, runs_dir: str | os.PathLike | None = None) -> OpenedProject:
    """Read a ``.advx`` project: masks, model, form, image list with each file's status,
    and the run folders (unpacked into ``runs_dir``, by default a new temporary folder).

    Raises :class:`UserError` (one line) for a file that is not a project, is damaged, or
    was saved by a newer AdvExplorer. Images that moved or changed are *reported* on the
    returned :class:`OpenedProject`, not raised.
    """
    path = Path(path).expanduser()
    with _open_archive(path) as archive:
        manifest = _read_manifest(path, archive)
        images: list[ImageState] = []
        for entry in manifest["images"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise UserError(f"{path} is damaged: an entry of its image list has no path.")
            size = entry.get("size")
            size = (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 else None
            mode = entry.get("mask_mode") if entry.get("mask_mode") in MASK_MODES else "protect"
            image_path = Path(entry["path"])
            images.append(ImageState(
                path=image_path, sha256=entry.get("sha256"), size=size, mask_mode=mode,
                attack_mask=_read_mask(path, archive, entry.get("attack_mask"), size),
                diagnostic_mask=_read_mask(path, archive, entry.get("diagnostic_mask"), size),
                label=entry.get("label") if isinstance(entry.get("label"), int) else None,
                runs=list(entry.get("runs") or []),
                status=_image_status(image_path, entry.get("sha256")),
                dicom_window=_dicom_window(entry.get("dicom_window")),
                crop=_crop(entry.get("crop"), size)))
        destination = Path(runs_dir) if runs_dir else Path(tempfile.mkdtemp(prefix="advexplorer-runs-"))
        destination.mkdir(parents=True, exist_ok=True)
        _extract_runs(path, archive, destination)
    notes: list[str] = []
    for image in images:
        folders = []
        for name in image.runs:
            try:
                folders.append(RunFolder.open(destination / str(name)))
            except UserError as error:
                notes.append(f"A run of {image.path.name} could not be read and was left out: {error}")
        image.runs = folders
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    current = manifest.get("current_index")
    state = ProjectState(
        images=images,
        model=ModelState(path=_optional_path(model.get("path")), card_path=_optional_path(model.get("card_path")),
                         card=model.get("card") if isinstance(model.get("card"), dict) else None,
                         device=str(model.get("device") or "auto")),
        attack_form=manifest.get("attack_form") if isinstance(manifest.get("attack_form"), dict) else {},
        cohort_form=manifest.get("cohort_form") if isinstance(manifest.get("cohort_form"), dict) else {},
        current_index=current if isinstance(current, int) and 0 <= current < len(images) else None)
    return OpenedProject(path=path, state=state, runs_dir=destination, manifest=manifest,
                         saved_by=str(manifest.get("saved_by", "")), saved_at=str(manifest.get("saved_at", "")),
                         notes=notes)


# --------------------------------------------------------------------------- the app's session


def snapshot_session(session, *, model: ModelState | None = None, attack_form: Mapping | None = None,
                     run_source: Callable[[Any], RunSource | None] | None = None,
                     crop_of: Callable[[Any], tuple[int, int, int, int] | None] | None = None,
                     cohort_form: Mapping | None = None) -> ProjectState:
    """A :class:`ProjectState` from the app's :class:`~advexplorer.session.state.Session`.

    Masks are copied (the GUI thread keeps painting). ``run_source(run)`` turns one of an
    image's :class:`~advexplorer.session.state.RunSummary` into a run source (a folder, or a
    writer such as ``lambda folder: write_run_folder(folder, run.request, run.outcome,
    record=dict(run.record))``); None skips the run. Without it runs are not saved.
    ``crop_of(entry)`` is the model's crop chosen for an image (the app keeps it on the
    canvas's frame controller), or None. ``cohort_form`` is the Cohort panel's form.
    """
    images = []
    for entry in session.images:
        masks = entry.masks
        runs = []
        if run_source is not None:
            runs = [source for source in (run_source(run) for run in entry.runs) if source is not None]
        images.append(ImageState(
            path=Path(entry.path), size=tuple(entry.file_size) if entry.file_size else None,
            mask_mode=masks.mode if masks is not None else "protect",
            attack_mask=None if masks is None or masks.attack.is_empty else masks.attack.copy(),
            diagnostic_mask=None if masks is None or masks.diagnostic.is_empty else masks.diagnostic.copy(),
            label=entry.label, runs=runs, dicom_window=getattr(entry, "dicom_window", None),
            crop=None if crop_of is None else crop_of(entry)))
    return ProjectState(images=images, model=model or ModelState(), attack_form=dict(attack_form or {}),
                        current_index=session.current_index, cohort_form=dict(cohort_form or {}))


def apply_masks(entry, image: ImageState) -> None:
    """Give a session image (:class:`~advexplorer.session.state.ImageEntry`) the project's
    masks as its current state, with an empty undo history (the project keeps no history)."""
    if image.size is None or (image.attack_mask is None and image.diagnostic_mask is None):
        return
    masks = entry.ensure_masks(*image.size)
    masks.mode = image.mask_mode
    for layer, mask in ((masks.attack, image.attack_mask), (masks.diagnostic, image.diagnostic_mask)):
        if mask is not None:
            layer.data[...] = (np.asarray(mask) != 0).astype(np.uint8)
    entry.label = image.label


def unusable(images: Iterable[ImageState]) -> list[ImageState]:
    """The images that are missing or changed."""
    return [image for image in images if image.status != "ok"]


def _probabilities(prediction: Any, classes: int) -> np.ndarray:
    """A K-vector from a record's ``prediction_*`` (its top-5); classes not listed are NaN."""
    vector = np.full(classes, np.nan, dtype=np.float32)
    for item in (prediction or {}).get("top5") or []:
        index = item.get("index")
        if isinstance(index, int) and 0 <= index < classes and isinstance(item.get("probability"), (int, float)):
            vector[index] = float(item["probability"])
    return vector


def run_summary_from_folder(folder: RunFolder, number: int):
    """A :class:`~advexplorer.session.state.RunSummary` for the run history from a run folder
    of an opened project, so restored runs show as they did. The record keeps the
    trajectory of the tracked classes only; the others' curves are NaN (not drawn). The
    summary has no request/outcome (the run is not re-run); ``summary.run_folder`` names its
    folder, which :func:`run_source` uses when the project is saved again."""
    from advexplorer.session.state import RunSummary

    record = folder.record
    card = ((record.get("model") or {}).get("card") or {})
    classes = tuple(str(name) for name in card.get("classes") or [])
    k = len(classes)
    original = np.ascontiguousarray(folder.input_image.transpose(1, 2, 0), dtype=np.float32)
    perturbation = np.ascontiguousarray(folder.perturbation.transpose(1, 2, 0), dtype=np.float32)
    trajectory = record.get("trajectory") or {}
    steps = list(trajectory.get("step") or [])
    probability_trajectory = np.full((len(steps), k), np.nan, dtype=np.float32)
    for name, values in (trajectory.get("probabilities") or {}).items():
        if name in classes and len(values) == len(steps):
            probability_trajectory[:, classes.index(name)] = [np.nan if v is None else v for v in values]
    before, after = record.get("prediction_before") or {}, record.get("prediction_after") or {}
    label, target = record.get("label") or {}, record.get("target") or {}
    mask = record.get("mask") or {}
    summary = RunSummary(
        number=number, image_path=Path(str((record.get("image") or {}).get("path") or "")),
        model_name=str(card.get("name") or "model"), classes=classes,
        config=dict(record.get("attack") or {}), mask_mode=str(mask.get("mode") or "none"),
        original=original, adversarial=np.clip(original + perturbation, 0.0, 1.0),
        perturbation=perturbation, probability_trajectory=probability_trajectory,
        loss_trajectory=np.asarray([np.nan if v is None else v for v in trajectory.get("loss") or []],
                                   dtype=np.float32),
        step_index=np.asarray(steps, dtype=np.int64),
        prediction_before=int(before.get("index", 0)), prediction_after=int(after.get("index", 0)),
        probability_before=_probabilities(before, k), probability_after=_probabilities(after, k),
        success=bool(record.get("success")), label=label.get("index"), target=target.get("index"),
        norms={key: float(value) for key, value in (record.get("norms") or {}).items()
               if isinstance(value, (int, float))},
        wall_time_s=float(record.get("wall_time_s") or 0.0), record=dict(record))
    summary.run_folder = folder.path
    return summary


def run_source(run) -> RunSource | None:
    """How to store one of the app's runs in a project: runs made in this session are written
    from their request and outcome; runs restored from a project come from their folder."""
    if getattr(run, "request", None) is not None and getattr(run, "outcome", None) is not None:
        from functools import partial

        return partial(_write_session_run, run)
    folder = getattr(run, "run_folder", None)
    return Path(folder) if folder is not None else None


def _write_session_run(run, folder: Path) -> Any:
    # session.runs imports torch: only reached when there is a run made with the engine.
    from advexplorer.session.runs import write_run_folder

    return write_run_folder(folder, run.request, run.outcome, record=dict(run.record))
