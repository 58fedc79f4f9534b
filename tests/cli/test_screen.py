"""``advexplorer screen`` end to end on a tiny TorchScript model and a 10-image cohort."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from advexplorer.cli import main

CLASSES = ["benign", "malignant"]
EPS = "0,1/255,3/255,6/255"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6 * 4 * 4, 2)

    def forward(self, x):
        return self.head(nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 4).flatten(1))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("screen")
    torch.manual_seed(0)
    torch.jit.script(Net().eval()).save(str(root / "tiny.pt"))
    (root / "tiny.json").write_text(json.dumps({
        "name": "tiny", "classes": CLASSES, "input_size": [24, 24], "channels": 3,
        "mean": [0.5] * 3, "std": [0.1] * 3}))
    rng = np.random.default_rng(0)
    for k in range(10):
        folder = root / "cohort" / CLASSES[k % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"tile{k}.png")
        protect = np.zeros((24, 24), np.uint8)
        protect[6:18, 6:18] = 255  # the "tissue" in the middle is protected
        (root / "protect" / CLASSES[k % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(protect).save(root / "protect" / CLASSES[k % 2] / f"tile{k}.png")
    return root


def screen(setup, out, *extra):
    return main(["screen", "--model", str(setup / "tiny.pt"), "--images", str(setup / "cohort"),
                 "--protect-dir", str(setup / "protect"), "--eps", EPS, "--steps", "4",
                 "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out), *extra])


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_screen_writes_csv_summary_and_report(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert screen(setup, out, "--noise-baseline", "--verify-monotone", "3", "--pdf") == 0
    rows = read_csv(out / "per_image.csv")
    assert sorted(r["file"] for r in rows) == sorted(f"{CLASSES[k % 2]}/tile{k}.png" for k in range(10))
    summary = json.loads((out / "summary.json").read_text())
    per_eps = summary["per_eps"]
    assert [e["eps"] for e in per_eps] == pytest.approx([0, 1 / 255, 3 / 255, 6 / 255])
    for j, entry in enumerate(per_eps):
        label = entry["eps_label"]
        assert entry["n"] == 10
        assert entry["flipped"] == sum(r[f"flipped@{label}"] == "1" for r in rows)
        assert entry["flip_rate_ci95"][0] <= entry["flip_rate"] <= entry["flip_rate_ci95"][1]
        assert "robust_accuracy" in entry and "noise_flip_rate_ci95" in entry
    assert per_eps[-1]["flipped"] > 0, "the tiny model should be flippable at 6/255"
    flips = [e["flipped"] for e in per_eps]
    assert flips == sorted(flips)  # cumulative
    # Protect mask on: nothing changed inside the protected square (linf is measured overall,
    # so check that the protect mode is recorded and the report says "outside the protected").
    assert summary["images"]["mask"]["mode"] == "protect" and summary["images"]["labels"]
    assert summary["monotone_shortcut"]["used"] is True
    assert summary["monotone_shortcut"]["verification"]["images_checked"] <= 3
    assert len(summary["images"]["fingerprint_sha256"]) == 64 and summary["model"]["sha256"]
    html = (out / "report.html").read_text()
    assert "<svg" in html and "outside the protected region" in html and "<script" not in html
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    assert summary["files"]["report_pdf"] == "report.pdf"
    printed = capsys.readouterr().out
    assert "flip rate" in printed and "6/255" in printed


def test_interrupted_screen_resumes_without_redoing_images(setup, tmp_path, monkeypatch, capsys):
    from advexplorer.io import cohort as cohort_module

    full = tmp_path / "full"
    assert screen(setup, full) == 0
    expected = json.loads((full / "summary.json").read_text())["per_eps"]

    out = tmp_path / "partial"
    original = cohort_module.PerImageWriter.write
    calls = {"n": 0}

    def write_then_interrupt(self, rows):
        original(self, rows)
        if rows:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(cohort_module.PerImageWriter, "write", write_then_interrupt)
    assert screen(setup, out) == 130
    assert "--resume" in capsys.readouterr().err
    kept = read_csv(out / "per_image.csv")
    assert 0 < len(kept) < 10 and not (out / "summary.json").exists()
    monkeypatch.setattr(cohort_module.PerImageWriter, "write", original)

    assert screen(setup, out) == 2  # without --resume the folder is refused
    assert "--resume" in capsys.readouterr().err
    assert screen(setup, out, "--resume") == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = read_csv(out / "per_image.csv")
    assert sorted(r["file"] for r in rows) == sorted(r["file"] for r in read_csv(full / "per_image.csv"))
    assert summary["resumed_rows"] == len(kept)
    assert summary["images"]["screened"] == 10
    # Only the images not finished before were attacked in the resumed run.
    assert summary["cost"]["attacked_pairs"] < json.loads((full / "summary.json").read_text())["cost"]["attacked_pairs"]
    assert [e["flipped"] for e in summary["per_eps"]] == [e["flipped"] for e in expected]


def test_resume_refuses_changed_settings(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert screen(setup, out) == 0
    assert main(["screen", "--model", str(setup / "tiny.pt"), "--images", str(setup / "cohort"),
                 "--eps", EPS, "--steps", "4", "--workers", "0", "--device", "cpu",
                 "--out", str(out), "--resume"]) == 2
    assert "mask_mode" in capsys.readouterr().err


def test_user_errors_are_one_line(setup, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["screen", "--model", str(setup / "tiny.pt"), "--images", str(tmp_path / "empty"),
                 "--device", "cpu", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "holds no images" in err and len(err.splitlines()) == 1
    code = main(["screen", "--model", str(setup / "tiny.pt"), "--images", str(setup / "cohort"),
                 "--eps", "0", "--device", "cpu", "--out", str(tmp_path / "o2")])
    assert code == 2 and "nothing would be attacked" in capsys.readouterr().err


def png_bomb(path, width=30_000, height=30_000):
    """A valid 1-bit PNG of zeros (< 1 MB on disk, 900 Mpx decoded), written chunk by chunk."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_bomb_image_is_skipped_in_a_screen_and_refused_by_attack(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADVEXPLORER_MAX_IMAGE_PIXELS", raising=False)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for k in range(4):
        (cohort / f"tile{k}.png").write_bytes((setup / "cohort" / CLASSES[k % 2] / f"tile{k}.png").read_bytes())
    png_bomb(cohort / "bomb.png")
    out = tmp_path / "run"
    code = main(["screen", "--model", str(setup / "tiny.pt"), "--images", str(cohort), "--eps", EPS,
                 "--steps", "2", "--batch-size", "2", "--workers", "0", "--device", "cpu",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(r["file"] for r in read_csv(out / "per_image.csv")) == [f"tile{k}.png" for k in range(4)]
    assert "skipped 1 unreadable image(s): bomb.png (bomb.png is 30000×30000 = 900 Mpx" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"]["screened"] == 4 and summary["images"]["skipped"][0]["file"] == "bomb.png"

    code = main(["attack", "--model", str(setup / "tiny.pt"), "--image", str(cohort / "bomb.png"),
                 "--device", "cpu", "--out", str(tmp_path / "one")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "900 Mpx, above the 200 Mpx limit for one image" in err and "ADVEXPLORER_MAX_IMAGE_PIXELS" in err


def test_resumed_noise_baseline_matches_an_uninterrupted_screen(setup, tmp_path, monkeypatch, capsys):
    """Kill a --noise-baseline screen mid-line, resume it with another batch size: same rows."""
    from advexplorer.io import cohort as cohort_module

    noisy = ("--noise-baseline", "--eps", "0,3/255,12/255,48/255")
    full = tmp_path / "full"
    assert screen(setup, full, *noisy) == 0
    expected = {r["file"]: r for r in read_csv(full / "per_image.csv")}
    assert 0 < sum(r["noise_flipped@48/255"] == "1" for r in expected.values()) < 10

    out = tmp_path / "partial"
    original = cohort_module.PerImageWriter.write

    def write_then_die(self, rows):
        original(self, rows)
        if rows:
            raise KeyboardInterrupt

    monkeypatch.setattr(cohort_module.PerImageWriter, "write", write_then_die)
    assert screen(setup, out, *noisy) == 130
    monkeypatch.setattr(cohort_module.PerImageWriter, "write", original)
    csv_path = out / "per_image.csv"
    text = csv_path.read_text(encoding="utf-8")
    csv_path.write_text(text[:-2], encoding="utf-8")  # killed before the line break of the last row
    capsys.readouterr()

    assert screen(setup, out, *noisy, "--resume", "--batch-size", "3") == 0
    rows = {r["file"]: r for r in read_csv(csv_path)}
    assert rows == expected
    assert "cut short" in capsys.readouterr().err


def test_an_empty_read_only_out_folder_is_refused_in_one_line(setup, tmp_path, capsys):
    import stat

    out = tmp_path / "protected"
    out.mkdir()
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert screen(setup, out) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"Output folder {out} is read-only" in err
        assert list(out.iterdir()) == []
    finally:
        out.chmod(stat.S_IRWXU)
