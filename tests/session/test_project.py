"""Projects (.advx): save and reopen round-trips masks, runs and the attack form; moved and
changed images are reported, never silently used; bad files are one clear line; nothing is
overwritten without asking and nothing is half-written."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from advexplorer.errors import UserError
from advexplorer.io.runfolder import RunArrays, RunFolder, write_run_folder
from advexplorer.session import project as projects
from advexplorer.session.project import (ImageState, ModelState, ProjectState, apply_masks, open_project,
                                         save_project, snapshot_session)
from advexplorer.session.state import Session

FORM = {"method": "pgd", "norm": "linf", "eps": "4/255", "steps": 7, "seed": 3, "early_stop": True}


def write_image(path, seed=0, size=(24, 16)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def run_writer(marker: float):
    """A run source as the GUI gives one: a function writing a run folder."""
    def write(folder):
        image = np.full((3, 8, 8), marker, dtype=np.float32)
        arrays = RunArrays(input_image=image, perturbation=np.zeros_like(image),
                           adversarial_png=np.zeros((8, 8, 3), np.uint8), allowed_mask=np.ones((8, 8), bool))
        return write_run_folder(folder, {"advexplorer_record": 1, "marker": marker}, arrays)
    return write


@pytest.fixture
def painted_session(tmp_path):
    """Two images; the first with a protect stroke and a diagnostic region (plus undo history)."""
    images = tmp_path / "images"
    images.mkdir()
    first, second = write_image(images / "a.png", 0), write_image(images / "b.png", 1)
    session = Session()
    session.add_images([first, second])
    masks = session.images[0].ensure_masks(24, 16)
    masks.attack.begin_stroke()
    masks.attack.paint_line(2, 2, 10, 8, radius=2)
    masks.attack.end_stroke()
    masks.attack.fill_rectangle(15, 1, 20, 5)
    masks.diagnostic.fill_rectangle(3, 3, 9, 9)
    masks.mode = "allowed"
    session.images[0].runs = ["run A", "run B"]  # stand-ins: run_source turns them into writers
    session.set_current(1)
    return session


def snapshot(session):
    markers = {"run A": 0.25, "run B": 0.75}
    return snapshot_session(session, model=ModelState(path=None, card={"name": "tiny", "classes": ["a", "b"]}),
                            attack_form=FORM, run_source=lambda run: run_writer(markers[run]))


def test_save_and_reopen_round_trips_masks_runs_model_and_form(tmp_path, painted_session):
    attack_before = painted_session.images[0].masks.attack.copy()
    diagnostic_before = painted_session.images[0].masks.diagnostic.copy()
    path = save_project(tmp_path / "morning", snapshot(painted_session))
    assert path.name == "morning.advx" and path.is_file()

    opened = open_project(path, runs_dir=tmp_path / "unpacked")
    assert not opened.missing and not opened.changed and not opened.problem_lines()
    state = opened.state
    assert state.attack_form == FORM and state.current_index == 1
    assert state.model.card == {"name": "tiny", "classes": ["a", "b"]}
    first = state.images[0]
    assert first.mask_mode == "allowed" and first.size == (24, 16)
    assert np.array_equal(first.attack_mask, attack_before)
    assert np.array_equal(first.diagnostic_mask, diagnostic_before)
    assert [run.record["marker"] for run in first.runs] == [0.25, 0.75]
    assert np.all(first.runs[1].input_image == 0.75)
    assert state.images[1].attack_mask is None and state.images[1].runs == []

    # Into a fresh session: the masks are the current state, with no undo history.
    session = Session()
    session.add_images([image.path for image in opened.usable_images])
    apply_masks(session.images[0], first)
    masks = session.images[0].masks
    assert masks.mode == "allowed" and np.array_equal(masks.attack.data, attack_before)
    assert not masks.attack.can_undo and not masks.diagnostic.can_undo


def test_existing_run_folders_are_stored_and_image_hashes_recorded(tmp_path):
    image = write_image(tmp_path / "a.png")
    folder = run_writer(0.5)(tmp_path / "run-1")
    path = save_project(tmp_path / "p.advx", ProjectState(images=[ImageState(path=image, runs=[folder])]))
    manifest = projects.read_project_info(path)
    assert manifest["format_version"] == projects.FORMAT_VERSION
    from advexplorer.io.hashing import sha256_file
    assert manifest["images"][0]["sha256"] == sha256_file(image)
    opened = open_project(path)
    assert isinstance(opened.state.images[0].runs[0], RunFolder)
    assert opened.state.images[0].runs[0].record["marker"] == 0.5


def test_an_existing_project_is_never_overwritten_without_overwrite(tmp_path, painted_session):
    path = save_project(tmp_path / "p.advx", snapshot(painted_session))
    before = path.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        save_project(path, ProjectState())
    assert path.read_bytes() == before
    save_project(path, ProjectState(attack_form={"steps": 1}), overwrite=True)
    assert open_project(path).state.attack_form == {"steps": 1}


def test_a_failed_save_leaves_no_file_and_no_temporary(tmp_path):
    def broken_writer(folder):
        raise UserError("the run could not be written")
    with pytest.raises(UserError, match="could not be written"):
        save_project(tmp_path / "p.advx", ProjectState(images=[ImageState(path=tmp_path / "x.png",
                                                                           runs=[broken_writer])]))
    assert list(tmp_path.iterdir()) == []


def test_moved_images_are_reported_and_found_again_by_folder(tmp_path, painted_session):
    path = save_project(tmp_path / "p.advx", snapshot(painted_session))
    moved = tmp_path / "moved" / "deeper"
    moved.parent.mkdir()
    (tmp_path / "images").rename(moved)
    opened = open_project(path)
    assert [p.path.name for p in opened.missing] == ["a.png", "b.png"]
    assert opened.usable_images == []
    assert "a.png is no longer at" in opened.problem_lines()[0]

    left = opened.relocate(tmp_path / "moved")
    assert left == []
    assert [image.path for image in opened.state.images] == [moved / "a.png", moved / "b.png"]
    assert opened.state.images[0].attack_mask is not None  # the masks come with it


def test_relocation_by_mapping_and_a_same_named_other_file_is_not_used(tmp_path, painted_session):
    path = save_project(tmp_path / "p.advx", snapshot(painted_session))
    original_a = tmp_path / "images" / "a.png"
    original_b = tmp_path / "images" / "b.png"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    original_a.rename(elsewhere / "a.png")
    original_b.unlink()
    write_image(elsewhere / "b.png", seed=99)   # same name, other content
    opened = open_project(path)
    left = opened.relocate({original_a: elsewhere / "a.png", original_b: elsewhere / "b.png"})
    assert opened.state.images[0].status == "ok"
    assert [(p.path, p.reason) for p in left] == [(elsewhere / "b.png", "changed")]


def test_a_changed_image_is_reported_not_used_and_keeps_its_old_hash(tmp_path, painted_session):
    path = save_project(tmp_path / "p.advx", snapshot(painted_session))
    saved_hash = projects.read_project_info(path)["images"][0]["sha256"]
    write_image(tmp_path / "images" / "a.png", seed=42)  # same size, other pixels
    opened = open_project(path)
    assert [(p.index, p.reason) for p in opened.changed] == [(0, "changed")]
    assert "has changed since the project was saved" in opened.problem_lines()[0]
    assert [image.path.name for image in opened.usable_images] == ["b.png"]

    # Saving again without the user's consent must not adopt the new content's hash.
    resaved = save_project(tmp_path / "again.advx", opened.state)
    assert projects.read_project_info(resaved)["images"][0]["sha256"] == saved_hash

    opened.accept_changed(0)
    assert opened.state.images[0].status == "ok" and opened.state.images[0].attack_mask is not None


def test_accepting_a_changed_image_of_another_size_drops_masks_that_no_longer_fit(tmp_path, painted_session):
    path = save_project(tmp_path / "p.advx", snapshot(painted_session))
    write_image(tmp_path / "images" / "a.png", seed=42, size=(30, 30))
    opened = open_project(path)
    opened.accept_changed(0)
    image = opened.state.images[0]
    assert image.attack_mask is None and image.size == (30, 30)


@pytest.mark.parametrize("content, message", [
    (b"just some text", "is not an AdvExplorer project (not a zip file"),
    (None, "is not an AdvExplorer project (it has no project.json"),
])
def test_a_file_that_is_not_a_project_is_one_line(tmp_path, content, message):
    path = tmp_path / "thing.advx"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(message)) as error:
        open_project(path)
    assert "\n" not in str(error.value)


def test_a_project_from_a_newer_version_says_update(tmp_path):
    path = tmp_path / "future.advx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("project.json", json.dumps({"advexplorer_project": True, "format_version": 99,
                                                      "saved_by": "AdvExplorer 9.0", "images": []}))
    with pytest.raises(UserError, match=r"newer AdvExplorer \(AdvExplorer 9.0, project format 99.*update"):
        open_project(path)


def test_a_truncated_project_is_one_line(tmp_path, painted_session):
    path = save_project(tmp_path / "p.advx", snapshot(painted_session))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as error:
        open_project(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_a_hostile_member_name_is_refused(tmp_path):
    path = tmp_path / "evil.advx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("project.json", json.dumps({"advexplorer_project": True, "format_version": 1,
                                                      "images": []}))
        archive.writestr("runs/../../escaped.txt", "x")
    with pytest.raises(UserError, match="outside the project"):
        open_project(path, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "escaped.txt").exists()
