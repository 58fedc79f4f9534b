"""Labelled images for training: an ImageFolder or a CSV manifest → train and held-out sets.

* **ImageFolder** (torchvision's layout): ``DIR/<class name>/*.png``; each subfolder's name
  is a class of the model card (by name, case-insensitive, or by index).
* **CSV manifest**: a header with ``image`` and ``label`` columns (paths relative to the
  CSV), and optionally ``split`` (``train`` or ``held_out``) to fix the held-out images.

Every image is prepared for the model exactly as an attacked image is
(:func:`advexplorer.io.images.load_image`: the card's size, channels and resize rule).
Without a ``split`` column, a seeded random ``held_out`` fraction of each class is set
aside (stratified, so a small held-out set still has every class).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from advexplorer.core.training import LabelledImages
from advexplorer.errors import UserError
from advexplorer.io.cards import ModelCard
from advexplorer.io.images import load_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "held_out")


@dataclass
class TrainingData:
    """The two sets and where they came from (recorded in the trained model's card)."""

    train: LabelledImages
    held_out: LabelledImages
    source: Path
    layout: str                              # "folder" or "manifest"
    class_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"source": str(self.source), "layout": self.layout, "n_train": len(self.train),
                "n_held_out": len(self.held_out), "class_counts": dict(self.class_counts)}


def _class_of(name: str, card: ModelCard, where: str) -> int:
    try:
        return card.class_index(name)
    except UserError:
        raise UserError(f"{where}: label {name!r} is not a class of the model card "
                        f"({', '.join(card.classes)}); rename it to one of those.") from None


def _folder_entries(folder: Path, card: ModelCard) -> list[tuple[Path, int, str | None]]:
    entries = []
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for sub in subfolders:
        label = _class_of(sub.name, card, f"folder {sub.name}/")
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        entries += [(path, label, None) for path in files]
    return entries


def _manifest_entries(manifest: Path, card: ModelCard) -> list[tuple[Path, int, str | None]]:
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"Cannot read the manifest {manifest.name} ({error}).") from None
    if not rows or not {"image", "label"} <= set(rows[0]):
        raise UserError(f"The manifest {manifest.name} needs a header with 'image' and 'label' "
                        "columns (and optionally 'split': train or held_out).")
    entries = []
    for number, row in enumerate(rows, start=2):
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLITS:
            raise UserError(f"{manifest.name} line {number}: split {split!r} must be train or held_out.")
        path = manifest.parent / row["image"].strip()
        if not path.is_file():
            raise UserError(f"{manifest.name} line {number}: no image at {path}.")
        entries.append((path, _class_of(row["label"].strip(), card, f"{manifest.name} line {number}"), split))
    return entries


def _stack(entries, card: ModelCard) -> tuple[torch.Tensor, torch.Tensor]:
    images = [load_image(path, card).tensor for path, _, _ in entries]
    labels = torch.tensor([label for _, label, _ in entries], dtype=torch.long)
    return torch.stack(images), labels


def _split(entries, held_out: float, seed: int) -> tuple[list, list]:
    """Fixed splits from the manifest; otherwise a stratified seeded fraction per class."""
    if any(split is not None for _, _, split in entries):
        return ([e for e in entries if e[2] != "held_out"], [e for e in entries if e[2] == "held_out"])
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in sorted({label for _, label, _ in entries}):
        members = [e for e in entries if e[1] == label]
        order = rng.permutation(len(members))
        count = int(round(held_out * len(members)))
        held += [members[i] for i in order[:count]]
        train += [members[i] for i in order[count:]]
    return train, held


def load_training_data(source: str | Path, card: ModelCard, *, held_out: float = 0.2,
                       seed: int = 0) -> TrainingData:
    """Read a labelled folder or manifest for ``card``'s model; see the module docstring."""
    source = Path(source)
    if not 0 <= held_out < 1:
        raise UserError(f"--held-out {held_out:g} must be a fraction in [0, 1) (e.g. 0.2).")
    if source.is_dir():
        entries, layout = _folder_entries(source, card), "folder"
    elif source.is_file() and source.suffix.lower() == ".csv":
        entries, layout = _manifest_entries(source, card), "manifest"
    else:
        raise UserError(f"--images {source}: give a folder with one subfolder of images per class, "
                        "or a CSV manifest with 'image' and 'label' columns.")
    classes = sorted({label for _, label, _ in entries})
    if not entries:
        raise UserError(f"{source} holds no images (PNG, JPEG, TIFF or BMP) in class subfolders.")
    if len(classes) < 2:
        only = card.classes[classes[0]]
        raise UserError(f"{source} has images of one class only ({only}); training needs at least "
                        "two classes, or the model learns to answer that class for everything.")
    train_entries, held_entries = _split(entries, held_out, seed)
    if not held_entries:
        raise UserError(f"The held-out split of {source.name} has 0 images, so accuracy cannot be "
                        "measured; raise --held-out (e.g. 0.2) or add images.")
    if not train_entries:
        raise UserError(f"Every image of {source.name} is held out; lower --held-out or add images.")
    train_images, train_labels = _stack(train_entries, card)
    held_images, held_labels = _stack(held_entries, card)
    counts = {card.classes[c]: sum(1 for e in entries if e[1] == c) for c in classes}
    return TrainingData(LabelledImages(train_images, train_labels), LabelledImages(held_images, held_labels),
                        source.resolve(), layout, counts)
