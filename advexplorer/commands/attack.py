"""``advexplorer attack``: one masked attack on one image, recorded in a new folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from advexplorer import config
from advexplorer.commands._args import (add_mask_arguments, add_model_arguments, budget, positive_number,
                                        probability)
from advexplorer.commands._sources import add_source_arguments, annotation_masks, load_source_image
from advexplorer.commands._defence import add_defence_arguments, defence_record, summary_lines, wrap_model

if TYPE_CHECKING:  # imported lazily at run time: --help must not load torch
    from advexplorer.session.runs import RunRequest

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", metavar="I",
                        help="image file (PNG, JPEG, TIFF; default: the model card's first sample, "
                             "with its protect mask)")
    add_model_arguments(parser)
    add_mask_arguments(parser)
    add_source_arguments(parser)
    attack = parser.add_argument_group("attack")
    attack.add_argument("--attack", default=config.METHODS[0], choices=config.METHODS,
                        help="fgsm (one step), pgd (iterative, Madry et al.), mifgsm (momentum), "
                             "noise (random perturbation of the same norm: the baseline), apgd-ce / "
                             "apgd-dlr (automatic step size, Croce & Hein), square (black box: outputs "
                             "only, --queries), ensemble (APGD-CE → APGD-T → Square, worst case)")
    attack.add_argument("--norm", default=config.NORMS[0], choices=config.NORMS)
    attack.add_argument("--eps", type=budget, default=8 / 255,
                        help="budget in pixel units; fractions allowed (default 8/255)")
    attack.add_argument("--step-size", type=positive_number, default=None,
                        help="per-step size (default: ε for FGSM, 2.5·ε/steps otherwise)")
    attack.add_argument("--steps", type=int, default=10, help="iterations (default 10)")
    attack.add_argument("--label", metavar="CLASS",
                        help="true class (name or index); untargeted attacks move away from it "
                             "(default: the clean prediction)")
    attack.add_argument("--targeted", metavar="CLASS", help="push towards this class (name or index)")
    attack.add_argument("--random-start", action="store_true", help="start from a random point in the ε-ball")
    attack.add_argument("--seed", type=int, default=None, help="random seed (recorded; default: drawn)")
    attack.add_argument("--restarts", type=int, default=1, help="random restarts; the best is kept per image")
    attack.add_argument("--early-stop", action="store_true", help="stop as soon as the attack succeeds")
    attack.add_argument("--queries", type=int, default=config.DEFAULT_QUERIES, metavar="N",
                        help=f"query budget per image of the black-box Square attack (also the ensemble's; "
                             f"default {config.DEFAULT_QUERIES})")
    attack.add_argument("--surrogate", metavar="M2",
                        help="transfer attack: craft on this model (same classes and input size; its card "
                             "beside it), judge on --model")
    attack.add_argument("--diversity", type=probability, default=0.0, metavar="P",
                        help="input diversity for transfer (DI-FGSM, Xie et al. 2019): with probability P "
                             "each gradient is taken through a random resize-and-pad of the image; "
                             "fgsm, pgd, mifgsm (0.5 is the paper's; default 0 = off)")
    explain = parser.add_argument_group("explanation and robustness")
    explain.add_argument("--saliency", choices=config.SALIENCY_METHODS,
                         help="attribution map before and after, compared (implies --robustness)")
    explain.add_argument("--saliency-class", default="clean",
                         choices=("clean", "adversarial", "label", "target", "each"),
                         help="class the maps explain: the clean prediction (default), the "
                              "adversarial prediction, the label, the target, or each image's own")
    explain.add_argument("--diagnostic", metavar="D.png",
                         help="diagnostic-region mask: report the share of attribution inside it")
    explain.add_argument("--robustness", action="store_true",
                         help="margin, gradient norm, local Lipschitz estimate, radius, noise flip rate")
    add_defence_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="DIR", help="new or empty folder for the run")
    output.add_argument("--report", action="append", default=[], metavar="FILE.html|.pdf|.json",
                        help="also write a report (repeatable)")
    output.add_argument("--overwrite", action="store_true", help="allow replacing existing report files")
    output.add_argument("--quiet", action="store_true", help="print nothing on success")


def build_request(args) -> "RunRequest":
    """Load model, image and masks named by the arguments (shared with ``reproduce``)."""
    from advexplorer import paths
    from advexplorer.core.attacks import AttackConfig
    from advexplorer.errors import UserError
    from advexplorer.io.images import load_mask
    from advexplorer.io.models import load_model
    from advexplorer.session.runs import RunRequest

    model_path = Path(args.model) if args.model else paths.DEFAULT_MODEL
    loaded = load_model(model_path, card=args.card, device=args.device, trust_pickle=args.trust_pickle)
    loaded, args.defence_info = wrap_model(loaded, args)
    card = loaded.card
    mask_path, mask_mode, invert = None, "none", False
    diagnostic_path = Path(args.diagnostic) if args.diagnostic else None
    if args.image:
        image_path = Path(args.image)
    else:
        if not card.samples:
            raise UserError(f"The card of {model_path.name} lists no samples; give --image.")
        sample = card.samples[0]
        image_path = sample.image
        if not (args.mask or args.protect):
            if sample.protect is not None:
                mask_path, mask_mode, invert = sample.protect, "protect", True
            elif sample.allowed is not None:
                mask_path, mask_mode = sample.allowed, "allowed"
        if diagnostic_path is None and sample.diagnostic is not None and args.saliency:
            diagnostic_path = sample.diagnostic
    if args.mask:
        mask_path, mask_mode, invert = Path(args.mask), "allowed", False
    elif args.protect:
        mask_path, mask_mode, invert = Path(args.protect), "protect", True

    image = load_source_image(args, image_path, card)
    allowed = load_mask(mask_path, image, card, invert=invert,
                        role="protect mask" if invert else "mask") if mask_path else None
    diagnostic = load_mask(diagnostic_path, image, card, role="diagnostic") if diagnostic_path else None
    annotated_allowed, annotated_diagnostic, annotations = annotation_masks(args, image, card)
    if annotated_allowed is not None:
        if allowed is not None:
            raise UserError("Give either a mask file (--mask/--protect) or --protect-classes, not both.")
        allowed, mask_mode, mask_path = annotated_allowed, "protect", None
    if annotated_diagnostic is not None:
        diagnostic, diagnostic_path = annotated_diagnostic, None
    targeted = card.class_index(args.targeted) if args.targeted is not None else None
    label = card.class_index(args.label) if args.label is not None else None
    attack_config = AttackConfig(
        method=args.attack, norm=args.norm, eps=args.eps, step_size=args.step_size, steps=args.steps,
        targeted=targeted, random_start=args.random_start, seed=args.seed, restarts=args.restarts,
        early_stop=args.early_stop, queries=args.queries,
        diversity=getattr(args, "diversity", 0.0)).validate()
    surrogate = load_model(Path(args.surrogate), device=args.device, trust_pickle=args.trust_pickle) \
        if getattr(args, "surrogate", None) else None
    return RunRequest(model=loaded, image=image, config=attack_config, allowed_mask=allowed,
                      mask_mode=mask_mode, mask_path=mask_path, diagnostic_mask=diagnostic,
                      diagnostic_path=diagnostic_path, label=label, saliency=args.saliency,
                      saliency_class=getattr(args, "saliency_class", "clean"),
                      robustness=args.robustness or bool(args.saliency),
                      command_line=getattr(args, "command_line", None), annotations=annotations,
                      surrogate=surrogate)


def _check_reports(paths: list[str], overwrite: bool) -> None:
    from advexplorer.errors import UserError
    from advexplorer.io.atomic import check_destination

    for name in paths:
        if Path(name).suffix.lower() not in (".html", ".htm", ".pdf", ".json"):
            raise UserError(f"--report {name}: the file must end in .html, .pdf or .json.")
        check_destination(name, overwrite=overwrite)


def run(args) -> int:
    from advexplorer.session.runs import build_record, check_output_dir, run as run_request, write_run_dir

    # Refuse bad output locations before spending time on the attack.
    out_dir = check_output_dir(args.out)
    _check_reports(args.report, args.overwrite)
    request = build_request(args)
    outcome = run_request(request)
    outcome.extras.update(defence_record(request, outcome, getattr(args, "defence_info", {})))
    record = build_record(request, outcome)
    write_run_dir(out_dir, request, outcome, record)
    for report in args.report:
        from advexplorer.report import write_report

        write_report(report, [out_dir], overwrite=args.overwrite)
    if not args.quiet:
        print(summary_text(record, out_dir, args.report))
    return 0


def _pct(p: float) -> str:
    return f"{100 * p:.1f}%"


def _export_text(record: dict) -> str:
    exported = record["exported_png"]
    if not record["flipped"]:
        return "as before: no flip"
    return "still flips after 8-bit rounding" if exported["still_flips"] else \
        "no longer flips after 8-bit rounding"


def _evaluation_lines(record: dict) -> list[str]:
    """Transfer, the ensemble's verdict, attack notes and reliability flags, one line each."""
    lines = []
    transfer = record.get("transfer")
    if transfer:
        crafted = "fooled" if transfer["surrogate_success"][0] else "did not fool"
        lines.append(f"transfer crafted on {Path(transfer['surrogate']['path']).name} ({crafted} it); "
                     f"the target is {'fooled' if transfer['target_success'][0] else 'not fooled'}")
    ensemble = record.get("ensemble")
    if ensemble is not None:
        winner = {"apgd-t": "APGD-T"}.get(ensemble.get("succeeded_by"), config.method_label(ensemble.get("succeeded_by")))
        lines.append(f"ensemble fooled by {winner}" if winner else
                     "ensemble no attack succeeded (worst case over APGD-CE, APGD-T, Square)")
    for note in record.get("attack_notes") or []:
        lines.append(f"note     {note}")
    for flag in record.get("flags") or []:
        lines.append(f"FLAG     {flag['title']} ({flag['detail']}). {flag['suggestion']}")
    return lines


