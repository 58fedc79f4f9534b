"""Mask layers: painting, fills, bounded per-stroke undo/redo, PNG round trip."""

import numpy as np
import pytest

from advexplorer.errors import UserError
from advexplorer.session.masks import ImageMasks, MaskLayer, read_mask_png, write_mask_png
from advexplorer.session.state import Session


def test_stroke_is_one_undo_item_and_undo_redo_restore_exactly():
    layer = MaskLayer(40, 50)
    layer.begin_stroke()
    layer.paint_line(5, 5, 20, 5, radius=2)
    layer.paint_line(20, 5, 20, 30, radius=2)
    layer.end_stroke()
    painted = layer.copy()
    assert painted[5, 12] == 1 and painted[25, 20] == 1 and painted[30, 5] == 0
    assert layer.undo_depth == 1

    layer.undo()
    assert layer.is_empty
    layer.redo()
    np.testing.assert_array_equal(layer.data, painted)


def test_undo_item_stores_only_the_changed_bounding_box():
    layer = MaskLayer(1000, 1000)
    layer.paint_line(500, 500, 510, 500, radius=3)
    edit = layer.undo()
    assert (edit.bottom - edit.top, edit.right - edit.left) == (7, 17)
    assert layer.history_nbytes == edit.before.nbytes * 2 < 1000


def test_history_is_bounded_in_items_and_bytes():
    layer = MaskLayer(100, 100, history_limit=5)
    for i in range(12):
        layer.paint_line(i * 8, 10, i * 8, 10, radius=2)
    assert layer.undo_depth == 5
    big = MaskLayer(200, 200, history_bytes=200 * 200 * 2 + 10)
    big.invert()
    big.invert()
    assert big.undo_depth == 1  # each invert holds 2×40 kB; only one fits


def test_eraser_fill_rectangle_invert_clear():
    layer = MaskLayer(30, 30)
    layer.fill_rectangle(2, 2, 11, 11)
    assert layer.data[2:12, 2:12].all() and layer.data.sum() == 100
    layer.paint_line(6, 6, 6, 6, radius=1, value=0)
    assert layer.data[6, 6] == 0 and layer.data.sum() == 95
    layer.fill(20, 20)  # fills the outside region, which surrounds the square
    assert layer.data[0, 0] == 1 and layer.data[6, 6] == 0  # the hole is not connected
    layer.invert()
    assert layer.data[6, 6] == 1 and layer.data.sum() == 5
    layer.clear()
    assert layer.is_empty
    for _ in range(4):  # clear, invert, fill, eraser
        layer.undo()
    assert layer.data.sum() == 100
    layer.undo()
    assert layer.is_empty and not layer.can_undo


def test_new_edit_clears_redo():
    layer = MaskLayer(10, 10)
    layer.fill_rectangle(0, 0, 3, 3)
    layer.undo()
    layer.fill_rectangle(5, 5, 6, 6)
    assert not layer.can_redo and layer.redo() is None


def test_protect_mode_inverts_and_empty_layer_means_no_mask():
    masks = ImageMasks(8, 8, mode="protect")
    assert masks.mask_mode == "none" and masks.allowed_at_file_size() is None
    masks.attack.fill_rectangle(0, 0, 3, 7)
    allowed = masks.allowed_at_file_size()
    assert allowed[:, :4].sum() == 0 and allowed[:, 4:].all()
    masks.mode = "allowed"
    np.testing.assert_array_equal(masks.allowed_at_file_size(), masks.attack.data)
    with pytest.raises(UserError):
        masks.mode = "sometimes"


def test_snapshot_is_independent_of_later_painting():
    masks = ImageMasks(8, 8, mode="allowed")
    masks.attack.fill_rectangle(0, 0, 1, 1)
    snapshot = masks.allowed_at_file_size()
    masks.attack.clear()
    assert snapshot.sum() == 4


def test_png_round_trip_and_wrong_size(tmp_path):
    mask = np.zeros((12, 9), np.uint8)
    mask[3:7, 2:5] = 1
    path = write_mask_png(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_mask_png(path, 12, 9), mask)
    with pytest.raises(UserError, match="9×12"):
        read_mask_png(path, 10, 10)
    with pytest.raises(UserError):
        MaskLayer(10, 10).set_data(mask)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="not a readable image"):
        read_mask_png(tmp_path / "bad.png", 12, 9)


def test_session_adds_folders_without_duplicates(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    session = Session()
    seen = []
    session.current_changed.connect(seen.append)
    entries = session.add_images([tmp_path, tmp_path / "a.jpg"])
    assert [e.name for e in session.images] == ["a.jpg", "b.png"]
    assert entries[2] is session.images[0]
    assert seen == [session.images[0]]
    session.remove_images([session.images[0]])
    assert session.current.name == "b.png"


def test_folder_skips_companion_masks(tmp_path):
    from advexplorer.io.filenames import companion_masks
    from advexplorer.session.state import expand_image_paths

    for name in ("scan.png", "scan_protect.png", "scan_diagnostic.png", "other_protect.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_image_paths([tmp_path])] == ["other_protect.png", "scan.png"]
    assert set(companion_masks(tmp_path / "scan.png")) == {"protect", "diagnostic"}
