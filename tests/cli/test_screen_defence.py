"""``advexplorer screen --defense … --adaptive … --precision …``: both numbers, recorded everywhere."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from advexplorer.cli import main

CLASSES = ["dark", "bright"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, write_brightness_model, write_brightness_cohort):
    root = tmp_path_factory.mktemp("defended_screen")
    write_brightness_model(root)
    # int8 dynamic quantisation needs a plain module: a small torchvision network as a state_dict.
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=2, width_mult=0.25).eval()
    torch.save(net.state_dict(), root / "mobile.pt")
    (root / "mobile.json").write_text(json.dumps({
        "name": "mobile", "classes": CLASSES, "input_size": [16, 16], "channels": 3,
        "mean": [0.5] * 3, "std": [0.25] * 3, "architecture": "torchvision.mobilenet_v3_small",
        "architecture_kwargs": {"num_classes": 2, "width_mult": 0.25}}))
    write_brightness_cohort(root, 8)
    return root


def screen(setup, out, *extra, model="bright.pt"):
    return main(["screen", "--model", str(setup / model), "--images", str(setup / "cohort"),
                 "--eps", "0,0.06,0.12", "--steps", "10", "--batch-size", "4", "--workers", "0",
                 "--device", "cpu", "--out", str(out), *extra])


def test_a_bit_depth_defence_screens_robust_naively_and_falls_to_bpda(setup, tmp_path, capsys):
    out = tmp_path / "bits"
    assert screen(setup, out, "--defense", "bits:3", "--adaptive", "bpda") == 0
    text = capsys.readouterr().out
    assert "defence  bit-depth reduction (bits 3): robust accuracy [95 % CI], naive vs bpda" in text
    assert "← a hidden gradient: the naive number overstates the defence" in text
    summary = json.loads((out / "summary.json").read_text())
    defence = summary["defence"]
    assert defence["defence"] == "bits:3" and defence["adaptive"] == "bpda"
    largest = defence["per_eps"][-1]
    assert largest["naive"]["value"] == 1.0 and largest["naive"]["n"] == 8   # blind: "robust"
    assert largest["adaptive"]["value"] == 0.0                               # BPDA breaks it
    assert largest["naive"]["ci95"][0] > largest["adaptive"]["ci95"][1] and largest["gradient_hidden"]
    # The screen's own numbers are the adaptive ones; the naive rows are in their own CSV.
    assert summary["per_eps"][-1]["robust_accuracy"] == 0.0
    with open(out / "per_image_naive.csv", newline="") as handle:
        naive_rows = list(csv.DictReader(handle))
    largest_column = [name for name in naive_rows[0] if name.startswith("flipped@")][-1]
    assert len(naive_rows) == 8 and all(row[largest_column] == "0" for row in naive_rows)
    assert summary["files"]["per_image_naive"] == "per_image_naive.csv"
    settings = json.loads((out / "screen_settings.json").read_text())
    assert (settings["defence"], settings["adaptive"], settings["precision"]) == ("bits:3", "bpda", "float32")
    html = (out / "report.html").read_text()
    assert "Defence: naive vs adaptive attack" in html and "The naive attack overstates the defence, which hides the gradient" in html


def test_resume_refuses_another_defence(setup, tmp_path, capsys):
    out = tmp_path / "resume"
    assert screen(setup, out, "--defense", "jpeg:75") == 0
    capsys.readouterr()
    assert screen(setup, out, "--defense", "jpeg:50", "--resume") == 2
    err = capsys.readouterr().err
    assert "defence changed" in err and len(err.strip().splitlines()) == 1


def test_int8_screen_records_its_precision(setup, tmp_path, capsys):
    out = tmp_path / "int8"
    assert screen(setup, out, "--precision", "int8", model="mobile.pt") == 0
    said = capsys.readouterr().out
    assert "precision int8 dynamic quantisation of" in said and "convolutions stay float32" in said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"]["precision"] == "int8" and "BPDA" in summary["precision"]["how"]
    assert json.loads((out / "screen_settings.json").read_text())["precision"] == "int8"
    assert "int8 dynamic quantisation" in (out / "report.html").read_text()


def test_int8_of_a_torchscript_model_is_refused_in_one_line(setup, tmp_path, capsys):
    assert screen(setup, tmp_path / "never", "--precision", "int8") == 2
    err = capsys.readouterr().err.strip()
    assert "TorchScript" in err and len(err.splitlines()) == 1


def test_bad_combinations_are_one_line(setup, tmp_path, capsys):
    for extra, message in ((["--adaptive", "bpda"], "add --defense"),
                           (["--precision", "float16", "--mixed-precision", "bfloat16"], "give one of them"),
                           (["--defense", "bits:9"], "from 1 to 8")):
        assert screen(setup, tmp_path / "never", *extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_static_int8_screen_is_calibrated_on_the_cohort(setup, tmp_path, capsys):
    out = tmp_path / "int8_static"
    assert screen(setup, out, "--precision", "int8-static", model="mobile.pt") == 0
    said = capsys.readouterr().out
    assert "int8 static quantisation (torch.ao FX graph mode" in said and "calibrated on 8 image(s)" in said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"]["precision"] == "int8-static"
    assert "convolutions and linear layers" in summary["precision"]["how"]


def test_quiet_says_nothing_but_notes(setup, tmp_path, capsys):
    """--quiet: no progress, no table, and not the line that announces the naive pass either."""
    assert screen(setup, tmp_path / "loud", "--defense", "bits:3", "--adaptive", "bpda") == 0
    loud = capsys.readouterr()
    assert "the same screen with the naive attack" in loud.err
    assert screen(setup, tmp_path / "quiet", "--defense", "bits:3", "--adaptive", "bpda", "--quiet") == 0
    quiet = capsys.readouterr()
    assert quiet.out == "" and "naive attack" not in quiet.err and "screen:" not in quiet.err
    assert (tmp_path / "quiet" / "per_image_naive.csv").is_file()
