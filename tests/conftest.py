"""Small shared fixtures: a tiny CNN, a linear classifier and seeded images.

Everything here builds in milliseconds on a CPU so that any test folder can use it.
The factories are session-scoped fixtures (not importable helpers) so hypothesis tests
may use them too; each call builds a fresh, deterministic model.

* ``make_tiny_cnn(channels=3, classes=4, seed=0, mean=None, std=None)`` → a
  :class:`~advexplorer.core.model.Classifier` around a two-conv network (tanh, so input
  gradients are smooth and rarely exactly zero).
* ``make_linear_classifier(weight, bias)`` → a Classifier computing ``W·flatten(x) + b``
  (identity normalisation); used for closed-form checks.
* ``make_images(n, channels, height, width, seed=0, low=0.0, high=1.0)`` → N×C×H×W
  float32 in [low, high].
* ``tiny_cnn`` / ``images`` are ready-made instances (3 channels, 4 classes, 4×3×16×16).
* ``write_brightness_model(folder)`` → ``folder/bright.pt`` (TorchScript) with its card: a
  2-class ("dark", "bright") 16×16 RGB classifier of the mean pixel, so a uniform shift of
  0.12 flips any image; bit-depth reduction hides its gradient (the defence screens use it).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from advexplorer.core.model import Classifier

# The test models are tiny: one intra-op thread is as fast, and on a busy 2-core machine
# (CI, or several test runs at once) extra OpenMP threads spin against each other and
# make the suite 10-20× slower.
torch.set_num_threads(1)
# Live runs in the app go to an attack process (advexplorer.gui.attack_process); a process per
# test window would cost seconds each, so the suite runs them in a thread, and
# tests/gui/test_attack_process.py turns the process on for itself. Subprocesses inherit this.
os.environ.setdefault("ADVEXPLORER_ATTACK_PROCESS", "0")


class TinyCNN(nn.Module):
    """conv(3×3) → tanh → conv(3×3, stride 2) → tanh → 2×2 average pool → linear."""

    def __init__(self, channels: int = 3, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1), nn.Tanh(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.Tanh(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LinearModel(nn.Module):
    """f(x) = W·flatten(x) + b, the model of the FGSM closed form (Goodfellow et al. 2015)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture(scope="session")
def make_tiny_cnn():
    def build(channels: int = 3, classes: int = 4, seed: int = 0, mean=None, std=None) -> Classifier:
        torch.manual_seed(seed)
        network = TinyCNN(channels, classes)
        mean = [0.0] * channels if mean is None else mean
        std = [1.0] * channels if std is None else std
        return Classifier(network, mean, std, classes=[f"class {i}" for i in range(classes)])
    return build


@pytest.fixture(scope="session")
def make_linear_classifier():
    def build(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Classifier:
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias
        classifier = Classifier(LinearModel(weight, bias), [0.0], [1.0])
        return classifier.to(weight.dtype)
    return build


@pytest.fixture(scope="session")
def make_images():
    def build(n: int, channels: int, height: int, width: int, seed: int = 0,
              low: float = 0.0, high: float = 1.0, dtype=torch.float32) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        unit = torch.rand(n, channels, height, width, generator=generator, dtype=dtype)
        return low + (high - low) * unit
    return build


@pytest.fixture
def tiny_cnn(make_tiny_cnn) -> Classifier:
    return make_tiny_cnn()


@pytest.fixture
def images(make_images) -> torch.Tensor:
    return make_images(4, 3, 16, 16)


class Brightness(nn.Module):
    """Class 1 when the mean pixel is above 0.5: a uniform shift of 0.12 flips any image here."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 2)   # a Linear layer, so int8 dynamic quantisation has work
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-60.0], [60.0]]))
            self.head.bias.copy_(torch.tensor([30.0, -30.0]))

    def forward(self, x):
        return self.head(x.mean(dim=(1, 2, 3)).unsqueeze(1))


@pytest.fixture(scope="session")
def write_brightness_model():
    def write(folder):
        torch.jit.script(Brightness().eval()).save(str(folder / "bright.pt"))
        (folder / "bright.json").write_text(json.dumps({
            "name": "brightness", "classes": ["dark", "bright"], "input_size": [16, 16], "channels": 3,
            "mean": [0.0] * 3, "std": [1.0] * 3}))
        return folder / "bright.pt"
    return write


@pytest.fixture(scope="session")
def write_brightness_cohort():
    """``write(folder, n)``: n 16×16 tiles in ``folder/cohort/{dark,bright}/tileK.png`` (ImageFolder),
    alternating classes, each 0.08 from the brightness model's boundary."""
    def write(folder, n: int):
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        for k in range(n):
            label = k % 2
            shade = 0.5 + (2 * label - 1) * 0.08
            pixels = np.clip(shade + 0.03 * rng.standard_normal((16, 16, 3)), 0, 1)
            classes = folder / "cohort" / ("dark", "bright")[label]
            classes.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(classes / f"tile{k}.png")
        return folder / "cohort"
    return write
