"""What a report says, computed once and rendered by both the HTML and the PDF writers.

Every value here is *plain text* (never markup): the renderers escape all of it, so a
class name, file name or card field can never inject markup into a report. Pictures are
PNG bytes; the trajectory plot is an SVG string built from escaped text.

This module gives one run's part (:func:`run_content`); beside it, :mod:`advexplorer.report.text`
words single values, :mod:`advexplorer.report.card_text` the model card's rows, and
:mod:`advexplorer.report.overview` the header and the comparison table of a whole report.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advexplorer.config import DEFENCE_KINDS, NORM_LABELS, method_label, norm_label, over_255
from advexplorer.io.runfolder import equivalent_command
from advexplorer.report import figures
from advexplorer.report.card_text import card_rows
from advexplorer.report.run import RunView, finite
from advexplorer.report.text import Rows, budget, number, percent, yes_no


@dataclass
class Prediction:
    """A prediction as shown: the top class and up to five (class, probability) pairs."""

    index: int | None
    name: str
    probability: float | None
    top: list[tuple[str, float]]


@dataclass
class ColourScale:
    """A colour bar: the strip and the values at its left end, middle and right end."""

    png: bytes
    low: str
    middle: str
    high: str
    caption: str


@dataclass
class Picture:
    """A picture of the report: PNG bytes with a title, a caption and maybe a colour bar."""

    title: str
    png: bytes
    caption: str
    scale: ColourScale | None = None

    @property
    def width(self) -> int:
        return int.from_bytes(self.png[16:20], "big")  # the PNG IHDR chunk

    @property
    def height(self) -> int:
        return int.from_bytes(self.png[20:24], "big")


@dataclass
class Section:
    """A titled block of label/value rows with an optional verdict and note."""

    title: str
    rows: Rows
    verdict: str | None = None
    verdict_good: bool | None = None
    note: str | None = None


@dataclass
class RunContent:
    """All that one run's part of a report shows, as plain text and PNG/SVG."""

    title: str
    headline: str
    flipped: bool | None
    success: bool | None
    question: Rows
    before: Prediction
    after: Prediction
    answer: Rows
    norms: Rows
    pictures: list[Picture]
    saliency_pictures: list[Picture]
    trajectory_svg: str | None
    loss_svg: str | None
    trajectory_note: str
    sections: list[Section]
    hashes: Rows
    parameters: Rows
    environment: Rows
    command_line: str | None
    equivalent_command: str | None
    #: Said instead of ``equivalent_command`` when no command line repeats the run.
    no_command_note: str | None
    reproduce_command: str
    card: Rows
    warnings: list[str] = field(default_factory=list)


def _prediction(entry: dict | None) -> Prediction:
    entry = entry or {}
    top = [(str(t.get("class", t.get("index", "?"))), float(t.get("probability", float("nan"))))
           for t in entry.get("top5") or []]
    probability = entry.get("probability")
    return Prediction(index=entry.get("index"), name=str(entry.get("class", "—")),
                      probability=float(probability) if finite(probability) else None, top=top)


def _class_text(prediction: Prediction) -> str:
    if prediction.probability is None:
        return prediction.name
    return f"{prediction.name} ({percent(prediction.probability)})"


def attack_text(attack: dict) -> str:
    """'PGD L∞, ε = 8/255 (0.03137), 10 steps of 2/255'."""
    method = method_label(attack.get("method") or "?")
    norm = norm_label(attack.get("norm"))
    text = f"{method} {norm}, ε = {budget(attack.get('eps'))}"
    steps = attack.get("steps")
    if attack.get("method") not in ("fgsm",) and steps:
        step = attack.get("step_size_used", attack.get("step_size"))
        text += f", {steps} steps" + (f" of {over_255(step)}" if finite(step) else "")
    if (attack.get("restarts") or 1) > 1:
        text += f", best of {attack['restarts']} restarts"
    text += f", input diversity p = {attack['diversity']:g}" if attack.get("diversity") else ""
    return text


