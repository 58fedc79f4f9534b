"""Whole-slide images: regions at two levels, provenance in record.json, reproduce, bad slides."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tiffslide")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from make_run import make_inputs  # noqa: E402
from slide_fixtures import tissue, write_pyramid  # noqa: E402

from advexplorer.cli import main  # noqa: E402
from advexplorer.errors import UserError  # noqa: E402
from advexplorer.io.slides import Slide, is_slide_file, parse_region, read_region, reread_region  # noqa: E402


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slide")
    path = folder / "slide.tif"
    levels = write_pyramid(path, tissue(256, 320), levels=3, tile=64, mpp=0.25)
    return path, levels


def test_a_region_is_the_level_s_own_pixels_at_two_levels(slide):
    path, levels = slide
    assert is_slide_file(path)
    with Slide(path) as opened:
        assert opened.level_count == 3
        assert opened.level_dimensions == ((320, 256), (160, 128), (80, 64))
        assert opened.mpp(0) == pytest.approx(0.25) and opened.mpp(1) == pytest.approx(0.5)
    for level, (x, y, w, h) in ((0, (70, 30, 40, 24)), (1, (5, 60, 32, 32))):
        region, pixels = read_region(path, level, x, y, w, h)
        assert np.array_equal(pixels, levels[level][y:y + h, x:x + w])
        assert (region.level, region.x, region.y, region.w, region.h) == (level, x, y, w, h)
    region, _ = read_region(path, 1, 5, 60, 32, 32)
    assert region.level0_box() == (10, 120, 64, 64)  # QuPath's coordinates of the same area
    assert len(region.slide_sha256) == 64 and len(region.pixels_sha256) == 64
    assert np.array_equal(reread_region(region), levels[1][60:92, 5:37])


def test_bad_regions_and_slides_are_one_line_naming_the_file(slide, tmp_path, monkeypatch):
    path, _ = slide
    with pytest.raises(UserError, match=r"outside slide\.tif at level 1, which is 160×128") as error:
        read_region(path, 1, 150, 0, 32, 32)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="has no level 5"):
        read_region(path, 5, 0, 0, 8, 8)
    for text in ("1,2,3", "a,b,c,d", "0,0,0,10", "-1,0,4,4"):
        with pytest.raises(UserError, match="X,Y,W,H"):
            parse_region(text)
    # A truncated slide: the header survives, the tiles do not.
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(UserError, match="truncated.tif") as error:
        with Slide(truncated) as opened:
            opened.read_level_region(0, 0, 200, 64, 50)
    assert "\n" not in str(error.value)
    # Not a slide at all.
    (tmp_path / "notes.svs").write_text("not a slide")
    with pytest.raises(UserError, match="notes.svs could not be opened as a slide"):
        Slide(tmp_path / "notes.svs")
    # A flat (non-pyramidal) TIFF: regions at level 0 work; level 1 and a huge overview do not.
    import tifffile

    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, tissue(64, 96), tile=(32, 32), photometric="rgb")
    assert not is_slide_file(flat)
    _, pixels = read_region(flat, 0, 10, 10, 20, 20)
    assert pixels.shape == (20, 20, 3)
    with pytest.raises(UserError, match="not pyramidal"):
        read_region(flat, 1, 0, 0, 8, 8)
    monkeypatch.setenv("ADVEXPLORER_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(UserError, match="flat.tif is not pyramidal enough for an overview"):
        Slide(flat).overview_level(max_side=32)


def cli(*argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


def test_a_slide_region_is_attacked_recorded_and_reproduced(slide, tmp_path, capsys):
    path, levels = slide
    inputs = make_inputs(tmp_path / "inputs")
    geojson = tmp_path / "tumour.geojson"
    # Level-0 coordinates; the tile is level 1 at (20, 10), i.e. level-0 (40, 20) to (104, 84).
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
         "geometry": {"type": "Polygon", "coordinates": [[[50, 30], [90, 30], [90, 70], [50, 70], [50, 30]]]}},
        {"type": "Feature", "properties": {"classification": {"name": "Stroma"}},
         "geometry": {"type": "Polygon", "coordinates": [[[44, 24], [60, 24], [60, 40], [44, 40], [44, 24]]]}}]}))
    run_dir = tmp_path / "run"
    code = cli("attack", "--model", inputs["model"], "--device", "cpu", "--image", path,
               "--region", "20,10,32,32", "--level", "1", "--annotations", geojson,
               "--protect-classes", "Tumor", "--diagnostic-classes", "Stroma",
               "--saliency", "gradient", "--attack", "pgd", "--steps", "2", "--seed", "4",
               "--quiet", "--out", run_dir)
    assert code == 0
    record = json.loads((run_dir / "record.json").read_text())
    region = record["image"]["region"]
    assert (region["level"], region["x"], region["y"], region["w"], region["h"]) == (1, 20, 10, 32, 32)
    assert region["slide"] == str(path.resolve()) and record["image"]["sha256"] == region["slide_sha256"]
    assert region["mpp"] == pytest.approx(0.5)
    assert record["annotations"]["protect_classes"] == ["Tumor"]
    assert np.array_equal(np.load(run_dir / "input.npy"),
                          levels[1][10:42, 20:52].transpose(2, 0, 1).astype(np.float32) / 255)
    # The Tumor square (level-1 pixels 25..45 of the slide, 5..25 of the tile) is protected.
    mask = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(run_dir / "mask.png")) != 0
    assert not mask[5:25, 5:25].any() and mask[26:, 26:].all()
    capsys.readouterr()
    assert cli("reproduce", run_dir) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out and "annotations" in out and "image" in out

    # A region that now reads differently (the reader changed) is refused before any run.
    record["image"]["region"]["pixels_sha256"] = "0" * 64
    (run_dir / "record.json").write_text(json.dumps(record))
    assert cli("reproduce", run_dir) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "now reads differently" in error and "slide.tif" in error


def test_a_slide_without_a_region_and_a_region_outside_are_one_line(slide, tmp_path, capsys):
    path, _ = slide
    inputs = make_inputs(tmp_path / "inputs")
    common = ("attack", "--model", inputs["model"], "--device", "cpu", "--image", path, "--out", tmp_path / "r")
    assert cli(*common) == 2
    assert "cut a model-sized tile with --region" in capsys.readouterr().err
    assert cli(*common, "--region", "300,0,32,32") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "outside slide.tif at level 0" in error
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_tiled_screen_of_a_slide_region_draws_a_flip_map(slide, tmp_path, capsys):
    import csv

    path, levels = slide
    inputs = make_inputs(tmp_path / "inputs")
    out = tmp_path / "tiled"
    assert cli("screen", "--model", inputs["model"], "--device", "cpu", "--workers", "0",
               "--image", path, "--region", "8,0,128,96", "--level", "1", "--tiles", "32",
               "--eps", "0,2/255,8/255", "--steps", "2", "--quiet", "--out", out) == 0
    layout = json.loads((out / "tiles.json").read_text())
    assert (layout["rows"], layout["columns"]) == (3, 4) and layout["source"]["region"]["level"] == 1
    tiles = np.load(out / "tiles.npz")["test_images"]
    region = levels[1][0:96, 8:136]
    for box in layout["tiles"]:  # each tile is its box of the region, row by row
        y, x = box["y"], box["x"]
        assert np.array_equal(tiles[box["index"]], region[y:y + 32, x:x + 32])
    flip_map = np.load(out / "flip_map.npy")
    with open(out / "screen" / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    for row in rows:
        box = layout["tiles"][int(row["file"].rsplit("#", 1)[1])]
        value = flip_map[box["row"], box["column"]]
        assert (np.isnan(value) and not row["flip_eps"]) or value == pytest.approx(float(row["flip_eps"]))
    summary = json.loads((out / "screen" / "summary.json").read_text())
    assert summary and (out / "flip_map.png").is_file()
    assert np.isfinite(flip_map).sum() == sum(1 for row in rows if row["flip_eps"])
