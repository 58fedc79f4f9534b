"""``advexplorer train``: fine-tune a model (clean, PGD-AT, TRADES, fast-AT) into a twin.

Writes ``DIR/<model>_<method>.pt`` and its card ``DIR/<model>_<method>.json`` (clean and
robust accuracy on the held-out split with Wilson intervals, the original's numbers beside
them, and the recipe). While training, the best weights so far are kept in
``DIR/checkpoint.pt`` (written atomically), so a full disk or Ctrl-C loses nothing that
was already good: the checkpoint stays, and Ctrl-C still writes the twin from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from advexplorer import config
from advexplorer.commands._args import add_mask_arguments, add_model_arguments, budget, positive_number

METHOD_CHOICES = ("clean", "pgd", "trades", "fast")  # = core.training.TRAINING_METHODS (torch-free here)


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
    recipe.add_argument("--curves", action="store_true",
                        help="also measure the original's and the twin's held-out accuracy at ε = 0, ε/4, "
                             "ε/2, ε and 2ε (robustness curves, into the card) and print them")
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
    return allowed, "protect" if args.protect else "allowed"


def _epoch_line(entry) -> str:
    from advexplorer.session.training_job import interval_text

    return (f"epoch {entry.epoch}/{entry.epochs}  loss {entry.train_loss:.4f}  "
            f"clean {entry.clean.value:.1%} {interval_text(entry.clean)}  "
            f"robust {entry.robust.value:.1%} {interval_text(entry.robust)}  {entry.seconds:.1f} s"
            + ("  ← best" if entry.best else ""))


def run(args) -> int:
    import threading

    from advexplorer import paths
    from advexplorer.core.attacks import drive
    from advexplorer.core.training import EpochProgress, curve_budgets
    from advexplorer.io.models import load_model
    from advexplorer.session.runs import check_output_dir
    from advexplorer.session.training_job import TrainJob, interval_text, save_format, training_job

    out_dir = check_output_dir(args.out)
    recipe = _training_config(args)
    model_path = Path(args.model) if args.model else paths.DEFAULT_MODEL
    loaded = load_model(model_path, card=args.card, device=args.device, trust_pickle=args.trust_pickle)
    save_format(loaded)  # refuse a model that cannot be saved before spending time on it
    allowed, mask_mode = _allowed_mask(args, loaded.card)
    command = args.command_line if isinstance(getattr(args, "command_line", None), str) else \
        " ".join(["advexplorer", *sys.argv[1:]])
    job = TrainJob(model=loaded, images=Path(args.images), recipe=recipe, out_dir=out_dir,
                   held_out=args.held_out, allowed_mask=allowed, mask_mode=mask_mode, command_line=command,
                   curve_eps=curve_budgets(recipe.eps) if getattr(args, "curves", False) else None)
    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    say(f"training {loaded.card.name} with {args.method} at ε={config.over_255(recipe.eps)} "
        f"from {Path(args.images).name}")
    stop = threading.Event()
    steps = training_job(job, stop=stop)

    def show(progress) -> None:
        if isinstance(progress, EpochProgress):
            say(_epoch_line(progress))

    try:
        outcome = drive(steps, show)
    except KeyboardInterrupt:
        # Ctrl-C: stop at the next batch and still write the twin from the best weights.
        say("cancelling: writing the best weights so far …")
        stop.set()
        outcome = drive(steps, show)
    result = outcome.result
    say(f"original clean {result.original_clean.value:.1%} {interval_text(result.original_clean)}  "
        f"robust {result.original_robust.value:.1%} {interval_text(result.original_robust)}")
    say(f"twin     clean {result.clean.value:.1%} {interval_text(result.clean)}  "
        f"robust {result.robust.value:.1%} {interval_text(result.robust)}  (best epoch {result.best_epoch}"
        f"{', cancelled' if result.stopped == 'cancelled' else ''})")
    say(outcome.card["compared_with_original"]["statement"])
    for line in _curve_lines(outcome.curves):
        say(line)
    say(f"wrote    {outcome.weights_path} and {outcome.card_path.name}")
    return 0


def _curve_lines(curves) -> list[str]:
    """The robustness curves as a table: one row per ε, one column per model."""
    if not curves:
        return []
    from advexplorer.session.training_job import interval_text

    lines = ["robustness curves (held-out accuracy, 95 % Wilson interval)",
             f"{'ε':>9}  " + "  ".join(f"{curve.name:<22}" for curve in curves)]
    for j, eps in enumerate(curves[0].eps):
        cells = [f"{curve.accuracy[j].value:6.1%} {interval_text(curve.accuracy[j]):<15}" for curve in curves]
        lines.append(f"{'0 clean' if eps == 0 else config.over_255(eps):>9}  " + "  ".join(cells))
    return lines


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
