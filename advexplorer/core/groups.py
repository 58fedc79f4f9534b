"""Robustness by subgroup: is the flip rate spread equally across sites, scanners, batches?

For every group column (``site``, ``scanner``, ``sex`` … from a manifest, or the class
folder of an ImageFolder cohort) and every ε, each group gets its flip rate and robust
accuracy with Wilson 95 % intervals, and is compared with **the rest of the cohort** (all
other groups of that column together):

* the gap in flip rate, group − rest, with **Newcombe's hybrid score interval** for a
  difference of two independent proportions (method 10 of Newcombe, *Interval estimation
  for the difference between independent proportions: comparison of eleven methods*,
  Statistics in Medicine 17 (1998) 873–890,
  https://doi.org/10.1002/(SICI)1097-0258(19980430)17:8<873::AID-SIM779>3.0.CO;2-I);
* a two-sided **Fisher exact test** of equal flip rates (``scipy.stats.fisher_exact``),
  exact at any group size, where a z-test is not;
* **Holm's step-down correction** over the groups of one column at one ε (Holm, *A simple
  sequentially rejective multiple test procedure*, Scand. J. Statist. 6 (1979) 65–70),
  and a flag for the groups whose gap stays significant at 5 % after it.

A group of one image is shown like any other (its interval is wide, which is the honest
answer); a column with a single group has no "rest" and so no comparison. Nothing here
divides by a zero count: rates of empty sets are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from advexplorer.core.screen_results import ImageRow, Z95, eps_label, wilson_interval

#: Family-wise error rate for the Holm-corrected flag.
ALPHA = 0.05


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p1 − p2 = k1/n1 − k2/n2.

    From the Wilson intervals (l1, u1) of p1 and (l2, u2) of p2:
    ``L = d − sqrt((p1 − l1)² + (u2 − p2)²)``, ``U = d + sqrt((u1 − p1)² + (p2 − l2)²)``
    with d = p1 − p2. Needs n1, n2 ≥ 1.
    """
    if n1 < 1 or n2 < 1:
        raise ValueError("both groups need at least one image")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def fisher_p_value(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact test of k1/n1 = k2/n2 (scipy)."""
    from scipy.stats import fisher_exact

    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided").pvalue)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given), capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def group_summary(rows: Sequence[ImageRow], groups: Mapping[str, Mapping[str, str]],
                  eps: Sequence[float]) -> dict:
    """Per-group flip rate and robust accuracy at every ε, and each group's gap to the rest.

    ``groups`` maps a file id to its group values (``{"site": "A", "scanner": "X"}``);
    images without a value in a column are left out of that column (counted as
    ``without_value``). Returns ``{"columns": [...], "alpha": 0.05, "test": …,
    "by_column": {column: {"groups": [...], "without_value": n}}}`` where each group holds
    ``name``, ``n``, ``n_labelled`` and ``per_eps`` entries with ``flip_rate`` (+ Wilson
    interval), ``robust_accuracy`` (+ interval, with labels), and, when the column has
    another group, ``gap`` (group − rest), ``gap_ci95`` (Newcombe), ``p_value`` (Fisher),
    ``p_holm`` and ``significant``.
    """
    columns: list[str] = []
    for values in groups.values():
        for column in values:
            if column not in columns:
                columns.append(column)
    by_column = {}
    for column in columns:
        members: dict[str, list[ImageRow]] = {}
        without = 0
        for row in rows:
            value = (groups.get(row.file) or {}).get(column)
            if value is None or value == "":
                without += 1
                continue
            members.setdefault(str(value), []).append(row)
        names = sorted(members)
        entries = [{"name": name, "n": len(members[name]),
                    "n_labelled": sum(1 for r in members[name] if r.label is not None),
                    "per_eps": []} for name in names]
        total = sum(len(m) for m in members.values())
        for j, value in enumerate(eps):
            flips = {name: sum(1 for r in members[name] if r.flipped[j]) for name in names}
            all_flips = sum(flips.values())
            p_values = []
            for entry in entries:
                name, n = entry["name"], entry["n"]
                k = flips[name]
                labelled = [r for r in members[name] if r.label is not None]
                robust = sum(1 for r in labelled if r.correct and not r.flipped[j])
                point = {"eps": float(value), "eps_label": eps_label(value), "n": n, "flipped": k,
                         "flip_rate": _rate(k, n), "flip_rate_ci95": list(wilson_interval(k, n))}
                if labelled:
                    point.update({"robust": robust, "robust_accuracy": robust / len(labelled),
                                  "robust_accuracy_ci95": list(wilson_interval(robust, len(labelled)))})
                rest_n, rest_k = total - n, all_flips - k
                if rest_n > 0:
                    point.update({"rest_n": rest_n, "rest_flipped": rest_k,
                                  "gap": k / n - rest_k / rest_n,
                                  "gap_ci95": list(newcombe_interval(k, n, rest_k, rest_n)),
                                  "p_value": fisher_p_value(k, n, rest_k, rest_n)})
                    p_values.append(point["p_value"])
                entry["per_eps"].append(point)
            if p_values:
                adjusted = iter(holm_adjust(p_values))
                for entry in entries:
                    point = entry["per_eps"][j]
                    if "p_value" in point:
                        point["p_holm"] = next(adjusted)
                        point["significant"] = point["p_holm"] < ALPHA
        by_column[column] = {"groups": entries, "without_value": without}
    return {"columns": columns, "alpha": ALPHA,
            "interval": "Wilson 95 % per group; Newcombe hybrid score 95 % for the gap group − rest",
            "test": "two-sided Fisher exact test, group vs rest of the cohort, Holm-corrected over "
                    "the groups of one column at one ε",
            "by_column": by_column}


def significant_gaps(summary: dict) -> list[str]:
    """One sentence per (column, group, ε) whose gap is significant after Holm correction."""
    lines = []
    for column, data in summary.get("by_column", {}).items():
        for entry in data["groups"]:
            for point in entry["per_eps"]:
                if point.get("significant"):
                    low, high = point["gap_ci95"]
                    lines.append(f"{column} = {entry['name']} at ε = {point['eps_label']}: flip rate "
                                 f"{100 * point['flip_rate']:.1f} % vs {100 * point['rest_flipped'] / point['rest_n']:.1f} % "
                                 f"for the rest (gap {100 * point['gap']:+.1f} points, 95 % CI "
                                 f"[{100 * low:+.1f}, {100 * high:+.1f}], Holm p = {point['p_holm']:.3g})")
    return lines
