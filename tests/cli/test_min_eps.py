"""`advexplorer min-eps` end to end: the record a user gets, checked against a closed form."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from advexplorer import paths
from advexplorer.cli import main

SIZE = 12
MARGIN = 0.5


class Linear(nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def forward(self, x):
        return x.flatten(1) @ self.weight.t() + self.bias


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mineps")
    rng = np.random.default_rng(0)
    pixels = rng.integers(110, 146, (SIZE, SIZE, 3), dtype=np.uint8)  # mid-range: no clipping binds
    Image.fromarray(pixels).save(root / "img.png")
    image = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    weight = torch.from_numpy(rng.normal(0, 0.05, (2, 3 * SIZE * SIZE)).astype(np.float32))
    logits = image.flatten(1) @ weight.t()
    bias = -logits[0] + torch.tensor([MARGIN, 0.0])  # class "tumour" leads by MARGIN
    torch.jit.script(Linear(weight, bias).eval()).save(str(root / "net.pt"))
    card = {"name": "linear", "classes": ["tumour", "stroma"], "input_size": [SIZE, SIZE],
            "channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    (root / "net.json").write_text(json.dumps(card))
    protect = np.zeros((SIZE, SIZE), np.uint8)
    protect[:, : SIZE // 2] = 255  # protect the left half; attack the right half only
    Image.fromarray(protect).save(root / "protect.png")
    return root, weight.double()


def command(root, out, *extra):
    return ["min-eps", "--model", str(root / "net.pt"), "--image", str(root / "img.png"),
            "--device", "cpu", "--out", str(out), *extra]


def test_min_eps_record_matches_the_linear_closed_form_on_the_allowed_half(files, tmp_path, capsys):
    root, weight = files
    out = tmp_path / "run"
    assert main(command(root, out, "--protect", str(root / "protect.png"), "--robustness")) == 0
    printed = capsys.readouterr().out
    assert "min ε" in printed and "bracket" in printed and "forward" in printed
    record = json.loads((out / "record.json").read_text())
    found = record["min_eps"]
    allowed = np.zeros((SIZE, SIZE))
    allowed[:, SIZE // 2:] = 1
    difference = (weight[0] - weight[1]).numpy().reshape(3, SIZE, SIZE) * allowed
    net = torch.jit.load(str(root / "net.pt"))
    with torch.no_grad():
        logits = net(torch.from_numpy(np.load(out / "input.npy"))[None])[0].double()
    exact = float(logits[0] - logits[1]) / np.abs(difference).sum()
    assert float(logits[0] - logits[1]) == pytest.approx(MARGIN, abs=1e-4)
    assert found["found"] is True
    assert found["eps"] == pytest.approx(exact, rel=0.01)
    lo, hi = found["bracket"]
    assert lo <= exact <= hi
    assert found["reference_class"] == "tumour" and found["adversarial_class"] == "stroma"
    assert found["cost"]["forward_passes"] > 0 and found["cost"]["backward_passes"] > 0
    assert record["attack"]["eps"] == pytest.approx(found["eps"])
    assert record["flipped"] is True and record["prediction_after"]["class"] == "stroma"
    perturbation = np.load(out / "perturbation.npy")
    assert np.all(perturbation[:, :, : SIZE // 2] == 0)
    assert np.abs(perturbation).max() <= found["eps"] * (1 + 1e-5)
    assert record["robustness"]["radius_estimate"] < found["eps"]
    assert record["mask"]["mode"] == "protect"


def test_min_eps_not_found_is_recorded_not_an_error(files, tmp_path, capsys):
    root, _ = files
    out = tmp_path / "run"
    assert main(command(root, out, "--eps-max", "1/255", "--norm", "linf")) == 0
    assert "not found" in capsys.readouterr().out
    record = json.loads((out / "record.json").read_text())
    assert record["min_eps"]["found"] is False and record["min_eps"]["eps"] is None
    assert record["flipped"] is False


def test_min_eps_refuses_a_non_empty_folder_on_one_line(files, tmp_path, capsys):
    root, _ = files
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(command(root, out)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not empty" in error
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.skipif(not paths.DEFAULT_MODEL.exists(), reason="bundled model not built yet")
def test_min_eps_defaults_to_the_bundled_sample(tmp_path):
    out = tmp_path / "run"
    assert main(["min-eps", "--device", "cpu", "--steps", "5", "--tolerance", "0.1",
                 "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "record.json").read_text())
    assert "min_eps" in record and record["image"]["sha256"]
