"""The Classifier wrapper: normalisation inside the model, the logit rule, eval mode, devices."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.model import (
    Classifier, ModelForwardError, NonFiniteLogitsError, check_finite_logits, extract_logits, pick_device)
from advexplorer.errors import UserError


class Returns(nn.Module):
    """A model whose raw output is ``wrap(logits)`` for a fixed linear map."""

    def __init__(self, wrap, classes: int = 3, channels: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(channels * 4 * 4, classes)
        self.wrap = wrap

    def forward(self, x):
        return self.wrap(self.linear(x.flatten(1)))


Output = namedtuple("Output", ["logits", "aux"])
AuxFirst = namedtuple("AuxFirst", ["main", "aux"])


@dataclass
class HuggingFaceLikeOutput:  # e.g. transformers' ImageClassifierOutput
    loss: torch.Tensor | None
    logits: torch.Tensor


@pytest.mark.parametrize("name, wrap", [
    ("tensor", lambda z: z),
    ("tuple, logits first", lambda z: (z, z * 0 + 7)),
    ("list", lambda z: [z]),
    ("nested tuple", lambda z: ((z, None), "extra")),
    ("dict with logits", lambda z: {"features": z * 0 + 3, "logits": z}),
    ("dict with out", lambda z: {"aux": z * 0 - 1, "out": z}),
    ("dict, first tensor", lambda z: {"note": "x", "scores": z}),
    ("namedtuple with logits field", lambda z: Output(logits=z, aux=z * 0 + 5)),
    ("namedtuple, first field", lambda z: AuxFirst(main=z, aux=z * 0 + 5)),
    ("object with .logits", lambda z: HuggingFaceLikeOutput(loss=None, logits=z)),
])
def test_logit_rule_finds_the_logits(name, wrap):
    images = torch.rand(2, 3, 4, 4)
    plain = Classifier(Returns(lambda z: z), [0.0] * 3, [1.0] * 3)
    wrapped = Classifier(Returns(wrap), [0.0] * 3, [1.0] * 3)
    assert torch.equal(wrapped(images), plain(images)), name


def test_single_logit_sigmoid_head_becomes_two_classes():
    images = torch.rand(5, 3, 4, 4)
    classifier = Classifier(Returns(lambda z: z, classes=1), [0.0] * 3, [1.0] * 3)
    logits = classifier(images)
    assert logits.shape == (5, 2)
    with torch.no_grad():
        z = classifier.model(images)[:, 0]
    probabilities = torch.softmax(logits, dim=1)
    assert torch.allclose(probabilities[:, 1], torch.sigmoid(z), atol=1e-7)
    assert torch.allclose(probabilities[:, 0], 1 - torch.sigmoid(z), atol=1e-7)


def test_sigmoid_head_can_be_attacked():
    """An untargeted attack on a 1-logit model flips the predicted side of the sigmoid."""
    classifier = Classifier(Returns(lambda z: z * 20, classes=1), [0.0] * 3, [1.0] * 3)
    images = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    result = run_attack(classifier, images, None, None, AttackConfig(eps=0.3, steps=20))
    assert torch.all(result.flipped)


@pytest.mark.parametrize("name, wrap", [
    ("segmentation map", lambda z: {"out": z[:, :, None, None].expand(-1, -1, 4, 4)}),
    ("one number per image", lambda z: z[:, 0]),
    ("a string", lambda z: "logits"),
    ("dict without tensors", lambda z: {"label": "cat"}),
    ("empty tuple", lambda z: ()),
])
def test_outputs_that_are_not_class_logits_are_refused(name, wrap):
    classifier = Classifier(Returns(wrap), [0.0] * 3, [1.0] * 3)
    with pytest.raises(UserError, match="logits|N×C"):
        classifier(torch.rand(2, 3, 4, 4))


def test_extract_logits_on_raw_outputs():
    z = torch.randn(3, 5)
    assert torch.equal(extract_logits({"logits": z}), z)
    assert torch.equal(extract_logits((z,)), z)
    assert extract_logits(z[:, :1]).shape == (3, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_normalisation_is_applied_inside(channels):
    mean = [0.485, 0.456, 0.406][:channels]
    std = [0.229, 0.224, 0.225][:channels]
    network = Returns(lambda z: z, channels=channels)
    classifier = Classifier(network, mean, std)
    images = torch.rand(3, channels, 4, 4)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = network((images - m) / s)
    assert torch.allclose(classifier(images), expected, atol=1e-5, rtol=1e-5)
    # …and gradients flow to the [0,1] input through the normalisation.
    x = images.clone().requires_grad_(True)
    gradient = torch.autograd.grad(classifier(x).sum(), x)[0]
    x_ref = images.clone().requires_grad_(True)
    reference = torch.autograd.grad(network((x_ref - m) / s).sum(), x_ref)[0]
    assert torch.allclose(gradient, reference, atol=1e-5, rtol=1e-5)


def test_parameters_are_frozen_and_model_stays_in_eval_mode():
    network = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.BatchNorm1d(8), nn.Dropout(0.5),
                            nn.Linear(8, 3))
    network.train()
    classifier = Classifier(network, [0.0] * 3, [1.0] * 3)
    assert all(not p.requires_grad for p in classifier.parameters())
    classifier.train()  # a caller switching modes must not enable dropout/batch statistics
    assert not classifier.training and not network.training
    assert all(not module.training for module in network.modules())
    images = torch.rand(4, 3, 4, 4)
    assert torch.equal(classifier(images), classifier(images))  # no dropout noise
    # An input gradient does not build weight gradients.
    x = images.clone().requires_grad_(True)
    classifier(x).sum().backward()
    assert all(p.grad is None for p in network.parameters())
    assert x.grad is not None


def test_identity_normalisation_is_exact():
    network = Returns(lambda z: z)
    classifier = Classifier(network, [0.0] * 3, [1.0] * 3)
    images = torch.rand(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(classifier(images), network(images))


def test_classes_are_kept():
    classifier = Classifier(Returns(lambda z: z), [0.0] * 3, [1.0] * 3, classes=["a", "b", "c"])
    assert classifier.classes == ("a", "b", "c")


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    chosen = pick_device("auto")
    if torch.cuda.is_available():
        assert chosen.type == "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        assert chosen.type == "mps"
    else:
        assert chosen == torch.device("cpu")
    with pytest.raises(UserError, match="Unknown device"):
        pick_device("tpu-please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_is_a_user_error():
    with pytest.raises(UserError, match="no CUDA GPU"):
        pick_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_attack_on_gpu_matches_cpu(make_tiny_cnn, images):
    """Same seed, same random start on any device (it is drawn on the CPU); the iterates
    then agree up to the GPU's own rounding (TF32 convolutions may flip the sign of a
    near-zero gradient entry, so a few entries may differ by a step)."""
    mask = torch.zeros(16, 16)
    mask[2:14, 4:12] = 1
    config = AttackConfig(eps=0.03, steps=5, random_start=True, seed=5)
    cpu_steps, gpu_steps = [], []
    cpu = run_attack(make_tiny_cnn(), images, mask, None, config,
                     on_step=lambda s: cpu_steps.append(s.adversarial.clone()))
    gpu = run_attack(make_tiny_cnn().cuda(), images.cuda(), mask.cuda(), None, config,
                     on_step=lambda s: gpu_steps.append(s.adversarial.cpu()))
    assert torch.allclose(gpu_steps[0], cpu_steps[0], atol=1e-6)  # the same random start
    delta = gpu.perturbation.cpu()
    assert torch.all(delta[..., mask == 0] == 0)
    assert float(delta.abs().max()) <= 0.03 + 1e-6
    agree = (gpu.adversarial.cpu() - cpu.adversarial).abs() <= 1e-5
    assert float(agree.float().mean()) > 0.95


def test_dict_with_several_tensors_and_no_logits_asks_which_one():
    classifier = Classifier(Returns(lambda z: {"features": z * 2, "scores": z}), [0.0] * 3, [1.0] * 3)
    with pytest.raises(UserError, match=r"'features', 'scores'.*\"output_key\""):
        classifier(torch.rand(2, 3, 4, 4))
    chosen = Classifier(Returns(lambda z: {"features": z * 2, "scores": z}), [0.0] * 3, [1.0] * 3,
                        output_key="scores")
    plain = Classifier(Returns(lambda z: z), [0.0] * 3, [1.0] * 3)
    images = torch.rand(2, 3, 4, 4)
    assert torch.equal(chosen(images), plain(images))


def test_probabilities_become_log_probabilities():
    """softmax(log p) = p: the wrapper hands on the model's own probabilities."""
    images = torch.rand(3, 3, 4, 4)
    softmaxed = Returns(lambda z: torch.softmax(z, dim=1))
    classifier = Classifier(softmaxed, [0.0] * 3, [1.0] * 3, output="probabilities")
    with torch.no_grad():
        expected = softmaxed(images)
    assert torch.allclose(torch.softmax(classifier(images), dim=1), expected, atol=1e-6)
    # A probability of exactly 0 stays a finite logit with a finite gradient.
    certain = Classifier(Returns(lambda z: torch.softmax(z * 1e4, dim=1)), [0.0] * 3, [1.0] * 3,
                         output="probabilities")
    x = images.clone().requires_grad_(True)
    gradient = torch.autograd.grad(torch.nn.functional.cross_entropy(certain(x), torch.zeros(3).long()), x)[0]
    assert torch.isfinite(gradient).all()


