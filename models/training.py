"""Training, evaluation and adversarial training shared by the ``models/train_*.py`` scripts.

The networks are always trained *through* :class:`advexplorer.core.model.Classifier`, so
the normalisation the card declares is the one used in training, and the attacks (for
adversarial training and for the robust accuracy in the cards) are the project's own
engine, :func:`advexplorer.core.attacks.run_attack` — the same code the app runs.

Adversarial training follows Madry et al., *Towards Deep Learning Models Resistant to
Adversarial Attacks*, ICLR 2018 (https://arxiv.org/abs/1706.06083): minimise over the
weights the loss at the worst perturbation PGD finds in the ε-ball. The inner
maximisation runs with the network in eval mode (BatchNorm uses its running statistics
and does not update them from adversarial batches); the outer step runs in train mode.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:  # the scripts run from a checkout, installed or not
    sys.path.insert(0, str(REPO_DIR))

from advexplorer.core.attacks import AttackConfig, run_attack  # noqa: E402
from advexplorer.core.model import Classifier  # noqa: E402

#: CPU threads used for training; fixed so that runs are repeatable on one machine. One
#: thread: on a shared or busy CPU, two intra-op threads spin-wait on each other and ran
#: ~10× slower in our measurements; these models are too small to gain from more.
TRAIN_THREADS = 1


def seed_everything(seed: int, threads: int = TRAIN_THREADS) -> None:
    """Fix every random source the scripts use and the CPU thread count."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)


def trainable_classifier(net: nn.Module, mean, std, classes, batchnorm_momentum: float | None = 0.1) -> Classifier:
    """Wrap ``net`` in the app's Classifier while keeping its weights trainable.

    The Classifier freezes parameters (the app only ever needs input gradients); training
    needs them back. ``Classifier.train()`` is a no-op by design, so modes are switched on
    ``net`` itself.

    ``batchnorm_momentum``: torchvision's MobileNetV3 uses 0.01, which after a few hundred
    steps of a short from-scratch training leaves running statistics that lag the weights
    (we measured eval-mode outputs stuck near 50 %). 0.1 (PyTorch's default) tracks them;
    momentum is not part of the state_dict, so the saved weights are unaffected.
    """
    classifier = Classifier(net, mean, std, classes)
    net.requires_grad_(True)
    if batchnorm_momentum is not None:
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = batchnorm_momentum
    return classifier


def pgd_config(eps: float, steps: int, step_size: float | None = None, *, random_start: bool,
               seed: int | None = None, early_stop: bool = False) -> AttackConfig:
    """An L∞ PGD configuration for the engine (step size defaults to 2.5·ε/steps)."""
    return AttackConfig(method="pgd", norm="linf", eps=float(eps), steps=int(steps),
                        step_size=step_size, random_start=random_start, seed=seed,
                        early_stop=early_stop)


def adversarial_examples(classifier: Classifier, net: nn.Module, images: torch.Tensor,
                         labels: torch.Tensor, config: AttackConfig) -> torch.Tensor:
    """The inner maximisation: PGD from the engine, with BatchNorm frozen (eval mode)."""
    was_training = net.training
    net.eval()
    net.requires_grad_(False)  # input gradients only; saves building weight gradients
    try:
        result = run_attack(classifier, images, None, labels, config)
    finally:
        net.requires_grad_(True)
        net.train(was_training)
    return result.adversarial.detach()


@dataclass
class EpochLog:
    epoch: int
    loss: float
    accuracy: float
    eps: float
    seconds: float


def fit(net: nn.Module, classifier: Classifier, next_epoch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
        *, epochs: int, lr: float, batch_size: int = 64, weight_decay: float = 5e-4,
        adversary: Callable[[int], AttackConfig | None] | None = None, seed: int = 0,
        log: Callable[[EpochLog], None] = print) -> list[EpochLog]:
    """Train with AdamW and a cosine learning-rate schedule.

    ``next_epoch()`` returns the epoch's (images in [0,1], labels). ``adversary(epoch)``
    returns the PGD configuration to train against in that epoch, or None for clean
    training (used for an ε warm-up). Each batch's attack gets its own seed drawn from
    ``seed``, so adversarial training is repeatable.
    """
    first_epoch = next_epoch()
    total_steps = epochs * math.ceil(len(first_epoch[1]) / batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0))))
    attack_seeds = np.random.default_rng(seed)
    history: list[EpochLog] = []
    for epoch in range(epochs):
        started = time.perf_counter()
        images, labels = first_epoch if epoch == 0 else next_epoch()
        config = adversary(epoch) if adversary is not None else None
        net.train()
        losses, correct = [], 0
        for start in range(0, len(labels), batch_size):
            batch, batch_labels = images[start:start + batch_size], labels[start:start + batch_size]
            if config is not None:
                batch_config = replace(config, seed=int(attack_seeds.integers(2**31)))
                batch = adversarial_examples(classifier, net, batch, batch_labels, batch_config)
            logits = classifier(batch)
            loss = F.cross_entropy(logits, batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item() * len(batch_labels))
            correct += int((logits.argmax(1) == batch_labels).sum())
        entry = EpochLog(epoch=epoch + 1, loss=sum(losses) / len(labels), accuracy=correct / len(labels),
                         eps=0.0 if config is None else float(config.eps),
                         seconds=time.perf_counter() - started)
        history.append(entry)
        log(entry)
    net.eval()
    return history


@torch.no_grad()
def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of images classified correctly (model in eval mode)."""
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = classifier(images[start:start + batch_size])
        correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    return correct / max(len(labels), 1)


def robust_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    eps: float, steps: int, step_size: float | None = None, batch_size: int = 256) -> float:
    """Fraction of images that PGD (L∞, from the clean image, no restarts) cannot misclassify.

    Uses the engine with early stop, so an image counts as broken if *any* iterate
    (including the clean image) is misclassified — a slightly stronger criterion than
    scoring only the last iterate.
    """
    config = pgd_config(eps, steps, step_size, random_start=False, early_stop=True)
    held = 0
    for start in range(0, len(labels), batch_size):
        result = run_attack(classifier, images[start:start + batch_size], None,
                            labels[start:start + batch_size], config)
        held += int((~result.success).sum())
    return held / max(len(labels), 1)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file via a temporary name and a rename (never half a weights file)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def save_state_dict(net: nn.Module, path: Path) -> int:
    """Save ``net.state_dict()`` (plain tensors, loadable with weights_only=True); returns bytes."""
    import io

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path.stat().st_size


def write_card(path: Path, card: dict) -> None:
    """Write a model card as pretty JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def environment() -> dict:
    """Versions and threads, recorded in the card's ``training`` section."""
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "threads": torch.get_num_threads(), "device": "cpu"}


def relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` with forward slashes (cards are portable)."""
    return Path(os.path.relpath(path, start)).as_posix()
