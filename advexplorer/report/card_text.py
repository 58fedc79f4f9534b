"""The model card as label/value rows of plain text, as the run report shows it."""

from __future__ import annotations

from typing import Any

from advexplorer.config import format_budget, method_label, norm_label
from advexplorer.report.run import finite
from advexplorer.report.text import Rows, number, percent


#: Card fields the report shows in its own words (or that are shown elsewhere, like classes).
_CARD_SHOWN = {"name", "description", "training_data", "clean_accuracy", "robust_accuracy",
               "suggested_eps", "suggested_eps_text", "suggested_steps", "architecture",
               "architecture_kwargs", "training", "held_out", "classes", "input_size", "channels",
               "mean", "std", "resize", "samples"}
#: Labels of card sub-fields whose key does not read well once underscores become spaces.
_CARD_LABELS = {"n": "images", "n_positive": "positives", "how": "how to load it",
                "batchnorm_momentum": "BatchNorm momentum", "wall_time_s": "wall time",
                "tiles_per_epoch": "tiles per epoch", "batch_size": "batch size",
                "optimizer": "optimiser", "script": "script", "command": "command"}


def _card_label(key: str) -> str:
    return _CARD_LABELS.get(key, str(key).replace("_", " "))


def _card_value(key: str, value: Any, norm: str = "linf") -> str:
    """One card value as a person reads it: budgets over 255 (plain numbers for L2), shares
    in %, dicts as 'key value' lists, lists of records counted."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        norm = str(value.get("norm", norm))
        # An 'eps' beside its own 'eps_text' says the same twice: keep one.
        return ", ".join(f"{_card_label(k)} {_card_value(k, v, norm)}" for k, v in value.items()
                         if not (k.endswith("_text") and k[:-5] in value))
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, dict) for item in value):
            return f"{len(value)} entries"
        return ", ".join(_card_value(key, item, norm) for item in value)
    if isinstance(value, (int, float)) and finite(value):
        if key in ("eps", "step_size") or key.endswith("_eps"):
            return format_budget(value, norm)
        if key.endswith("accuracy") or key.endswith("fraction"):
            return percent(value)
        if key.endswith("_s"):
            return f"{number(float(value), 4)} s"
    return number(value)


def _robust_accuracy_text(robust: Any) -> str:
    """'89.4 % at ε = 4/255 (L∞ PGD-10, step 1/255, 169 images) — criterion'."""
    if not isinstance(robust, dict):
        return percent(robust) if finite(robust) else _card_value("robust_accuracy", robust)
    norm = str(robust.get("norm", "linf"))
    eps = robust.get("eps_text") or (format_budget(robust["eps"], norm) if finite(robust.get("eps")) else "?")
    attack = method_label(robust.get("method", "pgd"))
    if robust.get("steps"):
        attack += f"-{robust['steps']}"
    detail = [f"{norm_label(norm)} {attack}"]
    if finite(robust.get("step_size")):
        detail.append(f"step {format_budget(robust['step_size'], norm)}")
    if robust.get("random_start"):
        detail.append("random start")
    if isinstance(robust.get("n"), int):
        detail.append(f"{number(robust['n'])} images")
    value = robust.get("value")
    text = f"{percent(value) if finite(value) else '—'} at ε = {eps} ({', '.join(detail)})"
    if robust.get("criterion"):
        text += f"; counted as robust when {robust['criterion']}"
    known = {"value", "eps", "eps_text", "norm", "method", "steps", "step_size", "random_start", "n",
             "criterion"}
    rest = {k: v for k, v in robust.items() if k not in known}
    return text + (f"; {_card_value('robust_accuracy', rest)}" if rest else "")


def _suggested_budget_text(card: dict) -> str | None:
    """'4/255, 10 steps' from suggested_eps(_text) and suggested_steps."""
    eps = card.get("suggested_eps_text") or card.get("suggested_eps")
    if eps in (None, ""):
        return None
    text = format_budget(eps) if finite(eps) and not isinstance(eps, bool) else str(eps)
    if isinstance(card.get("suggested_steps"), int):
        text += f", {card['suggested_steps']} steps"
    return text


def _adversarial_training_text(adversarial: Any) -> str:
    """'PGD L∞, ε = 4/255, 3 steps of 2.5·ε/3, random start; warm-up epochs 1, …' or 'none'."""
    if not adversarial:
        return "none (standard training on clean images)"
    if not isinstance(adversarial, dict):
        return str(adversarial)
    norm = str(adversarial.get("norm", "linf"))
    eps = adversarial.get("eps_text") or (format_budget(adversarial["eps"], norm)
                                          if finite(adversarial.get("eps")) else "?")
    text = f"{method_label(adversarial.get('method', '?'))} {norm_label(norm)}, ε = {eps}"
    if adversarial.get("steps"):
        step = adversarial.get("step_size")
        step_text = format_budget(step, norm) if finite(step) else (str(step) if step else "")
        text += f", {adversarial['steps']} steps" + (f" of {step_text}" if step_text else "")
    if adversarial.get("random_start"):
        text += ", random start"
    known = {"method", "norm", "eps", "eps_text", "steps", "step_size", "random_start"}
    rest = {k: v for k, v in adversarial.items() if k not in known}
    return text + (f"; {_card_value('adversarial', rest)}" if rest else "")


def _nested_rows(label: str, data: dict) -> Rows:
    """A card field that is a dict, one row per sub-field ('Training: epochs', '20')."""
    rows: Rows = []
    for key, value in data.items():
        if key.endswith("_text") and key[:-5] in data:
            continue
        if key == "adversarial":
            rows.append((f"{label}: adversarial", _adversarial_training_text(value)))
        else:
            rows.append((f"{label}: {_card_label(key)}", _card_value(key, value, str(data.get("norm", "linf")))))
    return rows


def card_rows(card: dict) -> Rows:
    """The model card as label/value rows of plain text: nested fields (robust accuracy,
    training, held-out set) become sentences and sub-rows, never a printed Python dict."""
    rows: Rows = []
    for key, label in (("name", "Name"), ("description", "Description"), ("training_data", "Training data")):
        if card.get(key) not in (None, ""):
            rows.append((label, str(card[key])))
    if card.get("clean_accuracy") is not None:
        rows.append(("Clean accuracy", _card_value("clean_accuracy", card["clean_accuracy"])))
    if card.get("robust_accuracy") is not None:
        rows.append(("Robust accuracy", _robust_accuracy_text(card["robust_accuracy"])))
    suggested = _suggested_budget_text(card)
    if suggested:
        rows.append(("Suggested budget", suggested))
    if card.get("architecture"):
        kwargs = card.get("architecture_kwargs")
        rows.append(("Architecture", str(card["architecture"])
                     + (f" ({_card_value('architecture_kwargs', kwargs)})" if isinstance(kwargs, dict) and kwargs
                        else "")))
    for key, label in (("training", "Training"), ("held_out", "Held-out set")):
        value = card.get(key)
        if isinstance(value, dict):
            rows.extend(_nested_rows(label, value))
        elif value not in (None, ""):
            rows.append((label, _card_value(key, value)))
    for key, value in card.items():
        if key in _CARD_SHOWN:
            continue
        if isinstance(value, dict):
            rows.extend(_nested_rows(_card_label(key).capitalize(), value))
        else:
            rows.append((_card_label(key).capitalize(), _card_value(key, value)))
    return rows
