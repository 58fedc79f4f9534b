"""``--defense``, ``--adaptive`` and ``--precision`` for commands that attack a model.

The options are parsed by :mod:`advexplorer.defence_options` (torch-free, shared with the
GUI). The attacked model becomes the defended (or lower-precision) one; with an adaptive
attack the same attack is also run naively, so the record shows both numbers: what the
defence appears to buy, and what is left of it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from advexplorer import defence_options


def add_defence_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("defence and precision")
    kinds = " | ".join(f"{k}:{v.parameter.split(' ')[0].upper()}"
                       for k, v in defence_options.DEFENCE_KINDS.items())
    group.add_argument("--defense", "--defence", dest="defense", metavar="KIND:VALUE",
                       help=f"preprocessing defence in front of the model: {kinds} (e.g. jpeg:75)")
    group.add_argument("--adaptive", default="none", choices=defence_options.ADAPTIVE_MODES,
                       help="none: naive gradients through the defence; bpda: identity on the "
                            "backward pass; eot: average over a random defence's draws (with BPDA). "
                            "With bpda/eot the naive attack is run too and both are recorded")
    group.add_argument("--precision", default="float32", choices=defence_options.PRECISIONS,
                       help="attack the model at this precision (int8: dynamic quantisation of "
                            "Linear layers, attacked with BPDA through the quantiser)")


def wrap_model(loaded, args):
    """The LoadedModel the attack runs against (defended and/or at lower precision), and the
    record entries that say so. Unchanged when no option is given."""
    spec_text = getattr(args, "defense", None)
    precision = defence_options.parse_precision(getattr(args, "precision", None) or "float32")
    spec = defence_options.parse_defence(spec_text) if spec_text else None
    adaptive = defence_options.parse_adaptive(getattr(args, "adaptive", None) or "none", spec)
    if spec is None and precision == "float32":
        return loaded, {}
    classifier = loaded.classifier
    notes = list(loaded.notes)
    info: dict = {}
    if precision != "float32":
        from advexplorer.core.quantisation import QuantisedClassifier

        classifier = QuantisedClassifier(classifier, precision)
        info["precision"] = {"precision": precision, "how": classifier.describe()}
        notes.append(f"attacked at {precision}: {classifier.describe()}")
    if spec is not None:
        from advexplorer.core.defences import DefendedClassifier

        base = classifier
        classifier = DefendedClassifier(base, spec, adaptive)
        info["defence"] = {"defence": spec.text(), "label": spec.describe(), "adaptive": adaptive,
                           "adaptive_label": defence_options.ADAPTIVE_LABELS[adaptive],
                           "_base": base, "_spec": spec}
        notes.append(f"defended by {spec.describe()}; attack gradients: {adaptive}")
    return replace(loaded, classifier=classifier, notes=notes), info


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
