"""Feature squeezing: a detector of adversarial inputs, its ROC, and an attack that evades it.

Xu, Evans & Qi, *Feature Squeezing: Detecting Adversarial Examples in Deep Neural
Networks*, NDSS 2018, https://arxiv.org/abs/1704.01155. The score of an input is the
largest L1 distance between the model's probabilities on the input and on each squeezed
copy (bit-depth reduction, median filter): clean images barely change under squeezing,
adversarial perturbations often do. An input is flagged when its score exceeds a threshold
chosen on clean images (e.g. the 95th percentile: 5 % false alarms).

:func:`roc` gives the ROC curve and AUC on held-out clean vs adversarial images (the AUC is
the Mann–Whitney probability that an adversarial score exceeds a clean one, ties counting
half — what ``sklearn.metrics.roc_auc_score`` computes).

The adaptive attack (:class:`JointSqueezedModel`) is the one He et al. (2017,
https://arxiv.org/abs/1706.04701) used against ensembles of weak defences: attack the model
on the input *and* on every squeezed copy at once (logits = mean log-probabilities, BPDA
through the squeezers), targeted at one wrong class. When all copies agree on it, the L1 disagreement the
detector measures is small, so the detector stays quiet. It runs on the same engine as
every attack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.defences import Defence
from advexplorer.config import parse_defence

#: Xu et al.'s squeezers for colour images: 5-bit depth and a 2×2 median filter.
DEFAULT_SQUEEZERS = ("bits:5", "median:2")


class FeatureSqueezing:
    """The detector: ``score(images)`` per image; larger means more likely adversarial."""

    def __init__(self, classifier: nn.Module, squeezers: Sequence[str] = DEFAULT_SQUEEZERS):
        self.classifier = classifier
        self.squeezers = [Defence(parse_defence(text)) for text in squeezers]
        self.threshold: float | None = None

    @torch.no_grad()
    def score(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        scores = []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size]
            probabilities = torch.softmax(self.classifier(batch).float(), dim=1)
            distances = [(probabilities - torch.softmax(self.classifier(s.apply(batch)).float(), dim=1))
                         .abs().sum(dim=1) for s in self.squeezers]
            scores.append(torch.stack(distances).amax(dim=0))
        return torch.cat(scores).cpu()

    def calibrate(self, clean_images: torch.Tensor, false_alarm_rate: float = 0.05) -> float:
        """Set the threshold so that ``false_alarm_rate`` of these clean images are flagged."""
        self.threshold = float(torch.quantile(self.score(clean_images), 1 - false_alarm_rate))
        return self.threshold

    def flags(self, images: torch.Tensor) -> torch.Tensor:
        if self.threshold is None:
            raise ValueError("calibrate the detector on clean images first")
        return self.score(images) > self.threshold


@dataclass(frozen=True)
class RocCurve:
    false_positive_rate: np.ndarray
    true_positive_rate: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc(clean_scores, adversarial_scores) -> RocCurve:
    """ROC of "adversarial" (positive) vs "clean" (negative) and its AUC (Mann–Whitney U)."""
    clean = np.asarray(clean_scores, dtype=np.float64)
    adversarial = np.asarray(adversarial_scores, dtype=np.float64)
    if clean.size == 0 or adversarial.size == 0:
        raise ValueError("a ROC needs at least one clean and one adversarial score")
    thresholds = np.unique(np.concatenate([clean, adversarial]))[::-1]
    tpr = np.array([0.0] + [(adversarial >= t).mean() for t in thresholds])
    fpr = np.array([0.0] + [(clean >= t).mean() for t in thresholds])
    greater = (adversarial[:, None] > clean[None, :]).sum()
    ties = (adversarial[:, None] == clean[None, :]).sum()
    auc = float((greater + 0.5 * ties) / (adversarial.size * clean.size))
    return RocCurve(fpr, tpr, np.concatenate([[np.inf], thresholds]), auc)


class JointSqueezedModel(nn.Module):
    """The model on the input and on each squeezed copy, as one model for the engine: its
    logits are the mean log-probabilities (BPDA through the squeezers). Pushing them all to
    one wrong class fools the model and keeps the detector's disagreement small."""

    def __init__(self, detector: FeatureSqueezing):
        super().__init__()
        self.detector = detector
        self.classifier = detector.classifier

    @staticmethod
    def _through(squeezer: Defence, images: torch.Tensor) -> torch.Tensor:
        """The squeezer's own gradient where it has a useful one (median, blur), else BPDA."""
        if squeezer.spec.kind in ("median", "blur"):
            return squeezer(images)
        return images + (squeezer.apply(images) - images).detach()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = [images] + [self._through(squeezer, images) for squeezer in self.detector.squeezers]
        return torch.stack([torch.log_softmax(self.classifier(v), dim=1) for v in views]).mean(dim=0)


