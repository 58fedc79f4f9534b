"""Transfer, input diversity and the progress bar as a GUI user sees them (pytest-qt, offscreen):
a surrogate picked in the attack form, both models' confidences side by side while and after
the attack runs, a surrogate that does not fit refused in one line, and a progress bar that
counts Square's queries and the ensemble's stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from advexplorer.gui.controllers.runs import progress_total


class _Twin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.Tanh(),
                                            torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
        self.head = torch.nn.Linear(24, 3)

    def forward(self, x):
        return self.head(self.features(x))


def _save_twin(folder, name, seed, classes=("benign", "tumour", "stroma"), size=16):
    """A small TorchScript CNN with its card: a model the GUI's tiny test net can transfer from."""
    torch.manual_seed(seed)
    path = folder / f"{name}.pt"
    torch.jit.script(_Twin().eval()).save(str(path))
    (folder / f"{name}.json").write_text(json.dumps({
        "name": name, "classes": list(classes), "input_size": [size, size], "channels": 3,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}))
    return path


def _run(qtbot, window):
    steps = []
    window.runs.tasks.step.connect(steps.append)
    window.run_action.trigger()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=60000)
    return steps


def test_a_transfer_run_shows_surrogate_and_target_side_by_side(qtbot, window, tmp_path, errors):
    surrogate = _save_twin(tmp_path, "twin", seed=5)
    panel = window.attack_panel
    assert window.runs.surrogates.use(surrogate)
    assert panel.surrogate_path == surrogate
    assert panel.surrogate.currentText() == "twin — twin.pt"
    panel.set_values(method="mifgsm", eps="16/255", steps=8, seed=2, diversity=0.5)

    updates = _run(qtbot, window)
    assert not errors
    live = [u for u in updates if getattr(u, "target_probabilities", None) is not None]
    assert live and live[0].target_before is not None  # the target was asked while the attack ran

    summary = window.runs.shown_run
    transfer = summary.record["transfer"]
    assert transfer["surrogate"]["path"] == str(surrogate)
    assert summary.record["attack"]["diversity"] == 0.5
    table = window.runs.results.transfer
    assert table.isVisible()
    assert "twin.pt" in table.caption.text() and "tiny.pt" in table.caption.text()
    headers = [table.table.horizontalHeaderItem(c).text() for c in range(5)]
    assert [h.replace("\n", " ") for h in headers] == ["Class", "Surrogate before", "Surrogate after",
                                                       "Target before", "Target after"]
    # The numbers are the record's: the surrogate's from 'transfer', the target's the run's own.
    classes = list(summary.classes)
    for row in range(table.table.rowCount()):
        index = classes.index(table.table.item(row, 0).text())
        shown = [float(table.table.item(row, column).text()) for column in range(1, 5)]
        expected = [transfer["surrogate_probabilities_before"][0][index],
                    transfer["surrogate_probabilities_after"][0][index],
                    summary.probability_before[index], summary.probability_after[index]]
        assert np.allclose(shown, expected, atol=5e-4)
    # The target judged the image the surrogate crafted.
    crafted = torch.from_numpy(summary.adversarial).permute(2, 0, 1)[None]
    with torch.no_grad():
        target = torch.softmax(window.model.classifier(crafted), 1)[0].numpy()
    assert np.allclose(target, summary.probability_after, atol=1e-5)

    # Back to white box: the side-by-side table goes away with the next run.
    panel.set_values(surrogate=None, method="pgd", steps=2)
    _run(qtbot, window)
    assert "transfer" not in window.runs.shown_run.record
    assert not window.runs.results.transfer.isVisible()


def test_a_surrogate_that_does_not_fit_is_refused_in_one_line(window, tmp_path, errors):
    other = _save_twin(tmp_path, "other", seed=1, classes=("a", "b", "c"), size=24)
    assert not window.runs.surrogates.use(other)
    title, text = errors[-1]
    assert title == "Cannot use this surrogate"
    assert "\n" not in text
    assert "classes: 3 classes (a, b, c) vs 3 classes (benign, tumour, stroma)" in text
    assert "input size: 24×24 vs 16×16 pixels" in text
    assert window.attack_panel.surrogate_path is None  # still a white-box attack
    # The model being attacked cannot be its own surrogate either.
    assert not window.runs.surrogates.use(window.model.path)
    assert "is the model being attacked" in errors[-1][1]


