"""Cohorts of images for screening: folders, ImageFolder class folders, MedMNIST ``.npz``.

Layouts (decided from what is on disk):

* **folder** — image files directly in the folder (sub-folders are ignored); no labels.
  DICOM files (``.dcm``, ``.dicom``) count as images: they are read through their own
  window (:func:`advexplorer.io.dicom.load_dicom_image`), as ``advexplorer attack`` reads
  one without ``--dicom-window``.
* **ImageFolder** — no images at the top, images one level down in class folders
  (``DIR/tumour/a.png``): the folder name is the true label, matched to the card's classes
  case-insensitively (a folder named by a class index, ``DIR/1/``, works too).
* **.npz** (MedMNIST style) — ``test_images`` N×H×W or N×H×W×C (uint8, or float in [0,1])
  and optionally ``test_labels`` N or N×1 holding class indices of the card.

Masks: a parallel folder with the same file names (``--masks DIR`` allowed masks, 1 = may
change; ``--protect-dir DIR`` protect masks, 1 = must not change), matched by relative path
and stem so ``a.jpg`` finds ``a.png``; for ``.npz`` cohorts the mask files are named by the
row index (``7.png`` or ``00007.png``). Or one mask file for every image (``--mask`` /
``--protect``), or none. Masks are at the image file's size and go through the same crop
and resize as the image (:func:`advexplorer.io.images.mask_to_model`), so a cohort is
preprocessed exactly like a single run.

Images that cannot be read are skipped (the batch lists them with the reason) rather than
ending a screen of hundreds of images; names that do not match, an empty folder or an
``.npz`` without images are errors with a message that says which names.

Loading and preprocessing run in :class:`torch.utils.data.DataLoader` worker processes
(``min(2, CPUs)`` by default), so the next batch is read while the model works on this
one; if worker processes cannot start, loading falls back to the main process.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from advexplorer.core.screen_results import CohortBatch, ImageRow, eps_label
from advexplorer.errors import UserError
from advexplorer.io.cards import ModelCard
from advexplorer.io.dicom import is_dicom_file, load_dicom_image
from advexplorer.io.hashing import sha256_file
from advexplorer.io.filenames import IMAGE_SUFFIXES, is_companion_mask
from advexplorer.io.rasters import check_pixel_count
from advexplorer.io.images import (image_from_array, load_image, mask_to_model, read_mask_array,
                                   vanished_region)
MASK_MODES = ("none", "allowed", "protect")


def _few(names: Sequence[str], count: int = 5) -> str:
    shown = ", ".join(names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


@dataclass(frozen=True)
class CohortEntry:
    """One image of a cohort. ``id`` is what ``per_image.csv`` calls it (relative path)."""

    id: str
    path: Path | None = None
    index: int | None = None
    label: int | None = None
    mask_path: Path | None = None


@dataclass
class Cohort:
    """The images of a screen, with their labels and masks, ready to be loaded in batches."""

    source: Path
    layout: str                              # "folder" | "imagefolder" | "npz"
    entries: list[CohortEntry]
    card: ModelCard
    mask_mode: str = "none"
    mask_source: Path | None = None          # the mask folder or the single mask file
    has_labels: bool = False
    notes: list[str] = field(default_factory=list)
    _array: np.ndarray | None = field(default=None, repr=False)
    #: Group values per image id (``{"site": "A"}``): manifest columns, or the class folder.
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Files a manifest lists that do not exist (skipped).
    missing: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def fingerprint(self) -> str:
        """SHA-256 over the image set: names, file contents, labels and masks.

        Two screens with the same fingerprint saw the same pixels, labels and masks.
        """
        digest = hashlib.sha256()
        digest.update(f"{self.layout}\n{self.mask_mode}\n".encode())
        if self.layout == "npz":
            digest.update(sha256_file(self.source).encode())
        shared = sha256_file(self.mask_source) if self.mask_source and self.mask_source.is_file() else ""
        for entry in self.entries:
            content = sha256_file(entry.path) if entry.path is not None else str(entry.index)
            mask = sha256_file(entry.mask_path) if entry.mask_path is not None else shared
            digest.update(f"{entry.id}\t{content}\t{entry.label}\t{mask}\n".encode())
        return digest.hexdigest()

    def shard(self, rank: int, world_size: int) -> list[str]:
        """The image ids of one rank's share: every ``world_size``-th image from ``rank``.

        Sharding the whole (sorted) cohort rather than what is left keeps each image on the
        same rank across a resume with the same number of ranks.
        """
        return [e.id for e in self.entries[rank::world_size]]

    def loader(self, batch_size: int, *, exclude: Sequence[str] | frozenset[str] = frozenset(),
               num_workers: int | None = None, only: Sequence[str] | None = None) -> "CohortLoader":
        """Batches of :class:`CohortBatch` for the images not in ``exclude`` (file ids),
        restricted to ``only`` when given (one rank's share)."""
        excluded = set(exclude)
        wanted = None if only is None else set(only)
        entries = [e for e in self.entries if e.id not in excluded and (wanted is None or e.id in wanted)]
        dataset = _CohortDataset(entries, self.card, self.mask_mode, self.mask_source, self._array)
        return CohortLoader(dataset, batch_size, self.has_labels, self.mask_mode != "none",
                            num_workers=num_workers)


def open_cohort(images: str | os.PathLike, card: ModelCard, *, masks_dir=None, protect_dir=None,
                mask=None, protect=None) -> Cohort:
    """Describe the cohort at ``images`` (a folder or an ``.npz``) with its labels and masks.

    At most one of ``masks_dir``, ``protect_dir``, ``mask``, ``protect`` may be given. Raises
    :class:`UserError` for a missing or empty source, unknown class folders and mask names
    that do not match the image names.
    """
    given = [(name, value) for name, value in (("--masks", masks_dir), ("--protect-dir", protect_dir),
                                                ("--mask", mask), ("--protect", protect)) if value]
    if len(given) > 1:
        raise UserError(f"Give only one of {', '.join(n for n, _ in given)}: one mask source per screen.")
    source = Path(images).expanduser()
    if not source.exists():
        raise UserError(f"No images at {source}: give a folder of images, a manifest .csv or a .npz file.")
    if source.is_file() and source.suffix.lower() == ".csv":
        from advexplorer.io.manifest import read_manifest

        cohort = read_manifest(source, card)
    elif source.is_file():
        if source.suffix.lower() != ".npz":
            raise UserError(f"{source.name} is a file but not a .npz; give a folder of images or a "
                            "MedMNIST-style .npz (test_images, test_labels).")
        cohort = _open_npz(source, card)
    else:
        cohort = _open_folder(source, card)

    mask_folder = masks_dir or protect_dir
    single = mask or protect
    cohort.mask_mode = "protect" if (protect_dir or protect) else ("allowed" if (masks_dir or mask) else "none")
    if single:
        single_path = Path(single).expanduser()
        if not single_path.is_file():
            raise UserError(f"No mask file at {single_path}. Check the path.")
        cohort.mask_source = single_path.resolve()
    elif mask_folder:
        folder = Path(mask_folder).expanduser()
        if not folder.is_dir():
            raise UserError(f"The mask folder {folder} does not exist; give a folder of masks with "
                            "the images' file names.")
        cohort.mask_source = folder.resolve()
        cohort.entries = _match_masks(cohort, folder)
    return cohort


def _open_folder(source: Path, card: ModelCard) -> Cohort:
    top = sorted(p for p in source.iterdir() if _is_image(p))
    others = sorted(p.name for p in source.iterdir() if p.is_file() and not _is_image(p)
                    and not p.name.startswith("."))
    notes = []
    # Masks saved beside their image (scan_protect.png next to scan.png) are not images to screen.
    names = {p.name for p in top}
    companions = [p.name for p in top if is_companion_mask(p, names)]
    top = [p for p in top if p.name not in set(companions)]
    if companions:
        notes.append(f"skipped {len(companions)} companion mask file(s) beside their images "
                     f"(e.g. {_few(companions, 2)}); pass --masks/--protect-dir to use masks")
    if top:
        entries = [CohortEntry(id=p.name, path=p.resolve()) for p in top]
        if others:
            notes.append(f"ignored {len(others)} file(s) that are not images: {_few(others)}")
        return Cohort(source=source.resolve(), layout="folder", entries=entries, card=card, notes=notes)
    class_dirs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    with_images = [d for d in class_dirs if any(_is_image(p) for p in d.iterdir())]
    if not with_images:
        raise UserError(f"The folder {source} holds no images (looked for "
                        f"{', '.join(IMAGE_SUFFIXES[:5])}, ... at the top level and one level down "
                        "in class folders).")
    unknown, entries = [], []
    for folder in with_images:
        try:
            label = card.class_index(folder.name)
        except UserError:
            unknown.append(folder.name)
            continue
        for path in sorted(p for p in folder.iterdir() if _is_image(p)):
            entries.append(CohortEntry(id=f"{folder.name}/{path.name}", path=path.resolve(), label=label))
    if unknown:
        raise UserError(
            f"Class folder name(s) {_few(unknown)} in {source} are not classes of the model "
            f"(ImageFolder layout: each folder is named after its true class). The card lists: "
            f"{', '.join(card.classes)}. Rename the folders (case does not matter) or put the "
            "images directly in the folder to screen without labels.")
    return Cohort(source=source.resolve(), layout="imagefolder", entries=entries, card=card,
                  has_labels=True, notes=notes,
                  groups={e.id: {"class folder": e.id.split("/", 1)[0]} for e in entries})


def _open_npz(source: Path, card: ModelCard) -> Cohort:
    try:
        with np.load(source, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "test_images" not in archive:
                raise UserError(f"{source.name} has no 'test_images' array (it has: "
                                f"{', '.join(keys) or 'nothing'}); a MedMNIST-style .npz holds "
                                "test_images and test_labels.")
            _check_npz_image_size(source, "test_images")
            images = np.asarray(archive["test_images"])
            labels = np.asarray(archive["test_labels"]) if "test_labels" in archive else None
    except UserError:
        raise
    except (OSError, ValueError) as error:
        raise UserError(f"{source.name} could not be read as a .npz archive ({error}).") from None
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
        raise UserError(f"test_images in {source.name} has shape {images.shape}; expected N×H×W "
                        "or N×H×W×C with C = 1, 3 or 4.")
    if len(images) == 0:
        raise UserError(f"test_images in {source.name} is empty; there is nothing to screen.")
    label_list: list[int | None] = [None] * len(images)
    if labels is not None:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise UserError(f"test_labels in {source.name} has shape {labels.shape}; expected N or "
                            "N×1 class indices (multi-label data sets are not supported).")
        if len(labels) != len(images):
            raise UserError(f"{source.name} has {len(images)} test_images but {len(labels)} test_labels.")
        bad = sorted({int(v) for v in labels if not 0 <= int(v) < card.num_classes})
        if bad:
            raise UserError(f"test_labels in {source.name} hold class indices {_few([str(b) for b in bad])} "
                            f"but the model has {card.num_classes} classes ({', '.join(card.classes)}).")
        label_list = [int(v) for v in labels]
    width = max(5, len(str(len(images) - 1)))
    entries = [CohortEntry(id=f"{source.stem}#{i:0{width}d}", index=i, label=label_list[i])
               for i in range(len(images))]
    return Cohort(source=source.resolve(), layout="npz", entries=entries, card=card,
                  has_labels=labels is not None, _array=images)


def _check_npz_image_size(source: Path, key: str) -> None:
    """Refuse an array of too-large images from its .npy header, before decompressing it.

    A compressed .npz of zeros can hold gigabytes in kilobytes, as a PNG can; the image
    size is checked against the same limit (:func:`advexplorer.io.rasters.max_image_pixels`).
    """
    try:
        with zipfile.ZipFile(source) as archive, archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, _ = read_header(member)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return  # np.load reports what is wrong with the archive
    if len(shape) in (3, 4):
        check_pixel_count(f"Each image of {key} in {source.name}", shape[2], shape[1])


def _match_masks(cohort: Cohort, folder: Path) -> list[CohortEntry]:
    mask_files = [p for p in sorted(folder.rglob("*")) if _is_image(p)]
    if cohort.layout == "npz":
        by_index: dict[int, Path] = {}
        for path in mask_files:
            if path.stem.isdigit():
                by_index.setdefault(int(path.stem), path)
        lookup = {e.id: by_index.get(e.index) for e in cohort.entries}
        example = "7.png or 00007.png for row 7"
    else:
        by_relative = {(p.relative_to(folder).parent.as_posix(), p.stem): p for p in mask_files}
        by_stem: dict[str, list[Path]] = {}
        for p in mask_files:
            by_stem.setdefault(p.stem, []).append(p)
        lookup = {}
        for entry in cohort.entries:
            relative = Path(entry.id)
            found = by_relative.get((relative.parent.as_posix(), relative.stem))
            if found is None and len(by_stem.get(relative.stem, [])) == 1:
                found = by_stem[relative.stem][0]
            lookup[entry.id] = found
        example = "the image's file name, e.g. a.png for a.jpg"
    missing = [file_id for file_id, path in lookup.items() if path is None]
    if missing:
        used = {p for p in lookup.values() if p is not None}
        unused = [p.relative_to(folder).as_posix() for p in mask_files if p not in used]
        hint = f" Mask files that match no image: {_few(unused)}." if unused else ""
        raise UserError(
            f"No mask in {folder} for {len(missing)} of {len(lookup)} image(s): {_few(missing)}. "
            f"Each mask must be named like its image ({example}).{hint}")
    return [CohortEntry(id=e.id, path=e.path, index=e.index, label=e.label,
                        mask_path=lookup[e.id].resolve()) for e in cohort.entries]


# --------------------------------------------------------------------------------------
# Loading in worker processes


def _array_to_unit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    array = array.astype(np.float32)
    if array.min(initial=0) < 0 or array.max(initial=0) > 1:
        raise UserError("float images in a .npz must lie in [0, 1]")
    return array


class _CohortDataset(Dataset):
    """Reads and preprocesses one image (+ mask); failures become "skip" records."""

    def __init__(self, entries, card, mask_mode, mask_source, array):
        self.entries = list(entries)
        self.card = card
        self.mask_mode = mask_mode
        self.mask_source = mask_source
        self.array = array
        self._shared: dict = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _mask(self, entry: CohortEntry, file_size_hw: tuple[int, int]) -> torch.Tensor | None:
        if self.mask_mode == "none":
            return None
        path = entry.mask_path or self.mask_source
        key = (path, file_size_hw)
        if entry.mask_path is None and key in self._shared:
            return self._shared[key]
        mask = read_mask_array(path)
        if mask.shape != tuple(file_size_hw):
            raise UserError(f"mask {path.name} is {mask.shape[1]}×{mask.shape[0]} pixels but the "
                            f"image is {file_size_hw[1]}×{file_size_hw[0]}")
        tensor = mask_to_model(mask, self.card)
        if self.mask_mode == "protect":
            tensor = 1.0 - tensor
        if not bool(tensor.any()) and bool((~mask if self.mask_mode == "protect" else mask).any()):
            # Not "nothing may change" (counted as not flipped): the user allowed a region
            # the model's input cannot hold, so this image is skipped with the reason.
            raise UserError(vanished_region(path.name, self.card, role=self.mask_mode))
        if entry.mask_path is None:
            self._shared[key] = tensor
        return tensor

    def __getitem__(self, position: int):
        entry = self.entries[position]
        try:
            if entry.index is not None:
                array = _array_to_unit(np.asarray(self.array[entry.index]))
                image = image_from_array(array, self.card, name=entry.id)
                size_hw = array.shape[:2]
            else:
                # A DICOM file through its own window (the one the file records, else its range).
                image = (load_dicom_image(entry.path, self.card) if is_dicom_file(entry.path)
                         else load_image(entry.path, self.card))
                size_hw = (image.file_size[1], image.file_size[0])
            mask = self._mask(entry, size_hw)
        except (UserError, OSError, ValueError) as error:
            return ("skip", entry.id, str(error))
        except MemoryError:
            # One huge (but allowed) image must not end a screen of hundreds.
            return ("skip", entry.id, "not enough memory to read and prepare it; crop it, or lower "
                                      "ADVEXPLORER_MAX_IMAGE_PIXELS to refuse such files up front")
        label = -1 if entry.label is None else entry.label
        return ("ok", entry.id, image.tensor, mask, label)


class _Collate:
    """Stack loaded items into a :class:`CohortBatch` (a class so workers can pickle it)."""

    def __init__(self, has_labels: bool, has_masks: bool):
        self.has_labels = has_labels
        self.has_masks = has_masks

    def __call__(self, items) -> CohortBatch:
        loaded = [item for item in items if item[0] == "ok"]
        skipped = [(item[1], item[2]) for item in items if item[0] == "skip"]
        if not loaded:
            return CohortBatch(ids=[], images=torch.empty(0), skipped=skipped)
        return CohortBatch(
            ids=[item[1] for item in loaded],
            images=torch.stack([item[2] for item in loaded]),
            allowed_masks=torch.stack([item[3] for item in loaded]) if self.has_masks else None,
            labels=torch.tensor([item[4] for item in loaded], dtype=torch.long) if self.has_labels else None,
            skipped=skipped)


def _worker_init(_worker_id: int) -> None:
    # Preprocessing is light; one thread per worker keeps the model's threads free.
    torch.set_num_threads(1)


def default_workers() -> int:
    """Loader processes: ``min(2, CPUs)``, 0 on a single core (nothing to overlap with)."""
    cpus = os.cpu_count() or 1
    return 0 if cpus < 2 else min(2, cpus)


class CohortLoader:
    """An iterable of :class:`CohortBatch` over a cohort, with ``images_total`` for progress.

    Uses DataLoader worker processes when it can; if they cannot start (or die), the
    images not yet delivered are loaded in the main process, and ``notes`` says so.
    """

    def __init__(self, dataset: _CohortDataset, batch_size: int, has_labels: bool, has_masks: bool,
                 *, num_workers: int | None = None):
        if int(batch_size) < 1:
            raise UserError(f"Batch size {batch_size} must be at least 1.")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.collate = _Collate(has_labels, has_masks)
        self.num_workers = default_workers() if num_workers is None else max(0, int(num_workers))
        self.images_total = len(dataset)
        self.notes: list[str] = []

    def __len__(self) -> int:
        return (self.images_total + self.batch_size - 1) // self.batch_size

    def _loader(self, dataset, workers: int) -> DataLoader:
        options = {"num_workers": workers}
        if workers > 0:
            options.update(worker_init_fn=_worker_init, prefetch_factor=2)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                          collate_fn=self.collate, **options)

    def __iter__(self) -> Iterator[CohortBatch]:
        delivered = 0
        workers = min(self.num_workers, len(self))
        if workers > 0:
            try:
                for batch in self._loader(self.dataset, workers):
                    delivered += 1
                    yield batch
                return
            except (RuntimeError, OSError) as error:
                # Worker processes could not start (no /dev/shm, sandbox) or died.
                self.notes.append(f"loader worker processes failed ({type(error).__name__}: "
                                  f"{error}); loaded the rest in the main process")
        rest = torch.utils.data.Subset(self.dataset, range(delivered * self.batch_size, len(self.dataset)))
        yield from self._loader(rest, 0)


# --------------------------------------------------------------------------------------
# per_image.csv


def csv_columns(eps: Sequence[float], *, noise_baseline: bool, min_eps: bool) -> list[str]:
    """The header of ``per_image.csv`` for a screen with these options."""
    columns = ["file", "label", "label_index", "clean_prediction", "clean_index", "clean_probability"]
    for value in eps:
        name = eps_label(value)
        columns += [f"prediction@{name}", f"probability@{name}", f"flipped@{name}",
                    f"attacked@{name}", f"linf@{name}", f"l2@{name}"]
    if noise_baseline:
        columns += [f"noise_flipped@{eps_label(value)}" for value in eps]
    columns += ["flip_eps"] + (["min_eps"] if min_eps else []) + ["note"]
    return columns


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


#: A spreadsheet evaluates a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(text: str) -> str:
    """Neutralise a text cell a spreadsheet would run as a formula (OWASP CSV injection).

    A cell starting with ``= + - @``, tab or carriage return gets a leading single quote,
    as OWASP recommends (https://owasp.org/www-community/attacks/CSV_Injection); so does a
    cell that already starts with a quote, so :func:`unescape_cell` gives back exactly the
    original text (a file name, a class name, a note).
    """
    return "'" + text if text.startswith(FORMULA_STARTS + ("'",)) else text


def unescape_cell(text: str) -> str:
    """The original text of a cell written by :func:`escape_cell`."""
    return text[1:] if text.startswith("'") else text


def row_to_csv(row: ImageRow, eps: Sequence[float], classes: Sequence[str], *,
               noise_baseline: bool, min_eps: bool) -> list[str]:
    """One ``per_image.csv`` line (same order as :func:`csv_columns`)."""
    def name(index: int | None) -> str:
        if index is None:
            return ""
        return escape_cell(classes[index]) if 0 <= index < len(classes) else str(index)

    cells = [escape_cell(row.file), name(row.label), "" if row.label is None else str(row.label),
             name(row.clean_prediction), str(row.clean_prediction), _number(row.clean_probability)]
    for j in range(len(eps)):
        cells += [name(row.adversarial_prediction[j]), _number(row.adversarial_probability[j]),
                  str(int(row.flipped[j])), str(int(row.attacked[j])), _number(row.linf[j]),
                  _number(row.l2[j])]
    if noise_baseline:
        cells += [str(int(bool(row.noise_flipped and row.noise_flipped[j]))) for j in range(len(eps))]
    cells.append(_number(row.flip_eps))
    if min_eps:
        cells.append(_number(row.min_eps))
    cells.append(escape_cell(row.note))
    return cells


class PerImageWriter:
    """Appends rows to ``per_image.csv`` and flushes them, so an interrupted screen keeps them."""

    def __init__(self, path: str | os.PathLike, eps, classes, *, noise_baseline: bool, min_eps: bool,
                 append: bool = False):
        self.path = Path(path)
        self.eps, self.classes = tuple(eps), tuple(classes)
        self.options = {"noise_baseline": noise_baseline, "min_eps": min_eps}
        fresh = not (append and self.path.exists())
        self.handle = open(self.path, "w" if fresh else "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        if fresh:
            self.writer.writerow(csv_columns(self.eps, **self.options))
            self.handle.flush()

    def write(self, rows: Sequence[ImageRow]) -> None:
        for row in rows:
            self.writer.writerow(row_to_csv(row, self.eps, self.classes, **self.options))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_per_image_csv(path: str | os.PathLike, eps, classes, *, noise_baseline: bool,
                       min_eps: bool, notes: list[str] | None = None) -> list[ImageRow]:
    """Read the rows of an earlier (possibly interrupted) screen back.

    The header must match this screen's options. Every row ends with a line break, so a
    file that does not end with one was killed while writing its last line: that line is
    dropped even when all its fields are there (the last one may be cut), and so are lines
    that cannot be read. The file is rewritten without them, so the resumed screen appends
    on a fresh line and those images are simply screened again; ``notes`` (if given) gets a
    sentence saying so.
    """
    path = Path(path)
    expected = csv_columns(eps, noise_baseline=noise_baseline, min_eps=min_eps)
    with open(path, newline="", encoding="utf-8") as handle:  # keep a \r inside a quoted name
        text = handle.read()
    torn = bool(text) and not text.endswith("\n")
    if torn:
        text = text[:text.rfind("\n") + 1]
        if notes is not None:
            notes.append(f"the last line of {path.name} was cut short (the screen was stopped while "
                         "writing it); that image is screened again")
    try:
        records = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise UserError(f"{path} is not a readable per_image.csv ({error}); resume into a new "
                        "--out folder.") from None
    if not records and torn:
        records = [expected]  # killed inside the header: nothing was finished
    if not records or records[0] != expected:
        raise UserError(f"{path} was written by a screen with other ε values or options, so it "
                        "cannot be resumed; use the same --eps, --noise-baseline and --min-eps, or "
                        "a new --out folder.")
    index_of = {name: i for i, name in enumerate(classes)}
    rows, good_lines = [], [records[0]]
    for record in records[1:]:
        if len(record) != len(expected):
            continue  # a damaged line: screen that image again
        cells = dict(zip(expected, record))
        try:
            row = _row_from_cells(cells, eps, index_of, noise_baseline, min_eps)
        except (ValueError, KeyError):
            continue
        rows.append(row)
        good_lines.append(record)
    dropped = len(records) - len(good_lines)
    if dropped and notes is not None:
        notes.append(f"dropped {dropped} unreadable line(s) of {path.name}; those images are "
                     "screened again")
    if dropped or torn:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(good_lines)
        temporary = path.with_name(f".{path.name}.resume.tmp")
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
        os.replace(temporary, path)
    return rows


def _row_from_cells(cells, eps, index_of, noise_baseline, min_eps) -> ImageRow:
    def optional(text: str) -> float | None:
        return float(text) if text != "" else None

    def class_index(name: str) -> int:
        name = unescape_cell(name)
        return index_of[name] if name in index_of else int(name)

    labels = [eps_label(v) for v in eps]
    return ImageRow(
        file=unescape_cell(cells["file"]),
        label=int(cells["label_index"]) if cells["label_index"] != "" else None,
        clean_prediction=int(cells["clean_index"]),
        clean_probability=float(cells["clean_probability"]),
        adversarial_prediction=[class_index(cells[f"prediction@{n}"]) for n in labels],
        adversarial_probability=[float(cells[f"probability@{n}"]) for n in labels],
        flipped=[cells[f"flipped@{n}"] == "1" for n in labels],
        attacked=[cells[f"attacked@{n}"] == "1" for n in labels],
        linf=[float(cells[f"linf@{n}"]) for n in labels],
        l2=[float(cells[f"l2@{n}"]) for n in labels],
        flip_eps=optional(cells["flip_eps"]),
        min_eps=optional(cells["min_eps"]) if min_eps else None,
        noise_flipped=[cells[f"noise_flipped@{n}"] == "1" for n in labels] if noise_baseline else None,
        note=unescape_cell(cells["note"]))