def mask_text(mask: dict) -> str:
    mode = (mask or {}).get("mode", "none")
    fraction = (mask or {}).get("allowed_fraction")
    if mode == "allowed":
        return f"allowed mask: only the painted region may change ({percent(fraction)} of pixels)"
    if mode == "protect":
        return (f"protect mask: the painted region must not change; the rest may "
                f"({percent(fraction)} of pixels)")
    return "none: every pixel may change"


def _headline(record: dict) -> str:
    before = _prediction(record.get("prediction_before"))
    after = _prediction(record.get("prediction_after"))
    attack = record.get("attack") or {}
    where = {"allowed": " confined to the allowed region", "protect": " outside the protected region"}
    region = where.get((record.get("mask") or {}).get("mode", "none"), "")
    budget_text = f"an {NORM_LABELS.get(attack.get('norm'), '')} budget of {over_255(attack.get('eps'))}{region}"
    target = record.get("target")
    if target:
        reached = "reached" if record.get("success") else "did not reach"
        text = (f"The targeted attack {reached} {target.get('name')}: {_class_text(before)} → "
                f"{_class_text(after)} under {budget_text}.")
    elif record.get("flipped"):
        text = f"The prediction flipped: {_class_text(before)} → {_class_text(after)} under {budget_text}."
    else:
        text = (f"The prediction held: {before.name} stayed on top "
                f"({percent(before.probability)} → {percent(after.probability)}) under {budget_text}.")
    exported = record.get("exported_png") or {}
    if "still_flips" in exported and record.get("flipped"):
        text += (" The saved 8-bit PNG still flips it." if exported["still_flips"]
                 else " The saved 8-bit PNG no longer flips it (rounding undid the attack).")
    return text


def _norm_rows(record: dict, view: RunView) -> Rows:
    norms = record.get("norms") or {}
    height, width = view.input_image.shape[:2]
    channels = view.input_image.shape[2]
    fraction = (record.get("mask") or {}).get("allowed_fraction")
    allowed_pixels = round(fraction * height * width) if finite(fraction) else height * width
    rows: Rows = [
        ("L∞ (largest change of one value)", budget(norms.get("linf"))),
        ("L2 (Euclidean length)", number(norms.get("l2"))),
    ]
    if "l0" in norms:
        rows.append(("L0 (values changed)", f"{number(norms['l0'])} of {number(height * width * channels)}"))
    if "l0_pixels" in norms:
        rows.append(("Pixels changed", f"{number(norms['l0_pixels'])} of {number(allowed_pixels)} allowed "
                                       f"({number(height * width)} in the image)"))
    outside = _outside_mask(view)
    if outside is not None:
        rows.append(("Largest change outside the allowed region", budget(outside)))
    return rows


def _outside_mask(view: RunView) -> float | None:
    if view.allowed_mask is None:
        return None
    outside = np.abs(view.perturbation)[~view.allowed_mask]
    return float(outside.max()) if outside.size else 0.0


def _question_rows(record: dict) -> Rows:
    model = record.get("model") or {}
    card = model.get("card") or {}
    image = record.get("image") or {}
    attack = record.get("attack") or {}
    size = card.get("input_size") or []
    file_size = image.get("file_size") or []
    rows: Rows = [
        ("Model", f"{card.get('name', '—')} — {Path(str(model.get('path', ''))).name} ({model.get('format', '?')})"),
        ("Classes", ", ".join(str(c) for c in card.get("classes") or [])),
        ("Image", f"{Path(str(image.get('path') or 'in-memory image')).name}"
                  + (f", {file_size[0]}×{file_size[1]} px file" if len(file_size) == 2 else "")
                  + (f", fed to the model at {size[1]}×{size[0]} px ({card.get('resize', 'stretch')})"
                     if len(size) == 2 else "")),
        ("Mask", mask_text(record.get("mask") or {})),
        ("Attack", attack_text(attack)),
        ("Budget ε", f"{budget(attack.get('eps'))} in pixel units ([0, 1] scale), "
                     f"{norm_label(attack.get('norm'))} norm"),
    ]
    label, target = record.get("label"), record.get("target")
    if target:
        rows.append(("Goal", f"targeted: make the model say {target.get('name')} (class {target.get('index')})"))
    else:
        away = f"the true label {label.get('name')} (class {label.get('index')})" if label else \
            "the clean prediction"
        rows.append(("Goal", f"untargeted: move the prediction away from {away}"))
    if record.get("diagnostic"):
        rows.append(("Diagnostic region", Path(str(record["diagnostic"].get("path", ""))).name))
    for note in image.get("notes") or []:
        rows.append(("Image note", str(note)))
    return rows


