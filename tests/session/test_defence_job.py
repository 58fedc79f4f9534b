"""Robustness curves and the defence comparison the Train panel shows."""

from __future__ import annotations

import torch
from torch import nn

from advexplorer.core.model import Classifier
from advexplorer.core.training import LabelledImages, robustness_curves
from advexplorer.session.training_job import DefenceJob, defence_job


class Brightness(nn.Module):
    """Class 1 when the mean pixel is above 0.5: a uniform shift of 0.12 flips every image here."""

    def forward(self, x):
        score = (x.mean(dim=(1, 2, 3)) - 0.5) * 60
        return torch.stack([-score, score], dim=1)


def task(n: int = 24) -> tuple[Classifier, LabelledImages]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    shade = 0.5 + (2 * labels - 1).float() * 0.08
    images = (shade.view(-1, 1, 1, 1) + 0.03 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 1)
    return Classifier(Brightness(), [0, 0, 0], [1, 1, 1]), LabelledImages(images, labels)


def run(generator):
    steps = []
    while True:
        try:
            steps.append(next(generator))
        except StopIteration as stop:
            return steps, stop.value


def test_a_curve_starts_at_clean_accuracy_and_falls_with_the_budget():
    classifier, data = task()
    steps, curves = run(robustness_curves([("bare", "model", classifier)], data, (0.12, 0, 0.03), steps=10))
    assert [s.done for s in steps] == [1, 2, 3] and steps[-1].total == 3
    (curve,) = curves
    assert curve.eps == (0.0, 0.03, 0.12)                   # sorted, ε = 0 first
    assert curve.accuracy[0].value == 1.0 and curve.accuracy[-1].value == 0.0
    values = [a.value for a in curve.accuracy]
    assert values == sorted(values, reverse=True)           # never rises with ε here
    assert curve.at(0.1).value == 0.0 and curve.to_json()["accuracy"][0]["interval95"][1] == 1.0


def test_the_defence_comparison_shows_bit_depth_hiding_the_gradient():
    classifier, data = task()
    job = DefenceJob(models=[("bare", classifier)], defence="bits:3", eps_list=(0, 0.12), steps=10, data=data)
    _, curves = run(defence_job(job))
    naive, adaptive = curves
    assert (naive.kind, adaptive.kind) == ("naive", "bpda") and naive.defence == "bits:3"
    assert naive.name == "bare + bits:3 (naive)" and adaptive.name == "bare + bits:3 (BPDA)"
    assert naive.at(0).value == adaptive.at(0).value == 1.0  # the defence keeps clean accuracy
    assert naive.at(0.12).value == 1.0                       # the naive attack is blind
    assert adaptive.at(0.12).value == 0.0                    # BPDA is not
    assert naive.at(0.12).clearly_above(adaptive.at(0.12))


def test_a_random_defence_is_compared_with_eot():
    classifier, data = task(8)
    job = DefenceJob(models=[("bare", classifier)], defence="noise:0.02", eps_list=(0, 0.12), steps=5, data=data)
    _, curves = run(defence_job(job))
    assert [c.kind for c in curves] == ["naive", "eot"]
