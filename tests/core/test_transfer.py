"""Transfer (craft on a surrogate, judge on the target), and the new threat models from the
command line: --surrogate, --attack square --queries, --attack ensemble in attack and screen."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from advexplorer.cli import main
from advexplorer.config import AttackConfig
from advexplorer.core.attacks import drive, run_attack
from advexplorer.core.transfer import check_compatible, transfer_steps
from advexplorer.errors import UserError

CLASSES = ["benign", "malignant"]


def test_a_mismatched_surrogate_is_refused_saying_how_it_differs():
    with pytest.raises(UserError) as error:
        check_compatible("s.pt", ["a", "b", "c"], (32, 32), 1, "t.pt", ["a", "b"], (64, 64), 3)
    text = str(error.value)
    assert "3 classes (a, b, c) vs 2 classes (a, b)" in text
    assert "input size: 32×32 vs 64×64" in text and "channels: 1 vs 3" in text
    with pytest.raises(UserError, match="classes"):  # same names, other order
        check_compatible("s.pt", ["b", "a"], (8, 8), 3, "t.pt", ["a", "b"], (8, 8), 3)
    check_compatible("s.pt", ["a", "b"], (8, 8), 3, "t.pt", ["a", "b"], (8, 8), 3)


def test_the_target_judges_what_the_surrogate_crafted(make_tiny_cnn, make_images):
    surrogate, target = make_tiny_cnn(seed=0), make_tiny_cnn(seed=1)
    images = make_images(6, 3, 12, 12, seed=2)
    config = AttackConfig(method="mifgsm", eps=16 / 255, steps=10, seed=0)
    outcome = drive(transfer_steps(surrogate, target, images, None, None, config))
    direct = run_attack(surrogate, images, None, None, config)
    assert torch.equal(outcome.surrogate.adversarial, direct.adversarial)  # crafted on the surrogate alone
    with torch.no_grad():
        clean = target(images).argmax(1)
        after = target(direct.adversarial).argmax(1)
    assert torch.equal(outcome.target.success, after != clean)
    assert torch.equal(outcome.target.adversarial_prediction, after)
    # The same model as its own surrogate is the white-box attack.
    same = drive(transfer_steps(surrogate, surrogate, images, None, None, config))
    assert torch.equal(same.target.success, direct.success)


class Net(nn.Module):
    def __init__(self, classes: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6 * 4 * 4, classes)

    def forward(self, x):
        return self.head(nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 4).flatten(1))


def save_model(folder, name, seed, classes=CLASSES, size=24):
    torch.manual_seed(seed)
    torch.jit.script(Net(len(classes)).eval()).save(str(folder / f"{name}.pt"))
    (folder / f"{name}.json").write_text(json.dumps({
        "name": name, "classes": classes, "input_size": [size, size], "channels": 3,
        "mean": [0.5] * 3, "std": [0.1] * 3}))
    return folder / f"{name}.pt"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("threats")
    save_model(root, "target", 0)
    save_model(root, "surrogate", 1)
    save_model(root, "other", 2, classes=["benign", "malignant", "normal"], size=32)
    rng = np.random.default_rng(0)
    for k in range(4):
        folder = root / "cohort" / CLASSES[k % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"tile{k}.png")
    return root


def attack(setup, out, *extra):
    return main(["attack", "--model", str(setup / "target.pt"), "--image",
                 str(setup / "cohort" / "benign" / "tile0.png"), "--device", "cpu", "--out", str(out), *extra])


def test_attack_with_a_surrogate_records_both_views(setup, tmp_path, capsys):
    assert attack(setup, tmp_path / "run", "--surrogate", str(setup / "surrogate.pt"), "--attack", "pgd",
                  "--eps", "16/255", "--seed", "0") == 0
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["transfer"]["surrogate"]["path"].endswith("surrogate.pt")
    assert record["transfer"]["target_success"] == [record["success"]]
    assert isinstance(record["flags"], list)
    assert "transfer crafted on surrogate.pt" in capsys.readouterr().out


def test_a_transfer_run_with_input_diversity_reproduces_on_the_surrogate(setup, tmp_path, capsys):
    run = tmp_path / "run"
    assert attack(setup, run, "--surrogate", str(setup / "surrogate.pt"), "--attack", "mifgsm",
                  "--eps", "16/255", "--diversity", "0.5", "--seed", "3") == 0
    record = json.loads((run / "record.json").read_text())
    assert record["attack"]["diversity"] == 0.5
    # Both models' probabilities before and after (the GUI shows them side by side).
    transfer = record["transfer"]
    assert len(transfer["surrogate_probabilities_before"][0]) == len(CLASSES)
    assert abs(sum(transfer["surrogate_probabilities_after"][0]) - 1) < 1e-4
    capsys.readouterr()
    assert main(["reproduce", str(run)]) == 0  # crafted on the surrogate again, with the same draws
    assert "MATCH" in capsys.readouterr().out


def test_a_surrogate_for_another_task_is_one_line(setup, tmp_path, capsys):
    assert attack(setup, tmp_path / "run", "--surrogate", str(setup / "other.pt")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "3 classes" in err and "2 classes" in err and "32×32 vs 24×24" in err


def test_a_query_budget_of_zero_is_one_line(setup, tmp_path, capsys):
    assert attack(setup, tmp_path / "run", "--attack", "square", "--queries", "0") == 2
    assert "query budget of 0" in capsys.readouterr().err


def test_attack_ensemble_records_which_attack_succeeded(setup, tmp_path, capsys):
    assert attack(setup, tmp_path / "run", "--attack", "ensemble", "--queries", "20", "--steps", "5",
                  "--eps", "16/255", "--seed", "0") == 0
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["attack"]["method"] == "ensemble" and record["attack"]["queries"] == 20
    winner = record["ensemble"]["succeeded_by"]
    assert winner in ("apgd-ce", "apgd-t", "square", None)
    assert (winner is not None) == record["success"]
    assert "ensemble " in capsys.readouterr().out


def test_screen_with_the_ensemble_records_flags(setup, tmp_path, capsys):
    out = tmp_path / "screen"
    assert main(["screen", "--model", str(setup / "target.pt"), "--images", str(setup / "cohort"),
                 "--eps", "0,2/255,8/255", "--attack", "ensemble", "--queries", "10", "--steps", "3",
                 "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"]["method"] == "ensemble" and summary["attack"]["queries"] == 10
    assert isinstance(summary["flags"], list)
    flips = [entry["flipped"] for entry in summary["per_eps"]]
    assert flips == sorted(flips)
