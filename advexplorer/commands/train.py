"""``advexplorer train``: fine-tune a model (clean, PGD-AT, TRADES, fast-AT) into a twin.

Writes ``DIR/<model>_<method>.pt`` and its card ``DIR/<model>_<method>.json`` (clean and
robust accuracy on the held-out split with Wilson intervals, the original's numbers beside
them, and the recipe). While training, the best weights so far are kept in
``DIR/checkpoint.pt`` (written atomically), so a full disk or Ctrl-C loses nothing that
was already good: the checkpoint stays, and Ctrl-C still writes the twin from it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from advexplorer import config
from advexplorer.commands._args import add_mask_arguments, add_model_arguments, budget, positive_number

METHOD_CHOICES = ("clean", "pgd", "trades", "fast")  # = core.training.TRAINING_METHODS (torch-free here)
CHECKPOINT_NAME = "checkpoint.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--images", required=True, metavar="DIR|manifest.csv",
                      help="a folder with one subfolder of images per class (named as in the card), "
                           "or a CSV with 'image', 'label' (and optional 'split') columns")
    data.add_argument("--held-out", type=float, default=0.2, metavar="FRACTION",
                      help="fraction of each class held out to measure accuracy (default 0.2)")
    add_mask_arguments(parser)
    recipe = parser.add_argument_group("training")
    recipe.add_argument("--method", default="pgd", choices=METHOD_CHOICES,
                        help="clean; pgd (Madry et al. 2018); trades (Zhang et al. 2019); "
                             "fast (FGSM with random start, Wong et al. 2020)")
    recipe.add_argument("--eps", type=budget, default=4 / 255,
                        help="L∞ training and evaluation budget in pixel units (default 4/255)")
    recipe.add_argument("--steps", type=int, default=7, help="PGD steps of the inner attack (default 7)")
    recipe.add_argument("--eval-steps", type=int, default=10,
                        help="PGD steps of the held-out robust accuracy (default 10)")
    recipe.add_argument("--epochs", type=int, default=5, help="passes over the training images (default 5)")
    recipe.add_argument("--lr", type=positive_number, default=1e-3, help="AdamW learning rate (default 1e-3)")
    recipe.add_argument("--batch-size", type=int, default=64)
    recipe.add_argument("--beta", type=float, default=6.0, help="TRADES trade-off weight β (default 6)")
    recipe.add_argument("--seed", type=int, default=0)
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="DIR", help="new or empty folder for the trained twin")
    output.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _training_config(args):
    from advexplorer.core.training import TrainConfig

    return TrainConfig(method=args.method, eps=args.eps, steps=args.steps, epochs=args.epochs, lr=args.lr,
                       batch_size=args.batch_size, beta=args.beta, eval_steps=args.eval_steps,
                       seed=args.seed).validate()


def _allowed_mask(args, card):
    """One mask for every image (resized to the model's input), as N×1×H×W, or None."""
    from advexplorer.io.images import mask_to_model
    from advexplorer.io.rasters import read_mask_array

    path = args.mask or args.protect
    if not path:
        return None, "none"
    allowed = mask_to_model(read_mask_array(path), card)
    if args.protect:
        allowed = 1 - allowed
    from advexplorer.errors import UserError

    if not bool(allowed.any()):
        raise UserError(f"The mask {Path(path).name} leaves no pixel the attack may change; "
                        "training against it would be clean training.")
    return allowed[None, None], "protect" if args.protect else "allowed"


def _weights_bytes(net, fmt: str) -> bytes:
    import torch

    buffer = io.BytesIO()
    if fmt == "torchscript":
        torch.jit.save(net, buffer)
    else:
        torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, buffer)
    return buffer.getvalue()


def _write(path: Path, data: bytes, what: str, checkpoint: Path | None) -> None:
    from advexplorer.errors import UserError
    from advexplorer.io.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(path, data, overwrite=True)
    except OSError as error:
        kept = f"; the last good checkpoint is still at {checkpoint}" if checkpoint and checkpoint.exists() \
            else ""
        raise UserError(f"Could not write the {what} {path.name} ({error.strerror or error}){kept}.") from None


