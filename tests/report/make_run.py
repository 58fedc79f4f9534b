"""Real run folders for the report and reproduce tests, made by the real CLI.

A tiny seeded TorchScript CNN with a model card whose class names and fields are hostile
(``<script>alert(1)</script>``), a 48×40 RGB image (not the model's 32×32 input, so the
resize rule is exercised), a protect mask and a diagnostic region. ``attack(...)`` runs
``advexplorer attack`` in-process and returns the run folder.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from advexplorer.cli import main

HOSTILE_CLASS = "<script>alert(1)</script>"
HOSTILE_DESCRIPTION = 'A tiny test model <img src=x onerror="alert(2)">'
CLASSES = ["benign", HOSTILE_CLASS, "tumour & stroma"]


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Tanh())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


def make_inputs(folder: Path) -> dict[str, Path]:
    """Write model, card, image and masks into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = _TinyNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.* deprecation notices
        torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 32, 32)), folder / "tiny.pt")
    card = {"name": "Tiny <b>demo</b> CNN", "classes": CLASSES, "input_size": [32, 32], "channels": 3,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "description": HOSTILE_DESCRIPTION,
            "clean_accuracy": 0.5, "suggested_eps": "2/255"}
    (folder / "tiny.json").write_text(json.dumps(card), encoding="utf-8")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:48]
    image = np.stack([0.5 + 0.3 * np.sin(x / 5), 0.5 + 0.3 * np.cos(y / 7),
                      0.4 + 0.2 * np.sin((x + y) / 9)], axis=2) + 0.05 * rng.standard_normal((40, 48, 3))
    image_path = folder / "tissue <1>.png"
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(image_path)
    protect = np.zeros((40, 48), np.uint8)
    protect[8:30, 10:36] = 255
    Image.fromarray(protect).save(folder / "protect.png")
    diagnostic = np.zeros((40, 48), np.uint8)
    diagnostic[12:26, 14:30] = 255
    Image.fromarray(diagnostic).save(folder / "diagnostic.png")
    return {"model": folder / "tiny.pt", "card": folder / "tiny.json", "image": image_path,
            "protect": folder / "protect.png", "diagnostic": folder / "diagnostic.png"}


def attack(inputs: dict[str, Path], out: Path, *options: str) -> Path:
    """Run ``advexplorer attack`` on the tiny model and image; return the run folder."""
    argv = ["attack", "--model", str(inputs["model"]), "--image", str(inputs["image"]),
            "--device", "cpu", "--seed", "3", "--quiet", "--out", str(out), *options]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    assert code == 0, f"advexplorer {' '.join(argv)} exited with {code}"
    return out


def protect_run(inputs: dict[str, Path], out: Path) -> Path:
    """Background-only PGD with saliency and a diagnostic region (the full report)."""
    return attack(inputs, out, "--protect", str(inputs["protect"]), "--eps", "16/255", "--steps", "10",
                  "--saliency", "gradient", "--diagnostic", str(inputs["diagnostic"]))


def plain_run(inputs: dict[str, Path], out: Path) -> Path:
    """Whole-image targeted PGD with random restarts, no saliency (the lean report)."""
    return attack(inputs, out, "--eps", "16/255", "--steps", "5", "--targeted", "1",
                  "--random-start", "--restarts", "2")


class InMemoryRun:
    """A finished run as the GUI keeps it (``number``, ``request``, ``outcome``, ``record``)."""

    def __init__(self, number, request, outcome, record):
        self.number, self.request, self.outcome, self.record = number, request, outcome, record


def app_run(inputs: dict[str, Path], number: int = 1, *, saliency: str | None = "gradient") -> InMemoryRun:
    """A run made the way the desktop app makes one: masks painted at the image's size and
    never saved to a file, the command line ``advexplorer gui``. Background-only PGD with a
    painted protect region and diagnostic region."""
    from advexplorer.config import AttackConfig
    from advexplorer.io.images import load_image, mask_to_model
    from advexplorer.io.models import load_model
    from advexplorer.session.runs import RunRequest, build_record, run

    model = load_model(inputs["model"], device="cpu")
    image = load_image(inputs["image"], model.card)
    protect = np.asarray(Image.open(inputs["protect"])) != 0      # as painted, 48×40
    diagnostic = np.asarray(Image.open(inputs["diagnostic"])) != 0
    request = RunRequest(
        model=model, image=image,
        config=AttackConfig(method="pgd", norm="linf", eps=16 / 255, steps=4, random_start=True,
                            seed=5).validate(),
        allowed_mask=mask_to_model((~protect).astype(np.uint8), model.card), mask_mode="protect",
        mask_path=None, diagnostic_mask=mask_to_model(diagnostic.astype(np.uint8), model.card),
        diagnostic_path=None, saliency=saliency, command_line=["advexplorer", "gui"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = run(request)
    return InMemoryRun(number, request, outcome, build_record(request, outcome))
