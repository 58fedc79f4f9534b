"""``advexplorer train``: a twin with its card, clear messages for bad data, nothing lost."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from test_training import stripes_data  # noqa: E402

from advexplorer.cli import main  # noqa: E402

CLASSES = ["dark", "bright"]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(512, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def model(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(path))
    (tmp_path / "tiny.json").write_text(json.dumps({
        "name": "Tiny", "classes": CLASSES, "input_size": [8, 8], "channels": 1,
        "mean": [0.5], "std": [0.25]}))
    return path


def write_folder(root: Path, n: int = 160, classes=CLASSES) -> Path:
    data = stripes_data(n, 3)
    for index, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image[0].numpy() * 255).astype(np.uint8)).save(folder / f"{index:04d}.png")
    return root


def test_train_writes_the_twin_and_a_card_that_measures_it(model, tmp_path, capsys):
    images = write_folder(tmp_path / "images")
    out = tmp_path / "out"
    code = main(["train", "--model", str(model), "--images", str(images), "--method", "fast",
                 "--eps", "0.05", "--epochs", "2", "--lr", "1e-2", "--out", str(out), "--held-out", "0.25"])
    assert code == 0
    text = capsys.readouterr().out
    assert "epoch 2/2" in text and "robust" in text
    card = json.loads((out / "tiny_fast.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["tiny_fast.json", "tiny_fast.pt"]
    assert card["robust_accuracy"]["n"] == 40 and len(card["robust_accuracy"]["interval95"]) == 2
    assert card["training"]["recipe"]["method"] == "fast"
    assert "compared_with_original" in card and card["compared_with_original"]["statement"] in card["description"]
    # The twin opens like any model.
    from advexplorer.io.models import load_model

    twin = load_model(out / "tiny_fast.pt", device="cpu")
    assert twin.card.classes == tuple(CLASSES)


def test_one_class_unknown_labels_and_empty_held_out_are_one_line(model, tmp_path, capsys):
    one = write_folder(tmp_path / "one", 20)
    for path in (one / "dark").iterdir():
        path.unlink()
    (one / "dark").rmdir()
    cases = [
        (["--images", str(one)], "one class only"),
        (["--images", str(write_folder(tmp_path / "odd", 20, ["dark", "purple"]))], "'purple' is not a class"),
        (["--images", str(write_folder(tmp_path / "few", 6)), "--held-out", "0.01"], "held-out split"),
        (["--images", str(write_folder(tmp_path / "ok", 20)), "--eps", "2"], "out of range"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        code = main(["train", "--model", str(model), "--out", str(tmp_path / "never"), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "never").exists() or not any((tmp_path / "never").iterdir())


def test_a_full_disk_keeps_the_last_good_checkpoint(model, tmp_path, monkeypatch, capsys):
    import advexplorer.io.atomic as atomic

    images = write_folder(tmp_path / "images")
    real = atomic.atomic_write_bytes
    calls = []

    def fills_up(path, data, **kwargs):
        calls.append(Path(path).name)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real(path, data, **kwargs)

    monkeypatch.setattr(atomic, "atomic_write_bytes", fills_up)
    out = tmp_path / "out"
    code = main(["train", "--model", str(model), "--images", str(images), "--method", "clean",
                 "--epochs", "4", "--lr", "1e-2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "last good checkpoint" in err
    assert [p.name for p in out.iterdir()] == ["checkpoint.pt"]
    restored = torch.jit.load(str(out / "checkpoint.pt"))
    assert isinstance(restored(torch.rand(1, 1, 8, 8)), torch.Tensor)


def test_curves_are_printed_and_recorded_in_the_card(model, tmp_path, capsys):
    images = write_folder(tmp_path / "images", 80)
    out = tmp_path / "out"
    code = main(["train", "--model", str(model), "--images", str(images), "--method", "fast",
                 "--eps", "8/255", "--epochs", "1", "--out", str(out), "--held-out", "0.25", "--curves"])
    assert code == 0
    text = capsys.readouterr().out
    assert "robustness curves (held-out accuracy, 95 % Wilson interval)" in text
    rows = text.split("robustness curves")[1].splitlines()
    assert "original" in rows[1] and "fast twin" in rows[1]
    assert [row.split()[0] for row in rows[2:7]] == ["0", "2/255", "4/255", "8/255", "16/255"]
    curves = json.loads((out / "tiny_fast.json").read_text())["robustness_curves"]
    assert [c["name"] for c in curves["curves"]] == ["original", "fast twin"]
    twin = curves["curves"][1]
    card = json.loads((out / "tiny_fast.json").read_text())
    assert twin["accuracy"][0]["value"] == card["clean_accuracy"]            # ε = 0 is clean accuracy
    assert twin["accuracy"][3]["correct"] == card["robust_accuracy"]["correct"]  # ε is the card's number