def _card(loaded, args, recipe, data, result, mask_mode: str, out_name: str, out_dir: Path) -> dict:
    original = loaded.card.to_json()
    original.pop("samples", None)
    samples = []
    for sample in loaded.card.samples:  # keep the samples usable from the new folder
        entry = {"image": os.path.relpath(sample.image, out_dir)}
        for key in ("protect", "allowed", "diagnostic"):
            if getattr(sample, key) is not None:
                entry[key] = os.path.relpath(getattr(sample, key), out_dir)
        if sample.label is not None:
            entry["label"] = sample.label
        samples.append(entry)
    eps_text = config.over_255(recipe.eps)
    clearly = result.robust.clearly_above(result.original_robust)
    verdict = (f"Robust accuracy at ε = {eps_text} is {result.robust.value:.1%} "
               f"{_interval(result.robust)} vs the original's {result.original_robust.value:.1%} "
               f"{_interval(result.original_robust)}: "
               + ("higher, with non-overlapping 95 % Wilson intervals." if clearly else
                  "not clearly higher (the 95 % Wilson intervals overlap or it is lower)."))
    card = dict(original)
    card.update({
        "name": f"{loaded.card.name} ({args.method}, ε={eps_text})",
        "description": (f"Fine-tuned by AdvExplorer from {loaded.path.name} with "
                        f"{recipe.to_json()['method_text']}. " + verdict + " "
                        + (original.get("description") or "")).strip(),
        "clean_accuracy": round(result.clean.value, 4),
        "robust_accuracy": {"eps": recipe.eps, "eps_text": eps_text, "norm": "linf",
                            "steps": recipe.eval_steps, "step_size": 2.5 * recipe.eps / recipe.eval_steps,
                            "random_start": False, "mask": mask_mode, **result.robust.to_json(),
                            "criterion": "correct at every PGD iterate (engine early stop), held-out images"},
        "clean_accuracy_interval": result.clean.to_json(),
        "suggested_eps": recipe.eps, "suggested_eps_text": eps_text,
        "suggested_steps": recipe.eval_steps,
        "compared_with_original": {
            "model": str(loaded.path), "sha256": loaded.sha256,
            "clean_accuracy": result.original_clean.to_json(),
            "robust_accuracy": result.original_robust.to_json(),
            "robust_clearly_higher": clearly, "statement": verdict},
        "training": {
            "command": getattr(args, "command_line", None) or "advexplorer train",
            "recipe": recipe.to_json(), "mask": mask_mode, "data": data.to_json(),
            "held_out_fraction": args.held_out, "best_epoch": result.best_epoch,
            "stopped": result.stopped, "wall_time_s": round(result.seconds, 1),
            "epochs": [{"epoch": e.epoch, "train_loss": round(e.train_loss, 5),
                        "train_accuracy": round(e.train_accuracy, 4), "clean": e.clean.to_json(),
                        "robust": e.robust.to_json(), "seconds": round(e.seconds, 2)}
                       for e in result.history],
        },
    })
    if samples:
        card["samples"] = samples
    return card


def _interval(accuracy) -> str:
    low, high = accuracy.interval
    return f"[{low:.1%}, {high:.1%}]"


def _epoch_line(entry) -> str:
    return (f"epoch {entry.epoch}/{entry.epochs}  loss {entry.train_loss:.4f}  "
            f"clean {entry.clean.value:.1%} {_interval(entry.clean)}  "
            f"robust {entry.robust.value:.1%} {_interval(entry.robust)}  {entry.seconds:.1f} s"
            + ("  ← best" if entry.best else ""))


def run(args) -> int:
    import json

    from advexplorer import paths
    from advexplorer.core.training import EpochProgress, trainable, train_steps
    from advexplorer.errors import UserError
    from advexplorer.io.models import load_model
    from advexplorer.io.training_data import load_training_data
    from advexplorer.session.runs import check_output_dir

    out_dir = check_output_dir(args.out)
    recipe = _training_config(args)
    model_path = Path(args.model) if args.model else paths.DEFAULT_MODEL
    loaded = load_model(model_path, card=args.card, device=args.device, trust_pickle=args.trust_pickle)
    if loaded.format not in ("state_dict", "safetensors", "torchscript"):
        raise UserError(f"{model_path.name} is a {loaded.format} model; training writes TorchScript or "
                        "a state_dict, so export the model as one of those first.")
    data = load_training_data(args.images, loaded.card, held_out=args.held_out, seed=args.seed)
    allowed, mask_mode = _allowed_mask(args, loaded.card)
    device = loaded.device
    data.train.images, data.train.labels = data.train.images.to(device), data.train.labels.to(device)
    data.held_out.images, data.held_out.labels = data.held_out.images.to(device), data.held_out.labels.to(device)
    if allowed is not None:
        data.train.allowed_mask = data.held_out.allowed_mask = allowed.to(device)
    out_dir.mkdir(exist_ok=True)
    checkpoint = out_dir / CHECKPOINT_NAME
    twin = trainable(loaded.classifier)
    fmt = "state_dict" if loaded.format == "safetensors" else loaded.format

    def save_checkpoint(state, entry) -> None:
        _write(checkpoint, _weights_bytes(twin.model, fmt), "checkpoint", checkpoint)

    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    say(f"training {loaded.card.name} with {args.method} at ε={config.over_255(recipe.eps)} on "
        f"{len(data.train)} images, measuring on {len(data.held_out)} held-out images")
    steps = train_steps(twin, data.train, data.held_out, recipe, on_checkpoint=save_checkpoint)
    try:
        while True:
            try:
                progress = next(steps)
            except StopIteration as finished:
                result = finished.value
                break
            if isinstance(progress, EpochProgress):
                say(_epoch_line(progress))
    except KeyboardInterrupt:
        steps.close()  # loads the best weights back into the twin
        raise UserError(f"Cancelled; the best weights so far are in {checkpoint}" if checkpoint.exists()
                        else "Cancelled before any epoch improved on the original; nothing was written.") \
            from None

    stem = f"{model_path.stem}_{args.method}"
    weights_path, card_path = out_dir / f"{stem}.pt", out_dir / f"{stem}.json"
    card = _card(loaded, args, recipe, data, result, mask_mode, stem, out_dir)
    if fmt == "state_dict":
        card["architecture"] = loaded.card.architecture
    _write(weights_path, _weights_bytes(twin.model, fmt), "weights", checkpoint)
    _write(card_path, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), "card",
           checkpoint)
    checkpoint.unlink(missing_ok=True)  # the twin now holds the best weights
    say(f"original clean {result.original_clean.value:.1%} {_interval(result.original_clean)}  "
        f"robust {result.original_robust.value:.1%} {_interval(result.original_robust)}")
    say(f"twin     clean {result.clean.value:.1%} {_interval(result.clean)}  "
        f"robust {result.robust.value:.1%} {_interval(result.robust)}  (best epoch {result.best_epoch})")
    say(card["compared_with_original"]["statement"])
    say(f"wrote    {weights_path} and {card_path.name}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
