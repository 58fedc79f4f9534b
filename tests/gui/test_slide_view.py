"""The slide view (overview, levels, picker, cut off the GUI thread) and the canvas overlays."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tiffslide")
pytest.importorskip("pytestqt")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from slide_fixtures import tissue, write_pyramid  # noqa: E402

SHOTS = os.environ.get("ADVEXPLORER_SCREENSHOTS")  # a folder: save the screenshots there


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    return path, write_pyramid(path, tissue(512, 640), levels=3, tile=64, mpp=0.25)


def test_the_picker_cuts_the_region_at_two_levels(qtbot, slide):
    from advexplorer.gui.slide_view import SlideView

    path, levels = slide
    view = SlideView(tile_size=48, overview_side=200)  # overview from level 2
    qtbot.addWidget(view)
    view.resize(700, 560)
    view.show()
    with qtbot.waitSignal(view.opened, timeout=20000):
        view.open_slide(path)
    assert view.level_box.count() == 3 and "0.5 µm/px" in view.level_box.itemText(1)
    for level, (x, y) in ((0, (100, 60)), (1, (40, 90))):
        view.set_picked_box(level, x, y)
        assert view.picked_box() == (x, y, 48, 48)
        assert f"level {level}: {x},{y} 48×48" in view.info_label.text()
        with qtbot.waitSignal(view.region_picked, timeout=20000) as picked:
            view.cut_tile()
        region, pixels = picked.args
        assert (region.level, region.x, region.y, region.w, region.h) == (level, x, y, 48, 48)
        assert np.array_equal(pixels, levels[level][y:y + 48, x:x + 48])
    # A cut tile saved for the image list: the same pixels, and its provenance beside it.
    from PIL import Image

    from advexplorer.io.slides import Region, save_region_png

    saved = save_region_png(region, pixels, path.parent / "tiles")
    assert saved.name == "slide_L1_x40_y90_48x48.png"
    assert np.array_equal(np.asarray(Image.open(saved)), pixels)
    assert Region.from_json(json.loads(saved.with_suffix(".region.json").read_text())) == region
    # The picker stays inside the level: dragged past the edge, it cuts the last full tile.
    view.set_picked_box(2, 150, 150)
    assert view.picked_box() == (160 - 48, 128 - 48, 48, 48)
    # Zooming in reads the visible part from a finer level (off the GUI thread).
    view.view.setRange(xRange=(100, 260), yRange=(100, 230), padding=0)
    qtbot.waitUntil(lambda: view.detail_item.image is not None and not view.busy, timeout=20000)
    assert view.detail_item.image.shape[0] >= 100  # level 0: one slide pixel per level-0 unit
    if SHOTS:
        view.set_picked_box(1, 100, 70)
        view.view.autoRange(padding=0.02)
        qtbot.wait(300)
        view.grab().save(str(Path(SHOTS) / "slide_view.png"))
    view.stop()


def test_a_broken_slide_is_one_line_and_the_view_stays_usable(qtbot, tmp_path):
    from advexplorer.gui.slide_view import SlideView

    (tmp_path / "broken.svs").write_bytes(b"II*\0" + b"\0" * 20)
    view = SlideView()
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.failed, timeout=20000) as failed:
        view.open_slide(tmp_path / "broken.svs")
    assert "broken.svs" in failed.args[0] and "\n" not in failed.args[0]
    assert not view.cut_button.isEnabled()
    view.stop()


def test_overlays_and_legend_on_the_canvas(qtbot, tmp_path):
    from advexplorer.gui.canvas import MaskCanvas
    from advexplorer.gui.overlays import CanvasOverlays, OverlayLegend
    from advexplorer.io.annotations import masks_from_annotations
    from advexplorer.session.masks import ImageMasks
    from PySide6.QtWidgets import QHBoxLayout, QWidget

    image = tissue(96, 128)
    geojson = tmp_path / "qupath.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"classification": {"name": "Tumor"}},
        "geometry": {"type": "Polygon", "coordinates": [[[20, 15], [90, 20], [80, 80], [25, 70], [20, 15]],
                                                        [[45, 35], [65, 40], [55, 55], [45, 35]]]}}]}))
    protect, _, _ = masks_from_annotations(geojson, (96, 128), protect_classes=["Tumor"], diagnostic_classes=[])
    masks = ImageMasks(96, 128, mode="protect")
    masks.attack.set_data(protect)
    holder = QWidget()
    row = QHBoxLayout(holder)
    canvas = MaskCanvas()
    row.addWidget(canvas, 1)
    qtbot.addWidget(holder)
    canvas.set_image(image, masks)
    assert np.array_equal(canvas.attack_item.image != 0, protect)  # the annotation is the protect mask
    overlays = CanvasOverlays(canvas)
    legend = OverlayLegend(overlays)
    row.addWidget(legend)
    holder.resize(760, 420)
    holder.show()
    if SHOTS:
        qtbot.wait(200)
        holder.grab().save(str(Path(SHOTS) / "annotation_protect_mask.png"))
    assert not legend.checks["saliency_after"].isEnabled()  # nothing to show yet
    yy, xx = np.mgrid[0:32, 0:32]
    before = np.exp(-((yy - 12) ** 2 + (xx - 10) ** 2) / 40.0)
    after = np.exp(-((yy - 20) ** 2 + (xx - 22) ** 2) / 40.0)
    overlays.set_saliency(before, after)
    perturbation = np.random.default_rng(0).uniform(-4 / 255, 4 / 255, (3, 32, 32))
    perturbation[:, 5, 5] = 8 / 255  # the largest (channel-averaged) change: the legend's scale
    overlays.set_perturbation(perturbation)
    legend.sync()
    after_item = overlays.items["saliency_after"]
    assert after_item.isVisible() and not overlays.items["saliency_before"].isVisible()
    rect = after_item.mapRectToParent(after_item.boundingRect())
    assert (rect.width(), rect.height()) == (128, 96)  # the 32×32 map covers the whole image
    assert legend.checks["saliency_after"].isChecked() and "8/255" in legend.scale_label.text()
    legend.opacity_slider.setValue(30)
    assert after_item.opacity() == pytest.approx(0.3)
    legend.checks["attack"].setChecked(False)
    assert not canvas.attack_item.isVisible()
    legend.checks["attack"].setChecked(True)
    legend.opacity_slider.setValue(70)
    if SHOTS:
        qtbot.wait(200)
        holder.grab().save(str(Path(SHOTS) / "saliency_overlay.png"))
    legend.checks["saliency_after"].setChecked(False)
    legend.checks["perturbation"].setChecked(True)
    assert overlays.items["perturbation"].isVisible() and not after_item.isVisible()
