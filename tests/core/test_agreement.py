"""The engine agrees with the established libraries on identical settings.

torchattacks 3.5.1 (FGSM, PGD, PGDL2, MIFGSM; no masks)
    Same update rules as the engine; torchattacks averages the cross-entropy over the batch
    where the engine sums it per image, which only rescales the gradient (the sign, the L2
    direction and MI-FGSM's mean-|g| normalisation are scale-free). L∞ attacks agree
    bit-for-bit; L2 to 1e-6 (float32 rounding of ‖g‖ and of the scale factor). With a random
    start, torchattacks draws from the global RNG; we hand it the engine's seeded draw (same
    generator, same order: ``torch.rand`` for L∞; ``torch.randn`` then ``torch.rand`` for the
    L2 radius) so both start from the same point.

ART 1.20 ``ProjectedGradientDescent`` on a ``PyTorchClassifier`` with ``mask=`` (masked PGD)
    Settings under which the two are the same algorithm: ``num_random_init=0`` (ART's
    random start uses NumPy's global RNG), ``clip_values=(0, 1)``, ``eps_step`` = the
    engine's step size, ``max_iter`` = steps, no preprocessing in ART (normalisation
    lives inside our Classifier, which ART sees as the model). ART's gradient comes from the
    loss we give it, here ``CrossEntropyLoss(reduction="sum")``, the engine's objective. ART
    zeroes the gradient where the mask is 0 (the engine multiplies by the mask: same thing
    for a {0,1} mask), takes its sign (L∞) or divides by its L2 norm (L2), then
    *clips to [0,1] first and projects onto the ε-ball second*; the engine projects first
    and clips second.

    * L∞: both orders give the clamp to [max(0, x₀−ε), min(1, x₀+ε)] per pixel, so results
      must match for any image (asserted to 1e-6; in practice bit-for-bit).
    * L2: the orders differ whenever clipping binds. When no pixel can reach 0 or 1
      (images in [ε+α, 1−ε−α], since no pixel moves further than ‖δ‖₂ + α) the algorithms
      are identical and we assert agreement to 1e-6. For images where clipping binds we
      assert only what must hold for both: inside [0,1], within ε, zero outside the mask.
    * ART's momentum (``decay``) normalises by the L1 norm of the masked gradient, the
      engine (like torchattacks) by its mean |g| over all C·H·W entries: a constant factor
      for every step, so the momentum directions — and MI-FGSM's result — are identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks
from torchattacks.attacks import pgd as torchattacks_pgd
from torchattacks.attacks import pgdl2 as torchattacks_pgdl2

from advexplorer.core.attacks import AttackConfig, run_attack

N, C, H, W = 6, 3, 16, 16
CLASSES = 4


@pytest.fixture
def model(make_tiny_cnn):
    # Non-trivial normalisation, so both libraries see the same wrapper as the engine.
    return make_tiny_cnn(channels=C, classes=CLASSES, seed=1,
                         mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@pytest.fixture
def batch(make_images):
    return make_images(N, C, H, W, seed=5)


@pytest.fixture
def labels():
    return torch.tensor([0, 1, 2, 3, 1, 2])


@pytest.fixture
def mask():
    allowed = torch.zeros(H, W)
    allowed[2:12, 3:10] = 1
    allowed[13:, 12:] = 1
    return allowed


def assert_changed_something(clean, adversarial):
    assert float((adversarial - clean).abs().max()) > 0


# --------------------------------------------------------------------------- torchattacks

@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_matches_torchattacks(model, batch, labels, targeted):
    eps = 8 / 255
    attack = torchattacks.FGSM(model, eps=eps)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    expected = attack(batch, labels)
    result = run_attack(model, batch, None, None if targeted else labels,
                        AttackConfig(method="fgsm", eps=eps), targets=labels if targeted else None)
    assert_changed_something(batch, expected)
    # torchattacks adds ε·sign and clips; the engine also projects onto the ε-ball, which
    # can move a value by one float32 rounding step.
    assert torch.allclose(result.adversarial, expected, atol=1e-7, rtol=0)


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_linf_matches_torchattacks(model, batch, labels, targeted):
    attack = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    expected = attack(batch, labels)
    result = run_attack(model, batch, None, None if targeted else labels,
                        AttackConfig(eps=8 / 255, step_size=2 / 255, steps=10),
                        targets=labels if targeted else None)
    assert_changed_something(batch, expected)
    assert torch.equal(result.adversarial, expected)


def test_pgd_l2_matches_torchattacks(model, batch, labels):
    attack = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=10, random_start=False)
    expected = attack(batch, labels)
    result = run_attack(model, batch, None, labels,
                        AttackConfig(norm="l2", eps=0.5, step_size=0.1, steps=10))
    assert_changed_something(batch, expected)
    assert torch.allclose(result.adversarial, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_mifgsm_matches_torchattacks(model, batch, labels, decay):
    attack = torchattacks.MIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=decay)
    expected = attack(batch, labels)
    result = run_attack(model, batch, None, labels,
                        AttackConfig(method="mifgsm", eps=8 / 255, step_size=2 / 255, steps=10,
                                     decay=decay))
    assert_changed_something(batch, expected)
    assert torch.equal(result.adversarial, expected)


class _Draw:
    """Stands in for ``torch.empty_like(x)`` / ``torch.zeros_like(x)``: its in-place fill
    returns a value drawn beforehand, instead of one from torch's global RNG."""

    def __init__(self, value: torch.Tensor):
        self.value = value

    def uniform_(self, *bounds):
        return self.value.clone()

    def normal_(self, *moments):
        return self.value.clone()


