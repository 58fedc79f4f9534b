"""Images and masks reach the model exactly as the card says, whatever the file holds."""

import numpy as np
import pytest
import torch
from PIL import Image

from advexplorer.errors import UserError
from advexplorer.io.cards import parse_card
from advexplorer.io.images import load_image, load_mask, mask_to_model, read_image_array, save_mask_png

RGB_CARD = parse_card({"classes": ["a", "b"], "input_size": [16, 16], "channels": 3})
GRAY_CARD = parse_card({"classes": ["a", "b"], "input_size": [16, 16], "channels": 1})
CROP_CARD = parse_card({"classes": ["a", "b"], "input_size": [16, 16], "channels": 3, "resize": "center-crop"})


def rgb_pattern(height=16, width=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_8bit_rgb_at_input_size_is_exact(tmp_path):
    pixels = rgb_pattern()
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png", RGB_CARD)
    assert image.tensor.shape == (3, 16, 16) and image.tensor.dtype == torch.float32
    assert torch.equal(image.tensor, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert image.file_size == (16, 16) and len(image.sha256) == 64


def test_16bit_grayscale_png(tmp_path):
    values = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)
    Image.fromarray(values).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png", GRAY_CARD)
    assert image.tensor.shape == (1, 16, 16)
    assert torch.allclose(image.tensor[0], torch.from_numpy(values.astype(np.float32) / 65535), atol=1e-6)
    assert any("16-bit" in note for note in image.notes)


def test_16bit_rgb_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    values = (rgb_pattern().astype(np.uint16) * 257)
    tifffile.imwrite(tmp_path / "rgb16.tif", values)
    image = load_image(tmp_path / "rgb16.tif", RGB_CARD)
    assert torch.allclose(image.tensor, torch.from_numpy(values / 65535.0).permute(2, 0, 1).float(), atol=1e-6)


def test_rgba_alpha_dropped_with_a_note(tmp_path):
    pixels = np.dstack([rgb_pattern(), np.full((16, 16), 7, np.uint8)])
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png", RGB_CARD)
    assert image.tensor.shape == (3, 16, 16)
    assert "alpha channel dropped" in image.notes


def test_channel_conversion_both_ways(tmp_path):
    Image.fromarray(rgb_pattern()).save(tmp_path / "c.png")
    gray = load_image(tmp_path / "c.png", GRAY_CARD)
    pixels = rgb_pattern().astype(np.float32) / 255
    luma = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    assert torch.allclose(gray.tensor[0], torch.from_numpy(luma), atol=1e-5)
    Image.fromarray(rgb_pattern()[:, :, 0]).save(tmp_path / "l.png")
    rgb = load_image(tmp_path / "l.png", RGB_CARD)
    assert torch.equal(rgb.tensor[0], rgb.tensor[2])


def test_jpeg_and_resize_stretch(tmp_path):
    Image.fromarray(rgb_pattern(40, 64)).save(tmp_path / "a.jpg", quality=95)
    image = load_image(tmp_path / "a.jpg", RGB_CARD)
    assert image.tensor.shape == (3, 16, 16)
    assert image.original.shape == (40, 64, 3)
    assert 0.0 <= float(image.tensor.min()) and float(image.tensor.max()) <= 1.0


def test_center_crop_keeps_the_middle_and_masks_follow(tmp_path):
    # A 16×48 image whose middle 16×16 square is white: the crop must be exactly that square.
    pixels = np.zeros((16, 48, 3), np.uint8)
    pixels[:, 16:32] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = load_image(tmp_path / "wide.png", CROP_CARD)
    assert torch.all(image.tensor == 1.0)
    mask = np.zeros((16, 48), bool)
    mask[:, 20:24] = True
    model_mask = mask_to_model(mask, CROP_CARD)
    assert model_mask.shape == (16, 16)
    assert torch.equal(model_mask[:, 4:8], torch.ones(16, 4)) and model_mask.sum() == 64


def test_mask_resized_with_nearest_neighbour(tmp_path):
    mask = np.zeros((32, 32), bool)
    mask[:16] = True
    model_mask = mask_to_model(mask, RGB_CARD)
    assert set(model_mask.unique().tolist()) <= {0.0, 1.0}
    assert model_mask[:8].all() and not model_mask[8:].any()


def test_protect_mask_is_inverted_and_mask_must_match_image(tmp_path):
    Image.fromarray(rgb_pattern()).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png", RGB_CARD)
    protect = np.zeros((16, 16), np.uint8)
    protect[4:8, 4:8] = 255
    Image.fromarray(protect).save(tmp_path / "p.png")
    allowed = load_mask(tmp_path / "p.png", image, RGB_CARD, invert=True)
    assert allowed[4:8, 4:8].sum() == 0 and allowed.sum() == 256 - 16
    Image.fromarray(protect[:8]).save(tmp_path / "small.png")
    with pytest.raises(UserError, match="16×8 pixels but the image a.png is 16×16"):
        load_mask(tmp_path / "small.png", image, RGB_CARD)


def test_empty_allowed_region_is_an_error(tmp_path):
    Image.fromarray(rgb_pattern()).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png", RGB_CARD)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="no allowed"):
        load_mask(tmp_path / "empty.png", image, RGB_CARD)
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "full.png")
    with pytest.raises(UserError, match="covers the whole image"):
        load_mask(tmp_path / "full.png", image, RGB_CARD, invert=True)


def test_corrupt_truncated_and_missing_images(tmp_path):
    Image.fromarray(rgb_pattern(64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("this is not an image")
    for name in ("cut.png", "text.png"):
        with pytest.raises(UserError, match="not an image|truncated or corrupt"):
            read_image_array(tmp_path / name)
    with pytest.raises(UserError, match="No image file"):
        read_image_array(tmp_path / "absent.png")


def test_save_mask_png_round_trip(tmp_path):
    mask = torch.zeros(16, 16)
    mask[2:5] = 1
    save_mask_png(tmp_path / "m.png", mask)
    back = np.asarray(Image.open(tmp_path / "m.png"))
    assert back.dtype == np.uint8 and set(np.unique(back)) == {0, 255}
    assert np.array_equal(back != 0, mask.numpy() != 0)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temporary file left behind
