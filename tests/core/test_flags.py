"""Each flag for an unreliable evaluation is raised on a model built to trigger it, and
stays down on an ordinary one."""

from __future__ import annotations

import torch
from torch import nn

from advexplorer.config import FLAG_INFO, AttackConfig
from advexplorer.core.attacks import run_attack
from advexplorer.core.flags import (
    black_box_flag, eps_flag, loss_flag, noise_flag, probability_flag, run_flags, sweep_flags,
)
from advexplorer.core.model import Classifier


def classifier(network: nn.Module, channels: int = 3) -> Classifier:
    return Classifier(network.eval(), [0.0] * channels, [1.0] * channels)


class Quantise(nn.Module):
    """Rounds inputs to 8 levels: outputs change, input gradients are exactly zero."""

    def forward(self, x):
        return torch.round(x * 7) / 7


class StuckOnClassZero(nn.Module):
    """logits = [mean(x) + 5, mean(x)]: differentiable, yet no input can change the class,
    and the cross-entropy is the same everywhere."""

    def forward(self, x):
        mean = x.flatten(1).mean(dim=1, keepdim=True)
        return torch.cat([mean + 5, mean], dim=1)


class MisleadingGradient(nn.Module):
    """Predicts by the spread of the pixels (std above 0.1 → class 1), but its gradient
    (a straight-through term) only says to shift every pixel alike, which leaves the spread
    unchanged: random noise flips it, a gradient attack cannot."""

    def __init__(self, threshold: float = 0.1):
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        flat = x.flatten(1)
        mean = flat.mean(dim=1, keepdim=True)
        spread = flat.std(dim=1, keepdim=True).detach() + (mean - mean.detach())
        score = (spread - self.threshold) * 100
        return torch.cat([-score, score], dim=1)


def images(n=4, size=8, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def codes(flags):
    return {flag.code for flag in flags}


def test_an_ordinary_model_raises_no_flag(make_tiny_cnn, make_images):
    model = make_tiny_cnn()
    x = make_images(4, 3, 8, 8)
    config = AttackConfig(method="pgd", eps=16 / 255, steps=10, seed=0)
    result = run_attack(model, x, None, None, config)
    flags = run_flags(model, x, None, None, config, result)
    assert flags == [], [f.line() for f in flags]


def test_a_quantising_input_layer_raises_the_gradient_flag():
    torch.manual_seed(0)
    model = classifier(nn.Sequential(Quantise(), nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
    x = images()
    config = AttackConfig(method="pgd", eps=8 / 255, steps=5, seed=0)
    flags = run_flags(model, x, None, None, config, run_attack(model, x, None, None, config))
    assert "gradient-unusable" in codes(flags)
    flag = next(f for f in flags if f.code == "gradient-unusable")
    assert "zero" in flag.detail and "Square" in flag.suggestion


def test_a_model_nothing_can_flip_raises_unbounded_and_loss_flags():
    model = classifier(StuckOnClassZero())
    x = images()
    config = AttackConfig(method="pgd", eps=8 / 255, steps=5, seed=0)
    flags = run_flags(model, x, None, None, config, run_attack(model, x, None, None, config))
    assert {"unbounded-eps-fails", "loss-not-increasing"} <= codes(flags)
    assert "gradient-unusable" not in codes(flags)


def test_noise_beating_the_attack_is_flagged():
    assert noise_flag(torch.tensor([True, True, False]), torch.tensor([True, False, False])).code == \
        "noise-beats-attack"
    assert noise_flag(torch.tensor([True, False]), torch.tensor([True, False])) is None


def test_noise_beats_pgd_on_a_model_with_misleading_gradients():
    model = classifier(MisleadingGradient())
    x = 0.5 + 0.1 * (images(8) - 0.5)   # little spread: class 0
    config = AttackConfig(method="pgd", eps=0.2, steps=5, seed=0)
    result = run_attack(model, x, None, None, config)
    flags = run_flags(model, x, None, None, config, result)
    assert "noise-beats-attack" in codes(flags), [f.line() for f in flags]


def test_black_box_success_where_white_box_failed_is_flagged():
    flag = black_box_flag(torch.tensor([True, False, False]), torch.tensor([False, True, False]))
    assert flag.code == "black-box-beats-white-box" and "1 of 3" in flag.detail
    assert black_box_flag(torch.tensor([True]), torch.tensor([True])) is None


def test_the_ensemble_on_a_quantised_model_runs_only_square_and_says_so():
    torch.manual_seed(0)
    model = classifier(nn.Sequential(Quantise(), nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
    x = images()
    config = AttackConfig(method="ensemble", eps=0.5, steps=5, queries=200, seed=0)
    result = run_attack(model, x, None, None, config)
    assert any("only the black-box Square" in note for note in result.notes)
    assert set(result.succeeded_by) <= {"square", None} and "square" in result.succeeded_by
    assert "gradient-unusable" in codes(run_flags(model, x, None, None, config, result))


def test_the_ensemble_flags_square_succeeding_where_apgd_failed():
    model = classifier(MisleadingGradient(threshold=0.12))
    x = torch.full((4, 3, 8, 8), 0.5)  # APGD's random start spreads pixels by ≈ε/√3, Square's stripes by ε
    config = AttackConfig(method="ensemble", eps=0.15, steps=5, queries=100, seed=0)
    result = run_attack(model, x, None, None, config)
    assert "square" in result.succeeded_by and "apgd-ce" not in result.succeeded_by
    flags = run_flags(model, x, None, None, config, result)
    assert "black-box-beats-white-box" in codes(flags), [f.line() for f in flags]


def test_robust_accuracy_rising_with_eps_is_flagged():
    assert eps_flag([0.0, 2 / 255, 8 / 255], [1.0, 0.5, 0.7]).code == "not-decreasing-in-eps"
    assert sweep_flags([8 / 255, 2 / 255, 0.0], [0.1, 0.5, 1.0]) == []


def test_a_loss_that_never_rises_is_flagged_only_for_gradient_attacks(make_tiny_cnn):
    model = classifier(StuckOnClassZero())
    x = images()
    pgd = run_attack(model, x, None, None, AttackConfig(method="pgd", steps=4, seed=0))
    assert loss_flag(pgd).code == "loss-not-increasing"
    noise = run_attack(model, x, None, None, AttackConfig(method="noise", steps=4, seed=0))
    assert loss_flag(noise) is None


def test_probability_outputs_are_flagged():
    model = classifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3), nn.Softmax(dim=1)))
    assert probability_flag(model, ["m.pt outputs probabilities (every row is in [0, 1] and sums to 1 …)"]).code \
        == "probability-output"
    assert probability_flag(model, []) is None


def test_every_flag_has_a_title_and_a_suggestion():
    for info in FLAG_INFO.values():
        assert info.title and info.suggestion.endswith(".")
