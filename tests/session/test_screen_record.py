"""The one builder of a cohort screen's ``summary.json`` (CLI and Cohort panel) and its folder.

Hand-made per-image rows with known outcomes, so every number the summary states is checked
against a count made here; the CLI's end-to-end tests (tests/cli/test_screen*.py) and the
panel-vs-CLI test (tests/gui/test_cohort_defence.py) check that both callers use it alike.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

from advexplorer import config as vocabulary
from advexplorer.config import AttackConfig
from advexplorer.core.screening import NONFINITE_NOTE, ImageRow, MonotoneCheck
from advexplorer.errors import UserError
from advexplorer.io.cohort import read_per_image_csv
from advexplorer.session.screen_record import (ScreenCounts, screen_summary, unchecked_shortcut,
                                               write_screen_folder, write_summary)

EPS = [0.0, 2 / 255, 8 / 255]
CLASSES = ["benign", "malignant"]
#: The keys of summary.json, in the order ``advexplorer screen`` writes them.
CLI_KEYS = ["advexplorer_screen", "created", "command_line", "model", "images", "attack", "eps",
            "definitions", "per_eps", "groups", "seeds", "monotone_shortcut", "min_eps", "noise_baseline",
            "resumed_rows", "device", "world_size", "devices", "mixed_precision", "batch_halvings",
            "versions", "cost", "wall_time_s", "files", "flags"]


class Cohort:
    """The attributes of an opened cohort the summary reads."""

    def __init__(self, count: int):
        self.count = count
        self.source, self.layout, self.missing = Path("/data/cohort"), "folder", ["gone.png"]
        self.has_labels, self.mask_mode, self.mask_source = True, "protect", Path("/data/protect.png")
        self.notes, self.groups = ["cohort note"], None

    def __len__(self) -> int:
        return self.count


def row(file, label, clean, flipped, *, min_eps=None, note=""):
    """A row whose prediction flips (to the other class) wherever ``flipped`` says."""
    return ImageRow(file=file, label=label, clean_prediction=clean, clean_probability=0.9,
                    adversarial_prediction=[1 - clean if f else clean for f in flipped],
                    adversarial_probability=[0.8] * len(flipped), flipped=list(flipped),
                    attacked=[False] + [True] * (len(flipped) - 1), linf=[0.0] * len(flipped),
                    l2=[0.0] * len(flipped), flip_eps=next((e for e, f in zip(EPS, flipped) if f), None),
                    min_eps=min_eps, note=note)


ROWS = [row("a.png", 0, 0, [False, False, True], min_eps=0.02),    # correct, flips at the largest ε
        row("b.png", 1, 1, [False, True, True], min_eps=0.004),    # correct, flips at 2/255
        row("c.png", 1, 0, [False, False, False]),                  # wrong when clean
        row("d.png", 0, 0, [False, False, False]),                  # correct, never flips
        row("e.png", 0, 0, [False, False, False], note=NONFINITE_NOTE)]  # left out of the rates


def model(notes=()):
    card = SimpleNamespace(name="tiny", classes=CLASSES, channels=1, input_size=(4, 4))
    return SimpleNamespace(path=Path("/m/tiny.pt"), sha256="ab" * 32, format="torchscript", card_path=None,
                           card_sha256=None, card=card, device="cpu", notes=list(notes),
                           classifier=nn.Sequential(nn.Flatten(), nn.Linear(16, 2)))


def build(**overrides):
    values = dict(command_line=["advexplorer", "screen", "--out", "OUT"], model=model(), cohort=Cohort(6),
                  fingerprint="f" * 64, config=AttackConfig(eps=EPS[-1], early_stop=True).validate(),
                  eps=EPS, rows_by_seed=[ROWS], seeds=[0],
                  counts=ScreenCounts(skipped=[("bad.png", "not an image")], notes=["loader note"],
                                      shortcut_pairs=3, batch_halvings=[16], engine_calls=4,
                                      attacked_pairs=7, forward_passes=30, backward_passes=28),
                  wall_time_s=1.23456, versions={"torch": "x"})
    return screen_summary(**{**values, **overrides})


def test_the_summary_counts_what_the_rows_say():
    summary = build(min_eps=True)
    assert list(summary) == CLI_KEYS
    kept = [r for r in ROWS if not r.note]
    for j, entry in enumerate(summary["per_eps"]):
        flipped = sum(r.flipped[j] for r in kept)
        robust = sum(r.label == r.clean_prediction and not r.flipped[j] for r in kept)
        assert (entry["n"], entry["flipped"], entry["robust"]) == (4, flipped, robust)
        assert entry["flip_rate"] == flipped / 4 and entry["robust_accuracy"] == robust / 4
        assert entry["excluded"] == 1
    assert [e["flipped"] for e in summary["per_eps"]] == [0, 1, 2]
    images = summary["images"]
    assert (images["count"], images["screened"], images["non_finite_logits"]) == (6, 5, ["e.png"])
    assert images["skipped"] == [{"file": "bad.png", "reason": "not an image"}]
    assert images["notes"] == ["cohort note", "loader note"]
    assert images["mask"] == {"mode": "protect", "source": "/data/protect.png"}
    assert summary["min_eps"]["median"] == pytest.approx((0.02 + 0.004) / 2)
    assert summary["cost"] == {"engine_calls": 4, "attacked_pairs": 7, "forward_passes": 30,
                               "backward_passes": 28}
    assert summary["monotone_shortcut"]["pairs_skipped_this_run"] == 3
    assert summary["wall_time_s"] == 1.235 and summary["devices"] == ["cpu"] and summary["mixed_precision"] is None
    assert summary["seeds"] == {"seeds": [0]} and summary["attack"]["eps"] == EPS[-1]
    assert summary["files"] == {"per_image": "per_image.csv", "report": "report.html"}
    assert "defence" not in summary and "precision" not in summary
    json.dumps(summary, allow_nan=False)  # summary.json takes it as it is


def test_the_shortcut_texts_are_the_clis_and_a_check_replaces_them():
    summary = build()
    assert summary["monotone_shortcut"]["verification"] == (
        "not checked in this run; --verify-monotone N re-attacks N flipped images at the larger ε "
        "and reports disagreements")
    assert summary["definitions"]["interval"] == "Wilson score interval, 95 %"
    assert summary["min_eps"] is None
    assert build(verify_option="“check monotone”")["monotone_shortcut"]["verification"] == \
        unchecked_shortcut("“check monotone”")
    check = MonotoneCheck(images_checked=2, pairs_checked=3, disagreements=[{"file": "a.png"}])
    counts = ScreenCounts(monotone_check=check)
    verification = build(counts=counts)["monotone_shortcut"]["verification"]
    assert verification["disagreements"] == 1 and verification["disagreement_rate"] == pytest.approx(1 / 3)


def test_the_clis_own_entries_and_the_flags():
    summary = build(settings_file="screen_settings.json", world_size=2, devices=["cuda:0", "cuda:1"],
                    mixed_precision="bfloat16", resumed_rows=2,
                    model=model(notes=["the model returns probabilities"]))
    assert list(summary["files"]) == ["per_image", "settings", "report"]
    assert (summary["world_size"], summary["devices"], summary["mixed_precision"], summary["resumed_rows"]) == \
        (2, ["cuda:0", "cuda:1"], "bfloat16", 2)
    assert "probability-output" in [flag["code"] for flag in summary["flags"]]
    assert "probability-output" not in [flag["code"] for flag in build()["flags"]]


def test_seeds_list_their_files_and_spread():
    second = [row(r.file, r.label, r.clean_prediction, [False] * 3, note=r.note) for r in ROWS]
    summary = build(rows_by_seed=[ROWS, second], seeds=[5, 6])
    assert summary["files"]["per_image_seeds"] == ["per_image_seed6.csv"]
    assert summary["seeds"]["seeds"] == [5, 6]
    largest = summary["seeds"]["per_eps"][-1]["robust_accuracy"]
    assert (largest["min"], largest["max"]) == (0.25, 0.75)  # 1 of 4 robust with seed 5, 3 with seed 6


def test_a_defended_screen_has_both_numbers():
    spec = vocabulary.parse_defence("bits:3")
    info = {"defence": {"defence": spec.text(), "label": spec.describe(), "adaptive": "bpda",
                        "adaptive_label": vocabulary.ADAPTIVE_LABELS["bpda"], "_base": None, "_spec": spec}}
    naive = [row(r.file, r.label, r.clean_prediction, [False] * 3, note=r.note) for r in ROWS]
    summary = build(defence_info=info, naive_rows=naive)
    assert summary["files"]["per_image_naive"] == "per_image_naive.csv"
    defence = summary["defence"]
    assert defence["files"] == {"naive": "per_image_naive.csv", "adaptive": "per_image.csv"}
    # Naive: the 3 of 4 correct images all held; adaptive: the rows above (1 of 4 at the largest ε).
    assert [e["naive"]["value"] for e in defence["per_eps"]] == [0.75, 0.75, 0.75]
    assert [e["adaptive"]["value"] for e in defence["per_eps"]] == [0.75, 0.5, 0.25]
    assert list(summary)[-3:] == ["files", "defence", "flags"]


def test_the_folder_holds_the_csvs_the_report_and_the_summary(tmp_path):
    summary = build()
    before = json.dumps(summary)
    seen = []

    def report(folder, record):
        seen.append((folder, dict(record["files"])))
        (folder / "report.html").write_text("<html></html>")
        return {"report": "report.html", "report_pdf": "report.pdf"}

    folder = write_screen_folder(tmp_path / "screen", summary, ROWS, CLASSES, naive_rows=ROWS[:2], report=report)
    assert folder == tmp_path / "screen" and seen == [(folder, summary["files"])]
    assert json.dumps(summary) == before  # the caller's summary is left as it was
    written = json.loads((folder / "summary.json").read_text())
    assert written["files"] == {"per_image": "per_image.csv", "report": "report.html", "report_pdf": "report.pdf"}
    assert {k: v for k, v in written.items() if k != "files"} == \
        {k: v for k, v in json.loads(before).items() if k != "files"}
    back = read_per_image_csv(folder / "per_image.csv", EPS, CLASSES, noise_baseline=False, min_eps=False)
    assert [(r.file, r.flipped, r.label) for r in back] == [(r.file, r.flipped, r.label) for r in ROWS]
    with open(folder / "per_image_naive.csv", newline="", encoding="utf-8") as handle:
        assert [line["file"] for line in csv.DictReader(handle)] == ["a.png", "b.png"]

    # A folder that holds something already is refused before anything is written.
    with pytest.raises(UserError, match="not empty"):
        write_screen_folder(folder, summary, ROWS, CLASSES, report=report)
    assert len(seen) == 1


def test_write_summary_without_a_report(tmp_path):
    summary = build()
    assert write_summary(tmp_path, summary) == {}
    text = (tmp_path / "summary.json").read_text()
    assert text == json.dumps(summary, indent=2, allow_nan=False) + "\n"
