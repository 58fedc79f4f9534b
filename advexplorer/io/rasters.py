"""Reading image and mask files to numpy arrays: the one reader for the GUI and the CLI.

Torch-free on purpose: the GUI shows images and loads masks before the engine (torch) is
imported, and it must see exactly the pixels the engine will attack. Copies of this code
once drifted (the GUI read masks through a grey conversion, the CLI through "any channel"),
so every image and mask file in AdvExplorer is read here.

What a file becomes
-------------------
* **Images**: H×W×C (C = 1 or 3) float32 in [0, 1]. 8-bit values are divided by 255, 16-bit
  by 65535, floats outside [0, 1] are rescaled (with a note); alpha is dropped (with a note);
  palette images become RGB; CMYK, YCbCr, LAB and HSV become RGB. TIFFs that Pillow cannot
  decode (16-bit RGB, float RGB) are read with ``tifffile`` when it is installed.
* **Masks**: H×W bool. A pixel is set when any colour channel is non-zero and it is not fully
  transparent — the same pixels a viewer shows as painted. So a faint (0, 0, 2), a 16-bit 1
  and a palette entry of any non-black colour all count.

Size limit
----------
A compressed file can promise far more pixels than it occupies: a 30,000 × 30,000 PNG of
zeros is under 1 MB and decodes to 900 MB (3.6 GB as float). The pixel count is read from
the header and checked **before** decoding against :func:`max_image_pixels`: 200 megapixels
by default, the environment variable ``ADVEXPLORER_MAX_IMAGE_PIXELS`` to change it. 200 Mpx
RGB is 600 MB as 8-bit and 2.4 GB as the float32 the engine works in — about the most one
image may take on a 16 GB workstation next to a model; it is larger than any microscope
field or radiograph, while whole-slide images (gigapixels) need tiled reading, not this
path. Images above :data:`LARGE_IMAGE_PIXELS` (50 Mpx) are prepared for a model from
block averages when the model's input is at least 4× smaller (see
:func:`advexplorer.io.images.load_image`), otherwise read in full with a note that says how
much memory they take.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from advexplorer.errors import UserError

#: The environment variable that sets the pixel limit for one image.
MAX_PIXELS_VARIABLE = "ADVEXPLORER_MAX_IMAGE_PIXELS"
#: The default pixel limit for one image (see the module docstring for why 200 Mpx).
DEFAULT_MAX_IMAGE_PIXELS = 200_000_000
#: Above this many pixels an image is still read, with a note on the memory it takes.
LARGE_IMAGE_PIXELS = 50_000_000

TIFF_SUFFIXES = (".tif", ".tiff")


def max_image_pixels() -> int:
    """The pixel limit for one image: ``ADVEXPLORER_MAX_IMAGE_PIXELS`` or 200 million.

    Read at every call, so loader worker processes and tests see the current environment.
    """
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{MAX_PIXELS_VARIABLE}={text} is not a number of pixels; set it to e.g. "
                        f"400000000 (400 Mpx), or unset it for the default {_mpx(DEFAULT_MAX_IMAGE_PIXELS)}.")
    return value


def _mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} Mpx"


def check_pixel_count(name: str, width: int, height: int) -> None:
    """Refuse an image whose header promises more pixels than :func:`max_image_pixels`."""
    pixels = int(width) * int(height)
    limit = max_image_pixels()
    if pixels > limit:
        raise UserError(f"{name} is {width}×{height} = {_mpx(pixels)}, above the {_mpx(limit)} limit "
                        f"for one image; crop it, or raise {MAX_PIXELS_VARIABLE} if you trust the file.")


def _pillow():
    from PIL import Image

    # The size is checked here, against a limit the user can raise; Pillow's own check
    # would refuse big files before their size is known and ignore that setting.
    Image.MAX_IMAGE_PIXELS = None
    return Image


def _missing(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"No image file at {path}. Check the path.")


def _tiff_shape(path: Path) -> tuple[int, int] | None:
    """(width, height) of a TIFF's first image from its header via tifffile, or None."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tiff:
            page = tiff.pages[0]
            return int(page.imagewidth), int(page.imagelength)
    except Exception:  # not a TIFF tifffile understands, or tifffile is not installed
        return None


