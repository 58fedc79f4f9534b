"""Robustness numbers against the closed forms of a linear model (core/robustness.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advexplorer.core.model import Classifier
from advexplorer.core.robustness import (
    lipschitz_estimate,
    margin_and_gradient,
    minimal_eps,
    noise_flip_rate,
    robustness_summary,
)
from advexplorer.errors import UserError

SHAPE = (3, 8, 8)


def linear_problem(classes=2, margin=0.4, seed=0):
    """A linear classifier, a mid-range image (no clipping binds) and the margin set exactly."""
    generator = torch.Generator().manual_seed(seed)
    dim = SHAPE[0] * SHAPE[1] * SHAPE[2]
    layer = nn.Linear(dim, classes)
    with torch.no_grad():
        layer.weight.copy_(0.1 * torch.randn(classes, dim, generator=generator))
        layer.bias.zero_()
    image = 0.5 + 0.05 * torch.rand(1, *SHAPE, generator=generator)
    with torch.no_grad():
        z = layer(image.flatten(1))[0]
        # Set the biases so class 0 leads the runner-up by exactly `margin`.
        layer.bias.copy_(-z)
        layer.bias[0] += margin
    model = Classifier(nn.Sequential(nn.Flatten(), layer), [0.0] * 3, [1.0] * 3)
    return model, image, layer.weight.detach().double()


def test_margin_gradient_norm_lipschitz_and_radius_match_the_closed_forms():
    model, image, w = linear_problem()
    summary = robustness_summary(model, image, norm="linf", eps=4 / 255, noise_draws=8)
    difference = w[0] - w[1]
    assert summary.reference == 0 and summary.runner_up == 1
    assert summary.margin == pytest.approx(0.4, abs=1e-5)
    assert summary.gradient_norm == pytest.approx(float(difference.abs().sum()), rel=1e-5)
    lipschitz = float(w.abs().sum(dim=1).max())
    assert summary.lipschitz_estimate == pytest.approx(lipschitz, rel=1e-5)
    assert summary.radius_estimate == pytest.approx(0.4 / (2 * lipschitz), rel=1e-4)
    exact_minimal_eps = 0.4 / float(difference.abs().sum())
    assert summary.radius_estimate < exact_minimal_eps
    record = summary.to_json()
    for key in ("margin", "gradient_norm", "lipschitz_estimate", "radius_estimate", "noise_flip_rate"):
        assert isinstance(record[key], float)


def test_l2_numbers_use_the_l2_dual_norm():
    model, image, w = linear_problem()
    base = margin_and_gradient(model, image, norm="l2")
    assert base["gradient_norm"] == pytest.approx(float((w[0] - w[1]).norm()), rel=1e-5)
    lipschitz = lipschitz_estimate(model, image, norm="l2", radius=0.5, samples=4)
    assert lipschitz["lipschitz_estimate"] == pytest.approx(float(w.norm(dim=1).max()), rel=1e-5)


def test_gradient_norms_count_only_the_allowed_pixels():
    model, image, w = linear_problem(classes=3)
    allowed = torch.zeros(8, 8)
    allowed[2:6, 1:5] = 1
    flat_mask = allowed.expand(3, 8, 8).flatten().double()
    base = margin_and_gradient(model, image, allowed_mask=allowed, norm="linf")
    expected = ((w[base["reference"]] - w[base["runner_up"]]) * flat_mask).abs().sum()
    assert base["gradient_norm"] == pytest.approx(float(expected), rel=1e-5)
    lipschitz = lipschitz_estimate(model, image, allowed_mask=allowed, samples=3)
    assert lipschitz["lipschitz_estimate"] == pytest.approx(
        float((w * flat_mask).abs().sum(dim=1).max()), rel=1e-5)


def test_lipschitz_estimate_bounds_the_margin_gradient_of_a_nonlinear_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    model = Classifier(net, [0.5] * 3, [0.5] * 3)
    image = torch.rand(1, *SHAPE)
    summary = robustness_summary(model, image, eps=0.05, samples=6, noise_draws=4, seed=3)
    # x itself is one of the sampled points, and the margin is a difference of two logits.
    assert summary.gradient_norm <= 2 * summary.lipschitz_estimate * (1 + 1e-6)
    again = robustness_summary(model, image, eps=0.05, samples=6, noise_draws=4, seed=3)
    assert again.lipschitz_estimate == summary.lipschitz_estimate  # seeded
    assert summary.cost["backward_passes"] == 1 + 7 * 5  # margin + (6 points + x) × 5 classes


def test_noise_never_flips_below_the_minimal_eps_and_moves_only_allowed_pixels():
    model, image, w = linear_problem()
    exact = 0.4 / float((w[0] - w[1]).abs().sum())
    assert noise_flip_rate(model, image, eps=0.9 * exact, draws=24)["noise_flip_rate"] == 0.0
    assert noise_flip_rate(model, image, eps=0.4, draws=24)["noise_flip_rate"] > 0.0
    # The model ignores the right half of the image; noise allowed only there cannot flip it.
    with torch.no_grad():
        model.model[1].weight.view(2, 3, 8, 8)[..., 4:] = 0
    right_half = torch.zeros(8, 8)
    right_half[:, 4:] = 1
    assert noise_flip_rate(model, image, allowed_mask=right_half, eps=0.4,
                           draws=24)["noise_flip_rate"] == 0.0


@pytest.mark.parametrize("norm,dual", [("linf", 1), ("l2", 2)])
def test_minimal_eps_search_lands_within_one_percent_of_the_exact_value(norm, dual):
    model, image, w = linear_problem()
    exact = 0.4 / float((w[0] - w[1]).norm(p=dual))
    found = minimal_eps(model, image, norm=norm, tolerance=0.01, steps=20)
    assert found.found
    assert found.eps == pytest.approx(exact, rel=0.01)
    lo, hi = found.bracket
    assert lo <= exact <= hi and (hi - lo) <= 0.01 * hi
    assert bool(found.result.success[0]) and int(found.result.adversarial_prediction[0]) == 1
    delta = (found.result.adversarial - image).flatten()
    size = delta.abs().max() if norm == "linf" else delta.norm()
    assert float(size) <= hi * (1 + 1e-5)
    # The cost is reported, and it is what the rounds consumed (no hidden re-runs).
    assert found.cost["backward_passes"] > 0 and found.cost["forward_passes"] >= found.cost["backward_passes"]
    assert found.cost["images_attacked"] == len(found.evaluations) == 4 * found.rounds
    assert found.to_json()["eps"] == found.eps
    # The result reads as a single-image attack: its trajectory ends at the flip.
    predictions = found.result.probability_trajectory[:, 0].argmax(dim=1)
    assert predictions.shape[0] == found.result.forward_passes
    assert int(predictions[-1]) == 1 and bool((predictions[:-1] == 0).all())


def test_minimal_eps_attacks_only_the_allowed_region():
    model, image, w = linear_problem()
    allowed = torch.zeros(8, 8)
    allowed[:, :4] = 1
    flat_mask = allowed.expand(3, 8, 8).flatten().double()
    exact = 0.4 / float(((w[0] - w[1]) * flat_mask).abs().sum())
    found = minimal_eps(model, image, allowed_mask=allowed, norm="linf", eps_max=0.25)
    assert found.eps == pytest.approx(exact, rel=0.01)
    outside = (found.result.adversarial - image)[..., :, 4:]
    assert float(outside.abs().max()) == 0.0


def test_minimal_eps_reports_not_found_when_eps_max_is_too_small():
    model, image, w = linear_problem()
    exact = 0.4 / float((w[0] - w[1]).abs().sum())
    found = minimal_eps(model, image, eps_max=exact / 2, grid=3)
    assert not found.found and found.eps is None
    assert not bool(found.result.success[0]) and float(found.result.eps[0]) == pytest.approx(exact / 2)
    assert found.bracket == (pytest.approx(exact / 2), None)
    assert found.to_json()["found"] is False


def test_bad_inputs_are_user_errors():
    model, image, _ = linear_problem()
    with pytest.raises(UserError, match="linf or l2"):
        robustness_summary(model, image, norm="l1", eps=0.1)
    with pytest.raises(UserError, match="Label 7 is out of range"):
        margin_and_gradient(model, image, label=7)
    with pytest.raises(UserError, match="allowed region of the mask is empty"):
        minimal_eps(model, image, allowed_mask=torch.zeros(8, 8))
    with pytest.raises(UserError, match="gradient attack"):
        minimal_eps(model, image, method="noise")


def test_one_search_bisects_for_the_screen_and_brackets_for_min_eps():
    """EpsBracket is the one minimal-ε search: with grid=1 it is bisection (the screen's
    --min-eps), with a grid it proposes the ladder and then equal splits (min-eps)."""
    from advexplorer.core.robustness import EpsBracket

    true_eps = 0.3
    search = EpsBracket(low=0.25, high=0.5, grid=1, max_rounds=6)
    tried = []
    while budgets := search.next_budgets():
        tried += budgets
        search.record(budgets, [b >= true_eps for b in budgets])
    assert len(tried) == 6 and tried[0] == pytest.approx(0.375)
    assert search.low < true_eps <= search.high and search.high - search.low == pytest.approx(0.25 / 64)

    ladder = EpsBracket(high_limit=1.0, grid=4, tolerance=0.01)
    assert ladder.next_budgets() == [0.125, 0.25, 0.5, 1.0]
    assert ladder.record([0.125, 0.25, 0.5, 1.0], [False, False, True, True]) == 2
    assert (ladder.low, ladder.high) == (0.25, 0.5)
    assert ladder.next_budgets() == pytest.approx([0.3, 0.35, 0.4, 0.45])

    nothing = EpsBracket(high_limit=0.1, grid=2)
    assert nothing.record(nothing.next_budgets(), [False, False]) is None
    assert not nothing.found and nothing.done and nothing.next_budgets() == []