def _answer_rows(record: dict) -> Rows:
    target = record.get("target")
    rows: Rows = [
        ("Attack succeeded", yes_no(record.get("success"))
         + (" (reached the target)" if target and record.get("success") else "")),
        ("Prediction flipped", yes_no(record.get("flipped"))),
        ("Steps run", f"{number(record.get('steps_run'))} (forward passes {number(record.get('forward_passes'))}, "
                      f"backward passes {number(record.get('backward_passes'))})"),
    ]
    if finite(record.get("wall_time_s")):
        rows.append(("Wall time", f"{record['wall_time_s']:.3g} s on {record.get('device', '?')}"))
    return rows


def _trajectory(record: dict, before: Prediction, after: Prediction):
    trajectory = record.get("trajectory") or {}
    probabilities = trajectory.get("probabilities") or {}
    if not probabilities:
        return None, None, "The record has no trajectory."
    restarts = trajectory.get("restart")
    steps = trajectory.get("step")
    roles: dict[str, str] = {}
    for role, entry in (("label", record.get("label")), ("target", record.get("target"))):
        if entry and entry.get("name") in probabilities:
            roles[str(entry["name"])] = role
    if before.name in probabilities:
        roles.setdefault(before.name, "before")
    if after.name != before.name and after.name in probabilities:
        roles.setdefault(after.name, "after")
    # Plot the classes that matter first so they get the strongest colours.
    ordered = sorted(probabilities, key=lambda name: (name not in roles, -max(probabilities[name] or [0])))
    series = {str(name): [float("nan") if v is None else float(v) for v in probabilities[name]]
              for name in ordered}
    prob_svg = figures.trajectory_svg(series, restarts=restarts, steps=steps, highlight=roles,
                                      y_label="probability", title="Confidence per class")
    loss = trajectory.get("loss")
    loss_svg = None
    if loss:
        label = "−cross-entropy of target" if record.get("target") else "cross-entropy of reference"
        loss_svg = figures.trajectory_svg({label: [float("nan") if v is None else float(v) for v in loss]},
                                          restarts=restarts, steps=steps, y_range=None, height=180,
                                          y_label="objective", title="Attack objective (maximised)")
    note = ("Softmax probability of each tracked class after every attack step (step 0 is the "
            "starting image). Dashed lines mark restarts.")
    return prob_svg, loss_svg, note


def _pictures(view: RunView) -> list[Picture]:
    record = view.record
    original = figures.to_uint8(view.input_image)
    factor = figures.display_factor(*original.shape[:2])
    adversarial = view.exported if view.exported is not None else figures.to_uint8(view.adversarial)
    if adversarial.ndim == 2:
        adversarial = np.repeat(adversarial[:, :, None], 3, axis=2)
    elif adversarial.shape[2] == 1:
        adversarial = np.repeat(adversarial, 3, axis=2)
    height, width = original.shape[:2]
    after = _prediction(record.get("prediction_after"))
    before = _prediction(record.get("prediction_before"))
    pictures = [
        Picture("Original (model input)", figures.png_bytes(original, factor=factor),
                f"{width}×{height} px as the model sees it; predicted {_class_text(before)}."),
        Picture("Adversarial (saved 8-bit PNG)" if view.exported is not None else "Adversarial",
                figures.png_bytes(adversarial[:, :, :3], factor=factor),
                f"predicted {_class_text(after)}."),
    ]
    mean_delta = figures.channel_mean(view.perturbation)
    scale = figures.symmetric_scale(mean_delta)
    amplification = 0.5 / scale
    channels = view.perturbation.shape[2]
    what = "mean over the 3 colour channels of " if channels == 3 else ""
    pictures.append(Picture(
        "Perturbation (amplified)",
        figures.png_bytes(figures.perturbation_rgb(view.perturbation, scale), factor=factor),
        f"{what}adversarial − original. Blue = darker, red = brighter, white = unchanged; the "
        f"colour ends are ±{number(scale, 3)} (±{over_255(scale)}), i.e. amplified ×{amplification:.3g} "
        f"relative to the full [0,1] range.",
        ColourScale(figures.colorbar_png("diverging"), f"−{over_255(scale)}", "0", f"+{over_255(scale)}",
                    "change in pixel value")))
    if view.allowed_mask is not None or view.diagnostic_mask is not None:
        mode = (record.get("mask") or {}).get("mode", "none")
        parts = []
        if view.allowed_mask is not None:
            parts.append("greyed = protected, left unchanged; cyan line = edge of the region the "
                         "attack could change" if mode != "none" else "cyan line = edge of the allowed region")
        if view.diagnostic_mask is not None:
            parts.append("amber outline = diagnostic region")
        pictures.append(Picture("Mask overlay", figures.png_bytes(
            figures.mask_overlay(original, view.allowed_mask, view.diagnostic_mask, factor=factor), factor=1),
            "; ".join(parts) + "."))
    return pictures


