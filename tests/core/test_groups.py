"""Per-group intervals and tests agree with statsmodels and scipy; small groups never divide by 0."""

from __future__ import annotations

import pytest
from scipy.stats import fisher_exact
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from advexplorer.core.groups import group_summary, holm_adjust, newcombe_interval
from advexplorer.core.screening import ImageRow, wilson_interval
from advexplorer.core.seeds import seed_spread

CASES = [(0, 1, 1, 1), (3, 10, 7, 12), (0, 25, 9, 30), (40, 40, 0, 5), (1, 2, 17, 90), (12, 50, 12, 50)]


@pytest.mark.parametrize("k1,n1,k2,n2", CASES)
def test_wilson_and_newcombe_match_statsmodels(k1, n1, k2, n2):
    assert wilson_interval(k1, n1) == pytest.approx(proportion_confint(k1, n1, method="wilson"), abs=1e-9)
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    assert newcombe_interval(k1, n1, k2, n2) == pytest.approx((low, high), abs=1e-9)


def test_holm_matches_statsmodels():
    p_values = [0.01, 0.04, 0.03, 0.5, 0.0001]
    expected = multipletests(p_values, method="holm")[1]
    assert holm_adjust(p_values) == pytest.approx(list(expected))


def row(name, flipped, label=0, clean=0):
    return ImageRow(file=name, label=label, clean_prediction=clean, clean_probability=0.9,
                    adversarial_prediction=[0, 0], adversarial_probability=[0.9, 0.9],
                    flipped=[False, flipped], attacked=[False, True], linf=[0, 0], l2=[0, 0])


def test_group_summary_counts_gaps_tests_and_a_group_of_one():
    rows = ([row(f"a{i}", i < 9) for i in range(10)] + [row(f"b{i}", i < 1) for i in range(10)]
            + [row("c0", True)])
    groups = {r.file: {"site": r.file[0].upper()} for r in rows}
    groups["a0"]["scanner"] = "X"  # only one image has a scanner: one group, no comparison
    summary = group_summary(rows, groups, [0.0, 8 / 255])
    site = {e["name"]: e for e in summary["by_column"]["site"]["groups"]}
    a = site["A"]["per_eps"][1]
    assert (a["n"], a["flipped"], a["rest_n"], a["rest_flipped"]) == (10, 9, 11, 2)
    assert a["gap_ci95"] == pytest.approx(list(confint_proportions_2indep(9, 10, 2, 11, method="newcomb")))
    assert a["p_value"] == pytest.approx(fisher_exact([[9, 1], [2, 9]]).pvalue)
    p = [site[name]["per_eps"][1]["p_value"] for name in "ABC"]
    assert [site[name]["per_eps"][1]["p_holm"] for name in "ABC"] == pytest.approx(
        list(multipletests(p, method="holm")[1]))
    assert a["significant"] and site["B"]["per_eps"][1]["significant"]
    c = site["C"]["per_eps"][1]
    assert c["n"] == 1 and c["flip_rate"] == 1.0 and c["flip_rate_ci95"][0] > 0.0
    assert not c["significant"]  # one image cannot show a significant gap
    scanner = summary["by_column"]["scanner"]
    assert scanner["without_value"] == 20 and "gap" not in scanner["groups"][0]["per_eps"][1]
    # ε = 0: nothing flipped anywhere, no division by zero, p = 1.
    assert site["A"]["per_eps"][0]["p_value"] == 1.0


def test_seed_spread_and_bootstrap_cover_the_per_seed_values():
    seeds_rows = []
    for seed in range(4):
        seeds_rows.append([row(f"i{i}", (i + seed) % 3 == 0) for i in range(30)])
    spread = seed_spread(seeds_rows, [0.0, 8 / 255], [0, 1, 2, 3], resamples=500)
    value = spread["per_eps"][1]["robust_accuracy"]
    per_seed = [sum(not r.flipped[1] for r in rows) / 30 for rows in seeds_rows]
    assert value["per_seed"] == pytest.approx(per_seed)
    assert (value["min"], value["max"]) == (min(per_seed), max(per_seed))
    low, high = value["bootstrap_ci95"]
    assert low <= sum(per_seed) / 4 <= high
    assert spread["per_eps"][0]["robust_accuracy"]["bootstrap_ci95"] == [1.0, 1.0]
