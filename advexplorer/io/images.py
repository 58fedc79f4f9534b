"""Reading images and masks and bringing them to the model's input, exactly as the card says.

Images: PNG, JPEG, TIFF (and anything else Pillow reads), 8- or 16-bit, grayscale, RGB or
RGBA, read by :mod:`advexplorer.io.rasters` (the reader the GUI uses too, with its pixel
limit). Alpha is dropped (with a note), colour is converted to the card's channel count
(ITU-R 601 luma for grayscale), values become float32 in [0,1].

Resize rules (``card.resize``):

* ``stretch`` — resize the whole image to ``input_size`` (bilinear, antialiased);
* ``center-crop`` — cut the largest centred region with the input's aspect ratio, then
  resize it to ``input_size``.

An image already at ``input_size`` is not resampled, so 8-bit pixel values survive exactly.
Masks are single-channel images of the *file's* size (non-zero = the attack may change the
pixel, or for a protect mask: must not change it) and go through the same crop and a
nearest-neighbour resize, so mask and image stay aligned.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from advexplorer.errors import UserError
from advexplorer.io.cards import ModelCard
from advexplorer.io.hashing import sha256_file
# Files are read in one torch-free place, shared with the GUI (re-exported here for callers).
from advexplorer.io.rasters import (  # noqa: F401  (read_* re-exported for callers)
    is_large, read_image_array, read_mask_array, read_raw, reduce_raw, to_unit_float,
)

@dataclass
class LoadedImage:
    """An image as the user sees it (``original``) and as the model is fed (``tensor``)."""

    path: Path | None
    sha256: str | None
    tensor: torch.Tensor          # C×H×W float32 in [0,1] at the card's input size
    original: np.ndarray          # H×W×C float32 in [0,1] at file resolution, card's channels
    file_size: tuple[int, int]    # (width, height) of the file
    notes: list[str] = field(default_factory=list)
    # Where the pixels came from when not a whole image file: a slide region or a DICOM window
    # (``{"region": {...}}`` / ``{"dicom": {...}}``), recorded in record.json for ``reproduce``.
    provenance: dict | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "image"


def to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """Convert H×W×C (C = 1 or 3) to the model's channel count."""
    if array.ndim == 2:
        array = array[:, :, None]
    have = array.shape[2]
    if have == channels:
        return array
    if channels == 1:
        luma = array[:, :, 0] * 0.299 + array[:, :, 1] * 0.587 + array[:, :, 2] * 0.114
        return luma[:, :, None].astype(np.float32)
    return np.repeat(array[:, :, :1], 3, axis=2)