def _saliency_pictures(view: RunView) -> list[Picture]:
    if view.saliency_before is None or view.saliency_after is None:
        return []
    saliency = view.record.get("saliency") or {}
    vmax = float(max(np.nanmax(view.saliency_before), np.nanmax(view.saliency_after), 0.0))
    vmax = vmax if vmax > 0 else 1.0
    factor = figures.display_factor(*view.saliency_before.shape)
    scale = ColourScale(figures.colorbar_png("sequential"), "0", number(vmax / 2, 3), number(vmax, 3),
                        "attribution (one scale for both maps)")
    method = str(saliency.get("method", "saliency"))
    classes = view.classes
    index = saliency.get("class_index")
    for_class = f" for class {classes[index]}" if isinstance(index, int) and 0 <= index < len(classes) else ""
    return [
        Picture(f"Saliency before ({method})", figures.png_bytes(
            figures.saliency_rgb(view.saliency_before, vmax), factor=factor),
            f"attribution on the original image{for_class}.", scale),
        Picture(f"Saliency after ({method})", figures.png_bytes(
            figures.saliency_rgb(view.saliency_after, vmax), factor=factor),
            f"attribution on the adversarial image{for_class}; same colour scale as before.", scale),
    ]


SALIENCY_LABELS = {
    "method": "Method", "class_index": "Class explained", "spearman": "Spearman rank correlation",
    "topk_intersection": "Top-k intersection", "ssim": "SSIM",
    "center_of_mass_shift_px": "Centre-of-mass shift (px)",
    "relevance_mass_before": "Attribution inside diagnostic region, before",
    "relevance_mass_after": "Attribution inside diagnostic region, after",
    "scale": "Shared colour scale (largest raw attribution)",
}


def _generic_rows(data: dict, labels: dict[str, str], skip: set[str], classes: list[str]) -> Rows:
    rows: Rows = []
    keys = [k for k in labels if k in data] + [k for k in data if k not in labels]
    for key in keys:
        if key in skip:
            continue
        value = data[key]
        label = labels.get(key, key.replace("_", " ").capitalize())
        if key == "class_index" and isinstance(value, int) and 0 <= value < len(classes):
            text = f"{classes[value]} (class {value})"
        elif (key.endswith("_rate") or key.startswith("relevance_mass")) and finite(value):
            text = percent(value)
        elif key in ("radius_estimate",) and finite(value):
            text = f"{number(value)} ({over_255(value)})"
        elif isinstance(value, dict):
            text = "; ".join(f"{k}: {number(v)}" for k, v in value.items())
        elif isinstance(value, list):
            text = ", ".join(number(v) for v in value)
        else:
            text = number(value)
        rows.append((label, text))
    return rows


def _class_name(index: Any, classes: list[str]) -> str | None:
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(classes):
        return classes[index]
    return None


