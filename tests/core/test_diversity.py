"""Input diversity (DI-FGSM, Xie et al. 2019) in the engine: agreement with torchattacks'
DIFGSM, the invariants on every step, and that the transform is really applied.

torchattacks draws its transform from the global RNG; with ``diversity_prob=0`` the
transform is never used, so the two must agree exactly. For p > 0 we hand torchattacks the
engine's own seeded transform (same draws in the same order: one per gradient step), so
the rest of the algorithm — the gradient through the resize-and-pad, momentum, projection —
is compared exactly too; and a separate test checks that the transforms torchattacks draws
are the ones our transform can produce.
"""

from __future__ import annotations

import json

import pytest
import torch
import torchattacks

from advexplorer.cli import main
from advexplorer.config import AttackConfig
from advexplorer.core.attacks import attack_steps, drive, run_attack
from advexplorer.core.attacks.diversity import SEED_OFFSET, InputDiversity, resize_and_pad
from advexplorer.errors import UserError

N, C, H, W = 6, 3, 16, 16


@pytest.fixture
def model(make_tiny_cnn):
    return make_tiny_cnn(channels=C, classes=4, seed=1, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@pytest.fixture
def batch(make_images):
    return make_images(N, C, H, W, seed=5)


LABELS = torch.tensor([0, 1, 2, 3, 1, 2])


@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_without_diversity_it_is_torchattacks_difgsm(model, batch, decay):
    expected = torchattacks.DIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=decay,
                                   diversity_prob=0.0)(batch, LABELS)
    config = AttackConfig(method="mifgsm", eps=8 / 255, step_size=2 / 255, steps=10, decay=decay, diversity=0.0)
    result = run_attack(model, batch, None, LABELS, config)
    assert float((expected - batch).abs().max()) > 0
    assert torch.equal(result.adversarial, expected)


@pytest.mark.parametrize("probability", [0.5, 1.0])
def test_with_diversity_it_is_difgsm_given_the_same_draws(model, batch, probability):
    seed = 7
    attack = torchattacks.DIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=1.0,
                                 diversity_prob=probability)
    attack.input_diversity = InputDiversity(probability, seed)  # the engine's draws, in its order
    expected = attack(batch, LABELS)
    config = AttackConfig(method="mifgsm", eps=8 / 255, step_size=2 / 255, steps=10, decay=1.0,
                          diversity=probability, seed=seed)
    result = run_attack(model, batch, None, LABELS, config)
    assert attack.input_diversity.applied > 0
    assert torch.allclose(result.adversarial, expected, atol=1e-7, rtol=0)
    # ... and the transform changes the attack: without it the result differs.
    plain = run_attack(model, batch, None, LABELS, AttackConfig(method="mifgsm", eps=8 / 255, step_size=2 / 255,
                                                                steps=10, seed=seed))
    assert not torch.equal(result.adversarial, plain.adversarial)


def test_torchattacks_draws_only_transforms_ours_can_make(batch):
    attack = torchattacks.DIFGSM(lambda x: x, diversity_prob=1.0)
    x = batch[:2]
    for seed in range(6):
        torch.manual_seed(seed)
        theirs = attack.input_diversity(x)
        ours = [resize_and_pad(x, size, size, top, left)
                for size in range(int(W * 0.9), W) for top in range(W - size) for left in range(W - size)]
        assert any(torch.equal(theirs, candidate) for candidate in ours)


@pytest.mark.parametrize("method,norm", [("pgd", "linf"), ("pgd", "l2"), ("mifgsm", "linf"), ("fgsm", "linf")])
def test_every_step_stays_in_the_ball_inside_the_mask_and_in_range(model, batch, method, norm):
    mask = torch.zeros(H, W)
    mask[3:12, 2:9] = 1
    eps = 8 / 255 if norm == "linf" else 0.5
    config = AttackConfig(method=method, norm=norm, eps=eps, steps=8, random_start=method != "fgsm",
                          diversity=0.7, seed=3)
    steps = attack_steps(model, batch, mask, LABELS, config)
    seen = 0
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            result = stop.value
            break
        seen += 1
        delta = step.adversarial - step.images
        assert torch.all(delta[:, :, mask == 0] == 0), "perturbation outside the allowed mask"
        size = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
        assert torch.all(size <= eps + 1e-6)
        assert float(step.adversarial.min()) >= 0 and float(step.adversarial.max()) <= 1
    assert seen == config.effective_steps + 1
    assert float(result.perturbation.abs().max()) > 0


class SpyModel(torch.nn.Module):
    """Records every batch the attack shows the model (images are kept in [0.2, 0.8], so a
    zero row or column at an edge can only be the transform's padding)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def padded(x):
    edges = [x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]]
    return any(bool((edge == 0).all()) for edge in edges)


def test_the_transform_is_applied_with_the_probability_asked(model, make_images):
    images = make_images(2, C, H, W, seed=1, low=0.2, high=0.8)
    counts = {}
    for probability in (0.0, 0.5, 1.0):
        spy = SpyModel(model)
        config = AttackConfig(method="pgd", eps=4 / 255, steps=40, diversity=probability, seed=11)
        result = run_attack(spy, images, None, None, config)
        counts[probability] = sum(padded(x) for x in spy.seen)
        # The scores the user sees are the model's on the image itself, never the padded view.
        with torch.no_grad():
            assert torch.allclose(result.adversarial_probabilities, torch.softmax(model(result.adversarial), 1))
    assert counts[0.0] == 0
    assert counts[1.0] == 40                        # every gradient step, not the final scoring
    assert 8 <= counts[0.5] <= 32                   # about half (seeded, so always the same count)


def test_the_seed_repeats_the_run_and_keeps_the_random_start(model, batch):
    config = AttackConfig(method="pgd", eps=8 / 255, steps=5, random_start=True, diversity=0.5, seed=4)
    first, second = run_attack(model, batch, None, LABELS, config), run_attack(model, batch, None, LABELS, config)
    assert torch.equal(first.adversarial, second.adversarial)
    # Diversity draws from its own stream: the random start is the same with or without it.
    with_diversity = next(attack_steps(model, batch, None, LABELS, config))
    without = next(attack_steps(model, batch, None, LABELS, AttackConfig(method="pgd", eps=8 / 255, steps=5,
                                                                      random_start=True, seed=4)))
    assert torch.equal(with_diversity.adversarial, without.adversarial)
    assert SEED_OFFSET  # the stream is the run's seed plus this offset


def test_diversity_outside_its_methods_or_range_is_one_line():
    with pytest.raises(UserError, match="Input diversity works with the gradient attacks FGSM, PGD and MI-FGSM"):
        AttackConfig(method="square", diversity=0.5).validate()
    with pytest.raises(UserError, match="probability"):
        AttackConfig(method="pgd", diversity=1.5).validate()
    assert AttackConfig(method="square", diversity=0).validate()
    assert "input diversity p=0.5" in AttackConfig(method="mifgsm", diversity=0.5).describe()


def test_the_cli_records_diversity_and_refuses_a_bad_value(tmp_path, capsys):
    code = main(["attack", "--attack", "mifgsm", "--steps", "3", "--diversity", "0.5", "--seed", "1",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert "input diversity p=0.5" in out
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["attack"]["diversity"] == 0.5
    assert main(["reproduce", str(tmp_path / "run")]) == 0  # with the same diversity draws
    assert main(["attack", "--diversity", "2", "--out", str(tmp_path / "bad")]) == 2
    assert "--diversity: 2 is not a probability from 0 to 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
