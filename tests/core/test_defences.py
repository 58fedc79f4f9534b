"""Preprocessing defences: they look robust to a naive attack, and BPDA shows what is left."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advexplorer.core.attacks import AttackConfig
from advexplorer.core.defences import (
    DefendedClassifier, Defence, compare_defence, gaussian_blur, jpeg, median_filter, reduce_bits)
from advexplorer.core.model import Classifier
from advexplorer.config import parse_adaptive, parse_defence, parse_precision
from advexplorer.errors import UserError


class Brightness(nn.Module):
    """Class 1 when the mean pixel is above 0.5: a model any uniform shift of 0.12 flips."""

    def forward(self, x):
        score = (x.mean(dim=(1, 2, 3)) - 0.5) * 60
        return torch.stack([-score, score], dim=1)


@pytest.fixture(scope="module")
def task():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    shade = 0.5 + (2 * labels - 1).float() * 0.08
    images = (shade.view(-1, 1, 1, 1) + 0.03 * torch.randn(40, 3, 16, 16, generator=g)).clamp(0, 1)
    return Classifier(Brightness(), [0, 0, 0], [1, 1, 1]), images, labels


PGD = AttackConfig(method="pgd", eps=0.12, steps=10, early_stop=True, seed=0)


@pytest.mark.parametrize("defence", ["jpeg:75", "bits:3"])
def test_a_masking_defence_looks_robust_naively_and_falls_to_bpda(task, defence):
    classifier, images, labels = task
    comparison = compare_defence(classifier, images, labels, defence, PGD, adaptive="bpda")
    assert comparison.clean_defended.value >= 0.9          # the defence keeps clean accuracy
    assert comparison.undefended.value <= 0.1              # the bare model is broken
    assert comparison.naive.value >= 0.9                   # the naive attack is blind: "robust"
    assert comparison.adaptive_result.value <= 0.1         # BPDA breaks it again
    report = comparison.to_json()
    assert report["robust_naive"]["interval95"][0] > report["robust_adaptive"]["interval95"][1]


def test_naive_gradient_through_jpeg_is_zero_and_bpda_is_the_identity(task):
    classifier, images, _ = task
    x = images[:2].clone().requires_grad_(True)
    naive = DefendedClassifier(classifier, "jpeg:50", "none")(x)[:, 1].sum()
    assert torch.count_nonzero(torch.autograd.grad(naive, x)[0]) == 0
    x = images[:2].clone().requires_grad_(True)
    bpda = DefendedClassifier(classifier, "jpeg:50", "bpda")(x)[:, 1].sum()
    assert torch.autograd.grad(bpda, x)[0].abs().min() > 0


def test_blur_is_differentiable_so_even_the_naive_attack_sees_through_it(task):
    classifier, images, labels = task
    comparison = compare_defence(classifier, images, labels, "blur:1.5", PGD, adaptive="bpda")
    assert comparison.naive.value <= 0.1 and comparison.adaptive_result.value <= 0.1


def test_eot_averages_draws_of_a_random_defence_only():
    classifier = Classifier(Brightness(), [0, 0, 0], [1, 1, 1])
    assert DefendedClassifier(classifier, "noise:0.1", "eot", samples=5).samples == 5
    assert DefendedClassifier(classifier, "jpeg:75", "eot", samples=5).samples == 1
    x = torch.full((1, 3, 8, 8), 0.52)
    eot = DefendedClassifier(classifier, "noise:0.2", "eot", samples=64)
    single = DefendedClassifier(classifier, "noise:0.2", "bpda")
    spread_eot = torch.stack([eot(x)[0, 1] for _ in range(8)]).std()
    spread_single = torch.stack([single(x)[0, 1] for _ in range(8)]).std()
    assert spread_eot < spread_single


def test_the_filters_do_what_they_say():
    x = torch.rand(2, 3, 12, 12)
    assert torch.allclose(gaussian_blur(x, 1.0).mean(), x.mean(), atol=0.02)
    assert gaussian_blur(x, 2.0).std() < x.std()
    spike = torch.full((1, 1, 5, 5), 0.5)
    spike[0, 0, 2, 2] = 1.0
    assert torch.allclose(median_filter(spike, 3), torch.full_like(spike, 0.5))
    assert reduce_bits(x, 1).unique().tolist() == [0.0, 1.0]
    grey = torch.full((1, 3, 16, 16), 0.5)
    assert (jpeg(grey, 90) - grey).abs().max() < 0.01
    assert Defence("median:2")(x).shape == x.shape


def test_options_are_parsed_once_with_one_clear_message():
    assert parse_defence("jpeg:75").text() == "jpeg:75"
    assert parse_defence("blur:1.5").value == 1.5
    for bad, message in [("jpeg:0", "from 1 to 100"), ("bits:2.5", "whole number"), ("sharpen:2", "give one of"),
                         ("jpeg", "give one of"), ("blur:x", "not a number")]:
        with pytest.raises(UserError, match=message):
            parse_defence(bad)
    with pytest.raises(UserError, match="add --defense"):
        parse_adaptive("bpda", None)
    assert parse_adaptive("EOT", parse_defence("noise:0.1")) == "eot"
    with pytest.raises(UserError, match="float32"):
        parse_precision("int4")
