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


def card_sample_images(loaded):
    """The card's sample images at the model's size (calibration for ``int8-static``)."""
    import torch

    from advexplorer.errors import UserError
    from advexplorer.io.images import load_image

    samples = [s.image for s in loaded.card.samples if s.image is not None and s.image.is_file()]
    if not samples:
        raise UserError("int8-static calibrates on images, and this model's card lists no samples; "
                        "use it with advexplorer screen (calibrated on the cohort) or use --precision int8.")
    return torch.stack([load_image(path, loaded.card).tensor for path in samples])


def wrap_model(loaded, args, calibration=None):
    """The LoadedModel the attack runs against (defended and/or at lower precision), and the
    record entries that say so. Unchanged when no option is given. ``calibration`` (a
    function returning N×C×H×W images) feeds ``int8-static``; without it the card's samples do."""
    spec_text = getattr(args, "defense", None)
    precision = config.parse_precision(getattr(args, "precision", None) or "float32")
    spec = config.parse_defence(spec_text) if spec_text else None
    adaptive = config.parse_adaptive(getattr(args, "adaptive", None) or "none", spec)
    if spec is None and precision == "float32":
        return loaded, {}
    classifier = loaded.classifier
    notes = list(loaded.notes)
    info: dict = {}
    if precision != "float32":
        from advexplorer.core.quantisation import QuantisedClassifier

        images = None
        if precision == "int8-static":
            images = calibration() if calibration is not None else card_sample_images(loaded)
        classifier = QuantisedClassifier(classifier, precision, images)
        info["precision"] = {"precision": precision, "how": classifier.describe()}
        notes.append(f"attacked at {precision}: {classifier.describe()}")
    if spec is not None:
        from advexplorer.core.defences import DefendedClassifier

        base = classifier
        classifier = DefendedClassifier(base, spec, adaptive)
        info["defence"] = {"defence": spec.text(), "label": spec.describe(), "adaptive": adaptive,
                           "adaptive_label": config.ADAPTIVE_LABELS[adaptive],
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


# --------------------------------------------------------------------------------------
# ``advexplorer screen --defense … --adaptive … --precision …``

#: The per-image CSV of the naive attack through the defence (the main CSV is the adaptive one).
NAIVE_CSV = "per_image_naive.csv"


def screen_settings(args) -> dict:
    """What ``--resume`` must find unchanged: the defence, the adaptive mode, the precision."""
    spec_text = getattr(args, "defense", None)
    spec = config.parse_defence(spec_text) if spec_text else None
    return {"defence": spec.text() if spec else None,
            "adaptive": config.parse_adaptive(getattr(args, "adaptive", None) or "none", spec),
            "precision": config.parse_precision(getattr(args, "precision", None) or "float32")}


#: What a settings file written before these keys existed meant by them.
SETTINGS_DEFAULTS = {"defence": None, "adaptive": "none", "precision": "float32"}


#: Images of a cohort that calibrate ``int8-static`` (the first ones, in cohort order).
CALIBRATION_IMAGES = 64


def cohort_calibration(cohort):
    """The first :data:`CALIBRATION_IMAGES` images of a cohort, for ``int8-static``."""
    import torch

    batches, count = [], 0
    for batch in cohort.loader(min(CALIBRATION_IMAGES, max(1, len(cohort))), num_workers=0):
        batches.append(batch.images)
        count += len(batch.images)
        if count >= CALIBRATION_IMAGES:
            break
    return torch.cat(batches)[:CALIBRATION_IMAGES] if batches else None


def naive_classifier(info: dict):
    """The defended model with naive gradients, when the screen's own attack is adaptive
    (its result is the apparent robustness the adaptive one is compared with); else None."""
    defence = info.get("defence")
    if not defence or defence["adaptive"] == "none":
        return None
    from advexplorer.core.defences import DefendedClassifier

    return DefendedClassifier(defence["_base"], defence["_spec"], "none")


def _held_share(entry: dict) -> dict:
    """Robust accuracy (labelled images) or the share not flipped, with its interval."""
    if entry.get("robust_accuracy") is not None:
        return {"measure": "robust accuracy", "value": entry["robust_accuracy"],
                "ci95": list(entry["robust_accuracy_ci95"]), "count": entry["robust"],
                "n": entry["n_labelled"]}
    if entry.get("flip_rate") is None:
        return {"measure": "share not flipped", "value": None, "ci95": [0.0, 1.0], "count": 0, "n": 0}
    low, high = entry["flip_rate_ci95"]
    return {"measure": "share not flipped", "value": 1 - entry["flip_rate"], "ci95": [1 - high, 1 - low],
            "count": entry["n"] - entry["flipped"], "n": entry["n"]}


def screen_defence_summary(info: dict, per_eps: list[dict], naive_per_eps: list[dict] | None) -> dict:
    """``summary.json``'s ``defence`` and ``precision`` entries of a defended screen.

    ``per_eps`` is the screen's own (adaptive, or naive when ``--adaptive none``) summary;
    ``naive_per_eps`` the naive attack's, run beside an adaptive one. Per ε, both numbers
    side by side, and whether the adaptive attack took away robustness the naive one showed
    (the naive interval lies wholly above the adaptive one: the defence only hid the gradient).
    """
    entries: dict = {}
    if "precision" in info:
        entries["precision"] = dict(info["precision"])
    if "defence" not in info:
        return entries
    defence = {k: v for k, v in info["defence"].items() if not k.startswith("_")}
    defence["citation"] = info["defence"]["_spec"].info.citation
    naive = naive_per_eps if naive_per_eps is not None else per_eps
    adaptive = per_eps if naive_per_eps is not None else None
    rows = []
    for j, entry in enumerate(naive):
        row = {"eps": entry["eps"], "eps_label": entry["eps_label"], "naive": _held_share(entry)}
        if adaptive is not None:
            row["adaptive"] = _held_share(adaptive[j])
            row["gradient_hidden"] = bool(row["naive"]["value"] is not None and
                                          row["naive"]["ci95"][0] > row["adaptive"]["ci95"][1])
        rows.append(row)
    defence["per_eps"] = rows
    defence["files"] = {"naive": NAIVE_CSV if adaptive is not None else "per_image.csv"}
    if adaptive is not None:
        defence["files"]["adaptive"] = "per_image.csv"
    entries["defence"] = defence
    return entries


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
