"""Mask tools for histology: select by stain (colour deconvolution) and a magic wand.

Select by stain
---------------
Colour deconvolution (Ruifrok & Johnston, "Quantification of histochemical staining by color
deconvolution", Anal. Quant. Cytol. Histol. 23(4), 2001): brightfield light through a stain
is absorbed exponentially, so in optical density ``OD = −log10(I)`` each stain adds a fixed
RGB direction. Inverting the matrix of the stains' directions gives, per pixel, how much of
each stain is there. Pixels where the chosen stain's OD is above a threshold become the mask
— "all nuclei" is hematoxylin above ~0.05–0.15, "all DAB-positive cells" DAB above ~0.1–0.3.
The stain vectors are Ruifrok & Johnston's H, E, DAB (the ones scikit-image's ``rgb2hed``
uses), so the result agrees with it (scaled: scikit-image divides by ln(10⁻⁶)).

Magic wand
----------
The connected pixels (4-neighbours) around a clicked point whose colour differs from the
clicked pixel's by at most ``tolerance`` in every channel (pixel units, like ε).

Pure numpy/scipy, no Qt: the GUI calls these for its live preview.
"""

from __future__ import annotations

import numpy as np

from advexplorer.errors import UserError

#: Ruifrok & Johnston's stain OD vectors (rows: hematoxylin, eosin, DAB), as in scikit-image.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29],
                         [0.07, 0.99, 0.11],
                         [0.27, 0.57, 0.78]], dtype=np.float64)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
STAINS = ("hematoxylin", "eosin", "dab")
STAIN_LABELS = {"hematoxylin": "Hematoxylin (nuclei)", "eosin": "Eosin (cytoplasm, stroma)",
                "dab": "DAB (brown IHC stain)"}
#: Intensities are clipped here before the logarithm: a black pixel is not infinitely dense.
_DARKEST = 1e-6


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserError("Select by stain needs a colour (RGB) image; this one has "
                        f"{1 if image.ndim == 2 else image.shape[2]} channel(s).")
    return image


def stain_density(image: np.ndarray) -> np.ndarray:
    """H×W×3 optical density of hematoxylin, eosin and DAB (clipped at 0) for an RGB image in [0, 1]."""
    optical_density = -np.log10(np.maximum(_rgb(image), _DARKEST))
    return np.maximum(optical_density @ HED_FROM_RGB, 0.0)


#: Rows deconvolved at a time by :func:`stain_channel`: a large image never needs its H×W×3
#: float64 optical densities at once (1.2 GB for 50 Mpx), only a band's.
BAND_ROWS = 256


def stain_channel(image: np.ndarray, stain: str = "hematoxylin") -> np.ndarray:
    """H×W float32 optical density of one stain, computed band by band (memory of one band).

    ``image`` is RGB in [0, 1] (float) or uint8 (divided by 255). The values are
    :func:`stain_density`'s for that stain, rounded to float32.
    """
    if stain not in STAINS:
        raise UserError(f"Unknown stain {stain!r}; choose one of {', '.join(STAINS)}.")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        _rgb(image)  # raises the one-line message
    column = STAINS.index(stain)
    density = np.empty(image.shape[:2], np.float32)
    for top in range(0, image.shape[0], BAND_ROWS):
        band = image[top:top + BAND_ROWS]
        if band.dtype == np.uint8:  # the same values as the float32 image the display reader gives
            band = band.astype(np.float32) / np.float32(255)
        density[top:top + BAND_ROWS] = stain_density(band)[:, :, column]
    return density


def select_by_stain(image: np.ndarray, stain: str = "hematoxylin", threshold: float = 0.1) -> np.ndarray:
    """H×W bool: pixels whose optical density of ``stain`` is above ``threshold``."""
    if stain not in STAINS:
        raise UserError(f"Unknown stain {stain!r}; choose one of {', '.join(STAINS)}.")
    if not np.isfinite(threshold) or threshold < 0:
        raise UserError(f"The optical-density threshold {threshold} must be a number ≥ 0 (e.g. 0.1).")
    return stain_channel(image, stain) > np.float32(threshold)


def magic_wand(image: np.ndarray, seed: tuple[int, int], tolerance: float = 0.1) -> np.ndarray:
    """H×W bool: the 4-connected region around ``seed`` (row, column) of colours within
    ``tolerance`` (every channel, [0, 1] units) of the seed pixel's colour. ``image`` is
    float in [0, 1] or uint8 (0–255, compared as value/255)."""
    from scipy import ndimage

    image = np.asarray(image)
    # An 8-bit image is compared in its own integers (tolerance × 255): no float copy of a
    # large image per click.
    if image.dtype == np.uint8:
        image, limit = image.astype(np.int16), (tolerance + 1e-7) * 255
    else:
        image, limit = np.asarray(image, dtype=np.float32), tolerance + 1e-7
    if image.ndim == 2:
        image = image[:, :, None]
    row, column = int(seed[0]), int(seed[1])
    height, width = image.shape[:2]
    if not (0 <= row < height and 0 <= column < width):
        raise UserError(f"The magic wand's point ({column}, {row}) is outside the {width}×{height} image.")
    similar = (np.abs(image - image[row, column]) <= limit).all(axis=2)
    labels, _ = ndimage.label(similar)  # 4-connectivity by default
    return labels == labels[row, column]