def test_bundled_models_that_fit_are_offered(window, monkeypatch, tmp_path):
    from advexplorer import paths

    _save_twin(tmp_path, "fits", seed=3)
    _save_twin(tmp_path, "other_classes", seed=3, classes=("x", "y", "z"))
    monkeypatch.setattr(paths, "MODELS_DIR", tmp_path)
    window.runs.surrogates.refresh()
    combo = window.attack_panel.surrogate
    offered = [combo.itemText(i) for i in range(combo.count())]
    assert offered == [window.attack_panel.NO_SURROGATE, "fits — fits.pt", window.attack_panel.OPEN_SURROGATE]


def test_open_model_file_in_the_list_asks_for_a_file_and_picks_it(window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    twin = _save_twin(tmp_path, "twin", seed=5)
    asked = []

    def choose(*args, **kwargs):
        asked.append(args[1])
        return str(twin), ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", choose)
    panel = window.attack_panel
    panel.surrogate.setCurrentIndex(panel.surrogate.findData(panel.OPEN_SURROGATE))
    assert asked == ["Open a surrogate model"]
    assert panel.surrogate_path == twin and panel.surrogate.currentText() == "twin — twin.pt"


def test_diversity_is_offered_only_for_the_gradient_attacks(window):
    panel = window.attack_panel
    for method, shown in (("pgd", True), ("mifgsm", True), ("fgsm", True), ("square", False),
                          ("apgd-ce", False), ("ensemble", False)):
        panel.set_values(method=method, diversity=0.5)
        assert panel.diversity.isHidden() != shown
        assert panel.config_kwargs()["diversity"] == (0.5 if shown else 0.0)
        assert panel.is_valid(), panel.error


@pytest.mark.parametrize("config,total", [
    ({"method": "pgd", "steps": 10, "restarts": 2}, 22),
    ({"method": "fgsm", "steps": 10, "restarts": 1}, 2),
    ({"method": "square", "steps": 10, "queries": 50, "restarts": 1}, 51),
    # APGD-CE (11) + APGD-T on the 2 other classes (2 × 11) + Square (51)
    ({"method": "ensemble", "steps": 10, "queries": 50, "restarts": 1, "targeted": None}, 84),
    ({"method": "ensemble", "steps": 10, "queries": 50, "restarts": 1, "targeted": 1}, 73),
])
def test_the_progress_bar_counts_steps_queries_and_stages(config, total):
    assert progress_total(config, num_classes=3) == total


def test_square_progress_bar_runs_to_its_query_budget(qtbot, window):
    window.attack_panel.set_values(method="square", queries=30, seed=1)
    maxima, values = [], []
    window.runs.status.progress.valueChanged.connect(values.append)
    window.run_action.trigger()
    maxima.append(window.runs.status.progress.maximum())
    qtbot.waitUntil(lambda: not window.controller.running, timeout=60000)
    assert maxima == [31]
    assert max(values) > 10  # it counted queries (not 10 steps and then stuck at the end)


def test_a_transfer_batch_loads_its_surrogate_once(qtbot, window, tmp_path, monkeypatch):
    import advexplorer.io.models as models

    surrogate = _save_twin(tmp_path, "twin", seed=5)
    loads = []
    real = models.load_model

    def counting(path, *args, **kwargs):
        loads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(models, "load_model", counting)
    assert window.runs.surrogates.use(surrogate)
    window.attack_panel.set_values(method="fgsm", eps="8/255")
    window.image_list.selectAll()
    with qtbot.waitSignal(window.controller.stopped, timeout=60000):
        window.start_batch()
    assert [window.batch_table.item(r, 6).text() for r in range(2)] == ["done", "done"]
    assert loads == ["twin.pt"]
    assert all(entry.runs[-1].record["transfer"]["surrogate"]["path"] == str(surrogate)
               for entry in window.session.images)
    # ... and a later single run reuses it too.
    _run(qtbot, window)
    assert loads == ["twin.pt"]
