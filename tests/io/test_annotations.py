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


# --------------------------------------------------------------------------------------
# ImageJ / Fiji ROIs (made here with roifile)


def _ellipse(left, top, width, height, shape):
    """Pixel centres inside the ellipse inscribed in a rectangle (the exact oval)."""
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]]
    cx, cy, rx, ry = left + width / 2, top + height / 2, width / 2, height / 2
    return ((columns + 0.5 - cx) / rx) ** 2 + ((rows + 0.5 - cy) / ry) ** 2 < 1


@pytest.fixture
def roi_zip(tmp_path):
    roifile = pytest.importorskip("roifile")
    from roifile import ROI_TYPE, ImagejRoi

    polygon = ImagejRoi.frompoints(np.array(OUTER[:-1]), name="Tumor")  # sub-pixel vertices
    polygon.roitype = ROI_TYPE.POLYGON
    rectangle = ImagejRoi(roitype=ROI_TYPE.RECT, left=62, top=40, right=80, bottom=52, name="Tumor-1", version=228)
    oval = ImagejRoi(roitype=ROI_TYPE.OVAL, left=66, top=6, right=94, bottom=26, name="Stroma", version=228)
    freehand = ImagejRoi.frompoints(np.array([[8, 50], [30, 47], [26, 62], [6, 61]]), name="0012-0034")
    line = ImagejRoi(roitype=ROI_TYPE.LINE, x1=1, y1=1, x2=30, y2=30, name="Tumor-2", version=228)
    path = tmp_path / "RoiSet.zip"
    roifile.roiwrite(path, [polygon, rectangle, oval, freehand, line], mode="w")
    return path  # (ROI Manager names repeats "Tumor-1", "Tumor-2": they are Tumors too)


def test_imagej_rois_rasterise_like_their_shapes(roi_zip):
    shape = (64, 100)
    annotations = read_annotations(roi_zip)
    assert class_names(annotations) == ["Tumor", "Stroma", "Unclassified"]  # the line is skipped
    tumour = rasterise(select(annotations, ["Tumor"], roi_zip), shape)
    rectangle = np.zeros(shape, bool)
    rectangle[40:52, 62:80] = True  # ImageJ's rectangle covers columns left…right−1
    polygon = independent_fill([np.array(OUTER)], shape)
    assert np.array_equal(tumour, polygon | rectangle)
    stroma = rasterise(select(annotations, ["Stroma"], roi_zip), shape)
    assert np.array_equal(stroma, _ellipse(66, 6, 28, 20, shape))
    freehand = rasterise(select(annotations, ["Unclassified"], roi_zip), shape)
    assert np.array_equal(freehand, independent_fill([np.array([[8, 50], [30, 47], [26, 62], [6, 61]])], shape))


def test_a_single_roi_file_and_a_tile_offset(tmp_path):
    pytest.importorskip("roifile")
    from roifile import ROI_TYPE, ImagejRoi

    path = tmp_path / "nucleus.roi"
    ImagejRoi(roitype=ROI_TYPE.OVAL, left=40, top=20, right=60, bottom=36, name="Nucleus", version=228).tofile(path)
    protect, diagnostic, notes = masks_from_annotations(path, (16, 32), protect_classes=["Nucleus"],
                                                        diagnostic_classes=[], offset=(32, 16))
    assert diagnostic is None and "Nucleus" in notes[0]
    # The level-0 oval, seen from a tile whose corner is at (32, 16).
    assert np.array_equal(protect, _ellipse(40, 20, 20, 16, (32, 64))[16:32, 32:64])


def test_a_composite_roi_keeps_its_hole(tmp_path):
    pytest.importorskip("roifile")
    from roifile import ROI_TYPE, ImagejRoi

    outer = np.array([[4, 4], [40, 4], [40, 30], [4, 30]], float)
    hole = np.array([[14, 10], [28, 10], [28, 22], [14, 22]], float)
    # A shape ROI's path: MOVETO x y, LINETO x y …, CLOSE, one sub-path per ring (ImageJ's ShapeRoi).
    segments = []
    for ring in (outer, hole):
        segments += [0, *ring[0]]
        for x, y in ring[1:]:
            segments += [1, x, y]
        segments += [4]
    roi = ImagejRoi(roitype=ROI_TYPE.RECT, left=4, top=4, right=40, bottom=30, name="Gland", version=228,
                    multi_coordinates=np.array(segments, np.float32), shape_roi_size=len(segments))
    path = tmp_path / "gland.roi"
    roi.tofile(path)
    mask = rasterise(read_annotations(path), (36, 48))
    assert np.array_equal(mask, independent_fill([outer, hole], (36, 48)))
    assert mask[6, 6] and not mask[15, 20]


def test_files_that_are_not_imagej_rois_are_one_line(tmp_path):
    pytest.importorskip("roifile")
    from roifile import ROI_TYPE, ImagejRoi

    junk = tmp_path / "notes.roi"
    junk.write_bytes(b"not a roi at all")
    with pytest.raises(UserError, match="notes.roi is not an ImageJ ROI file") as error:
        read_annotations(junk)
    assert "\n" not in str(error.value)
    lines = tmp_path / "lines.roi"
    ImagejRoi(roitype=ROI_TYPE.LINE, x1=1, y1=1, x2=9, y2=9, version=228).tofile(lines)
    with pytest.raises(UserError, match="holds no area ROI"):
        read_annotations(lines)


def test_the_cli_takes_a_roi_zip_as_annotations(roi_zip, tmp_path, capsys):
    import sys
    from pathlib import Path

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
    from make_run import make_inputs

    from advexplorer.cli import main

    inputs = make_inputs(tmp_path / "inputs")
    image = tmp_path / "tile.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 100, 3), dtype=np.uint8)).save(image)
    run = tmp_path / "run"
    code = main(["attack", "--model", str(inputs["model"]), "--device", "cpu", "--image", str(image),
                 "--annotations", str(roi_zip), "--protect-classes", "Tumor", "--diagnostic-classes", "Stroma",
                 "--steps", "1", "--quiet", "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((run / "record.json").read_text())
    annotations = record["annotations"]
    assert annotations["path"].endswith("RoiSet.zip") and annotations["protect_classes"] == ["Tumor"]
    assert main(["reproduce", str(run)]) == 0


def test_stain_channel_band_by_band_equals_the_whole_deconvolution(monkeypatch):
    from advexplorer.core import stain

    monkeypatch.setattr(stain, "BAND_ROWS", 7)  # several bands, the last one short
    rgb = np.random.default_rng(1).integers(1, 256, (30, 20, 3), dtype=np.uint8)
    unit = rgb.astype(np.float32) / 255
    for name in stain.STAINS:
        whole = stain.stain_density(unit)[:, :, stain.STAINS.index(name)].astype(np.float32)
        assert np.array_equal(stain.stain_channel(rgb, name), whole)  # uint8 as its float32 image
        assert np.array_equal(stain.stain_channel(unit, name), whole)
    with pytest.raises(UserError, match="colour \\(RGB\\) image"):
        stain.stain_channel(rgb[:, :, :1], "dab")


def test_the_magic_wand_reads_8_bit_images_as_their_unit_values():
    from advexplorer.core.stain import magic_wand

    rgb = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8) // 32 * 32  # flat patches
    unit = rgb.astype(np.float32) / 255
    for tolerance in (0.0, 32 / 255, 0.2):
        for seed in ((0, 0), (20, 25), (39, 49)):
            assert np.array_equal(magic_wand(rgb, seed, tolerance), magic_wand(unit, seed, tolerance))
