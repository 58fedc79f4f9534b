"""The Import model dialog: fields pre-filled from inference, a live dry-run check, Save card."""

import json

import pytest
import torch

pytest.importorskip("pytestqt")
torchvision = pytest.importorskip("torchvision")

from advexplorer.gui.import_model_dialog import ImportModelDialog  # noqa: E402


def test_dialog_prefills_checks_and_saves_the_card(qtbot, tmp_path):
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=2).state_dict(), tmp_path / "net.pt")
    dialog = ImportModelDialog(tmp_path / "net.pt")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.status.text().startswith(("✓", "✗")), timeout=60000)
    assert dialog.status.text().startswith("✓"), dialog.status.text()
    assert dialog.architecture.text() == "torchvision.mobilenet_v3_small"
    assert "key names and shapes" in dialog.architecture.toolTip()
    assert dialog.classes.text() == "class_0, class_1"

    dialog.classes.setText("a, b, c")  # three names for two outputs: the live check says so
    dialog.input_size.setText("32")
    dialog._request("check")
    qtbot.waitUntil(lambda: dialog.status.text().startswith("✗"), timeout=60000)
    assert "2 outputs but 3 classes" in dialog.status.text()
    assert not (tmp_path / "net.json").exists()

    dialog.classes.setText("benign, tumour")
    with qtbot.waitSignal(dialog.card_saved, timeout=60000):
        dialog._request("save")
    card = json.loads((tmp_path / "net.json").read_text())
    assert card["classes"] == ["benign", "tumour"] and card["input_size"] == [32, 32]