def crop_box(height: int, width: int, card: ModelCard) -> tuple[int, int, int, int]:
    """The (top, left, height, width) region of a file image that the card's rule keeps."""
    if card.resize != "center-crop":
        return 0, 0, height, width
    target_h, target_w = card.input_size
    scale = min(height / target_h, width / target_w)
    crop_h = max(1, min(height, round(target_h * scale)))
    crop_w = max(1, min(width, round(target_w * scale)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def image_to_model(array: np.ndarray, card: ModelCard) -> torch.Tensor:
    """H×W×C float [0,1] (file resolution) → C×H×W float32 tensor at the card's input size."""
    array = to_channels(np.asarray(array, dtype=np.float32), card.channels)
    top, left, h, w = crop_box(array.shape[0], array.shape[1], card)
    return _resize_to_model(array[top:top + h, left:left + w], card)


def _resize_to_model(region: np.ndarray, card: ModelCard) -> torch.Tensor:
    """An already cropped H×W×C float region → C×H×W at the card's input size (antialiased)."""
    tensor = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)
    if tuple(region.shape[:2]) != tuple(card.input_size):
        tensor = F.interpolate(tensor[None], size=card.input_size, mode="bilinear",
                               align_corners=False, antialias=True)[0]
    return tensor.clamp_(0.0, 1.0).contiguous()


def reduction_factor(height: int, width: int, card: ModelCard) -> int:
    """How many file pixels (per side) one block average may stand for when a large image is
    prepared: the kept region stays at least twice the model's input on each side, so the
    antialiased resize after it still sees every detail the model can."""
    if not is_large(width, height):
        return 1
    _, _, crop_h, crop_w = crop_box(height, width, card)
    target_h, target_w = card.input_size
    return max(1, int(min(crop_h / target_h, crop_w / target_w) // 2))


def mask_to_model(mask: np.ndarray, card: ModelCard) -> torch.Tensor:
    """H×W mask at file resolution → H×W float {0,1} tensor at the card's input size."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.any(axis=2)
    top, left, h, w = crop_box(mask.shape[0], mask.shape[1], card)
    tensor = torch.from_numpy(np.ascontiguousarray(mask[top:top + h, left:left + w] != 0)).float()
    if (h, w) != tuple(card.input_size):
        tensor = F.interpolate(tensor[None, None], size=card.input_size, mode="nearest-exact")[0, 0]
    return tensor.contiguous()


def load_image(path: str | Path, card: ModelCard) -> LoadedImage:
    """Read an image file and prepare it for the model described by ``card``.

    ``original`` is at file resolution, except for a large image (above 50 Mpx) whose kept
    region is at least 4× the model's input per side: it is then prepared from block
    averages (see :func:`reduction_factor`) and ``original`` is that reduced image; the
    notes say so. ``file_size`` is always the file's own.
    """
    path = Path(path)
    raw, notes = read_raw(path)
    height, width = raw.shape[:2]
    factor = reduction_factor(height, width, card)
    if factor > 1:
        # A large file for a small model: the crop is taken at file resolution (so masks stay
        # aligned), then block-averaged, and only the reduced pixels ever become floats.
        top, left, crop_h, crop_w = crop_box(height, width, card)
        original = to_channels(to_unit_float(reduce_raw(raw, factor), notes), card.channels)
        region = original if (crop_h, crop_w) == (height, width) else to_channels(
            to_unit_float(reduce_raw(raw[top:top + crop_h, left:left + crop_w], factor), []),
            card.channels)
        tensor = _resize_to_model(region, card)
        notes.append(f"large image {width}×{height}: prepared from {factor}×{factor} block averages "
                     f"({original.shape[1]}×{original.shape[0]}) for the model's "
                     f"{card.input_size[1]}×{card.input_size[0]} input, to save memory")
    else:
        if is_large(width, height):
            notes.append(f"large image {width}×{height}: read in full, about "
                         f"{width * height * raw.shape[2] * 4 / 1e9:.1f} GB of memory as floats")
        original = to_channels(to_unit_float(raw, notes), card.channels)
        tensor = image_to_model(original, card)
    channels = raw.shape[2] - (1 if raw.shape[2] in (2, 4) else 0)
    if channels != card.channels:
        notes.append(f"converted from {channels} to {card.channels} channel(s) for the model")
    return LoadedImage(path=path.resolve(), sha256=sha256_file(path), tensor=tensor,
                       original=original, file_size=(width, height), notes=notes)


def image_from_array(array: np.ndarray, card: ModelCard, name: str = "array") -> LoadedImage:
    """Wrap an in-memory H×W(×C) array in [0,1] (e.g. a cohort ``.npz`` entry) as an image."""
    array = np.asarray(array, dtype=np.float32)
    original = to_channels(array, card.channels)
    return LoadedImage(path=None, sha256=None, tensor=image_to_model(original, card),
                       original=original, file_size=(original.shape[1], original.shape[0]),
                       notes=[f"from {name}"])


def vanished_region(name: str, card: ModelCard, *, role: str = "mask") -> str:
    """The sentence for a mask region that had pixels in the file but none at the model's input.

    A region thinner than the reduction factor (one pixel of a 64×64 mask for a 16×16 model)
    falls between the pixels the nearest-neighbour resize samples, or outside the centre crop.
    """
    height, width = card.input_size
    what = {"protect": f"free region the protect mask {name} leaves",
            "diagnostic": f"diagnostic region {name}"}.get(role, f"mask {name}'s allowed region")
    how = "cropped and resized" if card.resize == "center-crop" else "resized"
    return (f"The {what} vanished when {how} to {width}×{height} — paint a larger region or use a "
            "model with a larger input.")


def load_mask(path: str | Path, image: LoadedImage, card: ModelCard, *, invert: bool = False,
              role: str = "mask") -> torch.Tensor:
    """Read a mask for ``image`` and bring it to the model's input size.

    ``invert=True`` reads a *protect* mask (non-zero = must not change) and returns the
    allowed region. An allowed region with no pixel left is an error.
    """
    path = Path(path)
    mask = read_mask_array(path)
    width, height = image.file_size
    if mask.shape != (height, width):
        raise UserError(
            f"The {role} {path.name} is {mask.shape[1]}×{mask.shape[0]} pixels but the image "
            f"{image.name} is {width}×{height}; a mask must have the image's size."
        )
    tensor = mask_to_model(mask, card)
    if invert:
        tensor = 1.0 - tensor
    region_in_file = bool((~mask if invert else mask).any())
    if region_in_file and not bool(tensor.any()):
        raise UserError(vanished_region(path.name, card,
                                        role="protect" if invert else role))
    if role != "diagnostic" and not bool(tensor.any()):
        what = ("The protect mask covers the whole image, so nothing is left for the attack to change"
                if invert else f"The mask {path.name} has no allowed (non-zero) pixel")
        raise UserError(f"{what}. Leave some pixels free for the attack.")
    if role == "diagnostic" and not bool(tensor.any()):
        raise UserError(f"The diagnostic region {path.name} is empty; paint the region that matters.")
    return tensor


def save_mask_png(path: str | Path, mask) -> Path:
    """Write a mask as an 8-bit PNG (0 / 255), atomically."""
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return save_png(path, (array != 0).astype(np.uint8) * 255)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """[0,1] float → uint8 by rounding (what an 8-bit PNG stores)."""
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """Write H×W or H×W×C uint8 (C = 1 or 3) as PNG via a temporary file and a rename."""
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
