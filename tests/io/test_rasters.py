"""One reader of image and mask files for the GUI and the CLI, and a size limit before decoding.

The GUI reads masks and images before torch is loaded, the CLI after; both must see the same
pixels (issue 10, defect 2), and neither may decode a file whose header promises more pixels
than the stated limit (issue 18.3: a 30,000² PNG of zeros is under 1 MB on disk).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advexplorer.errors import UserError
from advexplorer.io.images import read_image_array, read_mask_array
from advexplorer.session.masks import read_mask_png


def png_bomb(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """A valid 1-bit PNG of zeros: a few hundred KB on disk, ``width × height`` pixels decoded.

    Written chunk by chunk with zlib (the encoding Pillow would produce for ``Image.new("1")``)
    so the test never holds the decoded image in memory itself.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------------------
# GUI and CLI read the same mask


def _mask_files(folder: Path) -> dict[str, Path]:
    """Mask files whose set pixels are faint or hidden in ways a grey conversion loses."""
    files = {}
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[1, 2] = (0, 0, 2)        # faint blue: luma rounds to 0
    rgb[3, 4] = (255, 255, 255)
    Image.fromarray(rgb).save(folder / "faint_rgb.png")
    files["faint_rgb"] = folder / "faint_rgb.png"

    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[1, 2] = (0, 0, 2, 255)
    rgba[2, 5] = (255, 0, 0, 255)
    rgba[4, 1] = (255, 255, 255, 0)  # invisible: fully transparent
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    files["rgba"] = folder / "rgba.png"

    sixteen = np.zeros((6, 8), np.uint16)
    sixteen[2, 2] = 1            # 1/65535: below one 8-bit level
    sixteen[5, 7] = 65535
    Image.fromarray(sixteen).save(folder / "sixteen.png")
    files["sixteen"] = folder / "sixteen.png"

    palette = Image.new("P", (8, 6), 0)
    palette.putpalette([0, 0, 0, 0, 0, 2, 255, 255, 255] + [0] * (256 * 3 - 9))
    palette.putpixel((2, 1), 1)  # palette entry (0, 0, 2)
    palette.putpixel((6, 4), 2)
    palette.save(folder / "palette.png")
    files["palette"] = folder / "palette.png"

    Image.fromarray(rgb[:, :, 2] > 0).save(folder / "bilevel.png")
    files["bilevel"] = folder / "bilevel.png"
    return files


def test_gui_and_cli_read_the_same_mask(tmp_path):
    for name, path in _mask_files(tmp_path).items():
        cli = read_mask_array(path)
        gui = read_mask_png(path, 6, 8) != 0
        assert np.array_equal(cli, gui), f"{name}: GUI and CLI disagree"


def test_mask_rule_any_colour_channel_and_not_transparent(tmp_path):
    files = _mask_files(tmp_path)
    assert read_mask_array(files["faint_rgb"])[1, 2], "(0, 0, 2) is set"
    rgba = read_mask_array(files["rgba"])
    assert rgba[1, 2] and rgba[2, 5] and not rgba[4, 1] and rgba.sum() == 2
    assert read_mask_array(files["sixteen"]).sum() == 2
    palette = read_mask_array(files["palette"])
    assert palette[1, 2] and palette[4, 6] and palette.sum() == 2


