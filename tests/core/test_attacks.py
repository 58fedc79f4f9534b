"""Behaviour of the attack engine that users rely on.

* Invariants on every yielded step (hypothesis over shapes, masks, ε, norms, methods):
  the perturbation is exactly zero outside the allowed mask, its norm is within ε, and the
  adversarial image stays in [0, 1].
* The closed form of FGSM on a linear model (Goodfellow et al. 2015,
  https://arxiv.org/abs/1412.6572): one signed step of size ε shrinks the margin
  z_y − z_j of a two-class linear model f(x) = Wx + b by exactly ε·‖w_y − w_j‖₁ (by
  ε·‖w_y − w_j‖₂ for one L2-normalised step; only the masked entries count with a mask).
* Seeds, early stop, restarts, targeted/untargeted objectives, the noise baseline,
  per-image ε, batching, cost accounting and the errors a user can cause.
"""

from __future__ import annotations

import threading

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advexplorer.core.attacks import (
    METHODS, NORMS, AttackConfig, attack_steps, drive, perturbation_norms, run_attack,
)
from advexplorer.errors import UserError

NORM_TOLERANCE = 1e-6  # float32 rounding of images + δ − images


def collect(model, images, mask=None, labels=None, config=None, **kwargs):
    """Run an attack and return (steps, result); each step's tensors are copied."""
    steps = []

    def keep(step):
        steps.append(dict(index=step.index, restart=step.restart,
                          adversarial=step.adversarial.clone(), images=step.images,
                          loss=step.loss.clone(), success=step.success.clone(),
                          active=step.active.clone(), probabilities=step.probabilities.clone(),
                          gradient=None if step.gradient is None else step.gradient.clone(),
                          total_steps=step.total_steps))

    result = run_attack(model, images, mask, labels, config, on_step=keep, **kwargs)
    return steps, result


def assert_within_budget(adversarial, images, allowed, eps, norm):
    """The three invariants, per image; ``allowed`` is N×1×H×W (or None), ``eps`` is (N,)."""
    delta = adversarial - images
    if allowed is not None:
        outside = (allowed == 0).expand_as(delta)
        assert torch.all(delta[outside] == 0), "perturbation leaked outside the allowed mask"
    flat = delta.flatten(1)
    size = flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)
    assert torch.all(size <= eps + NORM_TOLERANCE * torch.clamp(eps, min=1.0)), (size, eps)
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0


