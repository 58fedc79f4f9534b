"""``advexplorer min-eps``: the smallest ε that flips the prediction, recorded in a new folder.

The folder is an ordinary run folder (``record.json``, ``input.npy``, ``perturbation.npy``,
``adversarial.png``, ``mask.png``) holding the attack at the minimal ε, so ``report`` and
``reproduce`` read it like any attack; ``record.json`` adds a ``min_eps`` object with the
bracket, every ε tried and the search's cost in forward+backward passes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from advexplorer import config
from advexplorer.commands._args import add_mask_arguments, add_model_arguments, budget, positive_number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", metavar="I",
                        help="image file (default: the model card's first sample, with its protect mask)")
    add_model_arguments(parser)
    add_mask_arguments(parser)
    search = parser.add_argument_group("search")
    search.add_argument("--norm", default=config.NORMS[0], choices=config.NORMS)
    search.add_argument("--attack", default="pgd", choices=config.GRADIENT_METHODS,
                        help="the attack whose minimal ε is searched (default pgd)")
    search.add_argument("--steps", type=int, default=20, help="attack iterations per ε (default 20)")
    search.add_argument("--eps-max", type=budget, default=None,
                        help="largest ε tried (default 64/255 for linf, 8 for l2); fractions allowed")
    search.add_argument("--tolerance", type=positive_number, default=0.01,
                        help="stop when the bracket is this narrow relative to ε (default 0.01)")
    search.add_argument("--grid", type=int, default=4,
                        help="ε values attacked together in one batch per round (default 4; "
                             "larger saves rounds on a GPU)")
    search.add_argument("--label", metavar="CLASS",
                        help="true class (name or index); default: the clean prediction")
    search.add_argument("--seed", type=int, default=0, help="random seed (recorded; default 0)")
    search.add_argument("--robustness", action="store_true",
                        help="also record margin, gradient norm, Lipschitz estimate, radius and "
                             "noise flip rate at the minimal ε")
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="DIR", help="new or empty folder for the record")
    output.add_argument("--quiet", action="store_true", help="print nothing on success")


def _request(args):
    """Load model, image and masks exactly as ``advexplorer attack`` does (same defaults)."""
    from advexplorer.commands import attack
    from advexplorer.core.robustness import DEFAULT_EPS_MAX

    eps_max = args.eps_max if args.eps_max is not None else DEFAULT_EPS_MAX[args.norm]
    # Every attack option min-eps does not have takes its default from the attack command
    # itself, so an option added there later does not break this command.
    attack_parser = argparse.ArgumentParser()
    attack.add_arguments(attack_parser)
    attack_args = attack_parser.parse_args(["--out", str(args.out)])
    for name, value in vars(args).items():
        setattr(attack_args, name, value)
    for name, value in dict(eps=eps_max, step_size=None, targeted=None, random_start=False,
                            restarts=1, early_stop=True, saliency=None, diagnostic=None).items():
        setattr(attack_args, name, value)
    return attack.build_request(attack_args), eps_max


def _exported(classifier, result, device):
    """The 8-bit PNG a user saves, and whether it still flips (ε at the boundary often does not)."""
    import numpy as np
    import torch

    from advexplorer.io.images import to_uint8

    exported = to_uint8(result.adversarial[0].detach().cpu().permute(1, 2, 0).numpy())
    tensor = torch.from_numpy(exported.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    with torch.no_grad():
        probabilities = torch.softmax(classifier(tensor).float(), dim=1)[0]
    return exported, probabilities.cpu(), int(probabilities.argmax()) != int(result.reference[0])


def run(args) -> int:
    import time

    from advexplorer.core.robustness import minimal_eps, robustness_summary
    from advexplorer.errors import UserError
    from advexplorer.session.runs import RunOutcome, build_record, check_output_dir, write_run_dir

    out_dir = check_output_dir(args.out)  # refuse a bad folder before the search
    if args.grid < 1 or args.grid > 64:
        raise UserError(f"--grid {args.grid} is out of range: use 1 to 64 ε values per round.")
    if args.steps < 1:
        raise UserError(f"--steps {args.steps} must be at least 1.")
    started = time.perf_counter()
    request, eps_max = _request(args)
    model = request.model
    classifier, device = model.classifier, model.device
    image = request.image.tensor[None].to(device)
    mask = None if request.allowed_mask is None else request.allowed_mask.to(device)
    found = minimal_eps(classifier, image, allowed_mask=mask, norm=args.norm, label=request.label,
                        method=args.attack, steps=args.steps, eps_max=eps_max,
                        tolerance=args.tolerance, seed=args.seed, grid=args.grid)
    eps = found.eps if found.found else eps_max
    result = replace(found.result, config=replace(found.result.config, eps=float(eps)))
    robustness = None
    if args.robustness:
        robustness = robustness_summary(classifier, image, allowed_mask=mask, norm=args.norm, eps=eps,
                                        label=request.label, seed=args.seed)
    exported, probabilities, still_flips = _exported(classifier, result, device)
    outcome = RunOutcome(result=result, exported=exported, exported_probabilities=probabilities,
                         exported_success=still_flips, wall_time_s=time.perf_counter() - started,
                         robustness=robustness)
    request = replace(request, config=result.config)
    record = build_record(request, outcome)
    classes = model.card.classes
    min_eps = found.to_json()
    min_eps["reference_class"] = classes[found.reference] if 0 <= found.reference < len(classes) else None
    min_eps["adversarial_class"] = None if found.adversarial_prediction is None else \
        classes[found.adversarial_prediction]
    min_eps["eps_255"] = None if found.eps is None or args.norm != "linf" else found.eps * 255
    record["min_eps"] = min_eps
    write_run_dir(out_dir, request, outcome, record)
    if not args.quiet:
        print(summary_text(record, out_dir))
    return 0


def summary_text(record: dict, out_dir: Path) -> str:
    """What the command prints: the minimal ε, its bracket and what the search cost."""
    found = record["min_eps"]
    norm = found["norm"]
    method = config.method_label(found["method"])
    mask = record["mask"]
    where = "whole image" if mask["mode"] == "none" else \
        f"{mask['mode']} mask, {100 * mask['allowed_fraction']:.1f}% of pixels may change"

    def show(value):
        return config.format_budget(value, norm, raw=True)

    lines = [f"model    {record['model']['card']['name']} on {record['device']}",
             f"image    {Path(record['image']['path'] or 'array').name} — {where}",
             f"before   {record['prediction_before']['class']} "
             f"{100 * record['prediction_before']['probability']:.1f}%"]
    if found["found"]:
        lo, hi = found["bracket"]
        lines.append(f"min ε    {show(found['eps'])} {config.norm_label(norm)} with {method} "
                     f"{found['steps']} steps → {found['adversarial_class']}; bracket ({show(lo)}, {show(hi)})")
        png = record["exported_png"]
        lines.append("8-bit    adversarial.png " + ("still flips" if png["still_flips"] else
                                                    "no longer flips (rounding moves it back across the boundary)"))
    else:
        lines.append(f"min ε    not found: {method} did not flip the prediction at "
                     f"ε = {show(found['eps_max'])}; raise --eps-max or --steps")
    cost = found["cost"]
    lines.append(f"cost     {cost['forward_passes']} forward + {cost['backward_passes']} backward passes "
                 f"in {cost['attack_batches']} batched rounds ({cost['images_attacked']} ε values)")
    if "robustness" in record:
        r = record["robustness"]
        radius = "—" if r["radius_estimate"] is None else f"{r['radius_estimate']:.4g}"
        lines.append(f"robust   margin {r['margin']:.4g}, Lipschitz ≈ {r['lipschitz_estimate']:.4g}, "
                     f"radius m/2L ≈ {radius}, noise flip rate {100 * r['noise_flip_rate']:.0f}%")
    lines.append(f"wrote    {out_dir}/record.json in {record['wall_time_s']:.2f}s")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
