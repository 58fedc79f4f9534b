"""The Train panel: start, live curves, the trade-off plot, cancel keeps the best weights."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from advexplorer.gui.train_panel import TrainPanel

CLASSES = ("benign", "tumour", "stroma")


def write_folder(root, per_class: int = 12):
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            colour = np.zeros((16, 16, 3))
            colour[..., index] = 0.7
            image = np.clip(colour + 0.1 * rng.standard_normal((16, 16, 3)) + 0.15, 0, 1)
            Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"{k}.png")
    return root


@pytest.fixture
def panel(qtbot, tiny_model):
    widget = TrainPanel()
    qtbot.addWidget(widget)
    widget.resize(760, 720)
    widget.set_model(tiny_model)
    yield widget
    widget.stop_and_wait()


def test_training_draws_curves_writes_the_twin_and_plots_the_trade_off(panel, qtbot, tmp_path):
    panel.set_images(write_folder(tmp_path / "images"))
    panel.set_out_dir(tmp_path / "twin")
    panel.eps_edit.setText("8/255")
    panel.steps_spin.setValue(2)
    panel.epochs_spin.setValue(2)
    panel.held_out_edit.setText("0.25")
    panel.batch_spin.setValue(8)
    with qtbot.waitSignal(panel.model_trained, timeout=120_000) as trained:
        panel.start()
        assert not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    weights, card = trained.args
    assert weights.is_file() and json.loads(weights.with_suffix(".json").read_text())["name"] == card["name"]
    assert panel.epoch_x == [1, 2] and len(panel.batch_loss) == 2 * 4  # 27 training images, 8 per batch
    assert [p["original"] for p in panel.points] == [True, False]
    assert len(panel.accuracy_bars) == 2
    assert "Robust accuracy at ε = 8/255" in panel.status.text()
    # The original's and the twin's robustness curves, on the held-out split, into the card too.
    curves = {c.name: c for c in panel.tradeoff.curves}
    assert set(curves) == {"original", "pgd twin"}
    assert [round(e * 255, 3) for e in curves["pgd twin"].eps] == [0, 2, 4, 8, 16]
    assert curves["pgd twin"].at(0).value == panel.points[1]["clean"]
    assert len(card["robustness_curves"]["curves"]) == 2
    if os.environ.get("ADVEXPLORER_SCREENSHOT"):
        panel.tabs.setCurrentIndex(int(os.environ.get("ADVEXPLORER_SCREENSHOT_TAB", "1")))
        panel.grab().save(os.environ["ADVEXPLORER_SCREENSHOT"])


def test_cancel_still_writes_the_twin_from_the_best_weights(panel, qtbot, tmp_path):
    panel.set_images(write_folder(tmp_path / "images"))
    panel.set_out_dir(tmp_path / "twin")
    panel.epochs_spin.setValue(50)
    panel.steps_spin.setValue(1)
    panel.runner.step.connect(lambda item: panel.cancel() if hasattr(item, "robust") else None)
    with qtbot.waitSignal(panel.model_trained, timeout=120_000) as trained:
        panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    _, card = trained.args
    # Cancel is asked for after the first epoch's evaluation; the epoch already under way may
    # still finish before the worker sees it (a race on a busy machine), never all 50.
    assert card["training"]["stopped"] == "cancelled" and 1 <= len(card["training"]["epochs"]) <= 2
    assert not (tmp_path / "twin" / "checkpoint.pt").exists()
    assert "cancelled" in panel.status.text()


def test_a_bad_form_is_one_message_and_nothing_starts(panel, tmp_path):
    panel.set_images(tmp_path / "nowhere")
    panel.set_out_dir(tmp_path / "twin")
    panel.eps_edit.setText("2")
    panel.start()
    assert not panel.running and "out of range" in panel.status.text()


def test_comparing_a_defence_adds_naive_and_adaptive_curves_and_points(panel, qtbot, tmp_path):
    panel.set_images(write_folder(tmp_path / "images", per_class=6))
    panel.eps_edit.setText("8/255")
    panel.steps_spin.setValue(3)
    panel.held_out_edit.setText("0.5")
    panel.tradeoff.defence_combo.setCurrentIndex(panel.tradeoff.defence_combo.findData("bits"))
    assert panel.tradeoff.value_edit.text() == "3"
    with qtbot.waitSignal(panel.runner.stopped, timeout=120_000):
        panel.tradeoff.compare_button.click()    # no twin yet: the loaded model, bare and defended
        assert panel.running and not panel.tradeoff.compare_button.isEnabled()
    kinds = {c.name: c.kind for c in panel.tradeoff.curves}
    assert kinds == {"original": "model", "original + bits:3 (naive)": "naive",
                     "original + bits:3 (BPDA)": "bpda"}
    assert [p["kind"] for p in panel.points] == ["model", "naive", "bpda"]
    verdict = panel.tradeoff.verdict.text()
    assert verdict.startswith("original + bits:3 at ε = 8/255: naive") and "BPDA" in verdict
    assert panel.tradeoff.compare_button.isEnabled()


def test_a_bad_defence_value_is_one_message(panel):
    panel.tradeoff.value_edit.setText("0")   # JPEG quality 0
    panel.tradeoff.compare_button.click()
    assert not panel.running and "from 1 to 100" in panel.tradeoff.verdict.text()
