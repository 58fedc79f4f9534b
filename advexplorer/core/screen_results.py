"""What a cohort screen reads and produces, and what its numbers mean.

The records (:class:`CohortBatch` in, :class:`ImageRow`, :class:`ScreenProgress` and
:class:`ScreenResult` out) and the statistics of a screen (:func:`wilson_interval`,
:func:`summarize`), apart from the engine that computes them
(:func:`advexplorer.core.screening.screen_steps`), so that the modules which only read or
count rows (groups, seeds, defences, the cohort reader, reports) do not import the engine.
Nothing here imports torch: the tensor and array types are annotations only.

Definitions (what the numbers in ``summary.json`` mean):

* An image is **flipped at ε** when the attack with budget ε finds an image, inside the
  allowed mask and the ε-ball, whose predicted class differs from the clean prediction.
  The attack moves away from the clean prediction (not from the label), and stops per
  image at the first iterate that flips (early stop), so "flipped" means "some iterate
  flipped it".
* Counts are **cumulative**: ``flipped`` at ε counts the images flipped at this ε *or a
  smaller one in the list*. That is the quantity reported, and it makes the **monotone
  shortcut** exact: an image flipped at ε_i is not attacked again at larger ε, it is
  counted as flipped there. Whether the attack itself is monotone in ε (an attack with a
  larger budget also flips it) is an empirical property, checked on request by
  re-attacking a sample (``verify_monotone``) and reported as disagreements.
* **Robust accuracy** at ε: the fraction of labelled images that are classified correctly
  when clean and are not flipped at ε (cumulatively). At ε = 0 it is the clean accuracy.
  Because a correctly classified image's clean prediction is its label, attacking away from
  the clean prediction is the usual untargeted attack on the label for every image that
  counts towards robust accuracy.
* An image whose allowed region is empty (e.g. a protect mask covering the whole tile)
  cannot be changed, so it counts as never flipped, with a note.

Interval: Wilson, *Probable inference, the law of succession, and statistical inference*,
JASA 22 (1927), https://doi.org/10.1080/01621459.1927.10502953 (see also Brown, Cai,
DasGupta, *Interval Estimation for a Binomial Proportion*, Statistical Science 2001,
https://doi.org/10.1214/ss/1009213286, on why Wilson rather than the Wald interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

Z95 = 1.959963984540054

#: The note of an image whose model output turned NaN/infinite: its row is written, flagged,
#: and left out of every rate (an undefined prediction is neither robust nor flipped).
NONFINITE_NOTE = "left out of the rates: the model returned non-finite logits"


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (95 % for the default z).

    Wilson (1927), https://doi.org/10.1080/01621459.1927.10502953:
    ``(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` with p = k/n. Unlike the Wald
    interval it stays inside [0, 1] and is not degenerate at k = 0 or k = n. With n = 0
    nothing is known and the interval is (0, 1).
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 ≤ k ≤ n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # Clamp rounding only; mathematically the bounds are inside [0, 1], and exactly 0 / 1
    # at k = 0 / k = n.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def eps_label(eps: float) -> str:
    """A short name for a budget: ``2/255`` when it is a whole number of 8-bit levels."""
    if eps == 0:
        return "0"
    levels = eps * 255.0
    if abs(levels - round(levels)) < 1e-6 and round(levels) >= 1:
        return f"{round(levels)}/255"
    if levels >= 0.01 and abs(levels * 100 - round(levels * 100)) < 1e-6:
        return f"{round(levels * 100) / 100:g}/255"  # 0.5/255, 2.25/255
    return f"{eps:.6g}"


@dataclass
class CohortBatch:
    """A batch of cohort images ready for the model (what :mod:`advexplorer.io.cohort` yields).

    ``allowed_masks`` is N×H×W {0,1} (1 = the attack may change the pixel) or None for
    whole-image attacks; ``labels`` holds the true class per image, −1 where unknown, or is
    None when the cohort has no labels. ``skipped`` lists (file id, reason) of images in
    this batch's share of the cohort that could not be read.
    """

    ids: list[str]
    images: torch.Tensor
    allowed_masks: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ImageRow:
    """The screen of one image, one entry per ε (in the order of the ε list).

    ``attacked[j]`` is False where the entry was not computed by an attack at ε_j: ε = 0
    (the clean image), entries filled by the monotone shortcut (the values of the smaller ε
    that flipped the image), and images with an empty allowed region.
    """

    file: str
    label: int | None
    clean_prediction: int
    clean_probability: float
    adversarial_prediction: list[int]
    adversarial_probability: list[float]
    flipped: list[bool]
    attacked: list[bool]
    linf: list[float]
    l2: list[float]
    flip_eps: float | None = None
    min_eps: float | None = None
    noise_flipped: list[bool] | None = None
    note: str = ""

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.clean_prediction

    @property
    def excluded(self) -> bool:
        """True for an image flagged because the model's logits turned non-finite on it."""
        return self.note.startswith(NONFINITE_NOTE)


