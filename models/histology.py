"""The histology DAB classifiers: one recipe, two variants (standard and PGD-adversarial).

``python models/train_histology_standard.py`` and ``python models/train_histology_robust.py``
call :func:`main` with their variant; everything else (data, architecture, evaluation,
samples, the card) is shared, so the two models differ only in how they were trained.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

import demo_data
import training

ARCHITECTURE = "mobilenet_v3_small"
ARCHITECTURE_KWARGS = {"num_classes": 2, "width_mult": 0.5}
#: The card's attack budget: L∞ ε = 4/255 (about 1.6 % of the pixel range), PGD-10.
EVAL_EPS = 4 / 255
EVAL_EPS_TEXT = "4/255"
EVAL_STEPS = 10
SAMPLES_DIR = demo_data.SAMPLES_DIR / "histology"


@dataclass(frozen=True)
class Recipe:
    """How one variant is trained (all of it goes into the card)."""

    variant: str
    seed: int
    epochs: int
    tiles_per_epoch: int
    lr: float
    batch_size: int = 64
    train_eps: float | None = None       # None: standard training
    train_eps_text: str | None = None
    train_steps: int = 0
    warmup_epochs: int = 0               # clean epochs, then ε ramps up linearly
    ramp_epochs: int = 0


def build_net() -> torch.nn.Module:
    """The architecture the card names, built exactly as the app's loader builds it."""
    return torchvision.models.get_model(ARCHITECTURE, weights=None, **ARCHITECTURE_KWARGS)


def adversary_schedule(recipe: Recipe):
    """PGD configuration per epoch: none during warm-up, then ε ramps up to train_eps."""
    if recipe.train_eps is None:
        return None

    def config_for(epoch: int):
        if epoch < recipe.warmup_epochs:
            return None
        ramp = min(1.0, (epoch - recipe.warmup_epochs + 1) / max(recipe.ramp_epochs, 1))
        return training.pgd_config(recipe.train_eps * ramp, recipe.train_steps, random_start=True)

    return config_for


def write_samples(card_dir: Path) -> list[dict]:
    """Write the held-out sample tiles and their masks (deterministic); return card entries."""
    from advexplorer.io.images import save_mask_png, save_png

    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    entries = []
    for sample in demo_data.choose_histology_samples():
        image = SAMPLES_DIR / f"{sample.name}.png"
        protect = SAMPLES_DIR / f"{sample.name}_protect.png"
        diagnostic = SAMPLES_DIR / f"{sample.name}_diagnostic.png"
        save_png(image, demo_data.histology_sample_image(sample))
        save_mask_png(protect, sample.protect)
        save_mask_png(diagnostic, sample.diagnostic)
        entries.append({
            "image": training.relative(image, card_dir),
            "protect": training.relative(protect, card_dir),
            "diagnostic": training.relative(diagnostic, card_dir),
            "label": demo_data.HISTOLOGY_CLASSES[sample.label],
            "slide_corner_yx": list(sample.corner),
            "dab_fraction": round(sample.dab_fraction, 4),
            "protect_free_fraction": round(sample.free_fraction, 4),
        })
    return entries


