"""One training job, as the CLI (``advexplorer train``) and the GUI's Train panel run it.

:func:`training_job` is a generator: it loads the labelled images, trains a copy of the
model with :func:`advexplorer.core.training.train_steps` (yielding its per-batch and
per-epoch progress), keeps the best weights in ``OUT/checkpoint.pt`` while it runs (each
write atomic, so a failing disk leaves the previous good checkpoint), and finally writes
the twin: ``OUT/<model>_<method>.pt`` and its card ``.json`` (weights first, card last,
each atomic), with clean and robust accuracy, their Wilson intervals, the original's
numbers and the recipe. Cancel (``stop``) ends training at the next batch and still
writes the twin from the best weights. With ``curve_eps`` the original's and the twin's
robustness curves (held-out accuracy against ε) are measured too and go into the card.

:func:`defence_job` measures the curves of models behind a preprocessing defence, attacked
naively and adaptively (BPDA, or EOT for a random defence): the Train panel's defence
comparison.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from advexplorer import config
from advexplorer.core.training import (CurveProgress, EpochProgress, LabelledImages, RobustnessCurve,
                                       TrainConfig, TrainResult, robustness_curves, train_steps, trainable)
from advexplorer.errors import UserError
from advexplorer.io import atomic
from advexplorer.io.models import LoadedModel
from advexplorer.io.training_data import TrainingData, load_training_data

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainJob:
    """Everything a training run needs (the GUI builds it from the form, the CLI from args)."""

    model: LoadedModel
    images: Path                        # ImageFolder or CSV manifest
    recipe: TrainConfig
    out_dir: Path
    held_out: float = 0.2
    allowed_mask: torch.Tensor | None = None   # H×W at the model's size, 1 = may change
    mask_mode: str = "none"
    command_line: str | None = None
    curve_eps: tuple[float, ...] | None = None   # measure robustness curves at these budgets


@dataclass
class TrainOutcome:
    result: TrainResult
    weights_path: Path
    card_path: Path
    card: dict
    twin: object = None                          # the trained Classifier, for further comparison
    held_out: LabelledImages | None = None       # the held-out split it was measured on
    curves: list[RobustnessCurve] = field(default_factory=list)   # original's and twin's


def save_format(loaded: LoadedModel) -> str:
    """How the twin is saved: as the original was (TorchScript or a state_dict)."""
    if loaded.format in ("state_dict", "safetensors"):
        return "state_dict"
    if loaded.format == "torchscript":
        return "torchscript"
    raise UserError(f"{loaded.path.name} is a {loaded.format} model; training writes TorchScript or a "
                    "state_dict, so export the model as one of those first.")


def weights_bytes(net: torch.nn.Module, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "torchscript":
        torch.jit.save(net, buffer)
    else:
        torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, buffer)
    return buffer.getvalue()


def write_safely(path: Path, data: bytes, what: str, checkpoint: Path | None) -> None:
    """Atomic write; a failure (full disk) is one line that says the checkpoint survived."""
    try:
        atomic.atomic_write_bytes(path, data, overwrite=True)
    except OSError as error:
        kept = f"; the last good checkpoint is still at {checkpoint}" \
            if checkpoint is not None and checkpoint.exists() else ""
        raise UserError(f"Could not write the {what} {path.name} ({error.strerror or error}){kept}.") from None


def interval_text(accuracy) -> str:
    low, high = accuracy.interval
    return f"[{low:.1%}, {high:.1%}]"


def verdict(result: TrainResult) -> str:
    """The card's sentence comparing the twin's robust accuracy with the original's."""
    eps_text = config.over_255(result.config.eps)
    clearly = result.robust.clearly_above(result.original_robust)
    return (f"Robust accuracy at ε = {eps_text} is {result.robust.value:.1%} {interval_text(result.robust)} "
            f"vs the original's {result.original_robust.value:.1%} {interval_text(result.original_robust)}: "
            + ("higher, with non-overlapping 95 % Wilson intervals." if clearly else
               "not clearly higher (the 95 % Wilson intervals overlap, or it is lower)."))


def build_card(job: TrainJob, data: TrainingData, result: TrainResult) -> dict:
    """The twin's card: the original's fields, the new measurements and the recipe."""
    loaded, recipe = job.model, job.recipe
    card = loaded.card.to_json()
    card.pop("samples", None)
    samples = []
    for sample in loaded.card.samples:  # paths relative to the new folder, so they still open
        entry = {key: os.path.relpath(getattr(sample, key), job.out_dir)
                 for key in ("image", "protect", "allowed", "diagnostic") if getattr(sample, key) is not None}
        if sample.label is not None:
            entry["label"] = sample.label
        samples.append(entry)
    eps_text = config.over_255(recipe.eps)
    sentence = verdict(result)
    card.update({
        "name": f"{loaded.card.name} ({recipe.method}, ε={eps_text})",
        "description": (f"Fine-tuned by AdvExplorer from {loaded.path.name} with "
                        f"{recipe.to_json()['method_text']}. {sentence} {card.get('description') or ''}").strip(),
        "clean_accuracy": round(result.clean.value, 4),
        "clean_accuracy_interval": result.clean.to_json(),
        "robust_accuracy": {"eps": recipe.eps, "eps_text": eps_text, "norm": "linf", "steps": recipe.eval_steps,
                            "step_size": 2.5 * recipe.eps / recipe.eval_steps, "random_start": False,
                            "mask": job.mask_mode, **result.robust.to_json(),
                            "criterion": "correct at every PGD iterate (engine early stop), held-out images"},
        "suggested_eps": recipe.eps, "suggested_eps_text": eps_text, "suggested_steps": recipe.eval_steps,
        "compared_with_original": {
            "model": str(loaded.path), "sha256": loaded.sha256,
            "clean_accuracy": result.original_clean.to_json(),
            "robust_accuracy": result.original_robust.to_json(),
            "robust_clearly_higher": result.robust.clearly_above(result.original_robust),
            "statement": sentence},
        "training": {
            "command": job.command_line or "AdvExplorer Train panel",
            "recipe": recipe.to_json(), "mask": job.mask_mode, "data": data.to_json(),
            "held_out_fraction": job.held_out, "best_epoch": result.best_epoch, "stopped": result.stopped,
            "wall_time_s": round(result.seconds, 1),
            "epochs": [{"epoch": e.epoch, "train_loss": round(e.train_loss, 5),
                        "train_accuracy": round(e.train_accuracy, 4), "clean": e.clean.to_json(),
                        "robust": e.robust.to_json(), "seconds": round(e.seconds, 2)} for e in result.history],
        },
    })
    if samples:
        card["samples"] = samples
    return card