@dataclass(frozen=True)
class ScreenProgress:
    """Where a screen stands; yielded after every engine call.

    Counts are over the images finished *in this run* (``rows_done`` holds the rows finished
    since the previous progress, so a caller can write them out and draw curves live).
    ``flipped[j]`` is the cumulative flip count at ``eps[j]``; ``robust[j]`` the number of
    labelled images correct and not flipped at ``eps[j]``.
    """

    phase: str                      # "screen" or "verify"
    images_done: int
    images_total: int | None
    eps: tuple[float, ...]
    n: int
    flipped: tuple[int, ...]
    n_labelled: int
    robust: tuple[int, ...]
    noise_flipped: tuple[int, ...] | None
    elapsed_s: float
    eta_s: float | None
    rows_done: tuple[ImageRow, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def flip_rate_intervals(self) -> list[tuple[float, float, float]]:
        """(rate, low, high) per ε for the images finished so far."""
        return [(k / self.n if self.n else float("nan"), *wilson_interval(k, self.n))
                for k in self.flipped]


@dataclass
class WorstCase:
    """An image that flipped at a small ε, with pictures for the report (uint8 H×W×C)."""

    file: str
    flip_eps: float
    clean_prediction: int
    adversarial_prediction: int
    adversarial_probability: float
    clean: np.ndarray
    adversarial: np.ndarray
    perturbation: np.ndarray        # float32 H×W×C, pixel units
    allowed_mask: np.ndarray | None


@dataclass
class MonotoneCheck:
    """Re-attacks of flipped images at the larger ε the shortcut skipped."""

    images_checked: int = 0
    pairs_checked: int = 0
    disagreements: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"images_checked": self.images_checked, "pairs_checked": self.pairs_checked,
                "disagreements": len(self.disagreements),
                "disagreement_rate": (len(self.disagreements) / self.pairs_checked
                                      if self.pairs_checked else None),
                "examples": self.disagreements[:20]}


@dataclass
class ScreenResult:
    """Everything a finished (or drained) screen produced in this run."""

    eps: tuple[float, ...]
    rows: list[ImageRow]
    skipped: list[tuple[str, str]]
    worst_cases: list[WorstCase]
    monotone_check: MonotoneCheck | None
    engine_calls: int
    attacked_pairs: int
    shortcut_pairs: int
    forward_passes: int
    backward_passes: int
    elapsed_s: float
    #: The batch sizes (image, ε pairs) the screen fell back to after running out of memory.
    batch_halvings: list[int] = field(default_factory=list)

    def summary(self, rows: Sequence[ImageRow] | None = None, *, noise_baseline: bool = False) -> list[dict]:
        """Per-ε summary (see :func:`summarize`) over ``rows`` (default: this run's rows)."""
        return summarize(self.rows if rows is None else rows, self.eps, noise_baseline=noise_baseline)


def summarize(rows: Sequence[ImageRow], eps: Sequence[float], *, noise_baseline: bool = False) -> list[dict]:
    """The ``per_eps`` list of ``summary.json``: counts, rates and Wilson 95 % intervals.

    Rows flagged for non-finite logits (:attr:`ImageRow.excluded`) are left out; each entry
    says how many (``excluded``).
    """
    excluded = sum(1 for r in rows if r.excluded)
    rows = [r for r in rows if not r.excluded]
    n = len(rows)
    labelled = [r for r in rows if r.label is not None]
    out = []
    for j, value in enumerate(eps):
        flipped = sum(1 for r in rows if r.flipped[j])
        entry = {"eps": float(value), "eps_label": eps_label(value), "n": n, "flipped": flipped,
                 "flip_rate": flipped / n if n else None,
                 "flip_rate_ci95": list(wilson_interval(flipped, n)),
                 "attacked": sum(1 for r in rows if r.attacked[j])}
        if excluded:
            entry["excluded"] = excluded
        if labelled:
            robust = sum(1 for r in labelled if r.correct and not r.flipped[j])
            entry.update({"n_labelled": len(labelled), "robust": robust,
                          "robust_accuracy": robust / len(labelled),
                          "robust_accuracy_ci95": list(wilson_interval(robust, len(labelled)))})
        if noise_baseline:
            noisy = sum(1 for r in rows if r.noise_flipped and r.noise_flipped[j])
            entry.update({"noise_flipped": noisy, "noise_flip_rate": noisy / n if n else None,
                          "noise_flip_rate_ci95": list(wilson_interval(noisy, n))})
        out.append(entry)
    return out
