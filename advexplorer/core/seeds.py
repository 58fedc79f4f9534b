"""Seed variance: a screen with random starts is one draw; ``--seeds K`` makes it K.

Each seed screens the same images with the same settings; per ε the spread of robust
accuracy (and flip rate) over the seeds is given as min / median / max, and a
**bootstrap 95 % interval** that carries both sources of doubt: images are resampled with
replacement (the cohort is a sample) and, for each resampled image, the outcome of every
seed is kept, so the statistic is the mean over seeds of the resample's robust accuracy
(percentile interval, Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13).
The resampling uses a fixed generator, so the interval is itself reproducible.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from advexplorer.core.screen_results import ImageRow, eps_label

BOOTSTRAP_RESAMPLES = 2000


def _outcomes(rows_by_seed: Sequence[Sequence[ImageRow]], eps: Sequence[float]):
    """Per seed, arrays over the common images (sorted by id): flipped S×N×E, robust S×N×E."""
    common = sorted(set.intersection(*[{r.file for r in rows} for rows in rows_by_seed]))
    flipped = np.zeros((len(rows_by_seed), len(common), len(eps)), dtype=bool)
    robust = np.zeros_like(flipped)
    labelled = np.zeros(len(common), dtype=bool)
    for s, rows in enumerate(rows_by_seed):
        by_id = {r.file: r for r in rows}
        for i, file_id in enumerate(common):
            row = by_id[file_id]
            flipped[s, i] = row.flipped
            if row.label is not None:
                labelled[i] = True
                robust[s, i] = [bool(row.correct) and not f for f in row.flipped]
    return common, flipped, robust, labelled


def seed_spread(rows_by_seed: Sequence[Sequence[ImageRow]], eps: Sequence[float], seeds: Sequence[int],
                *, resamples: int = BOOTSTRAP_RESAMPLES, bootstrap_seed: int = 0) -> dict:
    """Spread over seeds of flip rate and robust accuracy per ε, with bootstrap intervals.

    ``rows_by_seed[s]`` are the rows of the screen with ``seeds[s]``; only images present in
    every seed's screen count (``n``). Robust accuracy is over the labelled ones.
    """
    common, flipped, robust, labelled = _outcomes(rows_by_seed, eps)
    n, n_labelled = len(common), int(labelled.sum())
    generator = np.random.default_rng(bootstrap_seed)
    picks = generator.integers(0, n, size=(resamples, n)) if n else np.zeros((0, 0), dtype=int)
    per_eps = []
    for j, value in enumerate(eps):
        entry = {"eps": float(value), "eps_label": eps_label(value), "n": n}
        rates = [float(flipped[s, :, j].mean()) if n else None for s in range(len(seeds))]
        entry["flip_rate"] = _spread(rates)
        entry["flip_rate"]["bootstrap_ci95"] = _bootstrap(flipped[:, :, j], None, picks)
        if n_labelled:
            accuracies = [float(robust[s, labelled, j].mean()) for s in range(len(seeds))]
            entry["n_labelled"] = n_labelled
            entry["robust_accuracy"] = _spread(accuracies)
            entry["robust_accuracy"]["bootstrap_ci95"] = _bootstrap(robust[:, :, j], labelled, picks)
        per_eps.append(entry)
    return {"seeds": list(seeds), "n": n, "resamples": resamples,
            "interval": "bootstrap 95 % percentile interval: images resampled with replacement, "
                        "the mean over seeds of each resample", "per_eps": per_eps}


def _spread(values: list[float | None]) -> dict:
    known = [v for v in values if v is not None]
    if not known:
        return {"per_seed": values, "min": None, "median": None, "max": None}
    return {"per_seed": values, "min": min(known), "median": statistics.median(known), "max": max(known)}


def _bootstrap(outcome: np.ndarray, mask: np.ndarray | None, picks: np.ndarray) -> list[float] | None:
    """Percentile interval of the mean over seeds of the resampled rate (S×N outcomes)."""
    if picks.size == 0:
        return None
    per_image = outcome.mean(axis=0)                    # N: the fraction of seeds
    if mask is None:
        statistic = per_image[picks].mean(axis=1)
    else:
        weights = mask[picks]
        counts = weights.sum(axis=1)
        sums = (per_image[picks] * weights).sum(axis=1)
        valid = counts > 0
        if not valid.any():
            return None
        statistic = sums[valid] / counts[valid]
    low, high = np.percentile(statistic, [2.5, 97.5])
    return [float(low), float(high)]


def seeds_are_random(config) -> bool:
    """Whether repeating the attack with another seed can change it (random start or draws)."""
    return bool(config.random_start) or config.method in ("noise", "square", "ensemble")
