"""The image list: adding files and folders, companion masks, loading and saving masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QListWidgetItem, QWidget

from advexplorer.errors import UserError
from advexplorer.gui.controllers.settings import Preferences, user_folder
from advexplorer.gui.imageio import image_size, thumbnail
from advexplorer.gui.panels import ImagesPanel
from advexplorer.io.slides import tile_region
from advexplorer.session.masks import read_mask_png, write_mask_png
from advexplorer.session.state import ImageEntry, Session

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp *.webp *.dcm *.dicom);;All files (*)"
MASK_FILTER = "PNG (*.png);;All files (*)"


def qimage(rgb: np.ndarray) -> QImage:
    """An owned QImage of an H×W×3 uint8 array."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def input_note(path: Path, card) -> str:
    """How ``path`` will be fed to a model with ``card`` ('' when it fits as it is).

    Says what changes: channels (RGB → grey, grey → RGB, alpha dropped) and size (stretched
    or centre-cropped to the model's input), so nobody attacks a converted image unknowingly.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except (OSError, ValueError):
        return ""
    changes = []
    grey = mode in ("1", "L", "I", "I;16", "F", "LA")
    if card.channels == 1 and not grey:
        changes.append(f"colour ({mode}) converted to grey")
    elif card.channels == 3 and grey:
        changes.append("grey copied to 3 channels")
    if "A" in mode:
        changes.append("transparency dropped")
    model_height, model_width = card.input_size
    if (width, height) != (model_width, model_height):
        how = "centre-cropped and resized" if card.resize == "center-crop" else "stretched"
        if card.resize == "center-crop" and width * model_height == height * model_width:
            how = "resized"
        changes.append(f"{width}×{height} {how} to {model_width}×{model_height}")
    if not changes:
        return ""
    return f"{path.name} does not fit {card.name} as it is: " + "; ".join(changes) + \
        " before the attack (the mask follows)."


class ImageController(QObject):
    """Owns adding and removing images and their masks; ``error(title, message)`` for dialogs,
    ``masks_loaded(entry)`` when a mask file replaced a layer (the window redraws it),
    ``added(entries)`` after images were added."""

    error = Signal(str, str)
    message = Signal(str, int)
    masks_loaded = Signal(object)
    added = Signal(list)

    def __init__(self, session: Session, panel: ImagesPanel, preferences: Preferences,
                 dialog_parent: QWidget, parent=None):
        super().__init__(parent)
        self.session = session
        self.panel = panel
        self.preferences = preferences
        self.dialog_parent = dialog_parent
        self.busy_entry: ImageEntry | None = None   # being attacked: not removable
        panel.add_button.clicked.connect(self._add_clicked)

    def _add_clicked(self) -> None:
        self.open_images_dialog()

    # -- adding ------------------------------------------------------------------------
    def add_images(self, paths, quiet: bool = False) -> list[ImageEntry]:
        """Add image files/folders; unreadable files are skipped and reported in one message."""
        from advexplorer.session.state import expand_image_paths

        good, problems = [], []
        for path in expand_image_paths(paths):
            try:
                width, height = image_size(path)
            except UserError as error:
                problems.append(str(error))
                continue
            good.append((path, width, height))
        entries = []
        if good:
            known = {id(entry) for entry in self.session.images}
            entries = self.session.add_images([p for p, _, _ in good])
            for entry, (_, width, height) in zip(entries, good):
                if id(entry) not in known:
                    known.add(id(entry))
                    entry.ensure_masks(width, height)
                    self._load_companions(entry)
                self.preferences.remember("recent_images", str(entry.path))
            if entries:
                self.session.set_current(self.session.index_of(entries[-1] if len(entries) == 1
                                                               else entries[0]))
        if problems and not quiet:
            self.error.emit("Some files could not be opened", "\n".join(problems[:10]) +
                            (f"\n… and {len(problems) - 10} more" if len(problems) > 10 else ""))
        self.added.emit(entries)
        return entries

    def open_images_dialog(self) -> list[ImageEntry]:
        """File → Open images…: starts in the folder the last images came from."""
        from advexplorer import paths

        start = self.preferences.folder("image", paths.SAMPLES_DIR)
        files, _ = QFileDialog.getOpenFileNames(self.dialog_parent, "Open images", start, IMAGE_FILTER)
        if not files:
            return []
        self.preferences.set_folder("image", files[0])
        return self.add_images([Path(f) for f in files])

    def open_folder_dialog(self) -> list[ImageEntry]:
        """File → Open folder…: every image in it (companion masks load with their images)."""
        folder = QFileDialog.getExistingDirectory(self.dialog_parent, "Open a folder of images",
                                                  self.preferences.folder("image", Path.home()))
        if not folder:
            return []
        self.preferences.set_folder("image", folder)
        return self.add_images([Path(folder)])

    def _load_companions(self, entry: ImageEntry) -> None:
        """Masks saved beside the image (``scan_protect.png``, ``scan_diagnostic.png``) load with it."""
        from advexplorer.io.filenames import companion_masks

        found = companion_masks(entry.path)
        for role in ("protect", "allowed"):
            if role in found:
                self.load_mask(entry, "attack", found[role], role)
                break
        if "diagnostic" in found:
            self.load_mask(entry, "diagnostic", found["diagnostic"])

    def add_samples(self, card) -> None:
        """The card's bundled samples, with their masks and true classes."""
        for sample in card.samples:
            if not sample.image.is_file():
                continue
            entries = self.add_images([sample.image], quiet=True)
            if not entries:
                continue
            entry = entries[0]
            if sample.protect is not None and sample.protect.is_file():
                self.load_mask(entry, "attack", sample.protect, "protect")
            elif sample.allowed is not None and sample.allowed.is_file():
                self.load_mask(entry, "attack", sample.allowed, "allowed")
            if sample.diagnostic is not None and sample.diagnostic.is_file():
                self.load_mask(entry, "diagnostic", sample.diagnostic)
            if sample.label is not None and sample.label in card.classes:
                entry.label = card.classes.index(sample.label)
        if self.session.images:
            self.session.set_current(0)

    def add_fallback_image(self) -> None:
        """No bundled model: a histology image from scikit-image (if installed), so the
        window is not empty; painting works, Run waits for a model."""
        import importlib.util

        spec = importlib.util.find_spec("skimage")
        if spec is None or not spec.submodule_search_locations:
            return
        candidate = Path(list(spec.submodule_search_locations)[0]) / "data" / "ihc.png"
        if candidate.is_file():
            self.add_images([candidate], quiet=True)

    # -- the list ----------------------------------------------------------------------
    def selected_entries(self) -> list[ImageEntry]:
        """The images selected in the list, in list order."""
        rows = sorted({index.row() for index in self.panel.list.selectedIndexes()})
        return [self.session.images[r] for r in rows if r < len(self.session.images)]

    def remove_selected(self) -> str | None:
        """Remove the selected images; a message when that is not possible now."""
        entries = self.selected_entries()
        if self.busy_entry is not None and any(e is self.busy_entry for e in entries):
            return "An image that is being attacked cannot be removed now."
        self.session.remove_images(entries)
        return None

    def refresh_list(self) -> None:
        widget = self.panel.list
        widget.blockSignals(True)
        widget.clear()
        for entry in self.session.images:
            item = QListWidgetItem(entry.name)
            item.setToolTip(str(entry.path))
            preview = thumbnail(entry.path)
            if preview is not None:
                item.setIcon(QIcon(QPixmap.fromImage(qimage(preview))))
            widget.addItem(item)
        if self.session.current_index is not None:
            widget.setCurrentRow(self.session.current_index)
        widget.blockSignals(False)

    def select_row(self, row: int) -> None:
        """Highlight ``row`` without telling the session again."""
        widget = self.panel.list
        if widget.currentRow() != row:
            widget.blockSignals(True)
            widget.setCurrentRow(row)
            widget.blockSignals(False)

    # -- masks -------------------------------------------------------------------------
    def load_mask(self, entry: ImageEntry, layer: str, path, mode: str | None = None) -> bool:
        """Read a mask PNG into ``entry``'s attack layer (with its mode) or diagnostic layer."""
        if entry.masks is None:
            try:
                width, height = image_size(entry.path)
            except UserError as error:
                self.error.emit("Could not open the image", str(error))
                return False
            entry.ensure_masks(width, height)
        masks = entry.masks
        height, width = masks.attack.shape
        try:
            array = read_mask_png(path, height, width)
        except UserError as error:
            self.error.emit("Could not load the mask", str(error))
            return False
        target = masks.diagnostic if layer == "diagnostic" else masks.attack
        target.set_data(array, label="load")
        if layer == "diagnostic":
            masks.diagnostic_path = Path(path)
        else:
            masks.attack_path = Path(path)
            if mode is not None:
                masks.mode = mode
        self.masks_loaded.emit(entry)
        return True

    def load_mask_dialog(self, layer: str) -> None:
        entry = self.session.current
        if entry is None:
            return
        start = self.preferences.folder("mask", user_folder(entry.path))
        path, _ = QFileDialog.getOpenFileName(self.dialog_parent, "Load mask", start, MASK_FILTER)
        if path:
            self.preferences.set_folder("mask", path)
            self.load_mask(entry, layer, Path(path))

    def save_mask_dialog(self, layer: str) -> Path | None:
        entry = self.session.current
        if entry is None or entry.masks is None:
            return None
        suffix = "diagnostic" if layer == "diagnostic" else entry.masks.mode
        start = Path(self.preferences.folder("mask", user_folder(entry.path)))
        suggestion = start / f"{entry.path.stem}_{suffix}.png"
        path, _ = QFileDialog.getSaveFileName(self.dialog_parent, "Save mask", str(suggestion), "PNG (*.png)")
        if not path:
            return None
        self.preferences.set_folder("mask", path)
        data = entry.masks.diagnostic.data if layer == "diagnostic" else entry.masks.attack.data
        try:
            written = write_mask_png(path, data)
        except UserError as error:
            self.error.emit("Could not save the mask", str(error))
            return None
        self.message.emit(f"Saved {written}", 5000)
        return written