def _robustness_rows(data: dict, classes: list[str], eps: float | None) -> tuple[Rows, str]:
    """The five robustness numbers with their context; the sampling settings go in the note."""
    reference, runner_up = _class_name(data.get("reference"), classes), _class_name(data.get("runner_up"), classes)
    dual = {"l1": "ℓ1", "l2": "ℓ2"}.get(str(data.get("dual_norm", "")), str(data.get("dual_norm", "dual")))
    restricted = data.get("restricted_to_allowed_mask")
    rows: Rows = []
    if "margin" in data:
        between = f" ({reference} − {runner_up})" if reference and runner_up else ""
        rows.append(("Logit margin m (top − runner-up)", number(data["margin"]) + between))
    if "gradient_norm" in data:
        where = "allowed pixels only" if restricted else "all pixels"
        rows.append(("Gradient norm of the margin", f"{number(data['gradient_norm'])} ({dual} norm, {where})"))
    if "lipschitz_estimate" in data:
        detail = []
        if "lipschitz_samples" in data:
            detail.append(f"max over {data['lipschitz_samples']} random points")
        if finite(data.get("lipschitz_ball_radius")):
            detail.append(f"within {over_255(data['lipschitz_ball_radius'])}")
        rows.append(("Local Lipschitz estimate L of the logits", number(data["lipschitz_estimate"])
                     + (f" ({', '.join(detail)})" if detail else "")))
    if "radius_estimate" in data:
        rows.append(("Stability radius R ≈ m / (2L)", f"{number(data['radius_estimate'])} "
                                                      f"({over_255(data['radius_estimate'])})"))
    if "noise_flip_rate" in data:
        draws = f" of {data['noise_draws']} random draws" if "noise_draws" in data else ""
        at = f" at ε = {over_255(data.get('eps', eps))}" if finite(data.get("eps", eps)) else ""
        rows.append(("Random-noise flip rate", f"{percent(data['noise_flip_rate'])}{draws}{at}"))
    cost = data.get("cost")
    if isinstance(cost, dict):
        rows.append(("Cost", ", ".join(f"{k.replace('_', ' ')} {number(v)}" for k, v in cost.items())))
    folded = {"margin", "gradient_norm", "lipschitz_estimate", "radius_estimate", "noise_flip_rate",
              "reference", "runner_up", "norm", "dual_norm", "eps", "lipschitz_ball_radius",
              "lipschitz_samples", "lipschitz_classes", "noise_draws", "allowed_fraction",
              "restricted_to_allowed_mask", "seed", "cost"}
    rows.extend(_generic_rows({k: v for k, v in data.items() if k not in folded}, {}, set(), classes))
    note = ("R estimates the smallest budget that could flip the prediction (for a linear model it is "
            "a lower bound on the true minimal ε); L is estimated from random samples, not certified.")
    radius = data.get("radius_estimate")
    if finite(radius) and finite(eps):
        note += f" Here R = {over_255(radius)} and ε = {over_255(eps)}."
    if "seed" in data:
        note += f" Seed {data['seed']}."
    return rows, note


def _min_eps_section(data: dict, classes: list[str]) -> Section:
    rows: Rows = [("Minimal ε found", budget(data.get("eps")) if data.get("found") else
                   f"none up to {budget(data.get('eps_max'))}")]
    bracket = data.get("bracket")
    if isinstance(bracket, list) and len(bracket) == 2:
        rows.append(("Bracket", f"[{over_255(bracket[0])}, {over_255(bracket[1])}]"))
    for key in ("method", "norm", "steps", "tolerance", "rounds"):
        if key in data:
            rows.append((key.replace("_", " ").capitalize(), number(data[key])))
    prediction = _class_name(data.get("adversarial_prediction"), classes)
    if prediction:
        rows.append(("Prediction at the minimal ε", prediction))
    cost = data.get("cost")
    if isinstance(cost, dict):
        rows.append(("Cost", ", ".join(f"{k.replace('_', ' ')} {number(v)}" for k, v in cost.items())))
    found = data.get("found")
    verdict = None if found is None else (f"Flips at ε = {over_255(data.get('eps'))}" if found
                                          else "No flip within the searched range")
    return Section("Minimal ε that flips the prediction", rows, verdict, None if found is None else not found)


