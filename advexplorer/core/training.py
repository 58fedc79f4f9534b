"""Adversarial training of a user's model, as a step generator (per batch, per epoch).

Four methods, all trained through :class:`advexplorer.core.model.Classifier` (normalisation
inside, pixel space outside) and all using the app's one attack engine,
:func:`advexplorer.core.attacks.run_attack`, for the inner maximisation:

* ``clean`` — cross-entropy on the clean images.
* ``pgd`` — PGD adversarial training, Madry et al., *Towards Deep Learning Models Resistant
  to Adversarial Attacks*, ICLR 2018, https://arxiv.org/abs/1706.06083: each batch is
  replaced by its PGD-k L∞ adversarial version (random start, step 2.5·ε/k).
* ``trades`` — Zhang et al., *Theoretically Principled Trade-off between Robustness and
  Accuracy*, ICML 2019, https://arxiv.org/abs/1901.08573: loss = CE(f(x), y) +
  β·KL(f(x) ‖ f(x')), x' maximising the KL term. The engine maximises the cross-entropy of a
  class, so the KL objective is handed to it as a two-logit model whose class-0
  cross-entropy is softplus(Σ p log q) — a strictly increasing function of KL(p ‖ q) per
  image, so the signed PGD steps are exactly TRADES' (see :class:`_KLObjective`).
* ``fast`` — "fast is better than free", Wong, Rice & Kolter, ICLR 2020,
  https://arxiv.org/abs/2001.03994: one FGSM step of size 1.25·ε from a uniform random
  start in the ε-ball (the engine's PGD rule run for one step).

The inner maximisation runs with the network in eval mode (BatchNorm uses its running
statistics and is not updated by adversarial batches) and with weight gradients off; the
outer step runs in train mode. An allowed mask (e.g. the background only) restricts the
perturbation during training exactly as it does in an attack.

:func:`train_steps` yields :class:`BatchProgress` after every batch and
:class:`EpochProgress` after every epoch (held-out clean and robust accuracy with Wilson
intervals, time per epoch); it keeps the best weights seen so far (robust accuracy for
adversarial methods, clean accuracy for clean training), so stopping it — ``stop`` set, or
the generator closed — still leaves :class:`TrainResult` with the best checkpoint.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advexplorer.config import AttackConfig
from advexplorer.core.attacks import run_attack
from advexplorer.core.model import Classifier
from advexplorer.core.screen_results import wilson_interval
from advexplorer.errors import UserError

#: The training methods, in menu order, with one line each for help texts and cards.
TRAINING_METHODS: dict[str, str] = {
    "clean": "standard training (cross-entropy on clean images)",
    "pgd": "PGD adversarial training (Madry et al. 2018, https://arxiv.org/abs/1706.06083)",
    "trades": "TRADES (Zhang et al. 2019, https://arxiv.org/abs/1901.08573)",
    "fast": "fast adversarial training: FGSM from a random start, step 1.25·ε "
            "(Wong et al. 2020, https://arxiv.org/abs/2001.03994)",
}
#: Smoothing of the per-batch loss curve (exponential moving average weight of the past).
SMOOTHING = 0.9


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe (recorded in the trained model's card)."""

    method: str = "pgd"
    eps: float = 8 / 255
    steps: int = 7                 # PGD steps of the inner maximisation (pgd, trades)
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    beta: float = 6.0              # TRADES' trade-off weight (the paper's CIFAR-10 value)
    weight_decay: float = 5e-4
    eval_steps: int = 10           # PGD steps of the held-out robust accuracy
    seed: int = 0

    def validate(self) -> "TrainConfig":
        """Raise :class:`UserError` with a fix-it message for any out-of-range value."""
        if self.method not in TRAINING_METHODS:
            raise UserError(f"Unknown training method {self.method!r}; choose one of "
                            f"{', '.join(TRAINING_METHODS)}.")
        # The engine's own checks say what is wrong with ε and steps, in its words.
        AttackConfig(method="pgd", eps=float(self.eps), steps=int(self.steps)).validate()
        AttackConfig(method="pgd", eps=float(self.eps), steps=int(self.eval_steps)).validate()
        for name, value in (("epochs", self.epochs), ("batch size", self.batch_size)):
            if int(value) < 1:
                raise UserError(f"{name} = {value} is out of range: it must be at least 1.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"learning rate {self.lr:g} must be greater than 0 (e.g. 1e-3).")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise UserError(f"TRADES β = {self.beta:g} must be ≥ 0 (the paper uses 6).")
        return self

    @property
    def adversarial(self) -> bool:
        return self.method != "clean"

    def inner_attack(self) -> AttackConfig | None:
        """The engine configuration of the inner maximisation (None for clean training)."""
        if self.method == "clean":
            return None
        if self.method == "fast":
            return AttackConfig(method="pgd", norm="linf", eps=float(self.eps), steps=1,
                                step_size=1.25 * float(self.eps), random_start=True)
        return AttackConfig(method="pgd", norm="linf", eps=float(self.eps), steps=int(self.steps),
                            random_start=True)

    def evaluation_attack(self) -> AttackConfig:
        """The held-out robust accuracy's attack: PGD from the clean image, early stop."""
        return AttackConfig(method="pgd", norm="linf", eps=float(self.eps), steps=int(self.eval_steps),
                            early_stop=True, seed=0)

    def to_json(self) -> dict:
        return {"method": self.method, "method_text": TRAINING_METHODS[self.method],
                "eps": float(self.eps), "norm": "linf", "steps": int(self.steps),
                "epochs": int(self.epochs), "lr": float(self.lr), "batch_size": int(self.batch_size),
                "beta": float(self.beta) if self.method == "trades" else None,
                "weight_decay": float(self.weight_decay), "optimizer": "AdamW, cosine schedule",
                "eval_steps": int(self.eval_steps), "seed": int(self.seed),
                "inner_attack": None if self.inner_attack() is None else self.inner_attack().to_json(),
                "batchnorm_during_attack": "eval"}


@dataclass
class LabelledImages:
    """Images N×C×H×W in [0,1], labels (N,) and optional allowed masks (1 or N)×1×H×W."""

    images: torch.Tensor
    labels: torch.Tensor
    allowed_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def mask_for(self, rows) -> torch.Tensor | None:
        if self.allowed_mask is None or self.allowed_mask.shape[0] == 1:
            return self.allowed_mask
        return self.allowed_mask[rows]


@dataclass(frozen=True)
class Accuracy:
    """k of n correct, with the 95 % Wilson interval."""

    correct: int
    n: int

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)

    def to_json(self) -> dict:
        low, high = self.interval
        return {"value": round(self.value, 4), "correct": self.correct, "n": self.n,
                "interval95": [round(low, 4), round(high, 4)], "interval": "Wilson"}

    def clearly_above(self, other: "Accuracy") -> bool:
        """True when the two 95 % intervals do not overlap and this one is higher."""
        return self.interval[0] > other.interval[1]