class _TorchWithDraws:
    """The ``torch`` module as a torchattacks attack sees it, with given random draws."""

    def __init__(self, empty_like: torch.Tensor, zeros_like: torch.Tensor | None = None):
        self._empty_like, self._zeros_like = empty_like, zeros_like

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty_like(self, like):
        assert like.shape == self._empty_like.shape
        return _Draw(self._empty_like)

    def zeros_like(self, like):
        assert self._zeros_like is not None and like.shape == self._zeros_like.shape
        return _Draw(self._zeros_like)


def test_pgd_linf_random_start_matches_torchattacks(model, batch, labels, monkeypatch):
    eps, seed = 8 / 255, 1234
    generator = torch.Generator().manual_seed(seed)
    start = torch.rand(batch.shape, generator=generator).mul_(2).sub_(1) * eps  # U(−ε, ε)
    monkeypatch.setattr(torchattacks_pgd, "torch", _TorchWithDraws(start))
    expected = torchattacks.PGD(model, eps=eps, alpha=2 / 255, steps=10, random_start=True)(
        batch, labels)
    result = run_attack(model, batch, None, labels,
                        AttackConfig(eps=eps, step_size=2 / 255, steps=10, random_start=True,
                                     seed=seed))
    assert torch.equal(result.adversarial, expected)


