"""``--defense``, ``--adaptive`` and ``--precision`` for commands that attack a model.

The options are parsed by :mod:`advexplorer.config` (torch-free, shared with the
GUI). The attacked model becomes the defended (or lower-precision) one; with an adaptive
attack the same attack is also run naively, so the record shows both numbers: what the
defence appears to buy, and what is left of it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from advexplorer import config
# The defended model and the defended screen's numbers live one layer down, shared with the
# app's Cohort panel; imported here under the names the commands use.
from advexplorer.session.defended import (CALIBRATION_IMAGES, NAIVE_CSV, card_sample_images,  # noqa: F401
                                          cohort_calibration, defence_settings, defend_model,
                                          naive_classifier, screen_defence_summary)


def add_defence_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("defence and precision")
    kinds = config.defence_usage()
    group.add_argument("--defense", "--defence", dest="defense", metavar="KIND:VALUE",
                       help=f"preprocessing defence in front of the model: {kinds} (e.g. jpeg:75)")
    group.add_argument("--adaptive", default="none", choices=config.ADAPTIVE_MODES,
                       help="none: naive gradients through the defence; bpda: identity on the "
                            "backward pass; eot: average over a random defence's draws (with BPDA). "
                            "With bpda/eot the naive attack is run too and both are recorded")
    group.add_argument("--precision", default="float32", choices=config.PRECISIONS,
                       help="attack the model at this precision (int8: dynamic quantisation of "
                            "Linear layers; int8-static: static quantisation of convolutions and "
                            "Linear layers in torch.fx graph mode, calibrated on the screened images "
                            "or the card's samples; both attacked with BPDA through the quantiser)")


def wrap_model(loaded, args, calibration=None):
    """The LoadedModel the attack runs against, and the record entries that say so, for the
    parsed ``--defense``/``--adaptive``/``--precision`` (see :func:`defend_model`)."""
    return defend_model(loaded, getattr(args, "defense", None), getattr(args, "adaptive", None),
                        getattr(args, "precision", None), calibration=calibration)


def _outcome_entry(result, classes) -> dict:
    index = int(result.adversarial_prediction[0])
    return {"success": bool(result.success[0]), "prediction": classes[index],
            "probability": float(result.adversarial_probabilities[0, index])}


def defence_record(request, outcome, info: dict) -> dict:
    """The record's ``defence``/``precision`` entries; with an adaptive attack, the naive
    attack is run here on the same image, mask and configuration for comparison."""
    entries = {key: value for key, value in info.items() if key != "defence"}
    if "defence" not in info:
        return entries
    defence = {k: v for k, v in info["defence"].items() if not k.startswith("_")}
    classes = request.model.card.classes
    defence["adaptive_result" if defence["adaptive"] != "none" else "naive"] = \
        _outcome_entry(outcome.result, classes)
    if defence["adaptive"] != "none":
        import torch

        from advexplorer.core.attacks import run_attack
        from advexplorer.core.defences import DefendedClassifier

        naive = DefendedClassifier(info["defence"]["_base"], info["defence"]["_spec"], "none")
        device = request.model.device
        mask = None if request.allowed_mask is None else request.allowed_mask.to(device)
        labels = None if request.label is None else torch.tensor([request.label], device=device)
        result = run_attack(naive, request.image.tensor[None].to(device), mask, labels,
                            replace(request.config, seed=outcome.result.seed))
        defence["naive"] = _outcome_entry(result, classes)
    entries["defence"] = defence
    return entries


def summary_lines(record: dict) -> list[str]:
    """What the CLI prints about the defence: the naive and the adaptive outcome side by side."""
    lines = []
    if "precision" in record:
        lines.append(f"precision {record['precision']['how']}")
    defence = record.get("defence")
    if defence:
        def said(entry):
            return ("attack succeeds" if entry["success"] else "attack fails") + \
                f" ({entry['prediction']} {100 * entry['probability']:.1f}%)"
        text = f"defence  {defence['label']}: naive {said(defence['naive'])}"
        if "adaptive_result" in defence:
            text += f"; {defence['adaptive']} {said(defence['adaptive_result'])}"
        lines.append(text)
    return lines


# --------------------------------------------------------------------------------------
# ``advexplorer screen --defense … --adaptive … --precision …``

def screen_settings(args) -> dict:
    """What ``--resume`` must find unchanged: the defence, the adaptive mode, the precision."""
    return defence_settings(getattr(args, "defense", None), getattr(args, "adaptive", None),
                            getattr(args, "precision", None))


#: What a settings file written before these keys existed meant by them.
SETTINGS_DEFAULTS = {"defence": None, "adaptive": "none", "precision": "float32"}


def screen_defence_lines(summary: dict) -> list[str]:
    """What ``screen`` prints about the defence: naive vs adaptive per ε, with intervals."""
    lines = []
    if summary.get("precision"):
        lines.append(f"precision {summary['precision']['how']}")
    defence = summary.get("defence")
    if not defence:
        return lines

    def share(entry: dict) -> str:
        if entry["value"] is None:
            return "–"
        return f"{100 * entry['value']:5.1f} % [{100 * entry['ci95'][0]:4.1f}, {100 * entry['ci95'][1]:4.1f}]"

    measure = defence["per_eps"][0]["naive"]["measure"] if defence["per_eps"] else "robust accuracy"
    if defence["adaptive"] == "none":
        lines.append(f"defence  {defence['label']}, naive attack only ({measure}; add --adaptive "
                     f"{'eot' if defence['defence'].startswith('noise') else 'bpda'} to see what is left of it)")
        return lines
    lines.append(f"defence  {defence['label']}: {measure} [95 % CI], naive vs {defence['adaptive']}")
    for row in defence["per_eps"]:
        lines.append(f"{row['eps_label']:>10}  naive {share(row['naive'])}   {defence['adaptive']} "
                     f"{share(row['adaptive'])}" + ("   ← a hidden gradient: the naive number overstates the defence"
                                                    if row["gradient_hidden"] else ""))
    return lines
