"""Cohort screening engine: counts agree with an independent per-image computation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.screening import (CohortBatch, check_eps_list, eps_label, run_screen,
                                        screen_steps, summarize, wilson_interval)
from advexplorer.errors import UserError

EPS = (0.0, 1 / 255, 3 / 255, 6 / 255)


@pytest.fixture(scope="module")
def cohort(make_tiny_cnn):
    """A 14-image, 32 px cohort with per-image allowed masks (left part of varying width)."""
    # std 0.1 makes the random network sensitive enough that budgets of a few /255 flip
    # some images and not others.
    model = make_tiny_cnn(channels=3, classes=3, seed=0, mean=[0.5] * 3, std=[0.1] * 3)
    generator = torch.Generator().manual_seed(11)
    images = torch.rand(14, 3, 32, 32, generator=generator)
    masks = torch.zeros(14, 32, 32)
    for i in range(14):
        masks[i, :, : 6 + i] = 1.0
    labels = torch.randint(0, 3, (14,), generator=generator)
    ids = [f"img{i:02d}.png" for i in range(14)]
    return model, images, masks, labels, ids


def batches_of(images, masks, labels, ids, size):
    return [CohortBatch(ids=ids[b:b + size], images=images[b:b + size],
                        allowed_masks=None if masks is None else masks[b:b + size],
                        labels=None if labels is None else labels[b:b + size])
            for b in range(0, len(ids), size)]


def independent_flips(model, images, masks, config, eps, method=None):
    """Per image, per ε, one attack of its own; cumulative 'flipped' by hand."""
    table = []
    for i in range(images.shape[0]):
        flipped, row = False, []
        for value in eps:
            if value > 0 and not flipped:
                cfg = replace(config, eps=value, early_stop=True, method=method or config.method)
                result = run_attack(model, images[i:i + 1], None if masks is None else masks[i:i + 1],
                                    None, cfg)
                flipped = bool(result.flipped[0])
            row.append(flipped)
        table.append(row)
    return table


@pytest.mark.parametrize("method, steps", [("pgd", 5), ("fgsm", 1)])
def test_flip_counts_agree_with_per_image_attacks(cohort, method, steps):
    model, images, masks, labels, ids = cohort
    config = AttackConfig(method=method, steps=steps)
    result = run_screen(model, batches_of(images, masks, labels, ids, 5), EPS, config, batch_size=4)
    expected = independent_flips(model, images, masks, config, EPS)
    by_file = {row.file: row for row in result.rows}
    assert sorted(by_file) == ids
    assert [by_file[f].flipped for f in ids] == expected
    per_eps = result.summary()
    assert [e["flipped"] for e in per_eps] == [sum(r[j] for r in expected) for j in range(len(EPS))]
    # The cohort is not trivial: some images flip, some do not, and at different budgets.
    assert 0 < per_eps[-1]["flipped"] < len(ids)
    assert per_eps[0]["flipped"] == 0


def test_shortcut_skips_flipped_images_and_counts_them(cohort):
    model, images, masks, labels, ids = cohort
    result = run_screen(model, batches_of(images, masks, labels, ids, 14), EPS,
                        AttackConfig(steps=5), batch_size=8)
    for row in result.rows:
        if row.flip_eps is not None:
            j = EPS.index(row.flip_eps)
            assert row.attacked[j] and not any(row.attacked[j + 1:])
            assert all(row.flipped[j:]) and not any(row.flipped[:j])
            # The shortcut reuses the flipping adversarial: it is within every larger budget.
            assert all(row.linf[k] <= EPS[k] + 1e-6 for k in range(j, len(EPS)))
        else:
            assert row.attacked == [False, True, True, True]
    assert result.shortcut_pairs == sum(len(EPS) - 1 - EPS.index(r.flip_eps)
                                        for r in result.rows if r.flip_eps is not None)


def test_noise_baseline_agrees_with_per_image_noise_counts_when_batch_is_one(cohort):
    """Noise draws depend on the batch's random stream; with one image per call they match."""
    model, images, masks, labels, ids = cohort
    config = AttackConfig(steps=3)
    result = run_screen(model, batches_of(images[:6], masks[:6], None, ids[:6], 1), EPS, config,
                        noise_baseline=True, batch_size=1)
    assert all(row.noise_flipped is not None for row in result.rows)
    per_eps = result.summary(noise_baseline=True)
    assert all("noise_flip_rate" in e and len(e["noise_flip_rate_ci95"]) == 2 for e in per_eps)
    # Cumulative: never decreases with ε.
    counts = [e["noise_flipped"] for e in per_eps]
    assert counts == sorted(counts)


