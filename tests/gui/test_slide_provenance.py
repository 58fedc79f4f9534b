"""A tile cut in the slide view and attacked in the app is recorded as the slide region, as
the CLI's ``--image SLIDE --region X,Y,W,H --level L`` records it, and ``reproduce`` re-reads
the slide (issue 12)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tiffslide")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from slide_fixtures import tissue, write_pyramid  # noqa: E402


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    return path, write_pyramid(path, tissue(256, 320), levels=3, tile=64, mpp=0.25)


def _cut_tile(window, slide_path, tmp_path, level=1, box=(20, 10, 32, 32)):
    """What Cut tile in the slide view does: the tile PNG (+ NAME.region.json) joins the list."""
    from advexplorer.io.slides import read_region

    tmp_path.mkdir(parents=True, exist_ok=True)
    window.preferences.set_folder("tiles", tmp_path)
    region, pixels = read_region(slide_path, level, *box)
    window.workspace._tile_cut(region, pixels)
    entry = window.session.current
    assert entry.path.parent == tmp_path and (tmp_path / f"{entry.path.stem}.region.json").is_file()
    return entry, region


def _run(qtbot, window):
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=2, seed=3)
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.run_action.trigger()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30000)
    return finished.args[0]


def test_a_gui_run_on_a_cut_tile_records_the_slide_and_reproduces(qtbot, window, slide, tmp_path, capsys):
    from advexplorer.cli import main

    slide_path, levels = slide
    entry, region = _cut_tile(window, slide_path, tmp_path / "tiles")
    qtbot.waitUntil(lambda: window.model_frame.frame.box == (0, 0, 32, 32))  # 32×32 tile, 16×16 model
    assert not window.model_frame.crop_action.isEnabled()  # another region is cut in the slide view
    masks = entry.masks
    masks.attack.fill_rectangle(0, 0, 15, 31)  # protect the tile's left half
    summary = _run(qtbot, window)
    image = summary.record["image"]
    assert image["path"] == str(slide_path.resolve()) and image["sha256"] == region.slide_sha256
    recorded = image["region"]
    assert (recorded["level"], recorded["x"], recorded["y"], recorded["w"], recorded["h"]) == (1, 20, 10, 32, 32)
    assert recorded["pixels_sha256"] == region.pixels_sha256 and recorded["mpp"] == pytest.approx(0.5)
    assert any(entry.path.name in note for note in image["notes"])
    # The model saw the slide's own level-1 pixels.
    expected = levels[1][10:42, 20:52].astype(np.float32) / 255
    np.testing.assert_allclose(summary.request.image.original, expected, atol=1e-7)

    folder = window.save_run(summary, tmp_path / "run")
    capsys.readouterr()
    assert main(["reproduce", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out

    # The record's region is what reproduce reads: a region that now reads differently is refused.
    record = json.loads((folder / "record.json").read_text())
    record["image"]["region"]["pixels_sha256"] = "0" * 64
    (folder / "record.json").write_text(json.dumps(record))
    assert main(["reproduce", str(folder)]) == 2
    assert "now reads differently" in capsys.readouterr().err


def test_a_tile_edited_since_it_was_cut_is_recorded_as_the_png(qtbot, window, slide, tmp_path):
    slide_path, _ = slide
    entry, _ = _cut_tile(window, slide_path, tmp_path / "tiles", level=0, box=(40, 40, 24, 24))
    pixels = np.asarray(Image.open(entry.path)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(entry.path)  # e.g. retouched in another program
    summary = _run(qtbot, window)
    image = summary.record["image"]
    assert image["path"] == str(entry.path) and "region" not in image
    assert any("no longer holds the pixels" in note for note in image["notes"])


def test_an_ordinary_image_has_no_region(qtbot, window):
    summary = _run(qtbot, window)
    assert "region" not in summary.record["image"]
    assert summary.record["image"]["path"] == str(window.session.current.path)