def summary_text(record: dict, out_dir: Path, reports: list[str] = ()) -> str:
    """A short human summary of a run record (what the CLI prints)."""
    attack = record["attack"]
    before, after = record["prediction_before"], record["prediction_after"]
    eps = attack["eps"]
    budget = f"ε={config.format_budget(eps, attack['norm'], raw=True)}"
    mask = record["mask"]
    mask_text = {"none": "no mask (whole image)",
                 "allowed": f"allowed mask: {_pct(mask['allowed_fraction'])} of pixels may change",
                 "protect": f"protect mask: {_pct(mask['allowed_fraction'])} of pixels may change"}[mask["mode"]]
    outcome = "SUCCESS" if record["success"] else "failed"
    flip = "prediction flipped" if record["flipped"] else "prediction unchanged"
    exported = record["exported_png"]
    norms = record["norms"]
    lines = [
        f"model    {record['model']['card']['name']} ({record['model']['format']}) on {record['device']}",
        f"image    {Path(record['image']['path'] or 'array').name}  — {mask_text}",
        f"attack   {config.method_label(attack['method'])} {config.norm_label(attack['norm'])} {budget}, "
        f"{attack['steps']} step(s) of {config.format_budget(attack['step_size_used'], attack['norm'])}, "
        f"seed {attack['seed']}" + (f", input diversity p={attack['diversity']:g}" if attack.get("diversity") else ""),
        f"before   {before['class']} {_pct(before['probability'])}",
        f"after    {after['class']} {_pct(after['probability'])}  → {flip}, attack {outcome}",
        f"norms    L∞ {config.format_budget(norms['linf'], 'linf', raw=True)}  L2 {norms['l2']:.4g}  "
        f"L0 {norms['l0_pixels']} px",
        f"8-bit    adversarial.png predicts {exported['prediction']['class']} "
        f"({_export_text(record)})",
    ]
    if "saliency" in record:
        s = record["saliency"]
        lines.append(f"saliency {s.get('method')}: spearman {s.get('spearman', float('nan')):.3f}, "
                     f"top-10% overlap {s.get('topk_intersection', float('nan')):.3f} — {s.get('verdict')}")
    if "robustness" in record:
        r = record["robustness"]
        keys = ("margin", "gradient_norm", "lipschitz_estimate", "radius_estimate", "noise_flip_rate")
        lines.append("robust   " + ", ".join(f"{k.replace('_', ' ')} {r[k]:.4g}" for k in keys
                                             if isinstance(r.get(k), (int, float))))
    lines += summary_lines(record)
    lines += _evaluation_lines(record)
    lines.append(f"wrote    {out_dir}/ ({', '.join(sorted(record['files'].values()))}, record.json)"
                 f" in {record['wall_time_s']:.2f}s")
    for report in reports:
        lines.append(f"report   {report}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