def test_robust_accuracy_counts_correct_and_unflipped(cohort):
    model, images, masks, labels, ids = cohort
    with torch.no_grad():
        clean = model(images).argmax(1)
    labels = labels.clone()
    labels[:7] = clean[:7]  # half the cohort correct by construction
    result = run_screen(model, batches_of(images, masks, labels, ids, 7), EPS, AttackConfig(steps=5))
    per_eps = result.summary()
    correct = [bool(clean[i] == labels[i]) for i in range(14)]
    assert per_eps[0]["robust_accuracy"] == pytest.approx(sum(correct) / 14)
    by_file = {row.file: row for row in result.rows}
    for j, entry in enumerate(per_eps):
        expected = sum(1 for i, f in enumerate(ids) if correct[i] and not by_file[f].flipped[j])
        assert entry["robust"] == expected
        low, high = entry["robust_accuracy_ci95"]
        assert low <= entry["robust_accuracy"] <= high


def test_done_ids_are_skipped_and_progress_is_cancellable(cohort):
    model, images, masks, labels, ids = cohort
    done = set(ids[:5])
    steps = screen_steps(model, batches_of(images, masks, labels, ids, 4), EPS, AttackConfig(steps=3),
                         done=done, batch_size=4, images_total=9)
    seen = []
    first = next(steps)
    seen.extend(r.file for r in first.rows_done)
    steps.close()  # cancel between yields: no error, nothing else runs
    assert not done & set(seen)
    result = run_screen(model, batches_of(images, masks, labels, ids, 4), EPS, AttackConfig(steps=3),
                        done=done, batch_size=4)
    assert sorted(r.file for r in result.rows) == ids[5:]


def test_progress_counts_match_the_result(cohort):
    model, images, masks, labels, ids = cohort
    snapshots = []
    result = run_screen(model, batches_of(images, masks, labels, ids, 5), EPS, AttackConfig(steps=3),
                        batch_size=5, images_total=14, on_progress=snapshots.append)
    last = snapshots[-1]
    assert last.images_done == last.images_total == 14
    assert list(last.flipped) == [e["flipped"] for e in result.summary()]
    assert sum(len(s.rows_done) for s in snapshots) == 14
    assert [s.images_done for s in snapshots] == sorted(s.images_done for s in snapshots)
    rate, low, high = last.flip_rate_intervals()[-1]
    assert low <= rate <= high


def test_min_eps_lies_between_grid_values(cohort):
    model, images, masks, labels, ids = cohort
    result = run_screen(model, batches_of(images, masks, labels, ids, 14), EPS, AttackConfig(steps=5),
                        min_eps=True)
    flipped = [r for r in result.rows if r.flip_eps is not None]
    assert flipped
    for row in flipped[:4]:
        j = EPS.index(row.flip_eps)
        below = EPS[j - 1]
        assert below < row.min_eps <= row.flip_eps
        # The bisection's answer flips the image when attacked alone at that budget.
        index = int(row.file[3:5])
        single = run_attack(model, images[index:index + 1], masks[index:index + 1], None,
                            AttackConfig(steps=5, eps=row.min_eps, early_stop=True))
        assert bool(single.flipped[0])


def test_verify_monotone_reports_checked_pairs(cohort):
    model, images, masks, labels, ids = cohort
    result = run_screen(model, batches_of(images, masks, labels, ids, 14), EPS, AttackConfig(steps=5),
                        verify_monotone=3)
    check = result.monotone_check
    eligible = [r for r in result.rows if r.flip_eps is not None and r.flip_eps < EPS[-1]]
    assert check.images_checked == min(3, len(eligible))
    assert check.pairs_checked >= check.images_checked
    assert len(check.disagreements) <= check.pairs_checked


def test_empty_allowed_region_counts_as_not_flipped(cohort):
    model, images, masks, labels, ids = cohort
    masks = masks[:3].clone()
    masks[1] = 0.0
    result = run_screen(model, batches_of(images[:3], masks, None, ids[:3], 3), EPS, AttackConfig(steps=3))
    row = {r.file: r for r in result.rows}[ids[1]]
    assert not any(row.flipped) and not any(row.attacked) and "empty allowed region" in row.note


def test_worst_cases_are_the_most_fragile(cohort):
    model, images, masks, labels, ids = cohort
    result = run_screen(model, batches_of(images, masks, labels, ids, 14), EPS, AttackConfig(steps=5),
                        worst_cases=3)
    flip_eps = sorted(r.flip_eps for r in result.rows if r.flip_eps is not None)
    assert [c.flip_eps for c in result.worst_cases] == flip_eps[:3]
    case = result.worst_cases[0]
    assert case.clean.dtype.name == "uint8" and case.clean.shape == (32, 32, 3)
    assert abs(case.perturbation).max() <= case.flip_eps + 1e-6
    # Zero outside the allowed mask.
    assert abs(case.perturbation[~case.allowed_mask]).max() == 0


