"""A cohort folder with DICOM files screens them through their own window, beside PNGs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advexplorer.io.cards import parse_card
from advexplorer.io.cohort import open_cohort
from advexplorer.io.dicom import load_dicom_image
from advexplorer.io.images import load_image

pytest.importorskip("pydicom")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_dicom import write_ct  # noqa: E402


def test_a_folder_of_dicom_and_png_loads_every_image_as_a_single_run_would(tmp_path):
    card = parse_card({"name": "tiny", "classes": ["a", "b"], "input_size": [16, 16], "channels": 3,
                       "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "stretch"})
    folder = tmp_path / "cohort"
    folder.mkdir()
    stored = np.linspace(0, 1999, 20 * 20).reshape(20, 20)
    write_ct(folder / "s1.dcm", stored, window=(40, 400))
    write_ct(folder / "s2.dicom", stored[::-1], window=None)  # no window in the file: its range
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(folder / "tile.png")
    cohort = open_cohort(folder, card)
    assert [entry.id for entry in cohort.entries] == ["s1.dcm", "s2.dicom", "tile.png"]
    batches = list(cohort.loader(8, num_workers=0))
    assert [skip for batch in batches for skip in batch.skipped] == []
    images = dict(zip(batches[0].ids, batches[0].images))
    for name in ("s1.dcm", "s2.dicom"):
        assert torch.equal(images[name], load_dicom_image(folder / name, card).tensor)
    assert torch.equal(images["tile.png"], load_image(folder / "tile.png", card).tensor)
    assert not torch.equal(images["s1.dcm"], images["s2.dicom"])
