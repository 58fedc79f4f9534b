"""A mask whose region is too small for the model's input says so, in the CLI and in a screen."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from advexplorer.errors import UserError
from advexplorer.io.cards import parse_card
from advexplorer.io.cohort import open_cohort
from advexplorer.io.images import load_image, load_mask

CARD = parse_card({"classes": ["a", "b"], "input_size": [16, 16], "channels": 3})


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    one = np.zeros((64, 64), np.uint8)
    one[5, 5] = 255  # between the pixels a 4× nearest-neighbour reduction samples
    Image.fromarray(one).save(tmp_path / "one_pixel.png")
    Image.fromarray(255 - one).save(tmp_path / "all_but_one.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "empty.png")
    return tmp_path


def test_one_pixel_mask_lost_in_the_resize_says_so(files):
    image = load_image(files / "images" / "a.png", CARD)
    with pytest.raises(UserError, match="allowed region vanished when resized to 16×16 — paint a "
                                        "larger region or use a model with a larger input"):
        load_mask(files / "one_pixel.png", image, CARD)
    with pytest.raises(UserError, match="vanished when resized to 16×16"):
        load_mask(files / "all_but_one.png", image, CARD, invert=True)
    with pytest.raises(UserError, match="no allowed"):  # a truly empty mask keeps its message
        load_mask(files / "empty.png", image, CARD)


def test_a_screen_skips_an_image_whose_mask_vanished_with_the_reason(files):
    cohort = open_cohort(files / "images", CARD, mask=files / "one_pixel.png")
    batches = list(cohort.loader(2, num_workers=0))
    skipped = [entry for batch in batches for entry in batch.skipped]
    assert [name for name, _ in skipped] == ["a.png"]
    assert "vanished when resized to 16×16" in skipped[0][1]


def test_an_image_too_large_for_memory_is_skipped_not_fatal(files, monkeypatch):
    from advexplorer.io import cohort as cohort_module

    (files / "images" / "b.png").write_bytes((files / "images" / "a.png").read_bytes())
    real = cohort_module.load_image

    def load(path, card):
        if path.name == "a.png":
            raise MemoryError("cannot allocate 3.6 GB")
        return real(path, card)

    monkeypatch.setattr(cohort_module, "load_image", load)
    batches = list(open_cohort(files / "images", CARD).loader(2, num_workers=0))
    assert [i for b in batches for i in b.ids] == ["b.png"]
    (name, reason), = [entry for b in batches for entry in b.skipped]
    assert name == "a.png" and "not enough memory" in reason


def test_npz_images_above_the_pixel_limit_are_refused_before_loading(tmp_path, monkeypatch):
    from advexplorer.io import cohort as cohort_module

    np.savez_compressed(tmp_path / "big.npz", test_images=np.zeros((3, 40, 50), np.uint8))
    monkeypatch.setenv("ADVEXPLORER_MAX_IMAGE_PIXELS", "1000")
    loaded = []
    real_load = cohort_module.np.load

    def watched(*args, **kwargs):
        archive = real_load(*args, **kwargs)
        real_getitem = type(archive).__getitem__

        class Watched(type(archive)):
            def __getitem__(self, key):
                loaded.append(key)
                return real_getitem(self, key)
        archive.__class__ = Watched
        return archive

    monkeypatch.setattr(cohort_module.np, "load", watched)
    with pytest.raises(UserError, match=r"Each image of test_images in big.npz is 50×40 = 0.002 Mpx, "
                                        r"above the 0.001 Mpx limit for one image"):
        open_cohort(tmp_path / "big.npz", CARD)
    assert "test_images" not in loaded  # refused from the header, nothing decompressed