def main(recipe: Recipe, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Train the {recipe.variant} histology DAB classifier.")
    parser.add_argument("--epochs", type=int, default=recipe.epochs,
                        help="override the number of epochs (for a quick trial; the card records it)")
    parser.add_argument("--out", type=Path, default=demo_data.MODELS_DIR,
                        help="folder for the weights and the card (default: models/)")
    args = parser.parse_args(argv)
    recipe = Recipe(**{**recipe.__dict__, "epochs": args.epochs})
    name = f"histology_{recipe.variant}"
    weights_path, card_path = args.out / f"{name}.pt", args.out / f"{name}.json"

    training.seed_everything(recipe.seed)
    started = time.perf_counter()
    mean, std = demo_data.training_pixel_stats()
    net = build_net()
    classifier = training.trainable_classifier(net, mean, std, demo_data.HISTOLOGY_CLASSES)
    tiles = demo_data.TrainingTiles(seed=recipe.seed, tiles_per_epoch=recipe.tiles_per_epoch)
    print(f"{name}: {ARCHITECTURE} {ARCHITECTURE_KWARGS}, train positions per class "
          f"(negative, positive) = {tiles.available}, {recipe.epochs} epochs × {recipe.tiles_per_epoch} tiles")

    def log(entry: training.EpochLog) -> None:
        print(f"  epoch {entry.epoch:2d}  loss {entry.loss:.4f}  train acc {entry.accuracy:.3f}  "
              f"ε {entry.eps * 255:.2f}/255  {entry.seconds:.1f} s", flush=True)

    training.fit(net, classifier, tiles.epoch, epochs=recipe.epochs, lr=recipe.lr,
                 batch_size=recipe.batch_size, adversary=adversary_schedule(recipe),
                 seed=recipe.seed, log=log)
    train_seconds = time.perf_counter() - started

    classifier.eval()
    net.requires_grad_(False)
    held = demo_data.histology_held_out()
    clean = training.accuracy(classifier, held.images, held.labels)
    robust = training.robust_accuracy(classifier, held.images, held.labels, EVAL_EPS, EVAL_STEPS)
    print(f"{name}: held-out clean accuracy {clean:.4f}, PGD-{EVAL_STEPS} L∞ ε={EVAL_EPS_TEXT} "
          f"robust accuracy {robust:.4f} (n={len(held)}), training {train_seconds:.0f} s")

    samples = write_samples(args.out)
    first = demo_data.choose_histology_samples()[0]
    with torch.no_grad():
        probabilities = torch.softmax(classifier(
            torch.from_numpy(demo_data.histology_sample_image(first)).permute(2, 0, 1)[None].float() / 255), 1)[0]
    print(f"first sample {first.name}: label {demo_data.HISTOLOGY_CLASSES[first.label]}, "
          f"p = {[round(float(p), 3) for p in probabilities]}")

    size = training.save_state_dict(net, weights_path)
    card = build_card(recipe, mean, std, clean, robust, len(held), int(held.labels.sum()),
                      train_seconds, samples, argv)
    training.write_card(card_path, card)
    print(f"wrote {weights_path} ({size / 1e6:.2f} MB) and {card_path}")
    return 0


def build_card(recipe: Recipe, mean, std, clean: float, robust: float, n_held: int, n_positive: int,
               train_seconds: float, samples: list[dict], argv) -> dict:
    script = f"models/train_histology_{recipe.variant}.py"
    robust_training = recipe.train_eps is not None
    how_trained = (
        f"PGD adversarial training (Madry et al. 2018, https://arxiv.org/abs/1706.06083): every batch "
        f"is replaced by its PGD-{recipe.train_steps} L∞ adversarial version (random start, step "
        f"2.5·ε/{recipe.train_steps}, AdvExplorer's own attack engine, BatchNorm in eval mode while "
        f"attacking) at ε = {recipe.train_eps_text}, after {recipe.warmup_epochs} clean warm-up "
        f"epochs and a {recipe.ramp_epochs}-epoch linear ε ramp."
        if robust_training else "Standard (clean) training with cross-entropy.")
    return {
        "name": f"Histology DAB classifier ({recipe.variant})",
        "classes": list(demo_data.HISTOLOGY_CLASSES),
        "input_size": [demo_data.TILE, demo_data.TILE],
        "channels": 3,
        "mean": mean,
        "std": std,
        "resize": "stretch",
        "architecture": f"torchvision.{ARCHITECTURE}",
        "architecture_kwargs": dict(ARCHITECTURE_KWARGS),
        "description": (
            "Demonstration model for AdvExplorer — NOT a medical device and not validated for any "
            "diagnostic use. Classifies a 64×64 RGB tile of an immunohistochemistry (IHC) slide as "
            "DAB-positive (≥ 10 % of pixels strongly brown-stained) or DAB-negative. "
            + how_trained +
            (" Its twin histology_standard.pt has the same architecture and data, trained without "
             "attacks: compare the two to see the robustness–accuracy trade-off."
             if robust_training else
             " Its twin histology_robust.pt is adversarially trained: compare the two to see the "
             "robustness–accuracy trade-off.")),
        "training_data": (
            "scikit-image's skimage.data.immunohistochemistry(): one 512×512 photograph of human colon "
            "tissue, IHC stained (DAB, brown; hematoxylin counterstain, blue). Labels from colour "
            "deconvolution (skimage.color.rgb2hed, Ruifrok & Johnston 2001): a pixel is strongly "
            f"stained when its DAB optical density > {demo_data.DAB_PIXEL_THRESHOLD} (Otsu's threshold "
            "is 0.062; 0.10 keeps clearly brown membranes), and a tile is DAB-positive when at least "
            f"{demo_data.POSITIVE_FRACTION:.0%} of its pixels are. Split by slide region: held-out "
            "tiles lie entirely in the bottom-right 256×256 quadrant (rows and columns 256–511), "
            "training tiles entirely outside it, so no pixel is shared. Training tiles are drawn at "
            "random positions every epoch, class-balanced, with the 8 flips/rotations and a light "
            "colour jitter (brightness ×0.93–1.07, channel gain ×0.97–1.03). Only one slide from one "
            "lab exists behind this model: it will not generalise to other stains, scanners or tissue."),
        "clean_accuracy": round(clean, 4),
        "robust_accuracy": {
            "eps": EVAL_EPS, "eps_text": EVAL_EPS_TEXT, "norm": "linf", "steps": EVAL_STEPS,
            "step_size": 2.5 * EVAL_EPS / EVAL_STEPS, "random_start": False, "value": round(robust, 4),
            "n": n_held,
            "criterion": "correct at every PGD iterate (engine early stop), held-out tiles",
        },
        "suggested_eps": EVAL_EPS,
        "suggested_eps_text": EVAL_EPS_TEXT,
        "suggested_steps": EVAL_STEPS,
        "training": {
            "script": script,
            "command": f"python {script}" + (" " + " ".join(argv) if argv else ""),
            "seed": recipe.seed,
            "epochs": recipe.epochs,
            "tiles_per_epoch": recipe.tiles_per_epoch,
            "batch_size": recipe.batch_size,
            "optimizer": f"AdamW lr {recipe.lr}, weight decay 5e-4, cosine schedule",
            "batchnorm_momentum": 0.1,
            "adversarial": None if not robust_training else {
                "method": "pgd", "norm": "linf", "eps": recipe.train_eps, "eps_text": recipe.train_eps_text,
                "steps": recipe.train_steps, "step_size": f"2.5·ε/{recipe.train_steps}",
                "random_start": True, "warmup_epochs": recipe.warmup_epochs,
                "ramp_epochs": recipe.ramp_epochs, "batchnorm_during_attack": "eval"},
            "wall_time_s": round(train_seconds, 1),
            "environment": training.environment(),
        },
        "held_out": {
            "how": "import models/demo_data.py; demo_data.histology_held_out()",
            "region": "slide rows 256–511, columns 256–511; tiles on a 16-pixel grid (overlapping)",
            "n": n_held,
            "n_positive": n_positive,
        },
        "samples": samples,
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit("Run models/train_histology_standard.py or models/train_histology_robust.py.")