@dataclass(frozen=True)
class BatchProgress:
    epoch: int                 # 1-based
    batch: int                 # 1-based within the epoch
    batches: int
    loss: float
    smoothed_loss: float
    accuracy: float            # on the batch the step trained on (adversarial for AT)


@dataclass(frozen=True)
class EpochProgress:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    clean: Accuracy
    robust: Accuracy
    seconds: float             # training time of the epoch (the held-out measurement excluded)
    best: bool                 # this epoch's weights are now the best checkpoint


@dataclass
class TrainResult:
    """The outcome: the best weights (already loaded into the network) and the history."""

    config: TrainConfig
    history: list[EpochProgress]
    best_epoch: int            # 0: the starting weights were never beaten
    clean: Accuracy            # of the best weights on the held-out split
    robust: Accuracy
    original_clean: Accuracy
    original_robust: Accuracy
    stopped: str               # "finished" or "cancelled"
    seconds: float
    best_state: dict = field(repr=False, default_factory=dict)


class _KLObjective(nn.Module):
    """TRADES' inner objective as a model the engine can attack with label 0.

    Returns logits [t, 0] with t = Σ_k p_k log q_k(x'), p the clean probabilities (fixed)
    and q the model's on x'. The engine maximises CE([t, 0], 0) = softplus(−t), strictly
    increasing in −t = H(p, q) = KL(p ‖ q) + H(p), so each image's gradient points where
    TRADES' does (a positive multiple of it) and sign steps are identical.
    """

    def __init__(self, classifier: nn.Module, clean_probabilities: torch.Tensor):
        super().__init__()
        self.classifier = classifier
        self.clean_probabilities = clean_probabilities

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_q = F.log_softmax(self.classifier(images), dim=1)
        t = (self.clean_probabilities * log_q).sum(dim=1, keepdim=True)
        return torch.cat([t, torch.zeros_like(t)], dim=1)


