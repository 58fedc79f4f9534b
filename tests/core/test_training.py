"""Adversarial training (core.training): the robustness it buys, the trade-off, masks, cancel."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advexplorer.core.attacks import drive
from advexplorer.core.model import Classifier
from advexplorer.core.training import (
    EpochProgress, LabelledImages, TrainConfig, _inner_maximisation, _KLObjective, train_steps, trainable)
from advexplorer.errors import UserError

EPS = 0.05


def stripes_data(n: int, seed: int) -> LabelledImages:
    """Two classes with a robust feature (overall brightness ±0.10, jittered by 0.10 per image)
    and a non-robust one (a ±0.03 checkerboard, perfectly predictive): clean training leans on
    the checkerboard, which an ε = 0.05 attack erases; adversarial training cannot use it."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * labels - 1).float().view(-1, 1, 1, 1)
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2 * 2 - 1).float()
    images = (0.5 + 0.10 * sign + 0.10 * torch.randn(n, 1, 1, 1, generator=g) + 0.03 * sign * checker
              + 0.02 * torch.randn(n, 1, 8, 8, generator=g))
    return LabelledImages(images.clamp(0, 1), labels)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 2))


def run(classifier, train, held, config, stop=None):
    return drive(train_steps(classifier, train, held, config, stop=stop))


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return stripes_data(384, 1), stripes_data(200, 2)


@pytest.fixture(scope="module")
def clean_model(data):
    """The 'original': a clean-trained model (accurate, not robust)."""
    trained = trainable(Classifier(tiny_net(), [0.5], [0.25]))
    result = run(trained, *data, TrainConfig(method="clean", eps=EPS, epochs=6, lr=1e-2))
    for parameter in trained.model.parameters():
        parameter.requires_grad_(False)
    assert result.clean.value > 0.95
    return trained


def test_pgd_training_makes_a_twin_clearly_more_robust_than_the_original(clean_model, data):
    twin = trainable(clean_model)
    result = run(twin, *data, TrainConfig(method="pgd", eps=EPS, steps=5, epochs=4, lr=1e-2))
    assert result.original_robust.value < 0.5
    assert result.robust.clearly_above(result.original_robust), (result.robust, result.original_robust)
    # The trade-off: the original was more accurate on clean images.
    assert result.clean.value <= result.original_clean.value
    # The original itself was not touched.
    assert all(not p.requires_grad for p in clean_model.model.parameters())


@pytest.mark.parametrize("method", ["trades", "fast"])
def test_trades_and_fast_training_also_buy_robustness(clean_model, data, method):
    result = run(trainable(clean_model), *data, TrainConfig(method=method, eps=EPS, steps=3, epochs=3, lr=1e-2))
    assert result.robust.clearly_above(result.original_robust)


def test_progress_reports_batches_then_epochs_with_intervals(data):
    train, held = data
    classifier = trainable(Classifier(tiny_net(), [0.5], [0.25]))
    items = list(_collect(train_steps(classifier, train, held, TrainConfig(
        method="fast", eps=EPS, epochs=2, batch_size=128))))
    epochs = [item for item in items if isinstance(item, EpochProgress)]
    assert [e.epoch for e in epochs] == [1, 2]
    assert len(items) == 2 * 3 + 2  # 384 images / 128 per batch, plus one entry per epoch
    low, high = epochs[-1].robust.interval
    assert low <= epochs[-1].robust.value <= high and epochs[-1].robust.n == len(held)


def _collect(steps):
    yield from steps


def test_cancel_keeps_the_best_weights(data):
    train, held = data
    stop = threading.Event()  # Cancel, pressed as soon as epoch 1 is reported
    classifier = trainable(Classifier(tiny_net(), [0.5], [0.25]))
    result = drive(train_steps(classifier, train, held, TrainConfig(method="clean", eps=EPS, epochs=5, lr=1e-2),
                               stop=stop),
                   lambda item: stop.set() if isinstance(item, EpochProgress) else None)
    assert result.stopped == "cancelled" and len(result.history) == 1
    assert result.best_epoch in (0, 1)
    state = classifier.model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in result.best_state.items())


def test_background_only_training_attacks_only_the_allowed_region(data):
    train, _ = data
    classifier = trainable(Classifier(tiny_net(), [0.5], [0.25]))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    for method in ("pgd", "trades", "fast"):
        adversarial = _inner_maximisation(classifier, classifier.model, train.images[:16], train.labels[:16],
                                          mask, TrainConfig(method=method, eps=EPS, steps=3), seed=1)
        change = (adversarial - train.images[:16]).abs()
        assert float(change[..., 4:].max()) == 0.0
        assert float(change.max()) <= EPS + 1e-6 and float(change.max()) > 0


def test_trades_inner_objective_points_along_the_kl_gradient():
    classifier = Classifier(tiny_net(), [0.5], [0.25])
    x = torch.rand(6, 1, 8, 8)
    clean = torch.softmax(classifier(x), 1).detach()
    moved = (x + 0.02 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    kl = F.kl_div(F.log_softmax(classifier(moved), 1), clean, reduction="none").sum(1)
    kl_gradient = torch.autograd.grad(kl.sum(), moved)[0]
    objective = F.cross_entropy(_KLObjective(classifier, clean)(moved), torch.zeros(6, dtype=torch.long),
                                reduction="none")
    objective_gradient = torch.autograd.grad(objective.sum(), moved)[0]
    assert torch.equal(torch.sign(objective_gradient), torch.sign(kl_gradient))


def test_fast_training_is_one_fgsm_step_of_one_and_a_quarter_eps_from_a_random_start():
    attack = TrainConfig(method="fast", eps=8 / 255).inner_attack()
    assert (attack.steps, attack.random_start) == (1, True)
    assert attack.effective_step_size(8 / 255) == pytest.approx(1.25 * 8 / 255)


def test_bad_recipes_and_empty_held_out_are_one_clear_message(data):
    train, _ = data
    classifier = trainable(Classifier(tiny_net(), [0.5], [0.25]))
    empty = LabelledImages(train.images[:0], train.labels[:0])
    with pytest.raises(UserError, match="held-out split has 0 images"):
        next(train_steps(classifier, train, empty, TrainConfig()))
    with pytest.raises(UserError, match="out of range"):
        TrainConfig(eps=2.0).validate()
    with pytest.raises(UserError, match="Unknown training method"):
        TrainConfig(method="magic").validate()


def test_the_same_recipe_trains_the_same_twin_even_with_dropout(data):
    train, held = data[0].images[:96], data[1]
    subset = LabelledImages(train, data[0].labels[:96])

    def twin(global_seed: int):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
                            nn.Linear(512, 2))
        classifier = trainable(Classifier(net, [0.5], [0.25]))
        torch.manual_seed(global_seed)   # whatever the app's global generator held before training
        run(classifier, subset, held, TrainConfig(method="fast", eps=EPS, epochs=1, lr=1e-2, batch_size=32))
        return classifier.model.state_dict()

    first, second = twin(1), twin(2)
    assert all(torch.equal(first[key], second[key]) for key in first)
