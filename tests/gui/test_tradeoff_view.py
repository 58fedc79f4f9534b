"""The trade-off view's sentence about a defence: naive vs adaptive, and against no defence."""

from __future__ import annotations

import pytest

from advexplorer.core.training import Accuracy, RobustnessCurve
from advexplorer.gui.tradeoff_view import TradeoffView, defence_sentence

EPS = (0.0, 16 / 255)


def curve(name, kind, robust, clean=95, n=100):
    return RobustnessCurve(name, EPS, (Accuracy(clean, n), Accuracy(robust, n)), kind,
                           None if kind == "model" else "bits:1")


@pytest.mark.parametrize("naive, adaptive, bare, ending", [
    (94, 10, curve("original", "model", 12), "the defence only hides the gradient."),
    (94, 70, curve("original", "model", 16), "overstates the defence (a hidden gradient); against BPDA it still helps."),
    (94, 70, None, "overstates the defence (a hidden gradient)."),
    (72, 70, curve("original", "model", 16), "no sign of a hidden gradient, and it helps against BPDA too."),
    (20, 18, curve("original", "model", 16), "no sign of a hidden gradient (the naive and adaptive intervals overlap)."),
])
def test_the_sentence_says_what_the_numbers_mean(naive, adaptive, bare, ending):
    text = defence_sentence(curve("original + bits:1 (naive)", "naive", naive),
                            curve("original + bits:1 (BPDA)", "bpda", adaptive), EPS[1], bare)
    assert text.startswith("original + bits:1 at ε = 16/255: naive") and text.endswith(ending), text


def test_defended_variants_become_points_joined_naive_to_adaptive(qtbot):
    view = TradeoffView()
    qtbot.addWidget(view)
    view.add_curves([curve("original", "model", 16), curve("original + bits:1 (naive)", "naive", 94),
                     curve("original + bits:1 (BPDA)", "bpda", 70)], EPS[1])
    assert [p["kind"] for p in view.points] == ["naive", "bpda"]   # bare models come in as points elsewhere
    assert view.points[1]["robust"] == 0.70 and view.points[1]["clean"] == 0.95
    assert "still helps" in view.verdict.text()
    assert len(view.curve_items) == 2 * 3                           # a line and its bars per curve
