"""Feature squeezing: scores, ROC/AUC (checked against scikit-learn), and the adaptive attack."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from advexplorer.core.attacks import AttackConfig
from advexplorer.core.detection import FeatureSqueezing, JointSqueezedModel, evaluate_detector, roc

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_curve_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    clean = np.round(rng.normal(0.0, 1.0, 40), 1)          # rounded: ties on purpose
    adversarial = np.round(rng.normal(1.0, 1.0, 30), 1)
    curve = roc(clean, adversarial)
    truth = np.r_[np.zeros(40), np.ones(30)]
    scores = np.r_[clean, adversarial]
    assert curve.auc == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    assert np.allclose(curve.false_positive_rate, fpr) and np.allclose(curve.true_positive_rate, tpr)


def test_identical_predictions_score_zero(tiny_cnn, images):
    detector = FeatureSqueezing(tiny_cnn, ("bits:8",))  # 8 bits of an 8-bit image: nothing changes
    quantised = torch.round(images * 255) / 255
    assert torch.allclose(detector.score(quantised), torch.zeros(len(images)), atol=1e-6)


@pytest.fixture(scope="module")
def digits():
    sys.path.insert(0, str(MODELS))
    import demo_data

    from advexplorer.io.models import load_model

    split = demo_data.digits_split("held_out")
    return (load_model(MODELS / "digits_cnn.pt", device="cpu").classifier,
            split.images[:160].float(), split.labels[:160].long())


@pytest.mark.slow
def test_detector_catches_plain_pgd_and_the_adaptive_attack_slips_past_more_often(digits):
    torch.set_num_threads(1)
    model, images, labels = digits
    detector = FeatureSqueezing(model)
    report = evaluate_detector(detector, images[80:], images[:80], labels[:80],
                               AttackConfig(method="pgd", eps=16 / 255, steps=30, seed=0))
    assert report.auc_naive > 0.95                        # the plain attack is easy to see
    assert report.attack_success_naive > 0.5
    assert report.auc_adaptive < report.auc_naive         # the adaptive one is harder to see
    assert report.undetected_success_adaptive > report.undetected_success_naive
    assert set(report.to_json()) >= {"auc_naive", "auc_adaptive", "detected_adaptive"}


def test_the_joint_model_averages_log_probabilities_of_every_view(tiny_cnn, images):
    detector = FeatureSqueezing(tiny_cnn, ("bits:4", "median:2"))
    joint = JointSqueezedModel(detector)(images)
    expected = torch.stack([torch.log_softmax(tiny_cnn(v), 1) for v in
                            (images, detector.squeezers[0].apply(images), detector.squeezers[1].apply(images))]).mean(0)
    assert torch.allclose(joint, expected, atol=1e-6)