def _is_dicom(path: Path) -> bool:
    from advexplorer.io.dicom import is_dicom_file

    return path.is_file() and is_dicom_file(path)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, checked against the pixel limit; nothing decoded."""
    path = Path(path)
    _missing(path)
    if _is_dicom(path):
        from advexplorer.io.dicom import dicom_size

        width, height = dicom_size(path)
        check_pixel_count(path.name, width, height)
        return width, height
    Image = _pillow()
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError) as error:  # UnidentifiedImageError is an OSError
        shape = _tiff_shape(path) if path.suffix.lower() in TIFF_SUFFIXES else None
        if shape is None:
            raise _unreadable(path, error) from None
        width, height = shape
    check_pixel_count(path.name, width, height)
    return width, height


def _unreadable(path: Path, error: Exception) -> UserError:
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return UserError(f"{path.name} is not a readable image (PNG, JPEG, TIFF, ...); it is not an "
                         "image file, or in a format AdvExplorer cannot decode.")
    return UserError(f"{path.name} could not be read as an image; it may be truncated or corrupt "
                     f"({error}).")


# --------------------------------------------------------------------------------------
# Decoding to the file's own values


def read_raw(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Decode a file to H×W×C (C = 1–4, alpha kept) in its own value type, plus notes.

    uint8 for 8-bit and bilevel files (bilevel as 0/255), uint16 / int32 for 16-bit, float32
    for floating-point files. The pixel count is checked before anything is decoded.
    """
    path = Path(path)
    image_size(path)
    notes: list[str] = []
    Image = _pillow()
    try:
        with Image.open(path) as image:
            image.load()
            array = _pillow_array(image, notes)
    except (OSError, ValueError, SyntaxError) as error:
        array = _tifffile_array(path) if path.suffix.lower() in TIFF_SUFFIXES else None
        if array is None:
            raise _unreadable(path, error) from None
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise UserError(f"{path.name} has no pixels.")
    return array, notes


_TO_RGB = ("CMYK", "YCbCr", "LAB", "HSV")


def _pillow_array(image, notes: list[str]) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")  # keep the palette's colours: (0, 0, 2) is not black
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode in _TO_RGB:
        image = image.convert("RGB")
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.uint8) * np.uint8(255)
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(image)
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode in ("I", "F"):
        return np.asarray(image)
    notes.append(f"converted from Pillow mode {mode} to RGB")
    return np.asarray(image.convert("RGB"))


def _tifffile_array(path: Path) -> np.ndarray | None:
    """TIFFs beyond Pillow (16-bit or float RGB) through tifffile, when it is installed."""
    try:
        import tifffile

        array = tifffile.imread(str(path))
    except Exception:  # a corrupt TIFF, or no tifffile: the caller reports Pillow's reason
        return None
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim not in (2, 3):
        return None
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    return array


def _alpha(array: np.ndarray) -> bool:
    return array.ndim == 3 and array.shape[2] in (2, 4)


# --------------------------------------------------------------------------------------
# What the engine, the canvas and the mask layers get


def to_unit_float(array: np.ndarray, notes: list[str]) -> np.ndarray:
    """Raw values (see :func:`read_raw`) → float32 in [0, 1], alpha dropped (with notes)."""
    if _alpha(array):
        array = array[:, :, :-1]
        notes.append("alpha channel dropped")
    if array.dtype == np.uint8:
        unit = array.astype(np.float32)
        unit /= np.float32(255)  # a division, not ×(1/255): the same floats as before
    elif array.dtype.kind in "ui":
        unit = array.astype(np.float32)
        low, high = float(unit.min(initial=0)), float(unit.max(initial=0))
        top = 65535.0 if low >= 0 and high <= 65535 else high
        unit = np.clip(unit / max(top, 1e-12), 0.0, 1.0)
        notes.append("16-bit image scaled by 1/65535")
    else:
        unit = array.astype(np.float32)
        low, high = float(unit.min(initial=0)), float(unit.max(initial=0))
        if low < 0 or high > 1:
            unit = (unit - low) / max(high - low, 1e-12)
            notes.append(f"floating-point image rescaled from [{low:g}, {high:g}] to [0, 1]")
    return np.ascontiguousarray(unit, dtype=np.float32)


