"""Comparison of two attribution maps (numpy + scipy only).

Measures, each 1 for a map compared with itself:

* **Spearman rank correlation** of the pixel values — the similarity used by Adebayo et
  al., *Sanity Checks for Saliency Maps*, NeurIPS 2018, https://arxiv.org/abs/1810.03292.
* **Top-k intersection** — the share of the k most relevant pixels (k = 10 % by default)
  that are most relevant in both maps (Ghorbani, Abid, Zou, *Interpretation of Neural
  Networks is Fragile*, AAAI 2019, https://arxiv.org/abs/1710.10547).
* **SSIM** — Wang, Bovik, Sheikh, Simoncelli, *Image quality assessment: from error
  visibility to structural similarity*, IEEE TIP 2004, with the paper's 11-tap Gaussian
  window (σ = 1.5), K1 = 0.01, K2 = 0.03, on each map min–max scaled to [0,1] (so SSIM
  compares the maps' structure, not their overall strength), borders cropped as
  scikit-image does.

And two that are 0 for a map with itself: the **shift of the centre of mass** in pixels,
and — with a diagnostic region — the **relevance mass** inside it before and after (the
share of all attribution that falls in the region; Arras, Osman, Samek, *CLEVR-XAI*, 2022,
https://arxiv.org/abs/2003.07258).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

from advexplorer.errors import UserError

#: Verdict thresholds (justified in :func:`advexplorer.core.saliency.verdict_for`).
STAYED_SPEARMAN = 0.8
STAYED_TOPK = 0.7

_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # 11-tap window at σ = 1.5, as Wang et al. 2004
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


@dataclass(frozen=True)
class MapComparison:
    """How similar two maps are. ``relevance_mass_*`` are None without a diagnostic region
    (``has_region`` False) or for a map with no attribution at all, and so is
    ``center_of_mass_shift_px`` when either map is all zero."""

    spearman: float
    topk_intersection: float
    topk_fraction: float
    ssim: float
    center_of_mass_shift_px: float | None
    relevance_mass_before: float | None = None
    relevance_mass_after: float | None = None
    has_region: bool = False

    def to_json(self) -> dict:
        data = {
            "spearman": self.spearman,
            "topk_intersection": self.topk_intersection,
            "ssim": self.ssim,
            "center_of_mass_shift_px": self.center_of_mass_shift_px,
        }
        if self.has_region:
            data["relevance_mass_before"] = self.relevance_mass_before
            data["relevance_mass_after"] = self.relevance_mass_after
        return data


def _as_map(values, name: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values,
                       dtype=np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise UserError(f"The {name} must be an H×W map; got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise UserError(f"The {name} contains NaN or infinite values; the model's gradients are "
                        "not finite on this image.")
    return array


def as_diagnostic_mask(mask, size: tuple[int, int]) -> np.ndarray | None:
    """A diagnostic region as an H×W bool array, checked against the model's input ``size``."""
    if mask is None:
        return None
    array = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    height, width = size
    if array.shape != (height, width):
        shape = "×".join(str(s) for s in array.shape[::-1]) if array.ndim == 2 else str(array.shape)
        raise UserError(
            f"The diagnostic mask is {shape} pixels but the model's input is {width}×{height}; "
            "give a mask drawn on this image (it is resized with the image when loaded from a file).")
    region = array != 0
    if not region.any():
        raise UserError("The diagnostic mask is empty; paint the region that should matter "
                        "(non-zero pixels).")
    return region


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ of the pixel values; 1 for equal maps (also constant ones), 0 when exactly
    one map is constant (ρ is undefined there, and one flat map does not resemble the other)."""
    a, b = np.ravel(a), np.ravel(b)
    if np.array_equal(a, b):
        return 1.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.ptp(a) == np.ptp(b) == 0 else 0.0
    return float(stats.spearmanr(a, b).statistic)


def topk_intersection(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the ``fraction``·N most relevant pixels of ``a`` that are also in ``b``'s.

    Pixels with zero attribution are never "most relevant" (an all-zero map — Grad-CAM
    when no evidence for the class is left — has an empty top set and scores 0 against any
    other map); remaining ties are broken by pixel position. Equal maps score exactly 1.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"Top-k fraction {fraction:g} must be in (0, 1] (e.g. 0.1 for 10 % of pixels).")
    a, b = np.ravel(a), np.ravel(b)
    if np.array_equal(a, b):
        return 1.0
    k = max(1, int(math.ceil(fraction * a.size)))

    def top(values):
        order = np.argsort(-values, kind="stable")[:k]
        return order[values[order] > 0]

    return float(np.intersect1d(top(a), top(b), assume_unique=True).size / k)


def _unit_range(a: np.ndarray) -> np.ndarray:
    low, high = float(a.min()), float(a.max())
    return np.zeros_like(a) if high == low else (a - low) / (high - low)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window) of two maps, each scaled to [0,1].

    Agrees with ``skimage.metrics.structural_similarity(a, b, data_range=1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` on the scaled maps.
    """
    x, y = _unit_range(np.asarray(a, np.float64)), _unit_range(np.asarray(b, np.float64))
    if np.array_equal(x, y):
        return 1.0

    def blur(v):
        return ndimage.gaussian_filter(v, sigma=_SSIM_SIGMA, truncate=_SSIM_TRUNCATE, mode="reflect")

    c1, c2 = _SSIM_K1 ** 2, _SSIM_K2 ** 2  # data range 1
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
    cropped = index[pad:-pad, pad:-pad] if min(index.shape) > 2 * pad else index
    return float(cropped.mean())


def center_of_mass(a: np.ndarray) -> tuple[float, float] | None:
    """(row, column) of the attribution's centre of mass, None for an all-zero map."""
    total = float(a.sum())
    if total <= 0:
        return None
    return tuple(float(c) for c in ndimage.center_of_mass(a))


def relevance_mass(a: np.ndarray, region: np.ndarray) -> float | None:
    """Share of the total attribution inside ``region``; None for an all-zero map (no mass)."""
    total = float(a.sum())
    return float(a[region].sum() / total) if total > 0 else None


def compare_maps(before, after, *, topk: float = 0.1, diagnostic_mask=None) -> MapComparison:
    """Compare two non-negative H×W maps (numbers in :class:`MapComparison`'s docstring)."""
    a, b = _as_map(before, "map before the attack"), _as_map(after, "map after the attack")
    if a.shape != b.shape:
        raise UserError(f"The maps differ in size ({a.shape} vs {b.shape}); compare maps of one image.")
    if (a < 0).any() or (b < 0).any():
        # Centre of mass and relevance mass need a distribution; our maps are |·| or ReLU'd.
        raise UserError("Attribution maps to compare must be non-negative (absolute or ReLU'd).")
    region = as_diagnostic_mask(diagnostic_mask, a.shape)
    com_a, com_b = center_of_mass(a), center_of_mass(b)
    shift = None if com_a is None or com_b is None else float(math.dist(com_a, com_b))
    return MapComparison(
        spearman=spearman(a, b),
        topk_intersection=topk_intersection(a, b, topk),
        topk_fraction=float(topk),
        ssim=ssim(a, b),
        center_of_mass_shift_px=shift,
        relevance_mass_before=None if region is None else relevance_mass(a, region),
        relevance_mass_after=None if region is None else relevance_mass(b, region),
        has_region=region is not None,
    )
