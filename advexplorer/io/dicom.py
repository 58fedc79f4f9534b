"""Single-frame DICOM images: stored values → modality values → a display window → [0, 1].

The chain a radiologist's viewer applies, in the standard's order (PS3.3 C.11):

1. **Modality LUT / rescale**: ``value × RescaleSlope + RescaleIntercept`` (Hounsfield units for
   CT), or the file's Modality LUT Sequence when it has one (pydicom's ``apply_modality_lut``).
2. **VOI window** (centre C, width W): values below ``C − W/2`` become 0, above ``C + W/2``
   become 1, linear between. The window comes from the user (``--dicom-window C,W``) or from
   the file's WindowCenter/WindowWidth; without either, the image's own min..max is used
   (said in the notes).
3. ``MONOCHROME1`` (white = low) is inverted so bright always means high.

The window is part of how the model sees the image, so it is recorded with the run
(``image.dicom`` in record.json) and ``reproduce`` applies the same one.

Torch-free; pydicom is in the optional ``slides`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advexplorer.errors import UserError

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is DICOM: a DICOM suffix, or the ``DICM`` marker after the 128-byte preamble."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def parse_window(text: str) -> tuple[float, float]:
    """``C,W`` (centre and width, width > 0) → a tuple; a one-line UserError otherwise."""
    try:
        centre, width = (float(part) for part in str(text).split(","))
    except ValueError:
        centre, width = 0.0, 0.0
        text_ok = False
    else:
        text_ok = True
    if not text_ok or not width > 0 or not np.isfinite(centre):
        raise UserError(f"--dicom-window {text}: give the window as CENTRE,WIDTH with a width above 0, "
                        "e.g. --dicom-window 40,400 (a soft-tissue CT window).")
    return centre, width


@dataclass
class DicomImage:
    """A DICOM image brought to [0, 1]: H×W×C float32 (C = 1, or 3 for RGB files), and how."""

    pixels: np.ndarray
    window: tuple[float, float] | None   # (centre, width) applied; None for RGB files
    window_source: str                   # "given", "file" or "min-max"
    modality: str | None
    notes: list[str]

    def provenance(self) -> dict:
        """The record's ``image.dicom`` entry."""
        return {"window": None if self.window is None else list(self.window),
                "window_source": self.window_source, "modality": self.modality}


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise UserError("Reading DICOM needs the 'slides' extra: pip install 'advexplorer[slides]'.") from None
    return pydicom


def read_dicom(path: str | Path, window: tuple[float, float] | None = None) -> DicomImage:
    """Read a single-frame DICOM file and apply rescale and window (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No DICOM file at {path}. Check the path.")
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut

    try:
        dataset = pydicom.dcmread(str(path))
    except Exception as error:
        raise UserError(f"{path.name} is not a readable DICOM file ({_reason(error)}).") from None
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise UserError(f"{path.name} has no pixel data (a DICOM structured report, or a header-only "
                        "file); export the image itself from the PACS.")
    check_pixel_count(path, dataset)
    try:
        stored = dataset.pixel_array
    except Exception as error:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", None) or str(syntax or "unknown")
        raise UserError(f"{path.name}: its pixels could not be decoded (transfer syntax {name}; "
                        f"{_reason(error)}); convert it to uncompressed DICOM, e.g. 'gdcmconv --raw'.") from None
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    notes: list[str] = []
    if frames > 1:
        stored = stored[0]
        notes.append(f"multi-frame DICOM ({frames} frames): the first frame is used")
    modality = str(getattr(dataset, "Modality", "")) or None
    if stored.ndim == 3 and stored.shape[2] == 3:  # RGB (e.g. a photographed specimen)
        pixels = stored.astype(np.float32) / float(2 ** int(getattr(dataset, "BitsStored", 8)) - 1)
        return DicomImage(np.clip(pixels, 0, 1).astype(np.float32), None, "rgb", modality,
                          notes + ["RGB DICOM: no window applied"])
    values = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float64)
    source = "given"
    if window is None:
        window = _file_window(dataset)
        source = "file"
    if window is None:
        low, high = float(values.min()), float(values.max())
        window = ((low + high) / 2, max(high - low, 1e-12))
        source = "min-max"
        notes.append(f"no window in the file: the image's range {low:g}..{high:g} is used "
                     "(give --dicom-window C,W for a clinical window)")
    pixels = apply_window(values, *window)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
        notes.append("MONOCHROME1: inverted so that bright means high")
    notes.append(f"DICOM window centre {window[0]:g}, width {window[1]:g} ({source})")
    return DicomImage(pixels[:, :, None].astype(np.float32), (float(window[0]), float(window[1])),
                      source, modality, notes)


def apply_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Linear VOI window: ``centre − width/2`` → 0, ``centre + width/2`` → 1, clipped."""
    low = centre - width / 2.0
    return np.clip((np.asarray(values, dtype=np.float64) - low) / width, 0.0, 1.0)


def _file_window(dataset) -> tuple[float, float] | None:
    centre, width = getattr(dataset, "WindowCenter", None), getattr(dataset, "WindowWidth", None)
    if centre is None or width is None:
        return None
    # Several windows may be listed (e.g. lung, mediastinum): the first is the file's default.
    centre, width = _first(centre), _first(width)
    try:
        centre, width = float(centre), float(width)
    except (TypeError, ValueError):
        return None
    return (centre, width) if width > 0 else None


def _first(value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__getitem__"):
        return value
    return value[0] if len(value) else None


def dicom_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the DICOM header, without decoding the pixels."""
    path = Path(path)
    pydicom = _pydicom()
    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as error:
        raise UserError(f"{path.name} is not a readable DICOM file ({_reason(error)}).") from None
    rows, columns = int(getattr(dataset, "Rows", 0) or 0), int(getattr(dataset, "Columns", 0) or 0)
    if rows <= 0 or columns <= 0:
        raise UserError(f"{path.name} has no image size in its header (Rows/Columns); it holds no image.")
    return columns, rows


def check_pixel_count(path: Path, dataset) -> None:
    """Refuse a DICOM whose header promises more pixels than the image limit, before decoding."""
    from advexplorer.io.rasters import check_pixel_count as check

    rows, columns = int(getattr(dataset, "Rows", 0) or 0), int(getattr(dataset, "Columns", 0) or 0)
    check(path.name, columns, rows)


def load_dicom_image(path: str | Path, card, window: tuple[float, float] | None = None):
    """A DICOM file as a :class:`~advexplorer.io.images.LoadedImage` for the model of ``card``;
    ``provenance["dicom"]`` records the window used."""
    from advexplorer.io.hashing import sha256_file
    from advexplorer.io.images import LoadedImage, image_to_model, to_channels

    path = Path(path)
    image = read_dicom(path, window)
    original = to_channels(image.pixels, card.channels)
    notes = list(image.notes)
    if image.pixels.shape[2] != card.channels:
        notes.append(f"converted from {image.pixels.shape[2]} to {card.channels} channel(s) for the model")
    return LoadedImage(path=path.resolve(), sha256=sha256_file(path), tensor=image_to_model(original, card),
                       original=original, file_size=(original.shape[1], original.shape[0]), notes=notes,
                       provenance={"dicom": image.provenance()})


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    return (text[:160] + "…") if len(text) > 160 else (text or type(error).__name__)
