"""Which files in a folder are images, and which are masks saved beside them.

Kept free of torch and numpy: the GUI lists folders before the engine is loaded.
"""

from __future__ import annotations

from pathlib import Path

#: DICOM files taken as images when a folder is opened (read by :mod:`advexplorer.io.dicom`,
#: which also knows ``.dic``: left out here, it is as often a spell-checker's dictionary).
#: DICOM files named without a suffix (a PACS export's ``IM000123``) are not listed: telling
#: them apart means opening every such file of the folder.
DICOM_FOLDER_SUFFIXES = (".dcm", ".dicom")
#: File suffixes taken as images when a folder is opened. Every reader of a folder listed with
#: these (the app's image list, ``advexplorer screen``'s cohorts) reads DICOM through
#: :mod:`advexplorer.io.dicom`.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm",
                  *DICOM_FOLDER_SUFFIXES)
#: Companion mask files beside an image: ``scan.png`` → ``scan_protect.png`` etc.
COMPANION_SUFFIXES = {"protect": "_protect", "allowed": "_allowed", "diagnostic": "_diagnostic"}


def companion_masks(image_path: Path) -> dict[str, Path]:
    """The mask files saved beside an image under the companion names, if they exist."""
    found = {}
    for role, suffix in COMPANION_SUFFIXES.items():
        candidate = image_path.with_name(f"{image_path.stem}{suffix}.png")
        if candidate.is_file():
            found[role] = candidate
    return found


def is_companion_mask(path: Path, names: set[str]) -> bool:
    """Whether ``path`` is a companion mask of an image whose file name is in ``names``."""
    for suffix in COMPANION_SUFFIXES.values():
        if path.stem.endswith(suffix):
            base = path.stem[: -len(suffix)]
            if any(f"{base}{ext}" in names for ext in IMAGE_SUFFIXES):
                return True
    return False