def test_single_sigmoid_probability_becomes_two_classes():
    images = torch.rand(4, 3, 4, 4)
    sigmoid = Returns(lambda z: torch.sigmoid(z), classes=1)
    classifier = Classifier(sigmoid, [0.0] * 3, [1.0] * 3, output="probabilities")
    with torch.no_grad():
        p = sigmoid(images)[:, 0]
    assert torch.allclose(torch.softmax(classifier(images), dim=1)[:, 1], p, atol=1e-6)


@pytest.mark.parametrize("bad, word", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_non_finite_logits_name_the_rows(bad, word):
    def poison(z):
        z = z.clone()
        z[1, 0] = bad
        return z

    classifier = Classifier(Returns(poison), [0.0] * 3, [1.0] * 3)
    with pytest.raises(NonFiniteLogitsError, match=fr"{word} logits for 1 of 3 images \(row 1\) on a 3×3×4×4 batch"):
        classifier(torch.rand(3, 3, 4, 4))
    check_finite_logits(torch.zeros(2, 3))  # finite logits pass silently


def test_forward_errors_and_out_of_memory_are_one_line():
    def out_of_memory(z):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\n(stack...)")

    classifier = Classifier(Returns(out_of_memory), [0.0] * 3, [1.0] * 3)
    with pytest.raises(ModelForwardError, match=r"ran out of memory on a 2×3×4×4 batch.*--batch-size"):
        classifier(torch.rand(2, 3, 4, 4))

    def fails(z):
        raise KeyError("missing layer")

    classifier = Classifier(Returns(fails), [0.0] * 3, [1.0] * 3)
    with pytest.raises(ModelForwardError, match=r"forward raised KeyError on a 1×3×4×4 image: 'missing layer'"):
        classifier(torch.rand(1, 3, 4, 4))


@pytest.mark.parametrize("mean, std", [([0.0] * 3, [0.0, 1.0, 1.0]), ([float("nan")] * 3, [1.0] * 3),
                                       ([0.0] * 3, [1e-300] * 3)])
def test_unusable_normalisation_is_refused(mean, std):
    with pytest.raises(UserError, match="Normalisation"):
        Classifier(Returns(lambda z: z), mean, std)
