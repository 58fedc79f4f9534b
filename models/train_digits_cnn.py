"""Train the grayscale digits CNN: ``python models/train_digits_cnn.py``.

A second, different task (10 classes, 1 channel, TorchScript) so the app is not tuned to
one data set: scikit-learn's handwritten digits, upsampled to 32×32. Writes
``models/digits_cnn.pt`` (TorchScript), ``models/digits_cnn.json`` and samples with masks
in ``resources/samples/digits/``. CPU, 1 thread, about a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import demo_data
import training

SEED = 0
EPOCHS = 30
LR = 3e-3
EVAL_EPS = 8 / 255
EVAL_EPS_TEXT = "8/255"
EVAL_STEPS = 10
SAMPLE_DIGITS = (3, 0, 5, 7, 8)  # one held-out example of each, in this order
SAMPLES_DIR = demo_data.SAMPLES_DIR / "digits"


class DigitsCNN(nn.Module):
    """Three conv–BN–ReLU–pool blocks (32→16→8→4) and a linear head: ~34 k parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        channels = [1, 16, 32, 64]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ShiftedDigits:
    """Training epochs: every digit once, shuffled, shifted by up to ±2 pixels (zero fill)."""

    def __init__(self, split: demo_data.DigitSplit, seed: int):
        self.split = split
        self.rng = np.random.default_rng(seed)

    def epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.from_numpy(self.rng.permutation(len(self.split)))
        images = self.split.images[order]
        padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
        shifts = self.rng.integers(0, 5, size=(len(order), 2))
        size = demo_data.DIGITS_SIZE
        shifted = torch.stack([padded[i, :, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(shifts)])
        return shifted, self.split.labels[order]


def write_samples(classifier, card_dir: Path) -> list[dict]:
    """One held-out digit per class in SAMPLE_DIGITS, with stroke masks; returns card entries."""
    from advexplorer.io.images import save_mask_png, save_png, to_uint8

    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    held = demo_data.digits_split("held_out")
    with torch.no_grad():
        predictions = classifier(held.images).argmax(1)
    entries = []
    for digit in SAMPLE_DIGITS:
        # The first held-out example of this digit that the model gets right.
        rows = [i for i in range(len(held)) if held.labels[i] == digit and predictions[i] == digit]
        row = rows[0]
        image = held.images[row, 0].numpy()
        protect, diagnostic = demo_data.digit_masks(image)
        stem = f"digit_{digit}_idx{int(held.indices[row]):04d}"
        paths = {kind: SAMPLES_DIR / f"{stem}{suffix}.png"
                 for kind, suffix in (("image", ""), ("protect", "_protect"), ("diagnostic", "_diagnostic"))}
        save_png(paths["image"], to_uint8(image))
        save_mask_png(paths["protect"], protect)
        save_mask_png(paths["diagnostic"], diagnostic)
        entry = {kind: training.relative(path, card_dir) for kind, path in paths.items()}
        entry.update(label=str(digit), sklearn_index=int(held.indices[row]),
                     protect_free_fraction=round(float(1 - protect.mean()), 4))
        entries.append(entry)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the digits CNN (TorchScript).")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=demo_data.MODELS_DIR)
    args = parser.parse_args(argv)
    weights_path, card_path = args.out / "digits_cnn.pt", args.out / "digits_cnn.json"

    training.seed_everything(SEED)
    started = time.perf_counter()
    train = demo_data.digits_split("train")
    mean = [round(float(train.images.mean()), 3)]
    std = [round(float(train.images.std()), 3)]
    net = DigitsCNN()
    classifier = training.trainable_classifier(net, mean, std, demo_data.DIGITS_CLASSES)

    def log(entry: training.EpochLog) -> None:
        print(f"  epoch {entry.epoch:2d}  loss {entry.loss:.4f}  train acc {entry.accuracy:.3f}  "
              f"{entry.seconds:.1f} s", flush=True)

    training.fit(net, classifier, ShiftedDigits(train, SEED).epoch, epochs=args.epochs, lr=LR,
                 batch_size=64, seed=SEED, log=log)
    train_seconds = time.perf_counter() - started

    net.eval().requires_grad_(False)
    held = demo_data.digits_split("held_out")
    clean = training.accuracy(classifier, held.images, held.labels)
    robust = training.robust_accuracy(classifier, held.images, held.labels, EVAL_EPS, EVAL_STEPS)
    print(f"digits_cnn: held-out clean accuracy {clean:.4f}, PGD-{EVAL_STEPS} L∞ ε={EVAL_EPS_TEXT} "
          f"robust accuracy {robust:.4f} (n={len(held)}), training {train_seconds:.0f} s")

    samples = write_samples(classifier, args.out)
    scripted = torch.jit.script(net)  # TorchScript: loads without this file's Python class
    import io

    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    training.atomic_write_bytes(weights_path, buffer.getvalue())
    card = {
        "name": "Handwritten digits CNN",
        "classes": list(demo_data.DIGITS_CLASSES),
        "input_size": [demo_data.DIGITS_SIZE, demo_data.DIGITS_SIZE],
        "channels": 1,
        "mean": mean,
        "std": std,
        "resize": "stretch",
        "description": (
            "Demonstration model for AdvExplorer (a second task: grayscale, 10 classes, TorchScript) — "
            "not for any real use. A small CNN (3 conv–BN–ReLU–max-pool blocks, ~34 k parameters) "
            "that reads a 32×32 grayscale digit, white on black."),
        "training_data": (
            "scikit-learn's load_digits (UCI optical recognition of handwritten digits: 1 797 8×8 "
            "images, 16 grey levels), scaled to [0,1], upsampled bilinearly to 32×32 and quantised "
            "to 8 bits. Held-out split: stratified 25 % (train_test_split, random_state "
            f"{demo_data.DIGITS_SPLIT_SEED}); writers can appear in both splits. Training adds random "
            "shifts of up to ±2 pixels."),
        "clean_accuracy": round(clean, 4),
        "robust_accuracy": {
            "eps": EVAL_EPS, "eps_text": EVAL_EPS_TEXT, "norm": "linf", "steps": EVAL_STEPS,
            "step_size": 2.5 * EVAL_EPS / EVAL_STEPS, "random_start": False, "value": round(robust, 4),
            "n": len(held), "criterion": "correct at every PGD iterate (engine early stop), held-out digits",
        },
        "suggested_eps": EVAL_EPS,
        "suggested_eps_text": EVAL_EPS_TEXT,
        "suggested_steps": EVAL_STEPS,
        "training": {
            "script": "models/train_digits_cnn.py",
            "command": "python models/train_digits_cnn.py" + (" " + " ".join(argv) if argv else ""),
            "seed": SEED, "epochs": args.epochs, "batch_size": 64,
            "optimizer": f"AdamW lr {LR}, weight decay 5e-4, cosine schedule",
            "adversarial": None,
            "wall_time_s": round(train_seconds, 1),
            "environment": training.environment(),
        },
        "held_out": {
            "how": "import models/demo_data.py; demo_data.digits_split('held_out')",
            "n": len(held),
        },
        "samples": samples,
    }
    training.write_card(card_path, card)
    print(f"wrote {weights_path} ({weights_path.stat().st_size / 1e6:.2f} MB) and {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