def training_job(job: TrainJob, stop: threading.Event | None = None
                 ) -> Generator[object, None, TrainOutcome]:
    """Load, train (yielding progress), write the twin; see the module docstring."""
    fmt = save_format(job.model)
    data = load_training_data(job.images, job.model.card, held_out=job.held_out, seed=job.recipe.seed)
    device = job.model.device
    for part in (data.train, data.held_out):
        part.images, part.labels = part.images.to(device), part.labels.to(device)
        if job.allowed_mask is not None:
            part.allowed_mask = job.allowed_mask.reshape(1, 1, *job.allowed_mask.shape[-2:]).to(device)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = job.out_dir / CHECKPOINT_NAME
    twin = trainable(job.model.classifier)

    def save_checkpoint(_state, _entry: EpochProgress) -> None:
        write_safely(checkpoint, weights_bytes(twin.model, fmt), "checkpoint", checkpoint)

    result = yield from train_steps(twin, data.train, data.held_out, job.recipe, stop=stop,
                                    on_checkpoint=save_checkpoint)
    curves: list[RobustnessCurve] = []
    if job.curve_eps and result.stopped != "cancelled":
        models = [("original", "model", job.model.classifier), (f"{job.recipe.method} twin", "model", twin)]
        curves = yield from robustness_curves(models, data.held_out, job.curve_eps, job.recipe.eval_steps, stop)
    stem = f"{job.model.path.stem}_{job.recipe.method}"
    weights_path, card_path = job.out_dir / f"{stem}.pt", job.out_dir / f"{stem}.json"
    card = build_card(job, data, result)
    if curves:
        card["robustness_curves"] = {
            "attack": f"L∞ PGD-{job.recipe.eval_steps} from the clean image, step 2.5·ε/steps, early stop",
            "held_out_images": len(data.held_out), "interval": "Wilson 95 %",
            "curves": [curve.to_json() for curve in curves]}
    write_safely(weights_path, weights_bytes(twin.model, fmt), "weights", checkpoint)
    write_safely(card_path, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), "card",
                 checkpoint)
    checkpoint.unlink(missing_ok=True)  # the twin now holds the best weights
    return TrainOutcome(result, weights_path, card_path, card, twin, data.held_out, curves)


@dataclass
class DefenceJob:
    """Models to put behind one preprocessing defence and measure on held-out images.

    ``data`` is a held-out split already in memory (after training); without it the
    held-out split of ``images`` is read for ``card`` (the same split training uses)."""

    models: list[tuple[str, object]]             # (name, Classifier)
    defence: str                                 # e.g. "jpeg:75"
    eps_list: tuple[float, ...]
    steps: int = 10
    data: LabelledImages | None = None
    images: Path | None = None
    card: object = None
    held_out: float = 0.2
    seed: int = 0
    device: object = None
    bare: bool = False                           # also measure each model without the defence


def defence_variants(models, spec) -> list[tuple]:
    """For each model, the defended model attacked naively and adaptively (EOT for a random
    defence, BPDA otherwise): the ``robustness_curves`` entries of a defence comparison."""
    from advexplorer.core.defences import DefendedClassifier

    adaptive = "eot" if spec.info.random else "bpda"
    variants = []
    for name, classifier in models:
        for mode in ("none", adaptive):
            label = "naive" if mode == "none" else mode.upper()
            variants.append((f"{name} + {spec.text()} ({label})", "naive" if mode == "none" else mode,
                             DefendedClassifier(classifier, spec, mode), spec.text()))
    return variants


def defence_job(job: DefenceJob, stop: threading.Event | None = None
                ) -> Generator[CurveProgress, None, list[RobustnessCurve]]:
    """The defended models' curves, naive and adaptive side by side (see :class:`DefenceJob`)."""
    spec = config.parse_defence(job.defence)
    data = job.data
    if data is None:
        if job.images is None:
            raise UserError("Choose the images to measure the defence on (a labelled folder or manifest).")
        data = load_training_data(job.images, job.card, held_out=job.held_out, seed=job.seed).held_out
        if len(data) == 0:
            raise UserError("The held-out split has 0 images; raise the held-out fraction or add images.")
        if job.device is not None:
            data = LabelledImages(data.images.to(job.device), data.labels.to(job.device))
    variants = [(name, "model", classifier) for name, classifier in job.models] if job.bare else []
    variants += defence_variants(job.models, spec)
    return (yield from robustness_curves(variants, data, job.eps_list, job.steps, stop))
