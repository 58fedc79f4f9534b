"""APGD-CE / APGD-DLR (Croce & Hein 2020): invariants, the paper's schedule, binary heads,
and agreement with torchattacks' APGD / APGDT image for image."""

from __future__ import annotations

import pytest
import torch

from advexplorer.core.attacks import AttackConfig, attack_steps, drive, run_attack
from advexplorer.core.attacks.apgd import apgd_steps, checkpoint_schedule

torchattacks = pytest.importorskip("torchattacks")


def assert_step_invariants(step, images, allowed, eps, norm):
    """Zero outside the mask, norm ≤ ε (+1e-6), image in [0,1]."""
    delta = step.adversarial - images
    if allowed is not None:
        assert torch.all(delta[(allowed == 0).expand_as(delta)] == 0)
    size = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert torch.all(size <= eps + 1e-6), size
    assert float(step.adversarial.min()) >= 0 and float(step.adversarial.max()) <= 1


@pytest.mark.parametrize("method", ["apgd-ce", "apgd-dlr"])
@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("targeted", [None, 2])
def test_every_step_stays_in_mask_budget_and_range(method, norm, eps, targeted, make_tiny_cnn, make_images):
    model = make_tiny_cnn(classes=5)
    images = make_images(3, 3, 12, 12, seed=4)
    allowed = torch.zeros(1, 1, 12, 12)
    allowed[..., 3:9, 2:7] = 1
    config = AttackConfig(method=method, norm=norm, eps=eps, steps=12, seed=1, restarts=2, targeted=targeted)
    steps = attack_steps(model, images, allowed, None, config)
    count = 0
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            result = stop.value
            break
        count += 1
        assert_step_invariants(step, images, allowed, eps, norm)
        assert step.gradient is not None
        assert torch.all(step.gradient[(allowed == 0).expand_as(step.gradient)] == 0)
    assert count >= 13  # the start and one evaluation per step, per restart
    assert_step_invariants(result, images, allowed, eps, norm)
    assert result.config.method == method


def test_per_image_masks_and_budgets_are_respected(make_tiny_cnn, make_images):
    model = make_tiny_cnn()
    images = make_images(2, 3, 10, 10, seed=2)
    allowed = torch.zeros(2, 1, 10, 10)
    allowed[0, :, :5] = 1
    allowed[1, :, :, 6:] = 1
    eps = torch.tensor([4 / 255, 12 / 255])
    result = run_attack(model, images, allowed, None, AttackConfig(method="apgd-ce", steps=8, seed=0), eps=eps,
                        on_step=lambda step: assert_step_invariants(step, images, allowed, eps, "linf"))
    assert_step_invariants(result, images, allowed, eps, "linf")


def test_checkpoints_follow_the_paper():
    """p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) of the steps."""
    assert checkpoint_schedule(100) == (22, 6, 3)
    assert checkpoint_schedule(10) == (2, 1, 1)


@pytest.fixture(scope="module")
def ten_class_cohort(make_tiny_cnn):
    model = make_tiny_cnn(channels=3, classes=10, seed=0).eval()  # tests/conftest.py
    images = torch.rand(100, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_robust_accuracy_agrees_with_torchattacks(loss, norm, eps, ten_class_cohort):
    """Same seed, same start on the CPU: the same images survive (tolerance: 1 in 100)."""
    model, images, labels = ten_class_cohort
    reference = torchattacks.APGD(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, steps=20,
                                  seed=3, loss=loss)
    with torch.no_grad():
        theirs = model(reference(images, labels)).argmax(1) == labels
    ours = ~run_attack(model, images, None, labels,
                       AttackConfig(method=f"apgd-{loss}", norm=norm, eps=eps, steps=20, seed=3)).success
    assert 0.1 < ours.float().mean() < 0.95  # the comparison means something
    assert abs(int(ours.sum()) - int(theirs.sum())) <= 1
    assert int((ours != theirs).sum()) <= 1


def test_targeted_dlr_agrees_with_torchattacks_apgdt(ten_class_cohort):
    """APGD-T aimed at the second most likely class (APGDT with one target class)."""
    model, images, labels = ten_class_cohort
    second = model(images).argsort(1, descending=True)[:, 1]
    reference = torchattacks.APGDT(model, norm="Linf", eps=8 / 255, steps=20, seed=3, n_classes=2)
    with torch.no_grad():
        theirs = model(reference(images, labels)).argmax(1) == labels
    result = drive(apgd_steps(model, images, None, labels,
                              AttackConfig(method="apgd-dlr", eps=8 / 255, steps=20, seed=3),
                              targets=second, any_misclassification=True))
    assert abs(int((~result.success).sum()) - int(theirs.sum())) <= 1


def test_targeted_success_means_predicting_the_target(make_tiny_cnn, make_images):
    model = make_tiny_cnn(classes=5)
    images = make_images(4, 3, 12, 12, seed=7)
    result = run_attack(model, images, None, None,
                        AttackConfig(method="apgd-dlr", eps=0.5, steps=20, seed=0, targeted=3))
    assert torch.equal(result.success, result.adversarial_prediction == 3)
    assert bool(result.success.any())


@pytest.mark.parametrize("targeted", [None, 1])
def test_a_binary_head_falls_back_to_cross_entropy_and_says_so(targeted, make_tiny_cnn, make_images):
    """DLR needs a third (targeted: fourth) logit; on two classes APGD-DLR uses CE, with a note."""
    model = make_tiny_cnn(classes=2)
    images = make_images(4, 3, 12, 12, seed=1)
    config = AttackConfig(method="apgd-dlr", eps=0.3, steps=10, seed=0, targeted=targeted)
    result = run_attack(model, images, None, None, config)
    assert any("needs at least" in note and "cross-entropy" in note for note in result.notes)
    assert bool(result.success.any())  # it attacked, it did not silently do nothing
    same = run_attack(model, images, None, None, AttackConfig(method="apgd-ce", eps=0.3, steps=10, seed=0,
                                                              targeted=targeted))
    assert torch.equal(result.success, same.success)
    assert not same.notes


def test_three_classes_are_enough_for_untargeted_dlr(make_tiny_cnn, make_images):
    result = run_attack(make_tiny_cnn(classes=3), make_images(2, 3, 8, 8), None, None,
                        AttackConfig(method="apgd-dlr", steps=3, seed=0))
    assert result.notes == []
