"""Small slides, DICOM files and GeoJSON made locally for the slide/DICOM/annotation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tissue(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, slightly noisy RGB uint8 image (so every level and tile differs)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([0.6 + 0.3 * np.sin(x / 11), 0.5 + 0.3 * np.cos(y / 13),
                      0.5 + 0.2 * np.sin((x + y) / 17)], axis=2) + 0.05 * rng.standard_normal((height, width, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_pyramid(path: Path, base: np.ndarray, levels: int = 3, tile: int = 64,
                  mpp: float | None = 0.25) -> list[np.ndarray]:
    """A tiled pyramidal TIFF (each level half the previous one, by taking every 2nd pixel);
    returns the levels' arrays."""
    import tifffile

    pyramid = [base]
    for _ in range(levels - 1):
        pyramid.append(np.ascontiguousarray(pyramid[-1][::2, ::2]))
    options = {}
    if mpp:
        options = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(str(path)) as tiff:
        tiff.write(pyramid[0], tile=(tile, tile), photometric="rgb", **options)
        for level in pyramid[1:]:
            tiff.write(level, tile=(tile, tile), photometric="rgb", subfiletype=1)
    return pyramid
