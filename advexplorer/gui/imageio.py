"""Reading images for display and thumbnails without the engine (Pillow only, no torch).

The canvas shows the file at its own resolution, exactly the pixels
:func:`advexplorer.io.images.read_image_array` reads (no EXIF rotation there either), so
a mask painted here lines up with the image the engine loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advexplorer.errors import UserError


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UserError(f"No image file at {path}. Check the path.")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise UserError(f"{path.name} is not an image that can be read (PNG, JPEG, TIFF, …).") from None
    except OSError as exc:
        raise UserError(f"{path.name} could not be opened ({exc}).") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header (cheap); UserError if it is not an image."""
    path = Path(path)
    with _open(path) as image:
        return image.size


def read_display_image(path: str | Path) -> np.ndarray:
    """The whole image as H×W×C (C = 1 or 3): uint8 for 8-bit files, float32 [0,1] otherwise."""
    path = Path(path)
    try:
        with _open(path) as image:
            image.load()
            mode = image.mode
            if mode.startswith("I;16") or mode in ("I", "F"):
                array = np.asarray(image).astype(np.float32)
                low, high = (0.0, 65535.0) if mode != "F" else (float(array.min()), float(array.max()))
                if mode == "F" and 0.0 <= low and high <= 1.0:
                    low, high = 0.0, 1.0
                array = np.clip((array - low) / max(high - low, 1e-12), 0.0, 1.0)
                return np.ascontiguousarray(array[:, :, None], dtype=np.float32)
            if mode in ("1", "L", "LA", "La", "I;16", "P") and mode != "P":
                return np.ascontiguousarray(np.asarray(image.convert("L"))[:, :, None])
            return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"{path.name} could not be read as an image; it may be truncated or "
                        f"corrupt ({exc}).") from None


def thumbnail(path: str | Path, size: int = 64) -> np.ndarray | None:
    """A small RGB uint8 preview (JPEGs decode at reduced size), or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            if image.mode.startswith("I") or image.mode == "F":
                rgb = read_display_image(path)
                rgb = (rgb * 255).astype(np.uint8) if rgb.dtype != np.uint8 else rgb
                image = Image.fromarray(np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb)
            image = image.convert("RGB")
            image.thumbnail((size, size))
            return np.ascontiguousarray(np.asarray(image))
    except Exception:  # a thumbnail is decoration: an unreadable file just gets none
        return None
