"""Cohort inputs: folders, ImageFolder labels, .npz, masks, unreadable files, per_image.csv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from advexplorer.core.screening import ImageRow
from advexplorer.errors import UserError
from advexplorer.io.cards import parse_card
from advexplorer.io.cohort import PerImageWriter, csv_columns, open_cohort, read_per_image_csv
from advexplorer.io.images import load_image, load_mask


@pytest.fixture
def card():
    return parse_card({"name": "tiny", "classes": ["Tumour", "Stroma", "Debris"], "input_size": [16, 16],
                       "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "stretch"})


def write_image(path, seed, size=(20, 24)):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def write_mask(path, size=(20, 24), columns=slice(0, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros(size, dtype=np.uint8)
    mask[:, columns] = 255
    Image.fromarray(mask).save(path)
    return path


def collect(loader):
    batches = list(loader)
    ids = [i for b in batches for i in b.ids]
    skipped = [s for b in batches for s in b.skipped]
    return batches, ids, skipped


def test_folder_preprocesses_like_a_single_run(tmp_path, card):
    images = tmp_path / "images"
    for k in range(5):
        write_image(images / f"tile{k}.png", k)
        write_mask(tmp_path / "protect" / f"tile{k}.png")
    (images / "notes.txt").write_text("not an image")
    cohort = open_cohort(images, card, protect_dir=tmp_path / "protect")
    assert cohort.layout == "folder" and not cohort.has_labels and cohort.mask_mode == "protect"
    assert any("notes.txt" in note for note in cohort.notes)
    batches, ids, skipped = collect(cohort.loader(2, num_workers=0))
    assert ids == [f"tile{k}.png" for k in range(5)] and not skipped
    assert [len(b) for b in batches] == [2, 2, 1] and batches[0].labels is None
    single = load_image(images / "tile3.png", card)
    protect = load_mask(tmp_path / "protect" / "tile3.png", single, card, invert=True)
    assert torch.equal(batches[1].images[1], single.tensor)
    assert torch.equal(batches[1].allowed_masks[1], protect)


def test_workers_deliver_the_same_batches(tmp_path, card):
    for k in range(6):
        write_image(tmp_path / "images" / f"t{k}.png", k)
    cohort = open_cohort(tmp_path / "images", card)
    main_batches, main_ids, _ = collect(cohort.loader(4, num_workers=0))
    worker_batches, worker_ids, _ = collect(cohort.loader(4, num_workers=2))
    assert main_ids == worker_ids
    for a, b in zip(main_batches, worker_batches):
        assert torch.equal(a.images, b.images)


def test_imagefolder_labels_match_card_classes_case_insensitively(tmp_path, card):
    write_image(tmp_path / "data" / "tumour" / "a.png", 1)
    write_image(tmp_path / "data" / "STROMA" / "b.png", 2)
    write_image(tmp_path / "data" / "2" / "c.png", 3)  # a class index works too
    cohort = open_cohort(tmp_path / "data", card)
    assert cohort.layout == "imagefolder" and cohort.has_labels
    batches, ids, _ = collect(cohort.loader(8, num_workers=0))
    labels = dict(zip(ids, batches[0].labels.tolist()))
    assert labels == {"2/c.png": 2, "STROMA/b.png": 1, "tumour/a.png": 0}


def test_unknown_class_folder_is_named(tmp_path, card):
    write_image(tmp_path / "data" / "tumour" / "a.png", 1)
    write_image(tmp_path / "data" / "necrosis" / "b.png", 2)
    with pytest.raises(UserError, match="necrosis.*Tumour, Stroma, Debris"):
        open_cohort(tmp_path / "data", card)


def test_npz_images_and_labels(tmp_path, card):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", test_images=images, test_labels=np.array([[0], [1], [2], [0], [1], [2], [0]]),
             train_images=images[:2])
    cohort = open_cohort(tmp_path / "set.npz", card)
    assert cohort.layout == "npz" and cohort.has_labels
    batches, ids, _ = collect(cohort.loader(4, num_workers=0))
    assert ids[0] == "set#00000" and len(ids) == 7
    assert batches[0].labels.tolist() == [0, 1, 2, 0]
    expected = torch.from_numpy(images[5].astype(np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(batches[1].images[1], expected)  # already at input size: exact pixels


def test_npz_grayscale_and_index_masks(tmp_path, card):
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    np.savez(tmp_path / "grey.npz", test_images=images)
    for k in range(3):
        write_mask(tmp_path / "masks" / f"{k:05d}.png", size=(16, 16), columns=slice(0, 4 + k))
    cohort = open_cohort(tmp_path / "grey.npz", card, masks_dir=tmp_path / "masks")
    batches, ids, _ = collect(cohort.loader(3, num_workers=0))
    assert batches[0].images.shape == (3, 3, 16, 16) and batches[0].labels is None
    assert batches[0].allowed_masks[2].sum().item() == 16 * 6


def test_npz_problems_are_explained(tmp_path, card):
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(UserError, match="no 'test_images'.*train_images"):
        open_cohort(tmp_path / "bad.npz", card)
    np.savez(tmp_path / "labels.npz", test_images=np.zeros((2, 8, 8), np.uint8), test_labels=np.array([0, 7]))
    with pytest.raises(UserError, match="class indices 7"):
        open_cohort(tmp_path / "labels.npz", card)


def test_mismatched_mask_names_are_listed(tmp_path, card):
    for name in ("a", "b", "c"):
        write_image(tmp_path / "images" / f"{name}.jpg", ord(name))
    write_mask(tmp_path / "masks" / "a.png")          # a.jpg finds a.png
    write_mask(tmp_path / "masks" / "b_mask.png")     # named differently
    with pytest.raises(UserError) as error:
        open_cohort(tmp_path / "images", card, masks_dir=tmp_path / "masks")
    message = str(error.value)
    assert "2 of 3" in message and "b.jpg" in message and "c.jpg" in message
    assert "image(s): b.jpg, c.jpg." in message and "match no image: b_mask.png" in message


def test_unreadable_images_are_skipped_with_reason(tmp_path, card):
    write_image(tmp_path / "images" / "good.png", 0)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    write_image(tmp_path / "images" / "also_good.png", 1)
    cohort = open_cohort(tmp_path / "images", card)
    _, ids, skipped = collect(cohort.loader(2, num_workers=0))
    assert ids == ["also_good.png", "good.png"]
    assert [name for name, _ in skipped] == ["broken.png"] and skipped[0][1]


def test_empty_and_missing_sources(tmp_path, card):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        open_cohort(tmp_path / "empty", card)
    with pytest.raises(UserError, match="No images at"):
        open_cohort(tmp_path / "nowhere", card)
    write_image(tmp_path / "one" / "x.png", 0)
    with pytest.raises(UserError, match="mask folder"):
        open_cohort(tmp_path / "one", card, masks_dir=tmp_path / "no_masks")


def test_one_mask_for_all_and_fingerprint(tmp_path, card):
    for k in range(3):
        write_image(tmp_path / "images" / f"t{k}.png", k)
    write_mask(tmp_path / "allowed.png")
    cohort = open_cohort(tmp_path / "images", card, mask=tmp_path / "allowed.png")
    batches, _, _ = collect(cohort.loader(3, num_workers=0))
    assert torch.equal(batches[0].allowed_masks[0], batches[0].allowed_masks[2])
    first = cohort.fingerprint()
    write_image(tmp_path / "images" / "t1.png", 99)
    assert open_cohort(tmp_path / "images", card, mask=tmp_path / "allowed.png").fingerprint() != first


def test_per_image_csv_round_trip_and_cut_line(tmp_path, card):
    eps = (0.0, 2 / 255, 8 / 255)
    rows = [ImageRow(file="a,b.png", label=1, clean_prediction=1, clean_probability=0.75,
                     adversarial_prediction=[1, 1, 2], adversarial_probability=[0.75, 0.6, 0.5],
                     flipped=[False, False, True], attacked=[False, True, True],
                     linf=[0.0, 2 / 255, 8 / 255], l2=[0.0, 0.1, 0.3], flip_eps=8 / 255, min_eps=0.02,
                     noise_flipped=[False, False, False]),
            ImageRow(file="c.png", label=None, clean_prediction=0, clean_probability=0.5,
                     adversarial_prediction=[0, 0, 0], adversarial_probability=[0.5] * 3,
                     flipped=[False] * 3, attacked=[False, True, True], linf=[0.0] * 3, l2=[0.0] * 3,
                     noise_flipped=[False, True, True])]
    path = tmp_path / "per_image.csv"
    with PerImageWriter(path, eps, card.classes, noise_baseline=True, min_eps=True) as writer:
        writer.write(rows)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("d.png,Tumour,0,Tum")  # what Ctrl-C in the middle of a line leaves
    back = read_per_image_csv(path, eps, card.classes, noise_baseline=True, min_eps=True)
    assert [r.file for r in back] == ["a,b.png", "c.png"]
    assert back[0].flipped == rows[0].flipped and back[0].adversarial_prediction == [1, 1, 2]
    assert back[0].min_eps == pytest.approx(0.02) and back[1].label is None
    assert back[1].noise_flipped == [False, True, True]
    assert "d.png" not in path.read_text()
    assert path.read_text().splitlines()[0].split(",") == csv_columns(eps, noise_baseline=True, min_eps=True)
    with pytest.raises(UserError, match="other ε values"):
        read_per_image_csv(path, (0.0, 4 / 255), card.classes, noise_baseline=True, min_eps=True)


def test_loader_falls_back_to_the_main_process(tmp_path, card, monkeypatch):
    """If worker processes cannot start, every image still arrives once, with a note."""
    from advexplorer.io import cohort as cohort_module

    for k in range(5):
        write_image(tmp_path / "images" / f"t{k}.png", k)
    real = cohort_module.DataLoader

    class NoWorkers(real):
        def __iter__(self):
            if self.num_workers > 0:
                raise RuntimeError("DataLoader worker (pid 1) exited unexpectedly")
            return super().__iter__()

    monkeypatch.setattr(cohort_module, "DataLoader", NoWorkers)
    loader = open_cohort(tmp_path / "images", card).loader(2, num_workers=2)
    _, ids, _ = collect(loader)
    assert ids == [f"t{k}.png" for k in range(5)]
    assert any("main process" in note for note in loader.notes)


def test_companion_masks_beside_images_are_not_screened_as_images():
    from advexplorer import paths
    from advexplorer.io.cards import load_card

    card = load_card(paths.MODELS_DIR / "histology_standard.json")
    cohort = open_cohort(paths.SAMPLES_DIR / "histology", card)
    names = [entry.id for entry in cohort.entries]
    assert len(names) == 6 and not any("_protect" in n or "_diagnostic" in n for n in names)
    assert any("companion mask" in note for note in cohort.notes)
