"""Square attack (Andriushchenko et al. 2020): one step per query batch, squares only in the
allowed mask, the query budget, no gradients, and agreement with torchattacks' Square."""

from __future__ import annotations

import pytest
import torch

from advexplorer.core.attacks import AttackConfig, attack_steps, run_attack
from advexplorer.core.attacks.square import square_fraction
from advexplorer.errors import UserError

torchattacks = pytest.importorskip("torchattacks")


def assert_step_invariants(adversarial, images, allowed, eps, norm):
    delta = adversarial - images
    if allowed is not None:
        assert torch.all(delta[(allowed == 0).expand_as(delta)] == 0)
    size = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert torch.all(size <= eps + 1e-6), size
    assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1


@pytest.mark.parametrize("norm,eps", [("linf", 16 / 255), ("l2", 1.0)])
@pytest.mark.parametrize("mask_kind", ["none", "shared", "per_image"])
@pytest.mark.parametrize("targeted", [None, 1])
def test_every_query_stays_in_mask_budget_and_range(norm, eps, mask_kind, targeted, make_tiny_cnn, make_images):
    model = make_tiny_cnn()
    images = make_images(3, 3, 12, 12, seed=5)
    allowed = None
    if mask_kind == "shared":
        allowed = torch.zeros(1, 1, 12, 12)
        allowed[..., 2:6, 4:11] = 1
    elif mask_kind == "per_image":
        allowed = torch.zeros(3, 1, 12, 12)
        allowed[0, :, :3] = 1
        allowed[1, :, :, 9:] = 1
        allowed[2, :, 5:8, 5:8] = 1
    config = AttackConfig(method="square", norm=norm, eps=eps, queries=40, seed=2, targeted=targeted)
    steps = attack_steps(model, images, allowed, None, config)
    indices = []
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            result = stop.value
            break
        indices.append(step.index)
        assert step.gradient is None  # a black-box attack never asks for one
        assert step.total_steps == 40
        assert_step_invariants(step.adversarial, images, allowed, eps, norm)
    assert indices == list(range(len(indices))) and len(indices) <= 41  # one step = one query batch
    assert result.backward_passes == 0
    assert int(result.steps_run.max()) <= 41
    assert_step_invariants(result.adversarial, images, allowed, eps, norm)
    if allowed is None:
        assert bool(((result.adversarial - images) != 0).any())


def test_a_query_budget_of_zero_is_refused():
    with pytest.raises(UserError, match="query budget of 0"):
        AttackConfig(method="square", queries=0).validate()


def test_the_square_shrinks_on_the_papers_schedule():
    assert square_fraction(0, 10000) == 0.8
    assert square_fraction(11, 10000) == 0.4
    assert square_fraction(9000, 10000) == 0.8 / 512
    assert square_fraction(50, 100) == square_fraction(5000, 10000)  # rescaled to the budget


def test_it_stops_asking_once_every_image_is_fooled(make_tiny_cnn, make_images):
    result = run_attack(make_tiny_cnn(), make_images(2, 3, 8, 8), None, None,
                        AttackConfig(method="square", eps=1.0, queries=500, seed=0))
    assert bool(result.success.all())
    assert result.forward_passes < 2 + 2 * 500


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_success_rate_within_torchattacks_seed_spread(norm, eps, make_tiny_cnn):
    """Over three seeds each, our mean success rate lies within torchattacks' seed-to-seed
    range widened by that range (a random search agrees in distribution, not bit for bit)."""
    model = make_tiny_cnn(channels=3, classes=10, seed=0).eval()  # tests/conftest.py
    images = torch.rand(100, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = model(images).argmax(1)
    theirs, ours = [], []
    for seed in range(3):
        attack = torchattacks.Square(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps,
                                     n_queries=200, seed=seed)
        with torch.no_grad():
            theirs.append(float((model(attack(images, labels)).argmax(1) != labels).float().mean()))
        ours.append(float(run_attack(model, images, None, labels, AttackConfig(
            method="square", norm=norm, eps=eps, queries=200, seed=seed)).success.float().mean()))
    spread = max(max(theirs) - min(theirs), 0.02)
    mean = sum(ours) / len(ours)
    assert min(theirs) - spread <= mean <= max(theirs) + spread, (ours, theirs)
    assert mean > 0.05


def test_square_fools_a_model_whose_gradients_are_zero(make_images):
    """Quantised inputs: zero gradients everywhere, yet the outputs move."""
    model = quantising_model()
    images = make_images(4, 3, 8, 8, seed=3)
    result = run_attack(model, images, None, None, AttackConfig(method="square", eps=0.3, queries=200, seed=0))
    assert bool(result.success.any())


def quantising_model(classes: int = 4):
    """A classifier behind a rounding input layer (8 levels): its input gradient is exactly zero."""
    from advexplorer.core.model import Classifier

    class Quantise(torch.nn.Module):
        def forward(self, x):
            return torch.round(x * 7) / 7

    torch.manual_seed(0)
    network = torch.nn.Sequential(Quantise(), torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, classes))
    return Classifier(network, [0.0] * 3, [1.0] * 3).eval()