def _outcome_text(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "—"
    said = "succeeds" if entry.get("success") else "fails"
    return f"{said}: {entry.get('prediction', '?')} ({percent(entry.get('probability'))})"


def defence_verdict(defence: dict) -> tuple[str, bool | None]:
    """The one sentence a defended run comes to, and whether it speaks for the defence."""
    naive, adaptive = defence.get("naive"), defence.get("adaptive_result")
    mode = str(defence.get("adaptive", "none")).upper()
    if not isinstance(naive, dict):
        return "The naive attack was not recorded.", None
    if not isinstance(adaptive, dict):
        if naive.get("success"):
            return "The defence does not stop even the naive attack.", False
        kind = str(defence.get("defence", ""))
        return ("The naive attack fails, which a hidden gradient can explain: run again with --adaptive "
                f"{'eot' if kind.startswith('noise') else 'bpda'} to see whether the defence holds.", None)
    if adaptive.get("success") and not naive.get("success"):
        return (f"The defence only hides the gradient: the naive attack fails, the {mode} attack "
                "succeeds.", False)
    if adaptive.get("success"):
        return f"The defence stops neither attack: the naive and the {mode} attack both succeed.", False
    if naive.get("success"):
        return (f"The {mode} attack fails where the naive one succeeds (its approximate gradient missed); "
                "the defence does not stop the naive attack.", False)
    return f"The defence holds here: neither the naive nor the {mode} attack succeeds at this budget.", True


def _defence_section(record: dict) -> Section | None:
    """A run through a defence and/or at lower precision: what was in front of the model, the
    naive and the adaptive outcome side by side, and what they mean together."""
    defence, precision = record.get("defence"), record.get("precision")
    if not isinstance(defence, dict) and not isinstance(precision, dict):
        return None
    rows: Rows = []
    verdict, good, note = None, None, None
    if isinstance(defence, dict):
        kind = DEFENCE_KINDS.get(str(defence.get("defence", "")).split(":")[0])
        rows += [("Defence", f"{defence.get('label', '—')} ({defence.get('defence', '—')})"),
                 ("Attack gradients", str(defence.get("adaptive_label") or defence.get("adaptive", "none"))),
                 ("Naive attack (gradients through the defence as implemented)", _outcome_text(defence.get("naive")))]
        if isinstance(defence.get("adaptive_result"), dict):
            rows.append((f"Adaptive attack ({str(defence.get('adaptive')).upper()})",
                         _outcome_text(defence["adaptive_result"])))
        verdict, good = defence_verdict(defence)
        note = ("The run's own result above is the "
                + ("adaptive" if isinstance(defence.get("adaptive_result"), dict) else "naive")
                + " attack's. Obfuscated gradients: Athalye, Carlini & Wagner 2018, "
                  "https://arxiv.org/abs/1802.00420."
                + (f" The defence: {kind.citation}." if kind else ""))
    if isinstance(precision, dict):
        rows.append(("Model precision", str(precision.get("how") or precision.get("precision"))))
    title = "Defence: naive vs adaptive attack" if isinstance(defence, dict) else "Model precision"
    return Section(title, rows, verdict, good, note)


def _sections(view: RunView) -> list[Section]:
    record = view.record
    sections: list[Section] = []
    classes = view.classes
    defended = _defence_section(record)
    if defended is not None:
        sections.append(defended)
    flags = record.get("flags")
    if isinstance(flags, list):  # core/flags.py: signs that the attack's number is unreliable
        rows = [(str(f.get("title")), f"{f.get('detail')}. {f.get('suggestion')}") for f in flags]
        for key, label in (("ensemble", "Ensemble: fooled by"), ("transfer", "Transfer: crafted on")):
            if isinstance(record.get(key), dict):
                value = record[key].get("succeeded_by") if key == "ensemble" else \
                    Path(str(record[key]["surrogate"]["path"])).name
                rows.append((label, str(value or "no attack (worst case over APGD-CE, APGD-T, Square)")))
        rows += [("Note", str(note)) for note in record.get("attack_notes") or []]
        sections.append(Section(
            "Is this evaluation reliable?", rows,
            f"{len(flags)} flag(s): the attack's result may overstate robustness." if flags else
            "No flag raised by the reliability checks.",
            not flags, "After AutoAttack's checks (Croce & Hein 2020)."))
    saliency = record.get("saliency")
    if isinstance(saliency, dict):
        verdict = str(saliency.get("verdict", "")) or None
        thresholds = saliency.get("thresholds")
        note = None
        if isinstance(thresholds, dict) and thresholds:
            note = "Thresholds: " + "; ".join(f"{k.replace('_', ' ')} {number(v)}" for k, v in thresholds.items())
        # A flip the explanation did not follow is the worrying case; "no flip" is neutral.
        good = None
        if verdict and "stayed" in verdict:
            good = False
        elif verdict and "followed" in verdict:
            good = True
        sections.append(Section("Explanation before and after", _generic_rows(
            saliency, SALIENCY_LABELS, {"verdict", "thresholds", "flipped"}, classes), verdict, good, note))
    robustness = record.get("robustness")
    if isinstance(robustness, dict):
        eps = (record.get("attack") or {}).get("eps")
        rows, note = _robustness_rows(robustness, classes, eps)
        sections.append(Section("Robustness of this image", rows, None, None, note))
    minimal = record.get("min_eps")
    if isinstance(minimal, dict):
        sections.append(_min_eps_section(minimal, classes))
    exported = record.get("exported_png")
    if isinstance(exported, dict):
        prediction = _prediction(exported.get("prediction"))
        still = exported.get("still_flips")
        rows = [("File", str(exported.get("file", "adversarial.png"))),
                ("Prediction of the saved PNG", _class_text(prediction)),
                ("Still flips the prediction", yes_no(still)),
                ("Attack still succeeds", yes_no(exported.get("success"))),
                ("L∞ distance of the PNG from the original", budget(exported.get("linf")))]
        eps = (record.get("attack") or {}).get("eps")
        rounding = ""
        if (record.get("attack") or {}).get("norm") == "linf" and finite(eps) and finite(exported.get("linf")) \
                and exported["linf"] > eps + 1e-6:
            rounding = (f" Rounding moved some values up to {over_255(exported['linf'] - eps)} beyond "
                        f"ε = {over_255(eps)} (at most 0.5/255 can be added by rounding).")
        if record.get("flipped"):
            verdict = ("The 8-bit PNG still fools the model: the finding survives saving." if still else
                       "Rounding to 8 bits undid the attack: the saved PNG does not flip the prediction.")
            good = bool(still)
        else:
            verdict, good = "The attack did not flip the prediction, so there is nothing to carry over.", None
        sections.append(Section("Does the saved 8-bit image still flip?", rows, verdict, good,
                                "Images are saved as 8-bit PNG, which rounds each value to a multiple "
                                "of 1/255; the saved file is scored again by the model." + rounding))
    return sections


def _hash_rows(record: dict) -> Rows:
    model = record.get("model") or {}
    image = record.get("image") or {}
    mask = record.get("mask") or {}
    rows: Rows = [
        (f"Model  {Path(str(model.get('path', '—'))).name}", str(model.get("sha256") or "—")),
        (f"Card  {Path(str(model.get('card_path') or '—')).name}", str(model.get("card_sha256") or "—")),
        (f"Image  {Path(str(image.get('path') or '—')).name}", str(image.get("sha256") or "—")),
    ]
    if mask.get("path"):
        rows.append((f"{str(mask.get('mode', 'mask')).capitalize()} mask  {Path(str(mask['path'])).name}",
                     str(mask.get("sha256") or "—")))
    diagnostic = record.get("diagnostic")
    if diagnostic:
        rows.append((f"Diagnostic  {Path(str(diagnostic.get('path', ''))).name}",
                     str(diagnostic.get("sha256") or "—")))
    return rows


def _parameter_rows(record: dict) -> Rows:
    attack = record.get("attack") or {}
    rows: Rows = []
    for key, value in attack.items():
        if key in ("eps", "step_size", "step_size_used") and finite(value):
            text = budget(value)
        elif key == "targeted" and isinstance(value, int) and not isinstance(value, bool):
            classes = ((record.get("model") or {}).get("card") or {}).get("classes") or []
            text = f"{classes[value]} (class {value})" if 0 <= value < len(classes) else str(value)
        else:
            text = number(value) if value is not None else "—"
        rows.append((key, text))
    label = record.get("label")
    rows.append(("label", f"{label.get('name')} (class {label.get('index')})" if label else "— (clean prediction)"))
    card = (record.get("model") or {}).get("card") or {}
    if card:
        rows.append(("normalisation", f"mean {card.get('mean')}, std {card.get('std')} (inside the model)"))
    return rows


def _environment_rows(record: dict) -> Rows:
    rows: Rows = [("Device", str(record.get("device", "—"))), ("Created", str(record.get("created", "—")))]
    for name, version in (record.get("versions") or {}).items():
        rows.append((str(name), str(version)))
    return rows


def _card_rows(record: dict) -> Rows:
    return card_rows((record.get("model") or {}).get("card") or {})


def shell_join(words) -> str:
    return shlex.join(str(w) for w in words)


def _no_command_note(record: dict, reproduce: str) -> str:
    """What the report says instead of an equivalent command when none can repeat the run."""
    missing = [role for role, key in (("image", "image"), ("model", "model"))
               if not (record.get(key) or {}).get("path")]
    if missing:
        return (f"This run cannot be repeated from a command line, nor by advexplorer reproduce: "
                f"its {' and '.join(missing)} {'was' if len(missing) == 1 else 'were'} not read from a file.")
    if (record.get("attack") or {}).get("seed") is None:
        return ("This run cannot be repeated from a command line, nor by advexplorer reproduce: "
                "no seed was recorded.")
    return ("This run cannot be repeated from a command line (no advexplorer attack command gives all "
            f"of its settings). {reproduce} repeats it from its run folder, after checking that its "
            "input files are unchanged.")


def run_content(view: RunView, number: int | None = None) -> RunContent:
    """Everything one run's section of a report shows (``number``: its place in a report
    of several runs, which then appears in the title)."""
    record = view.record
    before = _prediction(record.get("prediction_before"))
    after = _prediction(record.get("prediction_after"))
    prob_svg, loss_svg, note = _trajectory(record, before, after)
    card = (record.get("model") or {}).get("card") or {}
    command = record.get("command_line")
    equivalent = equivalent_command(record)
    reproduce = shell_join(["advexplorer", "reproduce", str(view.run_dir) if view.run_dir else "RUN_DIR"])
    warnings = list(view.warnings)
    outside = _outside_mask(view)
    if outside is not None and outside > 0:
        warnings.append(f"The perturbation is non-zero outside the allowed region (up to {outside:.3g}).")
    return RunContent(
        title=f"{view.name} — {card.get('name', 'model')}" if number is None else
        f"{run_label(view, number)} — {card.get('name', 'model')}",
        headline=_headline(record), flipped=record.get("flipped"), success=record.get("success"),
        question=_question_rows(record), before=before, after=after, answer=_answer_rows(record),
        norms=_norm_rows(record, view), pictures=_pictures(view),
        saliency_pictures=_saliency_pictures(view), trajectory_svg=prob_svg, loss_svg=loss_svg,
        trajectory_note=note, sections=_sections(view), hashes=_hash_rows(record),
        parameters=_parameter_rows(record), environment=_environment_rows(record),
        command_line=shell_join(command) if isinstance(command, list) and command else None,
        equivalent_command=shell_join(equivalent) if equivalent else None,
        no_command_note=None if equivalent else _no_command_note(record, reproduce),
        reproduce_command=reproduce, card=_card_rows(record), warnings=warnings,
    )


def run_label(view: RunView, number: int) -> str:
    """'2. pgd_protect (tissue.png)': the run folder tells runs of one image apart."""
    if view.run_dir is not None and view.run_dir.name != view.name:
        return f"{number}. {view.run_dir.name} ({view.name})"
    return f"{number}. {view.name}"
