"""`advexplorer attack` end to end: the run folder a user gets, and one-line errors for bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from advexplorer.cli import main
from advexplorer.io.hashing import sha256_file


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    torch.jit.script(TinyNet().eval()).save(str(root / "net.pt"))
    card = {"name": "tiny", "classes": ["cat", "dog", "<script>alert(1)</script>"],
            "input_size": [24, 24], "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    (root / "net.json").write_text(json.dumps(card))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(40, 216, (24, 24, 3), dtype=np.uint8)).save(root / "img.png")
    protect = np.zeros((24, 24), np.uint8)
    protect[6:18, 6:18] = 255
    Image.fromarray(protect).save(root / "protect.png")
    Image.fromarray(protect[:12]).save(root / "small_mask.png")
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(root / "empty_mask.png")
    (root / "broken.png").write_bytes((root / "img.png").read_bytes()[:200])
    (root / "junk.pt").write_bytes(b"definitely not torch")
    (root / "junk.json").write_text(json.dumps(card))
    torch.save(TinyNet(), root / "pickled.pt")
    (root / "pickled.json").write_text(json.dumps(card))
    return root


def base(files, out):
    return ["attack", "--model", str(files / "net.pt"), "--image", str(files / "img.png"),
            "--device", "cpu", "--out", str(out)]


def test_attack_writes_a_complete_reproducible_record(files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(base(files, out) + ["--protect", str(files / "protect.png"), "--eps", "8/255",
                                    "--steps", "5", "--seed", "7", "--random-start"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "adversarial.png", "input.npy", "mask.png", "perturbation.npy", "record.json"]
    record = json.loads((out / "record.json").read_text())
    assert record["model"]["sha256"] == sha256_file(files / "net.pt")
    assert record["model"]["card_sha256"] == sha256_file(files / "net.json")
    assert record["image"]["sha256"] == sha256_file(files / "img.png")
    assert record["mask"]["mode"] == "protect"
    assert record["mask"]["sha256"] == sha256_file(files / "protect.png")
    assert record["attack"] | {} and record["attack"]["seed"] == 7 and record["attack"]["eps"] == pytest.approx(8 / 255)
    assert set(record["versions"]) >= {"torch", "torchvision", "advexplorer", "python"}
    assert len(record["prediction_before"]["top5"]) == 3
    assert record["trajectory"]["step"] == list(range(6))
    assert len(record["trajectory"]["loss"]) == 6

    attacked = np.load(out / "input.npy")
    perturbation = np.load(out / "perturbation.npy")
    assert attacked.dtype == np.float32 and attacked.shape == (3, 24, 24)
    assert perturbation.dtype == np.float32 and perturbation.shape == (3, 24, 24)
    # Protected square untouched, budget respected, image in range.
    assert np.all(perturbation[:, 6:18, 6:18] == 0)
    assert np.abs(perturbation).max() <= 8 / 255 + 1e-6
    assert 0 <= (attacked + perturbation).min() and (attacked + perturbation).max() <= 1
    assert record["norms"]["linf"] == pytest.approx(float(np.abs(perturbation).max()))
    mask = np.asarray(Image.open(out / "mask.png"))
    assert np.all(mask[6:18, 6:18] == 0) and np.all(mask[:6] == 255)
    png = np.asarray(Image.open(out / "adversarial.png"))
    assert png.dtype == np.uint8 and png.shape == (24, 24, 3)
    assert np.array_equal(png, np.round((attacked + perturbation).transpose(1, 2, 0) * 255).astype(np.uint8))
    assert "still_flips" in record["exported_png"]
    assert "before" in capsys.readouterr().out


def test_same_seed_same_result(files, tmp_path):
    args = ["--eps", "4/255", "--steps", "3", "--seed", "3", "--random-start", "--quiet"]
    assert main(base(files, tmp_path / "a") + args) == 0
    assert main(base(files, tmp_path / "b") + args) == 0
    assert np.array_equal(np.load(tmp_path / "a" / "perturbation.npy"), np.load(tmp_path / "b" / "perturbation.npy"))


def test_class_names_and_targets(files, tmp_path):
    assert main(base(files, tmp_path / "t") + ["--targeted", "dog", "--label", "cat", "--quiet",
                                               "--attack", "mifgsm", "--norm", "linf"]) == 0
    record = json.loads((tmp_path / "t" / "record.json").read_text())
    assert record["target"] == {"index": 1, "name": "dog"}
    assert record["label"] == {"index": 0, "name": "cat"}


@pytest.mark.parametrize("extra, message", [
    (["--model", "{files}/junk.pt"], "not a PyTorch model file"),
    (["--model", "{files}/pickled.pt"], "--trust-pickle"),
    (["--model", "{files}/absent.pt"], "No model file"),
    (["--image", "{files}/broken.png"], "truncated or corrupt"),
    (["--image", "{files}/net.json"], "not an image"),
    (["--image", "{files}/nothing.png"], "No image file"),
    (["--mask", "{files}/small_mask.png"], "must have the image's size"),
    (["--mask", "{files}/empty_mask.png"], "no allowed"),
    (["--eps", "0"], "ε = 0 is out of range"),
    (["--eps", "2"], "out of range"),
    (["--eps", "-0.5"], "out of range"),
    (["--steps", "0"], "at least 1 step"),
    (["--targeted", "horse"], "Unknown class 'horse'"),
    (["--label", "7"], "out of range"),
])
def test_bad_input_one_line_no_output(files, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    args = base(files, out)
    for i in range(0, len(extra), 2):  # later options replace earlier ones
        key, value = extra[i], extra[i + 1].format(files=files)
        if key in args:
            args[args.index(key) + 1] = value
        else:
            args += [key, value]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert not any(p.name.startswith(".never") for p in tmp_path.iterdir())


def test_non_empty_output_folder_is_refused(files, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(base(files, out)) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_unparsable_numbers_are_argparse_errors(files, tmp_path, capsys):
    assert main(base(files, tmp_path / "x") + ["--eps", "eight"]) == 2
    assert "not a number" in capsys.readouterr().err
