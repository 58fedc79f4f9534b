"""Each image's DICOM window and model crop in a project file (format 2): written, read back,
and left at their defaults when absent (format 1) or not usable."""

from __future__ import annotations

import json
import zipfile

import numpy as np
from PIL import Image

from advexplorer.session.project import (FORMAT_VERSION, ImageState, ProjectState, open_project,
                                         save_project)


def write_png(path, size_wh):
    Image.fromarray(np.zeros((size_wh[1], size_wh[0], 3), np.uint8)).save(path)
    return path


def test_dicom_window_and_crop_round_trip_and_bad_values_are_dropped(tmp_path):
    a, b = write_png(tmp_path / "a.png", (32, 24)), write_png(tmp_path / "b.png", (20, 20))
    state = ProjectState(images=[ImageState(path=a, size=(32, 24), dicom_window=(-600.0, 1500.0), crop=(2, 6, 18, 18)),
                                 ImageState(path=b, size=(20, 20))])
    path = save_project(tmp_path / "p.advx", state)
    manifest = json.loads(zipfile.ZipFile(path).read("project.json"))
    assert manifest["format_version"] == FORMAT_VERSION == 3
    assert manifest["images"][0]["dicom_window"] == [-600.0, 1500.0] and manifest["images"][0]["crop"] == [2, 6, 18, 18]
    assert manifest["images"][1]["dicom_window"] is None and manifest["images"][1]["crop"] is None
    images = open_project(path).state.images
    assert images[0].dicom_window == (-600.0, 1500.0) and images[0].crop == (2, 6, 18, 18)
    assert images[1].dicom_window is None and images[1].crop is None

    # A hand-edited or damaged entry: a window of width 0, a crop outside the 20×20 image.
    manifest["images"][1].update(dicom_window=[40, 0], crop=[10, 10, 16, 16])
    manifest["images"][0].update(dicom_window=["40", 400], crop=[2, 6, 18])
    with zipfile.ZipFile(tmp_path / "edited.advx", "w") as archive:
        archive.writestr("project.json", json.dumps(manifest))
    edited = open_project(tmp_path / "edited.advx").state.images
    assert [(image.dicom_window, image.crop) for image in edited] == [(None, None), (None, None)]


def test_a_format_1_file_without_the_keys_opens_with_none(tmp_path):
    a = write_png(tmp_path / "a.png", (32, 24))
    manifest = {"advexplorer_project": True, "format_version": 1, "attack_form": {"steps": 3},
                "images": [{"path": str(a), "size": [32, 24]}]}
    with zipfile.ZipFile(tmp_path / "old.advx", "w") as archive:
        archive.writestr("project.json", json.dumps(manifest))
    opened = open_project(tmp_path / "old.advx")
    assert opened.state.images[0].dicom_window is None and opened.state.images[0].crop is None
    assert opened.state.attack_form == {"steps": 3} and opened.usable_images


def test_a_changed_image_of_another_size_loses_its_crop(tmp_path):
    a = write_png(tmp_path / "a.png", (32, 24))
    path = save_project(tmp_path / "p.advx", ProjectState(images=[ImageState(path=a, size=(32, 24), crop=(0, 0, 16, 16))]))
    write_png(a, (40, 40))  # replaced by another picture
    opened = open_project(path)
    assert opened.state.images[0].status == "changed"
    opened.accept_changed(0)
    assert opened.state.images[0].crop is None and opened.state.images[0].size == (40, 40)
