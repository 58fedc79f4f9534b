"""Lower precision: float16/bfloat16 casts, int8 dynamic quantisation, BPDA and transfer attacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.model import Classifier
from advexplorer.core.quantisation import QuantisedClassifier, compare_precisions
from advexplorer.errors import UserError


def small_cnn() -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 3))
    return Classifier(net, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


@pytest.fixture(scope="module")
def model_and_data():
    classifier = small_cnn()
    images = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = classifier(images).argmax(1)  # the float32 model is right on every image
    return classifier, images, labels


@pytest.mark.parametrize("precision,tolerance", [("float16", 0.02), ("bfloat16", 0.1), ("int8", 0.1)])
def test_low_precision_logits_stay_close_to_float32(model_and_data, precision, tolerance):
    classifier, images, _ = model_and_data
    low = QuantisedClassifier(classifier, precision)
    with torch.no_grad():
        difference = (low(images) - classifier(images)).abs().max()
    assert difference < tolerance * classifier(images).abs().max() + 1e-3
    assert low(images).dtype == torch.float32


def test_int8_says_which_layers_were_quantised_and_keeps_convolutions_in_float(model_and_data):
    classifier, _, _ = model_and_data
    low = QuantisedClassifier(classifier, "int8")
    assert low.quantised_layers == ["4", "6"]
    assert "convolutions stay float32" in low.describe()
    assert isinstance(low.low.model[0], nn.Conv2d)
    assert type(low.low.model[4]).__module__.startswith("torch.ao.nn.quantized")


def test_int8_is_attacked_with_bpda_through_the_quantiser(model_and_data):
    classifier, images, labels = model_and_data
    low = QuantisedClassifier(classifier, "int8")
    x = images[:4].clone().requires_grad_(True)
    gradient = torch.autograd.grad(low(x)[:, 0].sum(), x)[0]
    assert gradient.abs().sum() > 0  # the float32 model's gradient, straight through
    config = AttackConfig(method="pgd", eps=0.2, steps=10, seed=0)
    assert bool(run_attack(classifier, images, None, labels, config).success.all())
    assert bool(run_attack(low, images, None, labels, config).success.all())


def test_compare_reports_clean_direct_and_transfer_per_precision(model_and_data):
    classifier, images, labels = model_and_data
    config = AttackConfig(method="pgd", eps=2 / 255, steps=5, early_stop=True, seed=0)
    reports = compare_precisions(classifier, images, labels, config)
    assert [r.precision for r in reports] == ["float32", "float16", "bfloat16", "int8"]
    assert reports[0].clean.value == 1.0
    for report in reports:
        assert 0 <= report.robust_direct.held <= report.clean.n
        assert set(report.to_json()) == {"precision", "how", "clean_accuracy", "robust_direct",
                                         "robust_transfer_from_float32"}


def test_models_that_cannot_be_quantised_are_refused_with_a_reason(model_and_data):
    classifier, _, _ = model_and_data
    convolutions_only = Classifier(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                                   [0, 0, 0], [1, 1, 1])
    with pytest.raises(UserError, match="has none"):
        QuantisedClassifier(convolutions_only, "int8")
    scripted = Classifier(torch.jit.script(classifier.model), [0, 0, 0], [1, 1, 1])
    with pytest.raises(UserError, match="TorchScript"):
        QuantisedClassifier(scripted, "float16")


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.fx cannot trace it symbolically."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = self.conv(x).mean(dim=(2, 3))
        if x.sum() > 0:
            x = x * 2
        return self.head(x)


def test_static_int8_quantises_convolutions_too_and_is_attacked_with_bpda(model_and_data):
    classifier, images, labels = model_and_data
    low = QuantisedClassifier(classifier, "int8-static", calibration=images)
    assert low.quantised_layers[0].startswith("0") and len(low.quantised_layers) == 3   # conv + 2 linear
    assert "static quantisation" in low.describe() and "calibrated on 24 image(s)" in low.describe()
    with torch.no_grad():
        agreement = (low(images).argmax(1) == labels).float().mean()
    assert agreement >= 0.75                      # int8 with calibrated ranges keeps most answers
    x = images[:4].clone().requires_grad_(True)
    assert torch.autograd.grad(low(x)[:, 0].sum(), x)[0].abs().sum() > 0   # BPDA: float32's gradient
    config = AttackConfig(method="pgd", eps=0.2, steps=10, seed=0)
    assert bool(run_attack(low, images, None, labels, config).success.all())


def test_static_int8_refuses_an_untraceable_network_and_missing_calibration(model_and_data):
    classifier, images, _ = model_and_data
    with pytest.raises(UserError, match="needs calibration images"):
        QuantisedClassifier(classifier, "int8-static")
    untraceable = Classifier(DataDependent(), [0, 0, 0], [1, 1, 1])
    with pytest.raises(UserError, match="torch.fx can trace.*use --precision int8"):
        QuantisedClassifier(untraceable, "int8-static", calibration=images)
