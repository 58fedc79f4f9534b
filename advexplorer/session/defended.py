"""A model behind a preprocessing defence and/or at another precision, and a defended screen's numbers.

Shared by the CLI (``--defense``/``--adaptive``/``--precision`` of ``advexplorer attack`` and
``advexplorer screen``, through :mod:`advexplorer.commands._defence`) and the app's Cohort
panel, so both screen the same defended model and report the same two numbers: the robust
accuracy the naive attack leaves (what the defence appears to buy) and what the adaptive
attack (BPDA, EOT) leaves of it. The options are parsed by :mod:`advexplorer.config`.

Importing this module imports neither torch nor Qt (the GUI imports it before the engine).
"""

from __future__ import annotations

from dataclasses import replace

from advexplorer import config

#: The per-image CSV of the naive attack through the defence (the main CSV is the adaptive one).
NAIVE_CSV = "per_image_naive.csv"

#: Images of a cohort that calibrate ``int8-static`` (the first ones, in cohort order).
CALIBRATION_IMAGES = 64


def defence_settings(defence: str | None, adaptive: str | None = "none",
                     precision: str | None = "float32") -> dict:
    """The parsed options as ``{"defence": "jpeg:75" | None, "adaptive", "precision"}``.

    A bad value raises :class:`~advexplorer.errors.UserError` with one line (the CLI's
    message), before any model is loaded or wrapped.
    """
    spec = config.parse_defence(defence) if defence else None
    return {"defence": spec.text() if spec else None,
            "adaptive": config.parse_adaptive(adaptive or "none", spec),
            "precision": config.parse_precision(precision or "float32")}


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


def defend_model(loaded, defence: str | None = None, adaptive: str | None = "none",
                 precision: str | None = "float32", calibration=None):
    """The LoadedModel the attack runs against (defended and/or at lower precision), and the
    record entries that say so (``info``). Unchanged when neither is asked for.
    ``calibration`` (a function returning N×C×H×W images) feeds ``int8-static``; without it
    the card's samples do."""
    settings = defence_settings(defence, adaptive, precision)
    spec = config.parse_defence(settings["defence"]) if settings["defence"] else None
    adaptive, precision = settings["adaptive"], settings["precision"]
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
