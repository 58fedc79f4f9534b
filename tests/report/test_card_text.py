"""What reports say about a model card: nested fields as readable rows, hidden text made visible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from advexplorer.report import RunView, render_html, write_report
from advexplorer.report.card_text import card_rows
from pdftext import pdf_text, squeeze

MODELS = Path(__file__).resolve().parents[2] / "models"
RLO, PDI, LRM = "\u202e", "\u2066", "\u200e"


def card_view(card: dict) -> RunView:
    """A small run record carrying ``card`` (no folder, no attack needed)."""
    rng = np.random.default_rng(0)
    image = rng.random((12, 10, 3), dtype=np.float32)
    perturbation = np.zeros_like(image)
    perturbation[2:5, 3:6] = 2 / 255
    classes = card.get("classes") or ["a", "b"]
    record = {"advexplorer_record": 1, "model": {"card": card},
              "prediction_before": {"index": 0, "class": classes[0], "probability": 0.9,
                                    "top5": [{"index": 0, "class": classes[0], "probability": 0.9}]},
              "prediction_after": {"index": 1, "class": classes[1], "probability": 0.6,
                                   "top5": [{"index": 1, "class": classes[1], "probability": 0.6}]},
              "attack": {"method": "pgd", "norm": "linf", "eps": 4 / 255, "steps": 10}, "flipped": True,
              "trajectory": {"step": [0, 1], "probabilities": {classes[0]: [0.9, 0.4], classes[1]: [0.1, 0.6]}}}
    return RunView(record=record, input_image=image, perturbation=perturbation)


def bundled_card(name: str) -> dict:
    return json.loads((MODELS / f"{name}.json").read_text(encoding="utf-8"))


def test_nested_card_fields_become_readable_rows():
    rows = dict(card_rows(bundled_card("histology_robust")))
    assert rows["Robust accuracy"].startswith("89.3 % at ε = 4/255 (L∞ PGD-10")
    assert rows["Suggested budget"] == "4/255, 10 steps"
    assert rows["Architecture"] == "torchvision.mobilenet_v3_small (num classes 2, width mult 0.5)"
    assert rows["Training: adversarial"].startswith("PGD L∞, ε = 4/255, 3 steps of 2.5·ε/3, random start")
    assert rows["Training: epochs"] == "20"
    assert rows["Held-out set: images"] == "169"
    standard = dict(card_rows(bundled_card("digits_cnn")))
    assert standard["Training: adversarial"].startswith("none")
    # Fields the report does not know are shown too, as rows; an L2 budget is a plain number.
    extra = dict(card_rows({"name": "x", "extra_eval": {"eps": 0.5, "norm": "l2"}, "tags": ["a", "b"],
                            "cross_check": {"eps": 4 / 255, "eps_text": "4/255", "passed": True}}))
    assert extra["Extra eval: eps"] == "0.5" and extra["Tags"] == "a, b"
    assert extra["Cross check: eps"] == "4/255" and extra["Cross check: passed"] == "yes"
    assert "Cross check: eps text" not in extra
    for label, value in list(rows.items()) + list(standard.items()):
        assert "{" not in value and "': " not in value, f"{label} prints a Python dict: {value}"
        assert "_" not in label, f"raw key in the label {label!r}"


@pytest.mark.parametrize("name", ["histology_robust", "histology_standard", "digits_cnn"])
def test_html_card_section_has_no_python_dicts(name):
    page = render_html(card_view(bundled_card(name)))
    card_section = page[page.index("<h3>Model card</h3>"):]
    assert "Robust accuracy" in card_section and "Training: optimiser" in card_section
    for raw in ("{&#x27;", "&#x27;: ", "suggested eps text", "eps_text", "None"):
        assert raw not in card_section, raw


def test_pdf_card_section_has_no_python_dicts(tmp_path):
    pytest.importorskip("PySide6")
    path = write_report(tmp_path / "card.pdf", card_view(bundled_card("histology_robust")))
    text = squeeze(pdf_text(path))
    card_part = text[text.index("MODELCARD"):]
    assert squeeze("89.3 % at ε = 4/255 (L∞ PGD-10") in card_part
    assert "{'" not in card_part and "suggestedepstext" not in card_part


HIDDEN = {"name": f"Tiny {RLO}LEDOM{PDI} demo", "classes": [f"benign{LRM}", f"tumour{RLO}gnp.exe"],
          "description": f"safe {RLO}evil"}


def test_bidi_controls_are_shown_in_html_not_applied():
    page = render_html(card_view(dict(HIDDEN)))
    for control in (RLO, PDI, LRM):
        assert control not in page
    assert "Tiny ‹U+202E›LEDOM‹U+2066› demo" in page
    assert "tumour‹U+202E›gnp.exe" in page and "benign‹U+200E›" in page
    assert "safe ‹U+202E›evil" in page


def test_bidi_controls_are_shown_in_pdf_not_applied(tmp_path):
    pytest.importorskip("PySide6")
    path = write_report(tmp_path / "bidi.pdf", card_view(dict(HIDDEN)))
    text = pdf_text(path)
    for control in (RLO, PDI, LRM):
        assert control not in text
    flat = squeeze(text)
    assert squeeze("Tiny ‹U+202E›LEDOM‹U+2066› demo") in flat
    assert squeeze("tumour‹U+202E›gnp.exe") in flat and squeeze("safe ‹U+202E›evil") in flat