@dataclass(frozen=True)
class DetectionReport:
    """What the detector is worth: AUC against the plain attack and against the adaptive one,
    and, at the threshold set on clean images, how many successful attacks it catches."""

    auc_naive: float
    auc_adaptive: float
    threshold: float
    false_alarm_rate: float
    attack_success_naive: float
    attack_success_adaptive: float
    detected_naive: float       # of the successful adversarial images, the fraction flagged
    detected_adaptive: float
    undetected_success_naive: float     # fooled the model and not flagged
    undetected_success_adaptive: float
    roc_naive: RocCurve
    roc_adaptive: RocCurve

    def to_json(self) -> dict:
        return {key: round(getattr(self, key), 4) for key in (
            "auc_naive", "auc_adaptive", "threshold", "false_alarm_rate", "attack_success_naive",
            "attack_success_adaptive", "detected_naive", "detected_adaptive", "undetected_success_naive",
            "undetected_success_adaptive")}


def evaluate_detector(detector: FeatureSqueezing, calibration: torch.Tensor, images: torch.Tensor,
                      labels: torch.Tensor, config: AttackConfig, false_alarm_rate: float = 0.05,
                      allowed_mask: torch.Tensor | None = None) -> DetectionReport:
    """Calibrate on ``calibration`` (clean, held out), then attack ``images`` plainly and
    adaptively and measure how well the detector separates each from the clean images."""
    threshold = detector.calibrate(calibration, false_alarm_rate)
    clean_scores = detector.score(images)
    plain = run_attack(detector.classifier, images, allowed_mask, labels, config)
    # The adaptive attack is targeted, so that the input and every squeezed copy are pushed
    # to the *same* wrong class (an untargeted one may scatter them over several classes,
    # which the detector sees): the class the plain attack reached, else the clean
    # runner-up.
    with torch.no_grad():
        runner_up = detector.classifier(images).topk(2, dim=1).indices[:, 1]
    reached = plain.adversarial_prediction
    targets = torch.where(reached != labels, reached, runner_up)
    adaptive = run_attack(JointSqueezedModel(detector), images, allowed_mask, labels,
                          replace(config, early_stop=False), targets=targets)
    outcome = {}
    for name, result in (("naive", plain), ("adaptive", adaptive)):
        adversarial = result.adversarial.detach()
        with torch.no_grad():
            fooled = (detector.classifier(adversarial).argmax(1) != labels).cpu()
        scores = detector.score(adversarial)
        flagged = scores > threshold
        outcome[name] = (roc(clean_scores, scores), float(fooled.float().mean()),
                         float(flagged[fooled].float().mean()) if bool(fooled.any()) else 0.0,
                         float((fooled & ~flagged).float().mean()))
    return DetectionReport(
        auc_naive=outcome["naive"][0].auc, auc_adaptive=outcome["adaptive"][0].auc, threshold=threshold,
        false_alarm_rate=false_alarm_rate, attack_success_naive=outcome["naive"][1],
        attack_success_adaptive=outcome["adaptive"][1], detected_naive=outcome["naive"][2],
        detected_adaptive=outcome["adaptive"][2], undetected_success_naive=outcome["naive"][3],
        undetected_success_adaptive=outcome["adaptive"][3],
        roc_naive=outcome["naive"][0], roc_adaptive=outcome["adaptive"][0])
