"""`advexplorer card`: options a user types, and a card that a later run loads as written."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from advexplorer.cli import main
from advexplorer.io.cards import parse_input_size, parse_normalization
from advexplorer.errors import UserError
from advexplorer.io.cards import load_card


def test_input_size_and_normalization_parse_as_documented(tmp_path):
    assert parse_input_size("224") == (224, 224)
    assert parse_input_size("256x192") == (256, 192)
    with pytest.raises(UserError, match="not a size"):
        parse_input_size("big")
    assert parse_normalization("half") == ((0.5,) * 3, (0.5,) * 3)
    assert parse_normalization("0.5,0.25") == ((0.5,) * 3, (0.25,) * 3)
    assert parse_normalization("0.1,0.2,0.3,0.4,0.5,0.6") == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    with pytest.raises(UserError, match="--normalization"):
        parse_normalization("1,2,3")
    Image.fromarray(np.full((4, 4, 3), 255, np.uint8)).save(tmp_path / "white.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "black.png")
    mean, std = parse_normalization(f"from-folder {tmp_path}")
    assert mean == pytest.approx((0.5,) * 3) and std == pytest.approx((0.5,) * 3)


def test_classes_from_an_image_folder_and_overwrite(tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=2).state_dict(), tmp_path / "m.pth")
    for name in ("tumour", "benign"):
        (tmp_path / "train" / name).mkdir(parents=True)
    argv = ["card", str(tmp_path / "m.pth"), "--classes-from", str(tmp_path / "train"),
            "--input-size", "32", "--normalization", "half", "--resize", "stretch"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "torchvision.mobilenet_v3_small" in out and "wrote" in out
    card = load_card(tmp_path / "m.json")
    assert card.classes == ("benign", "tumour")  # sorted, as torchvision's ImageFolder numbers them
    assert card.input_size == (32, 32) and card.mean == (0.5,) * 3 and card.resize == "stretch"
    before = (tmp_path / "m.json").read_text()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "m.json").read_text() == before
    assert main([*argv, "--overwrite", "--classes-from", str(tmp_path / "train")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["architecture"] == "torchvision.mobilenet_v3_small"
