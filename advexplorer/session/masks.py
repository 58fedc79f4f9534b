"""Mask layers a user paints on an image, with per-stroke undo/redo.

A :class:`MaskLayer` is a binary H×W array at the image *file's* resolution (what the user
sees and paints), converted to the model's input size only when an attack starts
(:func:`advexplorer.io.images.mask_to_model`). Like napari's Labels layer, every edit — a
brush stroke, a fill, a rectangle, an invert — is one undo item that stores only the
bounding box it changed (old and new values), and the history is bounded both in items
and in bytes, so painting on a large slide never grows memory without limit.

:class:`ImageMasks` holds the two layers of one image: the *attack* layer, read as an
allowed mask ("the attack may change these pixels") or a protect mask ("it must not"),
and the separate *diagnostic region* used by the saliency checks.

Plain numpy; no Qt and no torch, so the GUI can import it before the engine is loaded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advexplorer.errors import UserError

MASK_MODES = ("allowed", "protect")
#: Largest number of undo items kept per layer.
HISTORY_LIMIT = 100
#: Largest memory (bytes) the undo items of one layer may hold together.
HISTORY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Edit:
    """One undo item: the changed bounding box ``[top:bottom, left:right]``, before and after."""

    top: int
    bottom: int
    left: int
    right: int
    before: np.ndarray
    after: np.ndarray
    label: str

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes

    @property
    def region(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def _changed_box(before: np.ndarray, after: np.ndarray):
    """The bounding box (top, bottom, left, right) of the pixels that differ, or None."""
    diff = before != after
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class MaskLayer:
    """A binary mask (uint8 0/1, H×W) with bounded, per-edit undo/redo.

    Painting happens inside a stroke: :meth:`begin_stroke`, any number of
    :meth:`paint_line` calls, :meth:`end_stroke`; the whole stroke is one undo item.
    Listeners registered with :meth:`on_change` are called with the changed bounding box
    ``(top, bottom, left, right)`` after every change (also during a stroke), so a view
    can redraw as the user paints.
    """

    def __init__(self, height: int, width: int, *, history_limit: int = HISTORY_LIMIT,
                 history_bytes: int = HISTORY_BYTES):
        if height < 1 or width < 1:
            raise UserError(f"A mask needs a positive size, not {width}×{height}.")
        self.data = np.zeros((int(height), int(width)), dtype=np.uint8)
        self.history_limit = int(history_limit)
        self.history_bytes = int(history_bytes)
        self._undo: deque[Edit] = deque()
        self._redo: list[Edit] = []
        self._stroke_before: np.ndarray | None = None
        self._stroke_box: list[int] | None = None
        self._stroke_label = ""
        self._listeners: list[Callable[[tuple[int, int, int, int]], None]] = []

    # -- notifications -------------------------------------------------------------
    def on_change(self, callback: Callable[[tuple[int, int, int, int]], None]) -> None:
        """Call ``callback(box)`` after every change of the mask."""
        self._listeners.append(callback)

    def disconnect(self, callback) -> None:
        """Stop calling ``callback`` (no error if it was not connected)."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self, box) -> None:
        for callback in list(self._listeners):
            callback(box)

    # -- queries ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    @property
    def is_empty(self) -> bool:
        return not bool(self.data.any())

    @property
    def fraction(self) -> float:
        """Fraction of pixels that are set."""
        return float(self.data.mean())

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def history_nbytes(self) -> int:
        """Memory held by the undo and redo items."""
        return sum(e.nbytes for e in self._undo) + sum(e.nbytes for e in self._redo)

    @property
    def undo_depth(self) -> int:
        return len(self._undo)

    def copy(self) -> np.ndarray:
        """A snapshot of the mask (what a worker thread may use while the user keeps painting)."""
        return self.data.copy()

    # -- strokes ---------------------------------------------------------------------
    @property
    def in_stroke(self) -> bool:
        return self._stroke_before is not None

    def begin_stroke(self, label: str = "brush") -> None:
        """Start one undoable stroke (a press of the mouse button)."""
        if self.in_stroke:
            self.end_stroke()
        # A transient full copy makes the stroke's "before" exact even where dabs overlap;
        # only the changed box of it is kept in the history.
        self._stroke_before = self.data.copy()
        self._stroke_box = None
        self._stroke_label = label

    def paint_line(self, x0: float, y0: float, x1: float, y1: float, radius: float,
                   value: int = 1) -> None:
        """Paint a round brush of ``radius`` pixels along the segment (x0,y0)→(x1,y1).

        Coordinates are pixel centres in image space (x = column, y = row). Outside a
        stroke, the line is its own undo item.
        """
        own_stroke = not self.in_stroke
        if own_stroke:
            self.begin_stroke("brush" if value else "eraser")
        height, width = self.data.shape
        radius = max(float(radius), 0.5)
        top = max(int(np.floor(min(y0, y1) - radius)), 0)
        bottom = min(int(np.ceil(max(y0, y1) + radius)) + 1, height)
        left = max(int(np.floor(min(x0, x1) - radius)), 0)
        right = min(int(np.ceil(max(x0, x1) + radius)) + 1, width)
        if top < bottom and left < right:
            ys = np.arange(top, bottom, dtype=np.float32)[:, None]
            xs = np.arange(left, right, dtype=np.float32)[None, :]
            dx, dy = float(x1 - x0), float(y1 - y0)
            length2 = dx * dx + dy * dy
            if length2 == 0.0:
                t = np.zeros((1, 1), dtype=np.float32)
            else:  # closest point of the segment to each pixel (a capsule-shaped dab)
                t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
            distance2 = (xs - (x0 + t * dx)) ** 2 + (ys - (y0 + t * dy)) ** 2
            inside = distance2 <= radius * radius
            if inside.any():
                self.data[top:bottom, left:right][inside] = 1 if value else 0
                self._grow_stroke_box(top, bottom, left, right)
                self._notify((top, bottom, left, right))
        if own_stroke:
            self.end_stroke()

    def _grow_stroke_box(self, top, bottom, left, right) -> None:
        box = self._stroke_box
        self._stroke_box = [top, bottom, left, right] if box is None else [
            min(box[0], top), max(box[1], bottom), min(box[2], left), max(box[3], right)]

    def end_stroke(self) -> Edit | None:
        """Finish the stroke; record it as one undo item if it changed anything."""
        before, box, label = self._stroke_before, self._stroke_box, self._stroke_label
        self._stroke_before = self._stroke_box = None
        if before is None or box is None:
            return None
        top, bottom, left, right = box
        old = before[top:bottom, left:right]
        new = self.data[top:bottom, left:right]
        tight = _changed_box(old, new)
        if tight is None:
            return None
        t0, t1, l0, l1 = tight
        edit = Edit(top + t0, top + t1, left + l0, left + l1,
                    old[t0:t1, l0:l1].copy(), new[t0:t1, l0:l1].copy(), label)
        self._push(edit)
        return edit

    # -- whole-region edits ------------------------------------------------------------
    def _apply(self, new_data: np.ndarray, label: str) -> Edit | None:
        """Replace the mask by ``new_data`` as one undo item (only the changed box is kept)."""
        if self.in_stroke:
            self.end_stroke()
        box = _changed_box(self.data, new_data)
        if box is None:
            return None
        top, bottom, left, right = box
        edit = Edit(top, bottom, left, right, self.data[top:bottom, left:right].copy(),
                    new_data[top:bottom, left:right].astype(np.uint8, copy=True), label)
        self.data[edit.region] = edit.after
        self._push(edit)
        self._notify(box)
        return edit

    def fill(self, x: float, y: float, value: int = 1) -> Edit | None:
        """Flood-fill the 4-connected region around pixel (x, y) with ``value``."""
        height, width = self.data.shape
        col, row = int(round(x)), int(round(y))
        if not (0 <= row < height and 0 <= col < width):
            return None
        value = 1 if value else 0
        if self.data[row, col] == value:
            return None
        from scipy import ndimage  # lazily: scipy is not needed until the first fill

        same = self.data == self.data[row, col]
        regions, _ = ndimage.label(same)  # default structure = 4-connectivity
        new = self.data.copy()
        new[regions == regions[row, col]] = value
        return self._apply(new, "fill")

    def fill_rectangle(self, x0: float, y0: float, x1: float, y1: float, value: int = 1) -> Edit | None:
        """Set every pixel of the rectangle spanned by two corners (inclusive) to ``value``."""
        height, width = self.data.shape
        left, right = sorted((int(round(x0)), int(round(x1))))
        top, bottom = sorted((int(round(y0)), int(round(y1))))
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right + 1, width), min(bottom + 1, height)
        if left >= right or top >= bottom:
            return None
        new = self.data.copy()
        new[top:bottom, left:right] = 1 if value else 0
        return self._apply(new, "rectangle")

    def invert(self) -> Edit | None:
        """Swap set and unset pixels."""
        return self._apply(1 - self.data, "invert")

    def clear(self) -> Edit | None:
        """Unset every pixel."""
        return self._apply(np.zeros_like(self.data), "clear")

    def set_data(self, mask: np.ndarray, label: str = "load") -> Edit | None:
        """Replace the mask by another array of the same size (non-zero = set)."""
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask.any(axis=2)
        if mask.shape != self.data.shape:
            raise UserError(
                f"The mask is {mask.shape[1]}×{mask.shape[0]} pixels but the image is "
                f"{self.data.shape[1]}×{self.data.shape[0]}; use a mask made for this image.")
        return self._apply((mask != 0).astype(np.uint8), label)

    # -- history -----------------------------------------------------------------------
    def _push(self, edit: Edit) -> None:
        self._undo.append(edit)
        self._redo.clear()
        while self._undo and (len(self._undo) > self.history_limit
                              or sum(e.nbytes for e in self._undo) > self.history_bytes):
            self._undo.popleft()

    def undo(self) -> Edit | None:
        """Revert the last edit; returns it, or None if there is nothing to undo."""
        if self.in_stroke:
            self.end_stroke()
        if not self._undo:
            return None
        edit = self._undo.pop()
        self.data[edit.region] = edit.before
        self._redo.append(edit)
        self._notify((edit.top, edit.bottom, edit.left, edit.right))
        return edit

    def redo(self) -> Edit | None:
        """Re-apply the last undone edit; returns it, or None if there is nothing to redo."""
        if not self._redo:
            return None
        edit = self._redo.pop()
        self.data[edit.region] = edit.after
        self._undo.append(edit)
        self._notify((edit.top, edit.bottom, edit.left, edit.right))
        return edit


