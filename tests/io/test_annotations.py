"""QuPath GeoJSON as masks: holes, classes, tile offsets, export and bad files; stain tools."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("shapely")

from matplotlib.path import Path as PolygonPath  # noqa: E402

from advexplorer.errors import UserError  # noqa: E402
from advexplorer.io.annotations import (class_names, mask_to_geojson, masks_from_annotations,  # noqa: E402
                                        rasterise, read_annotations, save_mask_geojson, select)

OUTER = [[3.3, 2.1], [60.2, 5.4], [55.7, 44.9], [20.1, 58.3], [4.6, 40.2], [3.3, 2.1]]
HOLE = [[20.4, 15.2], [38.9, 18.3], [30.2, 35.7], [20.4, 15.2]]
ISLAND = [[70.3, 10.2], [90.7, 12.1], [80.4, 30.6], [70.3, 10.2]]


def feature(coordinates, name, kind="Polygon"):
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coordinates},
            "properties": {"objectType": "annotation", "classification": {"name": name, "color": [255, 0, 0]}}}


@pytest.fixture
def geojson(tmp_path):
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        feature([OUTER, HOLE], "Tumor"),
        feature([[ISLAND]], "Stroma", "MultiPolygon"),
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {}}]}))
    return path


def independent_fill(rings, shape, offset=(0, 0), downsample=1.0):
    """Pixel centres inside the exterior and outside every hole, by matplotlib's point-in-polygon."""
    height, width = shape
    rows, columns = np.mgrid[0:height, 0:width]
    centres = np.column_stack([offset[0] + (columns.ravel() + 0.5) * downsample,
                               offset[1] + (rows.ravel() + 0.5) * downsample])
    inside = PolygonPath(np.asarray(rings[0])).contains_points(centres)
    for hole in rings[1:]:
        inside &= ~PolygonPath(np.asarray(hole)).contains_points(centres)
    return inside.reshape(shape)


def test_a_polygon_with_a_hole_is_rasterised_like_an_independent_fill(geojson):
    annotations = read_annotations(geojson)
    assert class_names(annotations) == ["Tumor", "Stroma"]  # the point is skipped
    tumour = select(annotations, ["Tumor"])
    mask = rasterise(tumour, (64, 96))
    expected = independent_fill([OUTER, HOLE], (64, 96))
    assert mask.sum() > 1000 and not mask[25, 28]  # the hole is a hole
    assert np.array_equal(mask, expected)
    # The same polygon at a level-1 tile whose corner is level-0 (8, 4): offset and downsample.
    tile = rasterise(tumour, (20, 30), offset=(8, 4), downsample=2.0)
    assert np.array_equal(tile, independent_fill([OUTER, HOLE], (20, 30), offset=(8, 4), downsample=2.0))
    stroma = rasterise(select(annotations, ["Stroma"]), (64, 96))
    assert np.array_equal(stroma, independent_fill([ISLAND], (64, 96)))


def test_classes_become_protect_and_diagnostic_masks(geojson):
    protect, diagnostic, notes = masks_from_annotations(
        geojson, (64, 96), protect_classes=["Tumor"], diagnostic_classes=["Stroma"])
    assert protect.any() and diagnostic.any() and not (protect & diagnostic).any()
    assert "Tumor" in notes[0] and "Stroma" in notes[1]
    with pytest.raises(UserError, match="no annotation of class Necrosis; its classes are Tumor, Stroma"):
        masks_from_annotations(geojson, (64, 96), protect_classes=["Necrosis"], diagnostic_classes=[])
    with pytest.raises(UserError, match="lie entirely outside the image"):
        masks_from_annotations(geojson, (32, 32), protect_classes=["Stroma"], diagnostic_classes=[],
                               offset=(200, 200))


def test_files_that_are_not_geojson_are_one_line(tmp_path):
    cases = {"text.geojson": "this is not json", "list.geojson": json.dumps({"hello": 1}),
             "points.geojson": json.dumps(feature([1, 2], "Tumor", "Point"))}
    expected = {"text.geojson": "is not GeoJSON", "list.geojson": "is JSON but not GeoJSON",
                "points.geojson": "holds no Polygon"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=expected[name]) as error:
            read_annotations(tmp_path / name)
        assert name in str(error.value) and "\n" not in str(error.value)


def test_a_painted_mask_exports_to_geojson_that_reads_back_the_same(tmp_path):
    mask = np.zeros((40, 50), bool)
    mask[5:30, 4:40] = True
    mask[10:20, 12:25] = False          # a hole
    mask[33:38, 42:48] = True           # a second island
    path = save_mask_geojson(tmp_path / "painted.geojson", mask, "Protect", offset=(100, 60), downsample=4.0)
    document = json.loads(path.read_text())
    assert document["type"] == "FeatureCollection" and len(document["features"]) == 2
    assert document["features"][0]["properties"]["classification"]["name"] == "Protect"
    back = rasterise(read_annotations(path), mask.shape, offset=(100, 60), downsample=4.0)
    assert np.array_equal(back, mask)
    assert mask_to_geojson(np.zeros((4, 4), bool))["features"] == []
    with pytest.raises(UserError):
        save_mask_geojson(path, mask)  # never overwritten silently


def test_select_by_stain_agrees_with_scikit_image_and_finds_nuclei():
    skimage_color = pytest.importorskip("skimage.color")
    from advexplorer.core.stain import magic_wand, select_by_stain, stain_density

    rng = np.random.default_rng(0)
    image = rng.uniform(0.05, 1.0, (16, 16, 3))
    # scikit-image divides log(I) by log(1e-6): the same deconvolution, scaled by 1/6.
    np.testing.assert_allclose(stain_density(image) / 6.0, skimage_color.rgb2hed(image), atol=1e-9)

    # A pink (eosin) field with two purple (hematoxylin) nuclei.
    field = np.ones((32, 32, 3)) * np.array([0.93, 0.65, 0.80])
    yy, xx = np.mgrid[0:32, 0:32]
    nuclei = ((yy - 8) ** 2 + (xx - 8) ** 2 < 16) | ((yy - 22) ** 2 + (xx - 24) ** 2 < 25)
    field[nuclei] = [0.35, 0.25, 0.60]
    assert np.array_equal(select_by_stain(field, "hematoxylin", 0.15), nuclei)
    with pytest.raises(UserError, match="Unknown stain"):
        select_by_stain(field, "trichrome")
    # The magic wand takes the clicked nucleus, not the other one.
    wand = magic_wand(field, (8, 8), tolerance=0.05)
    assert wand[8, 8] and not wand[22, 24] and np.array_equal(wand, nuclei & (xx < 16))
