"""Preprocessing defences as model wrappers, and the adaptive attacks that see through them.

A defence transforms the image before the classifier sees it: Gaussian blur (low-pass),
JPEG compression, bit-depth reduction, a median filter, or random Gaussian noise. Wrapped
in :class:`DefendedClassifier`, it is a model like any other, so every attack of the engine
runs through it unchanged, in one of three modes:

* ``none`` (naive) — gradients go through the defence *as implemented*. JPEG (PIL, on 8-bit
  pixels) has no gradient at all and bit-depth reduction (rounding) has a zero gradient
  almost everywhere, so a gradient attack is blind: the defence *looks* robust. This is
  gradient masking (Athalye, Carlini & Wagner, *Obfuscated Gradients Give a False Sense of
  Security*, ICML 2018, https://arxiv.org/abs/1802.00420). Blur and the median filter are
  written in torch and are differentiable, so for them naive already means adaptive.
* ``bpda`` — Backward Pass Differentiable Approximation (same paper): the forward pass is
  the real defence, the backward pass treats it as the identity (g(x) ≈ x), i.e.
  ``x + (defence(x) − x).detach()``.
* ``eot`` — Expectation over Transformation (Athalye et al. 2018,
  https://arxiv.org/abs/1707.07397) for random defences: the logits are averaged over
  ``samples`` draws of the defence (with BPDA through each), so the attack follows the
  expected gradient instead of one draw's noise. For a deterministic defence EOT is BPDA.

:func:`compare_defence` attacks the same images naively and adaptively and returns both
robust accuracies with Wilson intervals: what the defence appears to buy, and what is left.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.screen_results import wilson_interval
from advexplorer.config import ADAPTIVE_MODES, DefenceSpec, parse_defence
from advexplorer.errors import UserError

#: Draws per forward pass for EOT (Athalye et al. use tens to hundreds; 8 keeps a step cheap).
EOT_SAMPLES = 8


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, radius ⌈3σ⌉, reflect padding (differentiable)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    mode = "reflect" if min(images.shape[-2:]) > radius else "replicate"
    x = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode=mode), horizontal, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), vertical, groups=channels)


def median_filter(images: torch.Tensor, size: int) -> torch.Tensor:
    """k×k median per channel (for even k the window reaches one pixel further right/down,
    as Xu et al.'s 2×2 filter does); the gradient flows to each window's median pixel."""
    size = int(size)
    before, after = (size - 1) // 2, size // 2
    padded = F.pad(images, (before, after, before, after), mode="replicate")
    n, c, h, w = images.shape
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # N×C×H×W×k×k
    return windows.reshape(n, c, h, w, size * size).median(dim=-1).values


def reduce_bits(images: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep ``bits`` bits per channel: round(x·(2^b−1))/(2^b−1); rounding's gradient is 0."""
    levels = 2 ** int(bits) - 1
    return torch.round(images * levels) / levels


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode each image as JPEG at ``quality`` with PIL (8-bit, no gradient)."""
    out = []
    for image in images.detach().clamp(0, 1).cpu():
        array = np.round(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        mode = "L" if array.shape[2] == 1 else "RGB"
        buffer = io.BytesIO()
        Image.fromarray(array[:, :, 0] if mode == "L" else array, mode).save(buffer, "JPEG", quality=int(quality))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert(mode), dtype=np.float32) / 255
        out.append(torch.from_numpy(decoded.reshape(array.shape)).permute(2, 0, 1))
    return torch.stack(out).to(images.device, images.dtype)


class Defence(nn.Module):
    """A preprocessing defence ``spec`` as a module: ``forward`` is the defence as implemented
    (what a naive attack differentiates), :meth:`apply` its output without a graph."""

    def __init__(self, spec: DefenceSpec | str, seed: int = 0):
        super().__init__()
        self.spec = parse_defence(spec) if isinstance(spec, str) else spec
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def random(self) -> bool:
        return self.spec.info.random

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        kind, value = self.spec.kind, self.spec.value
        if kind == "blur":
            return gaussian_blur(images, value)
        if kind == "median":
            return median_filter(images, int(value))
        if kind == "bits":
            return reduce_bits(images, int(value))
        if kind == "noise":
            noise = torch.randn(images.shape, generator=self.generator).to(images.device, images.dtype)
            return (images + value * noise).clamp(0, 1)
        if kind == "jpeg":
            # PIL breaks the graph; "× 0" keeps the input in it, so the naive gradient is an
            # honest zero (what autograd gives a non-differentiable step) rather than an error.
            return images * 0 + jpeg(images, int(value))
        raise UserError(f"Unknown defence {kind!r}.")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.forward(images.detach())


class DefendedClassifier(nn.Module):
    """``classifier(defence(x))`` with gradients naive, BPDA or EOT (see the module docstring)."""

    def __init__(self, classifier: nn.Module, defence: Defence | DefenceSpec | str, adaptive: str = "none",
                 samples: int = EOT_SAMPLES):
        super().__init__()
        if adaptive not in ADAPTIVE_MODES:
            raise UserError(f"Adaptive mode must be one of {', '.join(ADAPTIVE_MODES)}, not {adaptive!r}.")
        self.classifier = classifier
        self.defence = defence if isinstance(defence, Defence) else Defence(defence)
        self.adaptive = adaptive
        self.samples = int(samples) if adaptive == "eot" and self.defence.random else 1
        self.classes = getattr(classifier, "classes", None)

    @property
    def device(self) -> torch.device:
        return getattr(self.classifier, "device", torch.device("cpu"))

    def _bpda(self, images: torch.Tensor) -> torch.Tensor:
        return images + (self.defence.apply(images) - images).detach()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.adaptive == "none":
            return self.classifier(self.defence(images))
        logits = [self.classifier(self._bpda(images)) for _ in range(self.samples)]
        return logits[0] if len(logits) == 1 else torch.stack(logits).mean(dim=0)

    def describe(self) -> str:
        return f"{self.defence.spec.describe()}, attack {self.adaptive}"


@dataclass(frozen=True)
class HeldCount:
    """Images still classified correctly after an attack: k of n with a Wilson interval."""

    held: int
    n: int

    @property
    def value(self) -> float:
        return self.held / self.n if self.n else float("nan")

    def to_json(self) -> dict:
        low, high = wilson_interval(self.held, self.n)
        return {"value": round(self.value, 4), "correct": self.held, "n": self.n,
                "interval95": [round(low, 4), round(high, 4)]}


def robust_count(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig,
                 allowed_mask: torch.Tensor | None = None, batch_size: int = 128) -> HeldCount:
    """How many images the engine's attack cannot move off their label (run against ``model``,
    scored by ``model``)."""
    held = 0
    for start in range(0, len(labels), batch_size):
        rows = slice(start, start + batch_size)
        mask = allowed_mask if allowed_mask is None or allowed_mask.shape[0] == 1 else allowed_mask[rows]
        result = run_attack(model, images[rows], mask, labels[rows], config)
        held += int((~result.success).sum())
    return HeldCount(held, len(labels))


@dataclass(frozen=True)
class DefenceComparison:
    """Robust accuracy of the undefended model, the defence under a naive attack, and the
    defence under the adaptive attack — the apparent and the real worth of the defence."""

    defence: str
    adaptive: str
    clean_undefended: HeldCount
    clean_defended: HeldCount
    undefended: HeldCount
    naive: HeldCount
    adaptive_result: HeldCount

    def to_json(self) -> dict:
        return {"defence": self.defence, "adaptive": self.adaptive,
                "clean_accuracy_undefended": self.clean_undefended.to_json(),
                "clean_accuracy_defended": self.clean_defended.to_json(),
                "robust_undefended": self.undefended.to_json(), "robust_naive": self.naive.to_json(),
                "robust_adaptive": self.adaptive_result.to_json()}


def _clean_count(model, images, labels) -> HeldCount:
    with torch.no_grad():
        return HeldCount(int((model(images).argmax(1) == labels).sum()), len(labels))


def compare_defence(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    defence: DefenceSpec | str, config: AttackConfig, adaptive: str = "bpda",
                    allowed_mask: torch.Tensor | None = None) -> DefenceComparison:
    """Attack ``images`` three ways with ``config``: the bare model, the defended model
    naively, and the defended model with ``adaptive`` (bpda or eot)."""
    spec = parse_defence(defence) if isinstance(defence, str) else defence
    naive_model = DefendedClassifier(classifier, spec, "none")
    adaptive_model = DefendedClassifier(classifier, spec, adaptive)
    return DefenceComparison(
        defence=spec.text(), adaptive=adaptive,
        clean_undefended=_clean_count(classifier, images, labels),
        clean_defended=_clean_count(naive_model, images, labels),
        undefended=robust_count(classifier, images, labels, config, allowed_mask),
        naive=robust_count(naive_model, images, labels, config, allowed_mask),
        adaptive_result=robust_count(adaptive_model, images, labels, config, allowed_mask))