class ModelFrameController(QObject):
    """The frame on the canvas that shows what the model sees, and the crop a user chooses.

    View → *Model input frame* shows, over an image whose size is not the model's input, the
    part the model card's rule keeps (the whole image stretched, or its centre crop). View →
    *Choose the model's crop* makes the frame movable: a model-sized crop at full resolution
    (or the largest one the image holds), moved by dragging inside it and resized by its
    corner. Each image keeps its own crop; a run then attacks that crop, recorded in
    ``record.json`` as a region of the image file (``image.region``: level 0, x, y, w, h and
    both SHA-256s), which ``advexplorer reproduce`` cuts again (``--image F --region …``).
    """

    def __init__(self, window):
        from PySide6.QtGui import QAction

        from advexplorer.gui.canvas import ModelFrame

        super().__init__(window)
        self.window = window
        self.frame = ModelFrame(window.canvas)
        self.frame.changed.connect(self._frame_moved)
        self.crops: dict[Path, tuple[int, int, int, int]] = {}  # image path → (x, y, w, h)
        self.show_action = QAction("Model input frame", window)
        self.show_action.setCheckable(True)
        self.show_action.setChecked(True)
        self.show_action.setStatusTip("Outline the part of the image the model sees when the image is "
                                      "not the model's input size.")
        self.show_action.toggled.connect(lambda _on: self.refresh())
        self.crop_action = QAction("Choose the model's crop", window)
        self.crop_action.setCheckable(True)
        self.crop_action.setStatusTip("Attack a crop of this image that you move on the canvas, instead "
                                      "of the whole image resized to the model's input.")
        self.crop_action.triggered.connect(self.set_crop_mode)
        self.crop_action.setEnabled(False)
        window.session.current_changed.connect(self._current_changed)
        window.models.loaded.connect(lambda _model: self.refresh())
        previous = window.runs.adjust_job
        window.runs.adjust_job = lambda entry, job: self.adjust_job(entry, previous(entry, job))

    def add_to_menu(self, view_menu) -> None:
        view_menu.addSeparator()
        view_menu.addAction(self.show_action)
        view_menu.addAction(self.crop_action)

    # -- geometry ----------------------------------------------------------------------
    def _card(self):
        model = self.window.models.model
        return None if model is None else model.card

    def _image_size(self) -> tuple[int, int] | None:
        image = self.window.canvas.image
        return None if image is None else (int(image.shape[0]), int(image.shape[1]))

    def default_crop(self) -> tuple[int, int, int, int]:
        """A model-sized crop at full resolution in the image's centre, or — for an image
        smaller than the input — the largest crop with the model's aspect ratio."""
        height, width = self._image_size()
        input_h, input_w = self._card().input_size
        scale = min(1.0, height / input_h, width / input_w)
        h, w = max(1, int(input_h * scale)), max(1, int(input_w * scale))
        return (width - w) // 2, (height - h) // 2, w, h

    def fit_to_model(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """``box`` with the model's aspect ratio (height follows width) and inside the image."""
        height, width = self._image_size()
        input_h, input_w = self._card().input_size
        x, y, w, _ = box
        w = max(1, min(w, width, int(height * input_w / input_h)))
        h = max(1, min(height, int(round(w * input_h / input_w))))
        x, y = min(max(0, x), width - w), min(max(0, y), height - h)
        return x, y, w, h

    def crop_of(self, entry) -> tuple[int, int, int, int] | None:
        """The crop chosen for ``entry`` (x, y, w, h), or None (the card's rule applies)."""
        return None if entry is None else self.crops.get(Path(entry.path))

    # -- showing -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Draw the frame for the shown image: its chosen crop, else the card's rule."""
        entry, card, size = self.window.session.current, self._card(), self._image_size()
        # A tile cut from a slide is already the user's region: another one is cut in the slide view.
        from_slide = entry is not None and tile_region(entry.path) is not None
        self.crop_action.setEnabled(card is not None and size is not None and not from_slide)
        self.crop_action.setToolTip("This tile was cut from a slide: cut the region you want in the slide "
                                    "view (Tools → Open slide…)." if from_slide else self.crop_action.statusTip())
        crop = self.crop_of(entry)
        self.crop_action.setChecked(crop is not None)
        self.frame.set_movable(crop is not None)
        if card is None or size is None:
            self.frame.hide()
            return
        input_h, input_w = card.input_size
        height, width = size
        self._update_note(entry, card, crop)
        if crop is not None:
            x, y, w, h = crop
            self.frame.show_box(crop, f"model's crop {w}×{h} at {x},{y}")
            return
        if not self.show_action.isChecked() or (height, width) == (input_h, input_w):
            self.frame.hide()
            return
        from advexplorer.io.images import crop_box  # the engine is loaded: a model is

        top, left, h, w = crop_box(height, width, card)
        how = "stretched" if card.resize != "center-crop" else "centre crop"
        self.frame.show_box((left, top, w, h), f"model input: {how} {w}×{h} → {input_w}×{input_h}")

    def _update_note(self, entry, card, crop) -> None:
        """The Attack panel's line on how the image meets the model, saying when a crop is attacked."""
        label = getattr(getattr(self.window, "attack_dock_widget", None), "input_note", None)
        if label is None or entry is None:
            return
        if crop is None:
            note = input_note(entry.path, card)
        else:
            x, y, w, h = crop
            input_h, input_w = card.input_size
            size = "" if (w, h) == (input_w, input_h) else f", resized to {input_w}×{input_h}"
            note = (f"The attack uses the {w}×{h} crop at {x},{y} of {entry.path.name} (the frame on "
                    f"the canvas: drag it to move it, its corner to resize it){size}.")
        label.set_full_text(note)
        label.setVisible(bool(note))

    def set_crop_mode(self, on: bool) -> None:
        """View → Choose the model's crop: start from a model-sized crop, or go back to the rule."""
        entry = self.window.session.current
        if entry is None or self._card() is None or self._image_size() is None or tile_region(entry.path):
            return
        path = Path(entry.path)
        if on:
            self.crops[path] = self.fit_to_model(self.default_crop())
            x, y, w, h = self.crops[path]
            self.window.statusBar().showMessage(
                f"Runs on {entry.name} attack the {w}×{h} crop at {x},{y}; drag the frame to move it.", 8000)
        else:
            self.crops.pop(path, None)
        self.refresh()

    def _frame_moved(self, box) -> None:
        entry = self.window.session.current
        if entry is None or not self.frame.movable:
            return
        fitted = self.fit_to_model(box)
        self.crops[Path(entry.path)] = fitted
        if fitted != tuple(box):
            self.frame.show_box(fitted, "")
        self.refresh()

    def _current_changed(self, _entry) -> None:
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, self.refresh)  # after the canvas shows the new image

    # -- the run -----------------------------------------------------------------------
    def adjust_job(self, entry, job):
        """A run of ``entry`` with a chosen crop: the crop as a region of the file, masks cut to it."""
        from dataclasses import replace

        crop = self.crop_of(entry)
        if crop is None or job.region is not None:
            return job
        x, y, w, h = crop

        def cut(mask):
            return None if mask is None else np.ascontiguousarray(mask[y:y + h, x:x + w])

        region = {"slide": str(Path(entry.path).resolve()), "level": 0, "x": x, "y": y, "w": w, "h": h}
        return replace(job, region=region, allowed_at_file_size=cut(job.allowed_at_file_size),
                       diagnostic_at_file_size=cut(job.diagnostic_at_file_size))