def _inner_maximisation(classifier: Classifier, net: nn.Module, batch: torch.Tensor,
                        labels: torch.Tensor, mask: torch.Tensor | None, config: TrainConfig,
                        seed: int) -> torch.Tensor:
    """The adversarial batch from the engine, with BatchNorm frozen and weight gradients off."""
    attack = replace(config.inner_attack(), seed=seed)
    was_training = net.training
    net.eval()
    _set_trainable(net, False)
    try:
        if config.method == "trades":
            with torch.no_grad():
                clean_probabilities = torch.softmax(classifier(batch), dim=1)
            target = _KLObjective(classifier, clean_probabilities)
            zeros = torch.zeros_like(labels)
            result = run_attack(target, batch, mask, zeros, attack)
        else:
            result = run_attack(classifier, batch, mask, labels, attack)
    finally:
        _set_trainable(net, True)
        net.train(was_training)
    return result.adversarial.detach()


def _batch_loss(classifier: Classifier, batch: torch.Tensor, adversarial: torch.Tensor | None,
                labels: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The outer loss and the logits its accuracy is counted on."""
    if config.method == "trades":
        clean_logits = classifier(batch)
        adversarial_logits = classifier(adversarial)
        kl = F.kl_div(F.log_softmax(adversarial_logits, dim=1), F.softmax(clean_logits, dim=1),
                      reduction="batchmean")
        return F.cross_entropy(clean_logits, labels) + config.beta * kl, adversarial_logits
    logits = classifier(batch if adversarial is None else adversarial)
    return F.cross_entropy(logits, labels), logits


@torch.no_grad()
def clean_accuracy(classifier: nn.Module, data: LabelledImages, batch_size: int = 256) -> Accuracy:
    """How many held-out images the model classifies correctly."""
    correct = 0
    for start in range(0, len(data), batch_size):
        logits = classifier(data.images[start:start + batch_size])
        correct += int((logits.argmax(1) == data.labels[start:start + batch_size]).sum())
    return Accuracy(correct, len(data))


def robust_accuracy(classifier: nn.Module, data: LabelledImages, attack: AttackConfig,
                    batch_size: int = 256, stop: threading.Event | None = None) -> Accuracy:
    """How many held-out images PGD cannot misclassify (correct at every iterate: early stop
    counts an image as broken at the first wrong iterate, the clean image included)."""
    held = 0
    for start in range(0, len(data), batch_size):
        if stop is not None and stop.is_set():
            break
        rows = slice(start, start + batch_size)
        result = run_attack(classifier, data.images[rows], data.mask_for(rows), data.labels[rows], attack)
        held += int((~result.success).sum())
    return Accuracy(held, len(data))


def _set_trainable(net: nn.Module, trainable_weights: bool) -> None:
    """Switch weight gradients on or off (parameter by parameter: ScriptModules refuse
    ``requires_grad_`` on the module)."""
    for parameter in net.parameters():
        parameter.requires_grad_(trainable_weights)


def _snapshot(net: nn.Module) -> dict:
    return {key: value.detach().clone() for key, value in net.state_dict().items()}


def _check_data(classifier: Classifier, train: LabelledImages, held_out: LabelledImages) -> None:
    if len(train) == 0:
        raise UserError("There are no training images; give a folder with one subfolder of images per class.")
    if len(held_out) == 0:
        raise UserError("The held-out split has 0 images, so accuracy cannot be measured; "
                        "raise --held-out (e.g. 0.2) or add images.")
    with torch.no_grad():
        classes = classifier(train.images[:1]).shape[1]
    top = int(max(train.labels.max(), held_out.labels.max()))
    if top >= classes or int(min(train.labels.min(), held_out.labels.min())) < 0:
        raise UserError(f"A label is outside the model's {classes} classes (0 to {classes - 1}).")


def train_steps(classifier: Classifier, train: LabelledImages, held_out: LabelledImages,
                config: TrainConfig, *, stop: threading.Event | None = None,
                on_checkpoint: Callable[[dict, EpochProgress], None] | None = None,
                ) -> Generator[BatchProgress | EpochProgress, None, TrainResult]:
    """Fine-tune ``classifier.model`` in place; yields progress, returns :class:`TrainResult`.

    AdamW with a cosine learning-rate schedule; each batch's attack has its own seed drawn
    from ``config.seed``, so a run is repeatable. ``stop`` (set by Cancel) ends the run at
    the next batch; the best weights are then loaded back into the network. The original
    weights are measured first (epoch 0), so "best" never means worse than the start.
    ``on_checkpoint(state_dict, epoch)`` is called whenever the best weights improve (the
    command writes them to disk there).
    """
    config = config.validate()
    _check_data(classifier, train, held_out)
    net = classifier.model
    _set_trainable(net, True)
    started = time.perf_counter()
    evaluation = config.evaluation_attack()

    def measure() -> tuple[Accuracy, Accuracy]:
        net.eval()
        _set_trainable(net, False)
        try:
            return clean_accuracy(classifier, held_out), robust_accuracy(classifier, held_out, evaluation)
        finally:
            _set_trainable(net, True)

    original_clean, original_robust = measure()

    def score(clean: Accuracy, robust: Accuracy) -> tuple:
        return (robust.correct, clean.correct) if config.adversarial else (clean.correct, robust.correct)

    best_state, best_score, best_epoch = _snapshot(net), score(original_clean, original_robust), 0
    best_clean, best_robust = original_clean, original_robust
    batches = math.ceil(len(train) / config.batch_size)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.is_floating_point()],
                                  lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * batches
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))
    rng = np.random.default_rng(config.seed)
    shuffle = torch.Generator().manual_seed(int(config.seed))
    # Dropout (and any other layer that draws in train mode) uses torch's global generator:
    # seed it too, or two runs of the same recipe train different twins.
    torch.manual_seed(int(config.seed))
    history: list[EpochProgress] = []
    smoothed = None
    stopped = "finished"
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            order = torch.randperm(len(train), generator=shuffle)
            loss_sum, correct = 0.0, 0
            for index in range(batches):
                if stop is not None and stop.is_set():
                    stopped = "cancelled"
                    break
                rows = order[index * config.batch_size:(index + 1) * config.batch_size].to(train.images.device)
                batch, labels = train.images[rows], train.labels[rows]
                adversarial = None
                if config.adversarial:
                    adversarial = _inner_maximisation(classifier, net, batch, labels, train.mask_for(rows),
                                                      config, int(rng.integers(2**31)))
                net.train()
                loss, logits = _batch_loss(classifier, batch, adversarial, labels, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                value = float(loss.detach())
                smoothed = value if smoothed is None else SMOOTHING * smoothed + (1 - SMOOTHING) * value
                batch_correct = int((logits.detach().argmax(1) == labels).sum())
                loss_sum += value * len(labels)
                correct += batch_correct
                yield BatchProgress(epoch, index + 1, batches, value, smoothed, batch_correct / len(labels))
            if stopped == "cancelled":
                break
            seconds = time.perf_counter() - epoch_started  # training only, not the held-out measurement
            clean, robust = measure()
            improved = score(clean, robust) > best_score
            entry = EpochProgress(epoch, config.epochs, loss_sum / len(train), correct / len(train),
                                  clean, robust, seconds, improved)
            history.append(entry)
            if improved:
                best_state, best_score, best_epoch = _snapshot(net), score(clean, robust), epoch
                best_clean, best_robust = clean, robust
                if on_checkpoint is not None:
                    on_checkpoint(best_state, entry)
            yield entry
    except GeneratorExit:  # the consumer closed us (window closed): still restore the best
        stopped = "cancelled"
        net.load_state_dict(best_state)
        net.eval()
        raise
    net.load_state_dict(best_state)
    net.eval()
    _set_trainable(net, False)
    return TrainResult(config, history, best_epoch, best_clean, best_robust, original_clean,
                       original_robust, stopped, time.perf_counter() - started, best_state)


def trainable(classifier: Classifier) -> Classifier:
    """A deep copy of a loaded classifier whose network can be trained (the original stays as
    it was, so the app can compare the two)."""
    twin = copy.deepcopy(classifier)
    _set_trainable(twin.model, True)
    return twin


# --------------------------------------------------------------------------------------
# Robustness curves: held-out accuracy against ε, for every model the user compares


@dataclass(frozen=True)
class RobustnessCurve:
    """Held-out accuracy of one model at each budget ε (ε = 0 is the clean accuracy).

    ``kind`` is ``"model"`` for a bare model, or the attack's gradients for a defended
    variant: ``"naive"`` (through the defence as implemented), ``"bpda"`` or ``"eot"``."""

    name: str
    eps: tuple[float, ...]
    accuracy: tuple[Accuracy, ...]
    kind: str = "model"
    defence: str | None = None

    def at(self, eps: float) -> Accuracy:
        """The accuracy at the budget nearest ``eps``."""
        index = min(range(len(self.eps)), key=lambda j: abs(self.eps[j] - eps))
        return self.accuracy[index]

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "defence": self.defence,
                "eps": [float(e) for e in self.eps], "accuracy": [a.to_json() for a in self.accuracy]}


@dataclass(frozen=True)
class CurveProgress:
    """One point of a robustness curve measured (``done`` of ``total`` points)."""

    name: str
    eps: float
    accuracy: Accuracy
    done: int
    total: int


def curve_budgets(eps: float) -> tuple[float, ...]:
    """The budgets of a curve around the training ε: 0, ε/4, ε/2, ε and 2ε (at most 1)."""
    return tuple(sorted({0.0, eps / 4, eps / 2, float(eps), min(2 * float(eps), 1.0)}))


def robustness_curves(models, data: LabelledImages, eps_list, steps: int = 10,
                      stop: threading.Event | None = None
                      ) -> Generator[CurveProgress, None, list[RobustnessCurve]]:
    """Measure each model's curve on ``data``; yields after every (model, ε) point.

    ``models`` is a sequence of ``(name, kind, classifier)`` or ``(name, kind, classifier,
    defence)``. At ε > 0 the attack is the held-out evaluation's: L∞ PGD-``steps`` from the
    clean image, step 2.5·ε/steps, early stop (an image counts as broken at its first wrong
    iterate, so robust accuracy is never above clean accuracy). Each model is attacked
    through itself, so a defended variant's curve is the one its attack mode earns.
    ``stop`` ends the measurement between points; the curves measured so far are returned.
    """
    eps_list = tuple(sorted({float(e) for e in eps_list}))
    total = len(models) * len(eps_list)
    curves: list[RobustnessCurve] = []
    done = 0
    for entry in models:
        name, kind, classifier = entry[:3]
        defence = entry[3] if len(entry) > 3 else None
        points: list[Accuracy] = []
        for eps in eps_list:
            if stop is not None and stop.is_set():
                return curves
            if eps == 0:
                accuracy = clean_accuracy(classifier, data)
            else:
                attack = AttackConfig(method="pgd", norm="linf", eps=eps, steps=int(steps),
                                      early_stop=True, seed=0)
                accuracy = robust_accuracy(classifier, data, attack)
            points.append(accuracy)
            done += 1
            yield CurveProgress(name, eps, accuracy, done, total)
        curves.append(RobustnessCurve(name, eps_list, tuple(points), kind, defence))
    return curves