def test_wilson_matches_formula_and_known_values():
    import scipy.stats

    z = 1.959963984540054
    for k, n in [(0, 10), (3, 10), (5, 10), (10, 10), (1, 1), (17, 250), (249, 250)]:
        low, high = wilson_interval(k, n)
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert low == pytest.approx(max(0.0, centre - half), abs=1e-12)
        assert high == pytest.approx(min(1.0, centre + half), abs=1e-12)
        # An independent implementation (SciPy's binomtest) agrees.
        reference = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-9)
    # Published values: 0/10 → [0, 0.2775]; 5/10 → [0.2366, 0.7634].
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_summarize_counts_cumulatively():
    from advexplorer.core.screening import ImageRow

    def row(name, flipped, label=None, clean=0):
        return ImageRow(file=name, label=label, clean_prediction=clean, clean_probability=0.9,
                        adversarial_prediction=[0, 0, 0], adversarial_probability=[0.9] * 3,
                        flipped=flipped, attacked=[False, True, True], linf=[0.0] * 3, l2=[0.0] * 3)

    rows = [row("a", [False, True, True], label=0), row("b", [False, False, True], label=1),
            row("c", [False, False, False], label=0)]
    per_eps = summarize(rows, (0.0, 0.01, 0.02))
    assert [e["flipped"] for e in per_eps] == [0, 1, 2]
    assert [e["robust"] for e in per_eps] == [2, 1, 1]   # b is wrong when clean
    assert per_eps[1]["flip_rate_ci95"] == list(wilson_interval(1, 3))


def test_eps_list_is_checked():
    assert check_eps_list([8 / 255, 0, 2 / 255, 2 / 255], "linf") == (0.0, 2 / 255, 8 / 255)
    with pytest.raises(UserError, match="nothing would be attacked"):
        check_eps_list([0], "linf")
    with pytest.raises(UserError, match="negative"):
        check_eps_list([-1 / 255, 0.1], "linf")
    assert eps_label(2 / 255) == "2/255" and eps_label(0.5 / 255) == "0.5/255" and eps_label(0) == "0"


# --------------------------------------------------------------------------------------
# Random streams: one per (seed, image, ε), so batching and resuming change nothing

NOISE_EPS = (0.0, 8 / 255, 24 / 255, 64 / 255)


def noise_table(result):
    return {row.file: (row.noise_flipped, row.flipped) for row in result.rows}


@pytest.mark.parametrize("method", ["pgd", "noise"])
def test_noise_draws_do_not_depend_on_the_batch_size(cohort, method):
    model, images, masks, labels, ids = cohort
    config = AttackConfig(method=method, steps=3, seed=5)
    one = run_screen(model, batches_of(images, masks, labels, ids, 1), NOISE_EPS, config,
                     noise_baseline=True, batch_size=1)
    seven = run_screen(model, batches_of(images, masks, labels, ids, 7), NOISE_EPS, config,
                       noise_baseline=True, batch_size=7)
    assert noise_table(one) == noise_table(seven)
    # Not trivial: noise flips some images and not others.
    flips = one.summary(noise_baseline=True)[-1]["noise_flipped"]
    assert 0 < flips < len(ids)


def test_resumed_screen_draws_the_same_noise(cohort):
    model, images, masks, labels, ids = cohort
    config = AttackConfig(steps=3, seed=5)
    whole = run_screen(model, batches_of(images, masks, labels, ids, 4), NOISE_EPS, config,
                       noise_baseline=True, batch_size=4)
    done = set(ids[:5])  # the first five finished before an interruption
    rest = run_screen(model, batches_of(images, masks, labels, ids, 4), NOISE_EPS, config,
                      noise_baseline=True, batch_size=4, done=done)
    expected = {f: v for f, v in noise_table(whole).items() if f not in done}
    assert noise_table(rest) == expected


def test_another_seed_draws_other_noise(cohort):
    model, images, masks, labels, ids = cohort
    tables = [noise_table(run_screen(model, batches_of(images, None, None, ids, 7), NOISE_EPS,
                                     AttackConfig(method="noise", steps=1, seed=seed),
                                     batch_size=7)) for seed in range(4)]
    assert any(table != tables[0] for table in tables[1:])


def test_random_starts_do_not_depend_on_the_batch_size(cohort):
    model, images, masks, labels, ids = cohort
    config = AttackConfig(method="pgd", steps=2, random_start=True, restarts=2, seed=3)
    tables = []
    for size in (1, 7):
        result = run_screen(model, batches_of(images, masks, labels, ids, size), NOISE_EPS, config,
                            batch_size=size)
        tables.append({row.file: (row.flipped, row.adversarial_prediction,
                                  [round(v, 4) for v in row.l2 + row.adversarial_probability])
                       for row in result.rows})
    assert tables[0] == tables[1]
