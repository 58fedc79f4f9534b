"""``advexplorer screen`` on a manifest with group columns, with --seeds, and on a model whose
logits turn NaN on some images (flagged, the screen goes on)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from advexplorer.cli import main
from advexplorer.core.screening import wilson_interval

CLASSES = ["benign", "malignant"]
EPS = "0,2/255,6/255"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6 * 4 * 4, 2)

    def forward(self, x):
        return self.head(nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 4).flatten(1))


class UnstableNet(Net):
    """NaN on a white image (clean or not), and on a bright image once the attack has moved it
    off the 8-bit grid: what a numerically fragile model does mid-screen."""

    def forward(self, x):
        logits = self.head(nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 4).flatten(1))
        brightness = x.mean(dim=(1, 2, 3))
        levels = x * 255.0
        off_grid = (levels - torch.round(levels)).abs().amax(dim=(1, 2, 3)) > 1e-3
        undefined = (brightness > 0.95) | ((brightness > 0.7) & off_grid)
        return torch.where(undefined[:, None], torch.full_like(logits, float("nan")), logits)


def write_card(path, mean=0.5, std=0.1):
    path.write_text(json.dumps({"name": "tiny", "classes": CLASSES, "input_size": [24, 24],
                                "channels": 3, "mean": [mean] * 3, "std": [std] * 3}))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    torch.manual_seed(0)
    torch.jit.script(Net().eval()).save(str(root / "tiny.pt"))
    write_card(root / "tiny.json")
    torch.manual_seed(0)
    torch.jit.script(UnstableNet().eval()).save(str(root / "unstable.pt"))
    write_card(root / "unstable.json", mean=0.0, std=1.0)  # the model sees pixels in [0, 1]
    rng = np.random.default_rng(3)
    (root / "tiles").mkdir()
    lines = ["path,label,site,scanner"]
    for k in range(14):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "tiles" / f"t{k:02d}.png")
        site = "A" if k < 7 else ("B" if k < 13 else "C")  # site C has a single image
        lines.append(f"tiles/t{k:02d}.png,{CLASSES[k % 2]},{site},{'X' if k % 3 else 'Y'}")
    lines.append("tiles/gone.png,benign,A,X")  # listed, not on disk
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def screen(setup, out, *extra, model="tiny.pt", images="manifest.csv"):
    return main(["screen", "--model", str(setup / model), "--images", str(setup / images),
                 "--eps", EPS, "--steps", "4", "--batch-size", "4", "--workers", "0",
                 "--device", "cpu", "--out", str(out), *extra])


def test_manifest_groups_with_intervals_seeds_and_a_missing_file(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert screen(setup, out, "--random-start", "--seeds", "3") == 0
    printed = capsys.readouterr()
    assert "1 file(s) listed in manifest.csv do not exist and were skipped: tiles/gone.png" in printed.err
    assert "over 3 seeds" in printed.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"]["missing"] == ["tiles/gone.png"]
    assert summary["images"]["screened"] == 14
    groups = summary["groups"]["by_column"]
    assert set(groups) == {"site", "scanner"}
    with open(out / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = {r["file"]: r for r in csv.DictReader(handle)}
    site_of = {f"tiles/t{k:02d}.png": ("A" if k < 7 else ("B" if k < 13 else "C")) for k in range(14)}
    for entry in groups["site"]["groups"]:
        members = [f for f, s in site_of.items() if s == entry["name"]]
        for point in entry["per_eps"]:
            k = sum(rows[f][f"flipped@{point['eps_label']}"] == "1" for f in members)
            assert (point["n"], point["flipped"]) == (len(members), k)
            assert point["flip_rate_ci95"] == pytest.approx(list(wilson_interval(k, len(members))))
            assert 0 <= point["p_holm"] <= 1 and point["p_holm"] >= point["p_value"]
            assert point["gap_ci95"][0] <= point["gap"] <= point["gap_ci95"][1]
    single = next(e for e in groups["site"]["groups"] if e["name"] == "C")
    assert single["n"] == 1  # a group of one image is shown, with its (wide) interval

    spread = summary["seeds"]
    assert spread["seeds"] == [0, 1, 2] and spread["n"] == 14
    for point in spread["per_eps"]:
        value = point["robust_accuracy"]
        assert value["min"] <= value["median"] <= value["max"]
        low, high = value["bootstrap_ci95"]
        assert 0 <= low <= high <= 1
    assert (out / "per_image_seed1.csv").is_file() and (out / "per_image_seed2.csv").is_file()

    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Flip rate by group at ε" in html and "How sure are we?" in html
    assert "3 seeds (0, 1, 2)" in html and "C (n = 1)" in html


def test_seeds_without_randomness_are_refused(setup, tmp_path, capsys):
    assert screen(setup, tmp_path / "run", "--seeds", "2") == 2
    assert "draws nothing at random" in capsys.readouterr().err


def test_imagefolder_class_folders_are_groups(setup, tmp_path):
    cohort = tmp_path / "cohort"
    for k in range(4):
        (cohort / CLASSES[k % 2]).mkdir(parents=True, exist_ok=True)
        Image.open(setup / "tiles" / f"t{k:02d}.png").save(cohort / CLASSES[k % 2] / f"t{k}.png")
    assert screen(setup, tmp_path / "run", "--quiet", images=str(cohort)) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    names = [e["name"] for e in summary["groups"]["by_column"]["class folder"]["groups"]]
    assert names == CLASSES


def test_non_finite_logits_flag_the_image_and_the_screen_goes_on(setup, tmp_path, capsys):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    rng = np.random.default_rng(5)
    for k in range(5):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(cohort / f"n{k}.png")
    Image.fromarray(np.full((24, 24, 3), 255, np.uint8)).save(cohort / "white.png")   # NaN when clean
    Image.fromarray(np.full((24, 24, 3), 210, np.uint8)).save(cohort / "bright.png")  # NaN once attacked
    out = tmp_path / "run"
    assert screen(setup, out, model="unstable.pt", images=str(cohort)) == 0
    err = capsys.readouterr().err
    assert "non-finite logits on 2 image(s)" in err
    with open(out / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = {r["file"]: r for r in csv.DictReader(handle)}
    assert len(rows) == 7
    assert "non-finite logits on the clean image" in rows["white.png"]["note"]
    assert "non-finite logits while attacking at ε" in rows["bright.png"]["note"]
    assert all(rows[f"n{k}.png"]["note"] == "" for k in range(5))
    summary = json.loads((out / "summary.json").read_text())
    assert all(e["n"] == 5 and e["excluded"] == 2 for e in summary["per_eps"])
    assert sorted(summary["images"]["non_finite_logits"]) == ["bright.png", "white.png"]
    # Resuming reads the flagged rows back as flagged: nothing is screened again or counted.
    assert screen(setup, out, "--resume", model="unstable.pt", images=str(cohort)) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["per_eps"] == summary["per_eps"]