class ImageMasks:
    """The masks of one image: the attack layer (allowed or protect) and the diagnostic region.

    ``mode`` says how the attack layer is read: ``"protect"`` (painted pixels must not
    change; the default, since users usually mark the diagnostic structure to keep) or
    ``"allowed"`` (only painted pixels may change). An empty attack layer means no mask.
    """

    def __init__(self, height: int, width: int, mode: str = "protect"):
        self.attack = MaskLayer(height, width)
        self.diagnostic = MaskLayer(height, width)
        self.mode = mode
        self.attack_path: Path | None = None
        self.diagnostic_path: Path | None = None

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MASK_MODES:
            raise UserError(f"Unknown mask mode {value!r}; choose allowed or protect.")
        self._mode = value

    @property
    def mask_mode(self) -> str:
        """'none' when nothing is painted, else the mode — as recorded in ``record.json``."""
        return "none" if self.attack.is_empty else self.mode

    def allowed_at_file_size(self) -> np.ndarray | None:
        """A snapshot of the allowed region (1 = may change) at file size, or None for no mask."""
        if self.attack.is_empty:
            return None
        painted = self.attack.copy()
        return painted if self.mode == "allowed" else (1 - painted).astype(np.uint8)

    def diagnostic_at_file_size(self) -> np.ndarray | None:
        """A snapshot of the diagnostic region, or None when none is painted."""
        return None if self.diagnostic.is_empty else self.diagnostic.copy()


def read_mask_png(path: str | Path, height: int, width: int) -> np.ndarray:
    """Read a mask PNG that must match the image's file size (the CLI's reader and rule)."""
    from advexplorer.io.rasters import read_mask_array

    path = Path(path)
    array = read_mask_array(path)
    if array.shape != (height, width):
        raise UserError(f"The mask {path.name} is {array.shape[1]}×{array.shape[0]} pixels but the "
                        f"image is {width}×{height}; use a mask made for this image.")
    return (array != 0).astype(np.uint8)


def write_mask_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a mask as an 8-bit PNG (255 = set), atomically (temporary file, then rename)."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    temporary = path.with_name(f".{path.name}.part")
    try:
        Image.fromarray((np.asarray(mask) != 0).astype(np.uint8) * 255).save(temporary, format="PNG")
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UserError(f"Could not write {path} ({exc}); choose a folder you can write to.") from None
    return path