def test_pgd_l2_random_start_matches_torchattacks(model, batch, labels, monkeypatch):
    eps, seed = 0.5, 99
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(batch.shape, generator=generator)
    radius = torch.rand(N, generator=generator).view(N, 1, 1, 1)
    monkeypatch.setattr(torchattacks_pgdl2, "torch", _TorchWithDraws(direction, radius))
    expected = torchattacks.PGDL2(model, eps=eps, alpha=0.1, steps=10, random_start=True)(
        batch, labels)
    result = run_attack(model, batch, None, labels,
                        AttackConfig(norm="l2", eps=eps, step_size=0.1, steps=10,
                                     random_start=True, seed=seed))
    assert torch.allclose(result.adversarial, expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- ART

def art_pgd(model, images, mask, norm, eps, step, steps, *, labels=None, targeted=False,
            decay=None):
    """ART's masked PGD on the same Classifier, under the settings of the module docstring."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    estimator = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(reduction="sum"),
                                  input_shape=tuple(images.shape[1:]), nb_classes=CLASSES,
                                  clip_values=(0.0, 1.0), device_type="cpu")
    attack = ProjectedGradientDescent(estimator, norm=np.inf if norm == "linf" else 2, eps=eps,
                                      eps_step=step, max_iter=steps, targeted=targeted,
                                      num_random_init=0, batch_size=len(images), decay=decay,
                                      verbose=False)
    per_image_mask = np.broadcast_to(mask.numpy(), (len(images), 1, *mask.shape)).copy()
    adversarial = attack.generate(images.numpy(), None if labels is None else labels.numpy(),
                                  mask=per_image_mask)
    return torch.from_numpy(adversarial)


@pytest.mark.parametrize("with_labels", [True, False])
def test_masked_pgd_linf_matches_art(model, batch, labels, mask, with_labels):
    """Any images, including pixels at 0 and 1 (clip-then-project ≡ project-then-clip for L∞)."""
    images = torch.where(batch > 0.8, torch.ones_like(batch), batch)  # clipping binds
    expected = art_pgd(model, images, mask, "linf", 8 / 255, 2 / 255, 10,
                       labels=labels if with_labels else None)
    result = run_attack(model, images, mask, labels if with_labels else None,
                        AttackConfig(eps=8 / 255, step_size=2 / 255, steps=10))
    assert_changed_something(images, expected)
    assert torch.all((expected - images)[..., mask == 0] == 0)
    assert torch.allclose(result.adversarial, expected, atol=1e-6, rtol=0)


def test_targeted_masked_pgd_linf_matches_art(model, batch, mask):
    targets = torch.tensor([3, 3, 0, 1, 0, 2])
    expected = art_pgd(model, batch, mask, "linf", 0.1, 0.02, 10, labels=targets, targeted=True)
    result = run_attack(model, batch, mask, None, AttackConfig(eps=0.1, step_size=0.02, steps=10),
                        targets=targets)
    assert_changed_something(batch, expected)
    assert torch.allclose(result.adversarial, expected, atol=1e-6, rtol=0)


def test_masked_mifgsm_matches_art_momentum_pgd(model, batch, labels, mask):
    expected = art_pgd(model, batch, mask, "linf", 8 / 255, 2 / 255, 10, labels=labels, decay=1.0)
    result = run_attack(model, batch, mask, labels,
                        AttackConfig(method="mifgsm", eps=8 / 255, step_size=2 / 255, steps=10,
                                     decay=1.0))
    assert torch.allclose(result.adversarial, expected, atol=1e-6, rtol=0)
    # …and momentum matters here, so this is not just plain PGD agreeing twice.
    plain = run_attack(model, batch, mask, labels,
                       AttackConfig(eps=8 / 255, step_size=2 / 255, steps=10))
    assert not torch.allclose(plain.adversarial, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("eps,step", [(0.2, 0.05), (0.35, 0.1)])
def test_masked_pgd_l2_matches_art_where_clipping_cannot_bind(model, make_images, labels, mask,
                                                              eps, step):
    margin = eps + step
    images = make_images(N, C, H, W, seed=6, low=margin, high=1 - margin)
    expected = art_pgd(model, images, mask, "l2", eps, step, 10, labels=labels)
    result = run_attack(model, images, mask, labels,
                        AttackConfig(norm="l2", eps=eps, step_size=step, steps=10))
    assert_changed_something(images, expected)
    assert torch.allclose(result.adversarial, expected, atol=1e-6, rtol=0)


def test_masked_pgd_l2_where_clipping_binds_both_stay_valid(model, batch, labels, mask):
    """ART clips before projecting, the engine after; with saturated pixels the iterates
    part ways, so only the constraints both promise are compared."""
    images = batch.clone()
    images[:3] = (images[:3] > 0.5).float()  # saturated images: clipping binds at once
    eps, step = 1.0, 0.25
    expected = art_pgd(model, images, mask, "l2", eps, step, 10, labels=labels)
    result = run_attack(model, images, mask, labels,
                        AttackConfig(norm="l2", eps=eps, step_size=step, steps=10))
    for adversarial in (expected, result.adversarial):
        delta = adversarial - images
        assert torch.all(delta[..., mask == 0] == 0)
        assert torch.all(delta.flatten(1).norm(dim=1) <= eps + 1e-6)
        assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1
        assert_changed_something(images, adversarial)
