"""Result-view defects seen in use (issue 10, item 7): the confidence legend covered the
curves, and the Compare dialog drew its pictures at ~60 px, of unequal sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

CLASSES = ("benign", "tumour", "stroma")


def _run(number: int, eps: float, size: int = 16, seed: int = 0):
    from advexplorer.session.state import RunSummary

    rng = np.random.default_rng(seed)
    original = rng.random((size, size, 3), dtype=np.float32)
    perturbation = rng.uniform(-eps, eps, (size, size, 3)).astype(np.float32)
    trajectory = np.linspace([0.7, 0.2, 0.1], [0.2, 0.7, 0.1], 11).astype(np.float32)
    return RunSummary(
        number=number, image_path=Path("tile.png"), model_name="Tiny", classes=CLASSES,
        config={"method": "pgd", "norm": "linf", "eps": eps, "steps": 10}, mask_mode="protect",
        original=original, adversarial=np.clip(original + perturbation, 0, 1),
        perturbation=perturbation, probability_trajectory=trajectory,
        loss_trajectory=np.linspace(0.3, 1.2, 11).astype(np.float32), step_index=np.arange(11),
        prediction_before=0, prediction_after=1, probability_before=trajectory[0],
        probability_after=trajectory[-1], success=True, label=None, target=None,
        norms={"linf": eps, "l2": 0.5, "l0_pixels": size * size}, wall_time_s=0.2)


def _picture_sizes(dialog) -> dict[tuple[int, str], tuple[float, float]]:
    """(run 0/1, panel) → the (width, height) in screen pixels each picture is drawn at."""
    sizes = {}
    for number, strip in enumerate(dialog.strips):
        for key, item in strip.items.items():
            if item.image is None:
                continue
            view = strip.views[key]
            rect = view.mapRectToScene(view.boundingRect()).intersected(
                item.mapRectToScene(item.boundingRect()))
            sizes[(number, key)] = (rect.width(), rect.height())
    return sizes


def test_the_confidence_legend_sits_above_the_curves_not_on_them(qtbot):
    from advexplorer.gui.trajectory_plots import TrajectoryPlots

    plots = TrajectoryPlots()
    qtbot.addWidget(plots)
    plots.resize(600, 400)
    plots.show()
    plots.start(CLASSES, 11, label=1)
    trajectory = np.linspace([0.7, 0.2, 0.1], [0.2, 0.7, 0.1], 11)
    plots.add_rows(trajectory, np.zeros(11))
    plots.redraw()
    QApplication.processEvents()
    assert plots.confidence.legend is None  # nothing drawn inside the plot area
    assert set(plots.legend.names()) >= {"tumour (true)", "benign"}
    assert plots.legend.isVisible()
    assert plots.legend.geometry().bottom() < plots.graphics.geometry().top()
    # The same classes again reuse the curves and keep one entry each.
    plots.start(CLASSES, 11, label=1)
    plots.add_rows(trajectory, np.zeros(11))
    assert len(plots.legend.names()) == len(set(plots.legend.names())) == len(plots.curves)


def test_compare_dialog_pictures_are_large_equal_and_grow_with_the_dialog(qtbot):
    from advexplorer.gui.views import CompareDialog

    first, second = _run(1, 2 / 255, seed=1), _run(2, 16 / 255, seed=2)
    dialog = CompareDialog(first, second)
    qtbot.addWidget(dialog)
    dialog.resize(1320, 980)  # the default on a screen that has room for it
    dialog.show()
    qtbot.waitExposed(dialog)
    QApplication.processEvents()
    sizes = _picture_sizes(dialog)
    assert {key for _run_number, key in sizes} == {"original", "adversarial", "perturbation"}
    assert len(sizes) == 6
    for width, height in sizes.values():
        assert width >= 200 and height >= 200
    # Every picture of both runs is drawn at the same size.
    widths = [w for w, _h in sizes.values()]
    assert max(widths) - min(widths) <= 1

    dialog.resize(1700, 1300)
    QApplication.processEvents()
    larger = _picture_sizes(dialog)
    assert all(larger[key][0] > sizes[key][0] + 20 for key in sizes)


def test_compare_dialog_numbers_use_the_shared_budget_format(qtbot):
    from advexplorer.gui.views import summary_lines

    lines = dict(summary_lines(_run(1, 8 / 255)))
    assert lines["Attack"] == "PGD L∞ ε=8/255, 10 steps"
    assert lines["‖δ‖∞"] == "8/255"


@pytest.mark.parametrize("eps, text", [(0.5 / 255, "0.5/255"), (12.05 / 255, "12.05/255")])
def test_the_perturbation_caption_does_not_round_the_budget_away(qtbot, eps, text):
    from advexplorer.gui.views import LiveViews

    views = LiveViews()
    qtbot.addWidget(views)
    views.start(eps, "linf")
    views.show_step(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))
    assert views.strip.captions["perturbation"].text.startswith(f"range ±{text}")


def test_a_long_caption_does_not_make_its_picture_larger_than_the_others(qtbot):
    from advexplorer.gui.views import LiveViews

    views = LiveViews()
    qtbot.addWidget(views)
    views.resize(720, 240)
    views.show()
    qtbot.waitExposed(views)
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    views.start(4 / 255, "linf", image)
    views.show_step(image, (image - 0.5) * 0.01, caption="DAB-negative → DAB-positive (1.00)")
    views.strip.set_caption("original", "DAB-negative (1.00)")
    QApplication.processEvents()
    widths = [view.geometry().width() for view in views.strip.views.values()]
    assert max(widths) - min(widths) <= 1, widths


def test_similarity_text_with_an_empty_map_after_the_attack():
    """Grad-CAM's ReLU'd map can be all zero after an attack: its relevance mass is None, and
    the run's summary (history tooltip, results line) must say so instead of raising."""
    from advexplorer.core.compare import compare_maps
    from advexplorer.gui.views import similarity_text

    before = np.zeros((8, 8), np.float32)
    before[2:4, 2:4] = 1.0
    region = np.zeros((8, 8), bool)
    region[:4, :4] = True
    comparison = compare_maps(before, np.zeros((8, 8), np.float32), diagnostic_mask=region)
    assert comparison.relevance_mass_after is None

    class Explanation:
        def to_json(self):
            return comparison.to_json()

    text = similarity_text(Explanation())
    assert "relevance in diagnostic region 1.00 → none (empty map)" in text