def read_image_array(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read an image file to H×W×C float32 in [0, 1] (C = 1 or 3) plus notes."""
    raw, notes = read_raw(path)
    height, width = raw.shape[:2]
    if is_large(width, height):
        notes.append(f"large image {width}×{height} ({_mpx(width * height)}): read in full, about "
                     f"{width * height * raw.shape[2] * 4 / 1e9:.1f} GB of memory as floats")
    return to_unit_float(raw, notes), notes


def is_large(width: int, height: int) -> bool:
    """Whether an image is above :data:`LARGE_IMAGE_PIXELS` (read reduced where that is exact enough)."""
    return width * height > LARGE_IMAGE_PIXELS


def reduce_raw(raw: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks of H×W×C raw values, keeping the value type.

    The last rows and columns that do not fill a block are left out (fewer than ``factor``
    file pixels). Integer values are rounded, as Pillow's ``reduce`` does. The average is
    taken block row by block row, so no float copy of the whole image is made.
    """
    height, width, channels = raw.shape[0] // factor, raw.shape[1] // factor, raw.shape[2]
    reduced = np.empty((height, width, channels), np.float32)
    for row in range(height):
        # Summing the block's rows first keeps both reductions on contiguous memory (fast).
        band = raw[row * factor:(row + 1) * factor, :width * factor].astype(np.float32)
        reduced[row] = band.sum(axis=0).reshape(width, factor, channels).sum(axis=1)
    reduced /= np.float32(factor * factor)
    if raw.dtype.kind in "ui":
        return np.round(reduced).astype(raw.dtype)
    return reduced.astype(raw.dtype, copy=False)


def read_display_image(path: str | Path, dicom_window: tuple[float, float] | None = None) -> np.ndarray:
    """The image for the canvas, H×W×C (C = 1 or 3): the engine's pixels, uint8 where exact.

    8-bit files stay uint8 (a quarter of the memory, and what pyqtgraph draws fastest);
    everything else is the float32 [0, 1] array :func:`read_image_array` returns. A DICOM
    file is shown through ``dicom_window`` (centre, width), else its own window, exactly as
    the engine reads it (:func:`advexplorer.io.dicom.read_dicom`).
    """
    if _is_dicom(Path(path)):
        from advexplorer.io.dicom import read_dicom

        return read_dicom(path, dicom_window).pixels
    raw, notes = read_raw(path)
    if raw.dtype == np.uint8:
        return np.ascontiguousarray(raw[:, :, :-1] if _alpha(raw) else raw)
    return to_unit_float(raw, notes)


def read_mask_array(path: str | Path) -> np.ndarray:
    """Read a mask file to an H×W bool array.

    A pixel is set when any colour channel is non-zero and it is not fully transparent.
    """
    raw, _ = read_raw(path)
    if _alpha(raw):
        colour, alpha = raw[:, :, :-1], raw[:, :, -1]
        return (colour != 0).any(axis=2) & (alpha != 0)
    return (raw != 0).any(axis=2)


def thumbnail(path: str | Path, size: int = 64) -> np.ndarray | None:
    """A small RGB uint8 preview (JPEGs decode at reduced size), or None if unreadable."""
    try:
        path = Path(path)
        image_size(path)  # header and pixel limit first
        Image = _pillow()
        if _is_dicom(path):
            shown = np.round(read_display_image(path) * 255).astype(np.uint8)
            preview = Image.fromarray(np.repeat(shown, 3, axis=2) if shown.shape[2] == 1 else shown)
            preview.thumbnail((size, size))
            return np.asarray(preview)
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            if image.mode in ("RGB", "L", "RGBA", "P", "1", "LA"):
                preview = image.convert("RGB")
            else:
                shown = read_display_image(path)
                if shown.dtype != np.uint8:
                    shown = np.round(shown * 255).astype(np.uint8)
                preview = Image.fromarray(np.repeat(shown, 3, axis=2) if shown.shape[2] == 1 else shown)
            preview.thumbnail((size, size))
            return np.ascontiguousarray(np.asarray(preview))
    except Exception:  # a thumbnail is decoration: an unreadable file just gets none
        return None