def two_class_linear(make_linear_classifier, shape, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    dimension = shape[0] * shape[1] * shape[2]
    weight = torch.randn(2, dimension, generator=generator, dtype=dtype)
    bias = torch.randn(2, generator=generator, dtype=dtype)
    return make_linear_classifier(weight, bias), weight


def margin(logits, labels):
    other = 1 - labels
    return logits.gather(1, labels[:, None])[:, 0] - logits.gather(1, other[:, None])[:, 0]


# --------------------------------------------------------------------------- invariants

@st.composite
def attack_cases(draw):
    n = draw(st.integers(1, 3))
    channels = draw(st.sampled_from([1, 3]))
    height, width = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    method = draw(st.sampled_from(METHODS))
    norm = draw(st.sampled_from(NORMS))
    top = 1.0 if norm == "linf" else 4.0
    per_image_eps = draw(st.booleans())
    eps_values = [draw(st.floats(1e-3, top)) for _ in range(n if per_image_eps else 1)]
    step_size = draw(st.one_of(st.none(), st.floats(1e-3, 2 * top)))
    config = AttackConfig(
        method=method, norm=norm, eps=eps_values[0], step_size=step_size,
        steps=draw(st.integers(1, 4)), random_start=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)), restarts=draw(st.integers(1, 2)),
        early_stop=draw(st.booleans()), decay=draw(st.sampled_from([0.0, 0.5, 1.0])),
        targeted=draw(st.one_of(st.none(), st.integers(0, 3))), queries=draw(st.integers(1, 8)),
    )
    mask_kind = draw(st.sampled_from(["none", "shared", "per_image"]))
    masks = []
    for _ in range(0 if mask_kind == "none" else (1 if mask_kind == "shared" else n)):
        bits = draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))
        bits[draw(st.integers(0, height * width - 1))] = True  # never empty
        masks.append(torch.tensor(bits, dtype=torch.float32).view(height, width))
    labels = draw(st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    return dict(n=n, channels=channels, height=height, width=width, config=config,
                eps=eps_values if per_image_eps else None, masks=masks, labels=labels,
                image_seed=draw(st.integers(0, 1000)), saturate=draw(st.booleans()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=attack_cases())
def test_every_step_stays_in_mask_budget_and_range(case, make_tiny_cnn, make_images):
    """Perturbation zero outside the mask, norm ≤ ε, image in [0,1] — on every yielded step."""
    model = make_tiny_cnn(channels=case["channels"])
    images = make_images(case["n"], case["channels"], case["height"], case["width"],
                         seed=case["image_seed"])
    if case["saturate"]:  # half the pixels at 0 or 1, so clipping binds
        images = torch.where(images > 0.5, images.round(), images)
    masks = case["masks"]
    mask = None if not masks else (masks[0] if len(masks) == 1 else torch.stack(masks)[:, None])
    allowed = None if mask is None else (mask if mask.dim() == 4 else mask[None, None])
    labels = None if case["labels"] is None else torch.tensor(case["labels"])
    eps = torch.tensor(case["eps"] or [case["config"].eps] * case["n"])

    gen = attack_steps(model, images, mask, labels, case["config"],
                       eps=None if case["eps"] is None else eps)
    count = 0
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        count += 1
        assert torch.equal(step.images, images)
        assert_within_budget(step.adversarial, images, allowed, eps, case["config"].norm)
        if step.gradient is not None and allowed is not None:
            assert torch.all(step.gradient[(allowed == 0).expand_as(step.gradient)] == 0)
    assert count >= 1
    assert_within_budget(result.adversarial, images, allowed, eps, case["config"].norm)
    assert torch.allclose(result.eps, eps)
    norms = perturbation_norms(result.perturbation)
    assert torch.all(norms["l0_pixels"] <= (case["height"] * case["width"] if allowed is None
                                            else allowed.flatten(1).sum(1)))


# --------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
def test_fgsm_shrinks_linear_margin_by_eps_times_l1_norm(make_linear_classifier, make_images,
                                                          dtype, tolerance):
    """Two classes, f = Wx + b, images mid-range and ε small so no clipping binds:
    z_y − z_j drops by exactly ε‖w_y − w_j‖₁."""
    shape = (3, 6, 5)
    model, weight = two_class_linear(make_linear_classifier, shape, dtype=dtype)
    images = make_images(6, *shape, seed=1, low=0.3, high=0.7, dtype=dtype)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    eps = 0.02
    result = run_attack(model, images, None, labels, AttackConfig(method="fgsm", eps=eps))
    with torch.no_grad():
        drop = margin(model(images), labels) - margin(model(result.adversarial), labels)
    expected = eps * (weight[labels] - weight[1 - labels]).abs().sum(dim=1)
    assert torch.allclose(drop, expected, rtol=tolerance, atol=tolerance)
    # Every pixel moved by exactly ε (no gradient entry is zero for a random W).
    assert torch.allclose(result.perturbation.abs(), torch.full_like(images, eps), atol=1e-6)


def test_fgsm_with_mask_shrinks_margin_by_masked_l1_norm(make_linear_classifier, make_images):
    shape = (3, 6, 5)
    model, weight = two_class_linear(make_linear_classifier, shape, seed=2)
    images = make_images(4, *shape, seed=3, low=0.3, high=0.7, dtype=torch.float64)
    labels = torch.tensor([1, 0, 0, 1])
    mask = torch.zeros(6, 5)
    mask[1:4, 2:] = 1
    eps = 0.03
    result = run_attack(model, images, mask, labels, AttackConfig(method="fgsm", eps=eps))
    with torch.no_grad():
        drop = margin(model(images), labels) - margin(model(result.adversarial), labels)
    flat_mask = mask.expand(shape).flatten().to(torch.float64)
    expected = eps * ((weight[labels] - weight[1 - labels]) * flat_mask).abs().sum(dim=1)
    assert torch.allclose(drop, expected, rtol=1e-9, atol=1e-9)
    unmasked = eps * (weight[labels] - weight[1 - labels]).abs().sum(dim=1)
    assert torch.all(drop < unmasked)  # the mask really limited the attack


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_l2_step_shrinks_linear_margin_by_eps_times_l2_norm(make_linear_classifier, make_images,
                                                             masked, method):
    """One L2-normalised gradient step of length ε: the margin drops by ε‖w_y − w_j‖₂
    (restricted to the mask). PGD with one step of size ε is the same step."""
    shape = (1, 8, 8)
    model, weight = two_class_linear(make_linear_classifier, shape, seed=4)
    images = make_images(3, *shape, seed=5, low=0.3, high=0.7, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    mask = torch.zeros(8, 8)
    mask[:, :3] = 1
    eps = 0.2  # per-pixel change ≤ ε‖·‖ share, far from the [0,1] bounds
    config = AttackConfig(method=method, norm="l2", eps=eps, steps=1, step_size=eps)
    result = run_attack(model, images, mask if masked else None, labels, config)
    with torch.no_grad():
        drop = margin(model(images), labels) - margin(model(result.adversarial), labels)
    difference = weight[labels] - weight[1 - labels]
    if masked:
        difference = difference * mask.flatten().to(difference.dtype)
    expected = eps * difference.norm(dim=1)
    assert torch.allclose(drop, expected, rtol=1e-8)
    assert torch.allclose(result.perturbation.flatten(1).norm(dim=1),
                          torch.full((3,), eps, dtype=torch.float64), rtol=1e-8)


# --------------------------------------------------------------------------- seeds

def test_same_seed_is_bit_identical_and_other_seeds_differ(tiny_cnn, images):
    for method in ("pgd", "noise"):
        for norm in NORMS:
            config = AttackConfig(method=method, norm=norm, eps=0.05 if norm == "linf" else 0.5,
                                  steps=3, random_start=True, seed=7, restarts=2)
            steps_a, first = collect(tiny_cnn, images, None, None, config)
            steps_b, second = collect(tiny_cnn, images, None, None, config)
            assert len(steps_a) == len(steps_b)
            for a, b in zip(steps_a, steps_b):
                assert torch.equal(a["adversarial"], b["adversarial"])
            assert torch.equal(first.adversarial, second.adversarial)
            assert first.seed == second.seed == 7
            _, other = collect(tiny_cnn, images, None, None,
                               AttackConfig(**{**config.to_json(), "seed": 8}))
            assert not torch.equal(first.adversarial, other.adversarial)


def test_unseeded_run_records_a_seed_that_reproduces_it(tiny_cnn, images):
    config = AttackConfig(eps=0.05, steps=3, random_start=True)
    first = run_attack(tiny_cnn, images, None, None, config)
    again = run_attack(tiny_cnn, images, None, None, AttackConfig(**{**config.to_json(),
                                                                      "seed": first.seed}))
    assert torch.equal(first.adversarial, again.adversarial)
    assert first.config.seed == first.seed


def test_random_start_respects_mask_from_step_zero(tiny_cnn, images):
    mask = torch.zeros(16, 16)
    mask[4:9, 4:12] = 1
    steps, _ = collect(tiny_cnn, images, mask, None,
                       AttackConfig(eps=0.1, steps=2, random_start=True, seed=0))
    start = steps[0]["adversarial"] - images
    assert steps[0]["index"] == 0
    assert torch.all(start[..., mask == 0] == 0)
    assert float(start[..., mask == 1].abs().max()) > 0  # the start really is random there


# --------------------------------------------------------------------------- early stop, restarts

def test_early_stop_freezes_succeeded_images_and_saves_backward_passes(tiny_cnn, make_images):
    images = make_images(8, 3, 16, 16)
    config = AttackConfig(eps=0.05, step_size=0.0125, steps=10)
    free_steps, free = collect(tiny_cnn, images, None, None, config)
    stopped_steps, stopped = collect(tiny_cnn, images, None, None,
                                     AttackConfig(**{**config.to_json(), "early_stop": True}))
    success_by_step = torch.stack([s["success"] for s in free_steps])  # (steps+1) × N
    ever = success_by_step.any(dim=0)
    assert 0 < int(ever.sum()) < 8, "the fixture should give a mix of easy and hard images"
    first = torch.where(ever, success_by_step.int().argmax(dim=0), torch.tensor(config.steps))

    assert torch.equal(stopped.success, ever)
    for i in range(8):
        k = int(first[i])
        expected = free_steps[k]["adversarial"][i]
        assert torch.allclose(stopped.adversarial[i], expected, atol=1e-6), i
        # Once frozen, the image no longer changes in later yielded steps.
        for later in stopped_steps[k:]:
            assert torch.allclose(later["adversarial"][i], expected, atol=1e-6)
    # A gradient is computed at each evaluation up to and including the succeeding one.
    assert torch.equal(stopped.steps_run, torch.clamp(first + 1, max=config.steps))
    assert stopped.backward_passes == int(stopped.steps_run.sum())
    assert stopped.backward_passes < free.backward_passes == 8 * config.steps
    assert len(stopped_steps) <= len(free_steps)


def test_restarts_keep_the_best_restart_per_image(tiny_cnn, make_images):
    images = make_images(8, 3, 16, 16, seed=11)
    config = AttackConfig(eps=0.03, step_size=0.0075, steps=5, random_start=True, seed=3,
                          restarts=3)
    steps, result = collect(tiny_cnn, images, None, None, config)
    finals = [s for s in steps if s["index"] == s["total_steps"]]
    assert [s["restart"] for s in finals] == [0, 1, 2]
    for i in range(8):
        best = max(range(3), key=lambda r: (bool(finals[r]["success"][i]),
                                            float(finals[r]["loss"][i]), -r))
        assert torch.equal(result.adversarial[i], finals[best]["adversarial"][i]), i
        assert float(result.loss[i]) == float(finals[best]["loss"][i])
    assert torch.equal(result.success, torch.stack([s["success"] for s in finals]).any(dim=0))
    # The first restart draws the same start as a single run with that seed, so more
    # restarts can only help.
    single = run_attack(tiny_cnn, images, None, None,
                        AttackConfig(**{**config.to_json(), "restarts": 1}))
    assert torch.equal(single.adversarial, finals[0]["adversarial"])
    assert torch.all(result.success >= single.success)
    assert torch.all(result.loss >= single.loss)


# --------------------------------------------------------------------------- objectives

def easy_linear(make_linear_classifier, classes=3, shape=(3, 8, 8), seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, shape[0] * shape[1] * shape[2], generator=generator) * 0.3
    return make_linear_classifier(weight, torch.zeros(classes))


def test_targeted_attack_reaches_the_target(make_linear_classifier, make_images):
    model = easy_linear(make_linear_classifier)
    images = make_images(6, 3, 8, 8, seed=2)
    result = run_attack(model, images, None, None, AttackConfig(eps=0.1, steps=10, targeted=2))
    assert torch.all(result.adversarial_prediction == 2)
    assert torch.all(result.success)
    assert torch.equal(result.targets, torch.full((6,), 2))
    # Per-image targets override the config.
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    per_image = run_attack(model, images, None, None, AttackConfig(eps=0.1, steps=10),
                           targets=targets)
    assert torch.equal(per_image.adversarial_prediction, targets)
    assert torch.equal(per_image.success, per_image.adversarial_prediction == targets)


def test_untargeted_without_labels_moves_away_from_clean_prediction(make_linear_classifier,
                                                                    make_images):
    model = easy_linear(make_linear_classifier)
    images = make_images(6, 3, 8, 8, seed=3)
    steps, result = collect(model, images, None, None, AttackConfig(eps=0.1, steps=10))
    with torch.no_grad():
        clean = model(images).argmax(dim=1)
    assert torch.equal(result.reference, clean)
    assert torch.equal(result.clean_prediction, clean)
    assert torch.all(result.flipped) and torch.equal(result.success, result.flipped)
    assert torch.all(result.loss_trajectory[-1] > result.loss_trajectory[0])


def test_labels_define_what_counts_as_success(make_linear_classifier, make_images):
    model = easy_linear(make_linear_classifier)
    images = make_images(3, 3, 8, 8, seed=4)
    with torch.no_grad():
        clean = model(images).argmax(dim=1)
    labels = clean.clone()
    labels[0] = (clean[0] + 1) % 3  # image 0 is already misclassified w.r.t. its label
    config = AttackConfig(eps=0.002, steps=2, early_stop=True)
    result = run_attack(model, images, None, labels, config)
    assert torch.equal(result.reference, labels)
    assert bool(result.success[0])
    assert torch.all(result.perturbation[0] == 0)  # succeeded at step 0: left untouched
    assert int(result.steps_run[0]) == 1
    assert torch.equal(result.success, result.adversarial_prediction != labels)


def test_out_of_range_classes_are_user_errors(tiny_cnn, images):
    with pytest.raises(UserError, match="out of range"):
        run_attack(tiny_cnn, images, None, torch.tensor([0, 1, 2, 9]), AttackConfig())
    with pytest.raises(UserError, match="out of range"):
        run_attack(tiny_cnn, images, None, None, AttackConfig(targeted=4))
    with pytest.raises(UserError, match="out of range"):
        run_attack(tiny_cnn, images, None, torch.tensor([0, 1, 2, -1]),
                   AttackConfig(method="noise"))


# --------------------------------------------------------------------------- noise baseline

class NoGradientModel(torch.nn.Module):
    """Fails the test if anyone asks it for a gradient."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        assert not torch.is_grad_enabled() and not x.requires_grad, "noise must not use gradients"
        return self.inner(x)


@pytest.mark.parametrize("norm", NORMS)
def test_noise_baseline_uses_full_budget_on_mask_and_no_gradients(tiny_cnn, make_images, norm):
    images = make_images(3, 3, 16, 16, low=0.3, high=0.7)  # clipping never binds
    mask = torch.zeros(16, 16)
    mask[2:10, 5:14] = 1
    eps = 0.05 if norm == "linf" else 1.0
    steps, result = collect(NoGradientModel(tiny_cnn), images, mask, None,
                            AttackConfig(method="noise", norm=norm, eps=eps, steps=4, seed=1))
    assert result.backward_passes == 0
    assert all(s["gradient"] is None for s in steps)
    assert torch.equal(steps[0]["adversarial"], images)  # step 0 scores the clean image
    inside = (mask == 1).expand(3, 3, 16, 16)
    for step in steps[1:]:
        delta = step["adversarial"] - images
        assert torch.all(delta[~inside] == 0)
        if norm == "linf":
            assert torch.allclose(delta[inside].abs(), torch.tensor(eps), atol=1e-6)
        else:
            assert torch.allclose(delta.flatten(1).norm(dim=1), torch.tensor(eps), atol=1e-5)
    # The baseline keeps its best draw per image (success first, then loss).
    for i in range(3):
        best = max(range(len(steps)), key=lambda k: (bool(steps[k]["success"][i]),
                                                     float(steps[k]["loss"][i]), -k))
        assert torch.equal(result.adversarial[i], steps[best]["adversarial"][i])


# --------------------------------------------------------------------------- masks and config errors

def test_empty_mask_is_a_user_error(tiny_cnn, images):
    with pytest.raises(UserError, match="empty"):
        run_attack(tiny_cnn, images, torch.zeros(16, 16), None, AttackConfig())
    per_image = torch.ones(4, 1, 16, 16)
    per_image[2] = 0  # one image with nothing allowed
    with pytest.raises(UserError, match="empty"):
        run_attack(tiny_cnn, images, per_image, None, AttackConfig())


def test_mask_of_wrong_size_is_a_user_error(tiny_cnn, images):
    with pytest.raises(UserError, match="16×16"):
        run_attack(tiny_cnn, images, torch.ones(16, 15), None, AttackConfig())


def test_mask_shapes_and_values_users_give(tiny_cnn, images):
    """8-bit masks (255 = allowed), 1×H×W, one mask per image (N×H×W, N×1×H×W) and per-channel
    masks (a pixel is allowed if any channel is) all mean the same thing."""
    config = AttackConfig(eps=0.05, steps=2)
    mask = torch.zeros(16, 16)
    mask[3:9, 2:14] = 1
    expected = run_attack(tiny_cnn, images, mask, None, config).adversarial
    for given in (mask * 255, mask[None], mask.expand(4, 16, 16), mask.expand(4, 1, 16, 16),
                  torch.stack([mask, torch.zeros(16, 16), mask])[None].expand(4, 3, 16, 16)):
        assert torch.equal(run_attack(tiny_cnn, images, given, None, config).adversarial, expected)
    per_image = torch.zeros(4, 16, 16)
    for i in range(4):
        per_image[i, 4 * i:4 * i + 4, :] = 1  # a different band for each image
    result = run_attack(tiny_cnn, images, per_image, None, config)
    for i in range(4):
        outside = (per_image[i] == 0).expand(3, 16, 16)
        assert torch.all(result.perturbation[i][outside] == 0)
        assert float(result.perturbation[i][~outside].abs().max()) > 0


def test_full_mask_equals_no_mask(tiny_cnn, images):
    config = AttackConfig(eps=0.05, steps=3)
    assert torch.equal(run_attack(tiny_cnn, images, torch.ones(16, 16), None, config).adversarial,
                       run_attack(tiny_cnn, images, None, None, config).adversarial)


@pytest.mark.parametrize("fields, words", [
    (dict(eps=0.0), "ε"), (dict(eps=-0.1), "ε"), (dict(eps=1.5), "ε"),
    (dict(norm="l2", eps=0.0), "ε"), (dict(steps=0), "steps"), (dict(steps=-3), "steps"),
    (dict(step_size=0.0), "Step size"), (dict(restarts=0), "restarts"),
    (dict(method="cw"), "Unknown attack"), (dict(norm="l1"), "Unknown norm"),
    (dict(decay=-1.0), "decay"),
])
def test_out_of_range_config_is_a_user_error(tiny_cnn, images, fields, words):
    config = AttackConfig(**fields)
    with pytest.raises(UserError, match=words):
        config.validate()
    with pytest.raises(UserError):  # the engine validates before touching the model
        run_attack(tiny_cnn, images, None, None, config)


def test_l2_budget_above_one_is_allowed():
    assert AttackConfig(norm="l2", eps=3.0).validate().eps == 3.0


# --------------------------------------------------------------------------- per-image ε, batching

def test_per_image_eps_each_image_respects_its_own_budget(make_linear_classifier, make_images,
                                                          tiny_cnn, images):
    model, weight = two_class_linear(make_linear_classifier, (3, 6, 5), seed=6)
    mid = make_images(3, 3, 6, 5, seed=7, low=0.3, high=0.7, dtype=torch.float64)
    budgets = torch.tensor([0.01, 0.02, 0.05], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0])
    result = run_attack(model, mid, None, labels, AttackConfig(method="fgsm"), eps=budgets)
    linf = perturbation_norms(result.perturbation)["linf"]
    assert torch.allclose(linf, budgets, atol=1e-12)
    with torch.no_grad():
        drop = margin(model(mid), labels) - margin(model(result.adversarial), labels)
    assert torch.allclose(drop, budgets * (weight[labels] - weight[1 - labels]).abs().sum(1))

    # One batch sweeping ε gives what separate runs give.
    sweep = torch.tensor([0.01, 0.02, 0.04, 0.08])
    config = AttackConfig(eps=0.5, step_size=0.005, steps=4)
    batched = run_attack(tiny_cnn, images, None, None, config, eps=sweep)
    for i, eps in enumerate(sweep.tolist()):
        alone = run_attack(tiny_cnn, images[i:i + 1], None, None,
                           AttackConfig(**{**config.to_json(), "eps": eps}))
        assert torch.allclose(batched.adversarial[i], alone.adversarial[0], atol=1e-6)
        assert float(perturbation_norms(batched.perturbation)["linf"][i]) <= eps + NORM_TOLERANCE


@pytest.mark.parametrize("method,norm", [("pgd", "linf"), ("pgd", "l2"), ("mifgsm", "linf"),
                                         ("fgsm", "linf")])
def test_batch_gives_same_result_as_one_image_at_a_time(tiny_cnn, images, method, norm):
    mask = torch.zeros(16, 16)
    mask[3:13, 1:9] = 1
    config = AttackConfig(method=method, norm=norm, eps=0.05 if norm == "linf" else 0.8,
                          steps=4)
    labels = torch.tensor([0, 1, 2, 3])
    batched = run_attack(tiny_cnn, images, mask, labels, config)
    for i in range(4):
        alone = run_attack(tiny_cnn, images[i:i + 1], mask, labels[i:i + 1], config)
        assert torch.allclose(batched.adversarial[i], alone.adversarial[0], atol=1e-6)
        assert bool(batched.success[i]) == bool(alone.success[0])


def test_momentum_without_decay_is_plain_iterative_fgsm(tiny_cnn, images):
    pgd = run_attack(tiny_cnn, images, None, None, AttackConfig(method="pgd", eps=0.05, steps=5))
    mifgsm = run_attack(tiny_cnn, images, None, None,
                        AttackConfig(method="mifgsm", eps=0.05, steps=5, decay=0.0))
    assert torch.equal(pgd.adversarial, mifgsm.adversarial)
    with_momentum = run_attack(tiny_cnn, images, None, None,
                               AttackConfig(method="mifgsm", eps=0.05, steps=5, decay=1.0))
    assert not torch.equal(pgd.adversarial, with_momentum.adversarial)


# --------------------------------------------------------------------------- steps and accounting

def test_steps_trajectories_and_cost_accounting(tiny_cnn, images):
    config = AttackConfig(eps=0.03, steps=5)
    steps, result = collect(tiny_cnn, images, None, None, config)
    assert [s["index"] for s in steps] == list(range(6))
    assert all(s["total_steps"] == 5 for s in steps)
    assert torch.equal(steps[0]["adversarial"], images)  # step 0 is the clean image
    assert steps[-1]["gradient"] is None  # the final image is only scored
    assert all(s["gradient"] is not None for s in steps[:-1])
    assert torch.equal(result.adversarial, steps[-1]["adversarial"])  # last iterate
    # steps × (forward + backward) + one forward pass to score the final image.
    assert result.backward_passes == 4 * 5
    assert result.forward_passes == 4 * 6
    assert torch.equal(result.steps_run, torch.full((4,), 5))
    assert result.loss_trajectory.shape == (6, 4)
    assert result.probability_trajectory.shape == (6, 4, 4)
    assert torch.allclose(result.probability_trajectory.sum(dim=2), torch.ones(6, 4))
    assert torch.allclose(result.probability_trajectory[0], result.clean_probabilities)
    with torch.no_grad():
        assert torch.allclose(result.adversarial_probabilities,
                              torch.softmax(tiny_cnn(result.adversarial), dim=1), atol=1e-6)
        assert torch.allclose(result.clean_probabilities, torch.softmax(tiny_cnn(images), dim=1))


def test_fgsm_is_a_single_step(tiny_cnn, images):
    steps, result = collect(tiny_cnn, images, None, None, AttackConfig(method="fgsm", eps=0.03,
                                                                       steps=10))
    assert [s["index"] for s in steps] == [0, 1]
    assert result.backward_passes == 4
    assert torch.allclose(result.perturbation.abs().amax(dim=(1, 2, 3)), torch.tensor(0.03))


def test_runs_under_no_grad_and_in_another_thread(tiny_cnn, images):
    """Grad mode is thread-local: callers (a GUI worker, a no_grad block) must not matter."""
    config = AttackConfig(eps=0.03, steps=3)
    expected = run_attack(tiny_cnn, images, None, None, config).adversarial
    with torch.no_grad():
        assert torch.equal(run_attack(tiny_cnn, images, None, None, config).adversarial, expected)
    found = {}
    generator = attack_steps(tiny_cnn, images, None, None, config)
    worker = threading.Thread(target=lambda: found.update(result=drive(generator)))
    worker.start()
    worker.join()
    assert torch.equal(found["result"].adversarial, expected)


def test_generator_can_be_stopped_between_steps(tiny_cnn, images):
    generator = attack_steps(tiny_cnn, images, None, None, AttackConfig(steps=50))
    first = next(generator)
    second = next(generator)
    generator.close()  # what a Stop button does
    assert (first.index, second.index) == (0, 1)
    assert second.total_steps == 50


# --------------------------------------------------------------------------- one rule per method

def test_every_method_in_the_vocabulary_has_exactly_one_step_rule():
    from advexplorer.core import attacks
    from advexplorer.core.attacks import STEP_RULES

    # Methods that do not fit a step rule (APGD, Square, the ensemble) are each a generator
    # of their own, registered apart.
    generators = getattr(attacks, "ATTACK_GENERATORS", {})
    assert sorted([*STEP_RULES, *generators]) == sorted(METHODS)
    assert not set(STEP_RULES) & set(generators)
    for name, rule in STEP_RULES.items():
        assert rule.name == name
        assert type(rule).__module__ == f"advexplorer.core.attacks.{name}"  # one file per method


def test_a_new_rule_is_driven_like_the_others(tiny_cnn, images, monkeypatch):
    """A rule is only an update: the driver gives it the gradient, masks, freezes rows and
    counts passes. A rule that halves PGD's step equals PGD with half the step size."""
    from advexplorer.core.attacks import STEP_RULES, StepRule
    from advexplorer.core.attacks.ball import step_and_project

    class HalfStep(StepRule):
        name = "pgd"

        def step(self, it):
            return step_and_project(it.adversarial, it.images, it.gradient, it.step_size / 2,
                                    it.eps, it.norm)

    expected = run_attack(tiny_cnn, images, None, None, AttackConfig(eps=0.05, step_size=0.005,
                                                                     steps=4, early_stop=True))
    monkeypatch.setitem(STEP_RULES, "pgd", HalfStep())
    found = run_attack(tiny_cnn, images, None, None, AttackConfig(eps=0.05, step_size=0.01, steps=4,
                                                                  early_stop=True))
    assert torch.equal(found.adversarial, expected.adversarial)
    assert (found.forward_passes, found.backward_passes) == (expected.forward_passes,
                                                             expected.backward_passes)