def test_gui_reader_does_not_import_torch(tmp_path):
    files = _mask_files(tmp_path)
    script = (
        "import sys\n"
        "from advexplorer.gui.imageio import image_size, read_display_image, thumbnail\n"
        "from advexplorer.session.masks import read_mask_png\n"
        f"read_display_image({str(files['rgba'])!r}); thumbnail({str(files['rgba'])!r})\n"
        f"read_mask_png({str(files['palette'])!r}, 6, 8)\n"
        "assert 'torch' not in sys.modules, 'the GUI reader imported torch'\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])


def test_display_shows_the_pixels_the_engine_reads(tmp_path):
    from advexplorer.gui.imageio import read_display_image

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    shown = read_display_image(tmp_path / "a.png")
    engine, _ = read_image_array(tmp_path / "a.png")
    assert shown.dtype == np.uint8 and shown.shape == (6, 8, 3)
    assert np.array_equal(shown.astype(np.float32) / 255, engine)


# --------------------------------------------------------------------------------------
# Decompression bombs and huge images


def test_bomb_png_is_refused_from_the_header(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVEXPLORER_MAX_IMAGE_PIXELS", raising=False)
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    message = ("bomb.png is 30000×30000 = 900 Mpx, above the 200 Mpx limit for one image; crop it, "
               "or raise ADVEXPLORER_MAX_IMAGE_PIXELS if you trust the file")
    with pytest.raises(UserError, match=message):
        read_image_array(bomb)
    with pytest.raises(UserError, match="900 Mpx"):
        read_mask_array(bomb)
    from advexplorer.gui.imageio import image_size, read_display_image, thumbnail

    with pytest.raises(UserError, match="900 Mpx"):
        image_size(bomb)
    with pytest.raises(UserError, match="900 Mpx"):
        read_display_image(bomb)
    assert thumbnail(bomb) is None


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "small.png")
    monkeypatch.setenv("ADVEXPLORER_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(UserError, match=r"small.png is 50×40 = 0.002 Mpx, above the 0.001 Mpx limit"):
        read_image_array(tmp_path / "small.png")
    monkeypatch.setenv("ADVEXPLORER_MAX_IMAGE_PIXELS", "2000")
    array, _ = read_image_array(tmp_path / "small.png")
    assert array.shape == (40, 50, 1)
    monkeypatch.setenv("ADVEXPLORER_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UserError, match="ADVEXPLORER_MAX_IMAGE_PIXELS=lots"):
        read_image_array(tmp_path / "small.png")


def test_tiff_read_by_tifffile_is_checked_before_decoding(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    values = np.zeros((40, 50, 3), np.float64)  # float RGB: beyond Pillow, read by tifffile
    tifffile.imwrite(tmp_path / "big.tif", values, photometric="rgb")
    array, _ = read_image_array(tmp_path / "big.tif")
    assert array.shape == (40, 50, 3)
    monkeypatch.setenv("ADVEXPLORER_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(UserError, match="big.tif is 50×40 = 0.002 Mpx"):
        read_image_array(tmp_path / "big.tif")


def test_large_allowed_image_says_what_it_costs(tmp_path, monkeypatch):
    # Scaled down: with a 1,000-pixel "large" threshold a 40×50 image counts as large.
    monkeypatch.setattr("advexplorer.io.rasters.LARGE_IMAGE_PIXELS", 1000)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "wide.png")
    _, notes = read_image_array(tmp_path / "wide.png")
    assert any("large image 50×40" in note and "memory" in note for note in notes), notes


def test_large_image_for_a_small_model_is_prepared_from_block_averages(tmp_path, monkeypatch):
    import torch

    from advexplorer.io.cards import parse_card
    from advexplorer.io.images import load_image, mask_to_model

    # A smooth 64×192 image whose middle 64×64 square is white; a centre-crop 8×8 model.
    ramp = np.tile(np.linspace(0, 120, 192, dtype=np.float32), (64, 1))
    pixels = np.dstack([ramp, ramp[:, ::-1], np.full_like(ramp, 60)]).round().astype(np.uint8)
    pixels[:, 64:128] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    card = parse_card({"classes": ["a", "b"], "input_size": [8, 8], "channels": 3,
                       "resize": "center-crop"})
    full = load_image(tmp_path / "wide.png", card)
    monkeypatch.setattr("advexplorer.io.rasters.LARGE_IMAGE_PIXELS", 1000)
    reduced = load_image(tmp_path / "wide.png", card)
    assert any("4×4 block averages" in note for note in reduced.notes), reduced.notes
    assert reduced.file_size == (192, 64) and reduced.original.shape == (16, 48, 3)
    assert torch.equal(reduced.tensor, full.tensor)  # the white crop, exactly, both ways
    stretch = parse_card({"classes": ["a", "b"], "input_size": [8, 24], "channels": 3})
    monkeypatch.setattr("advexplorer.io.rasters.LARGE_IMAGE_PIXELS", 10**9)
    exact = load_image(tmp_path / "wide.png", stretch).tensor
    monkeypatch.setattr("advexplorer.io.rasters.LARGE_IMAGE_PIXELS", 1000)
    assert torch.allclose(load_image(tmp_path / "wide.png", stretch).tensor, exact, atol=0.03)
    # Masks keep using the file's size and the same crop.
    mask = np.zeros((64, 192), bool)
    mask[:, 64:96] = True
    assert mask_to_model(mask, card)[:, :4].all() and not mask_to_model(mask, card)[:, 4:].any()


def test_environment_is_inherited_by_subprocesses():
    # Cohort loader workers are processes: the limit must be read at call time from the
    # environment, not frozen at import.
    env = dict(os.environ, ADVEXPLORER_MAX_IMAGE_PIXELS="123")
    out = subprocess.run([sys.executable, "-c",
                          "from advexplorer.io.rasters import max_image_pixels; print(max_image_pixels())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "123"
