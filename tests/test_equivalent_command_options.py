"""The recorded command line repeats a run, whatever options made it; reproduce checks the surrogate.

Each case runs ``advexplorer attack`` through the real CLI on tiny local inputs (the seeded
32×32 TorchScript CNN of ``tests/report/make_run.py``, a second one as the surrogate, a small
pyramidal TIFF, a small CT slice), takes :func:`equivalent_command` of its record, and checks

* that the command, parsed by the real ``advexplorer attack`` parser, asks for the same run:
  the same :class:`AttackConfig`, image, masks, label, surrogate, defence and precision as the
  original command line (both built by ``commands.attack.build_request``, the CLI's own code);
* that running it gives the same run folder: every field of ``record.json`` except when and
  how it was started, and the same perturbation, adversarial PNG and masks to the bit;
* that the new record's equivalent command is the same command (a fixed point).
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "report"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "io"))
from make_run import _TinyNet, make_inputs  # noqa: E402

from advexplorer.cli import attach_negative_values, build_parser, main  # noqa: E402
from advexplorer.io.hashing import sha256_file  # noqa: E402
from advexplorer.io.runfolder import equivalent_command  # noqa: E402

#: Record keys that say when and how a run was started, not what it did.
VOLATILE = ("created", "command_line", "cwd", "wall_time_s")
#: Options of ``advexplorer attack`` that cannot change the run, so the command leaves them out
#: (``--trust-pickle`` is a permission the reader must give knowingly).
NO_EFFECT = {"-h", "--help", "--report", "--overwrite", "--quiet", "--trust-pickle"}
#: Options that name another option's destination (``--defence`` is ``--defense``).
ALIASES = {"--defence"}


def cli(*argv) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny model, image and masks, a surrogate (another seed, its own card) and annotations."""
    folder = tmp_path_factory.mktemp("equivalent_inputs")
    found = make_inputs(folder)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(_TinyNet().eval(), torch.rand(1, 3, 32, 32)), folder / "surrogate.pt")
    card = json.loads(found["card"].read_text(encoding="utf-8"))
    card.update(name="surrogate", mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.25])
    (folder / "surrogate.json").write_text(json.dumps(card), encoding="utf-8")
    found["surrogate"], found["surrogate_card"] = folder / "surrogate.pt", folder / "surrogate.json"
    return found


def make_slide(folder: Path) -> dict[str, Path]:
    """A 3-level pyramidal TIFF and QuPath annotations in level-0 pixels over its level-1 tile."""
    pytest.importorskip("tiffslide")
    from slide_fixtures import tissue, write_pyramid

    path = folder / "slide.tif"
    write_pyramid(path, tissue(256, 320), levels=3, tile=64, mpp=0.25)
    geojson = folder / "tissue.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
         "geometry": {"type": "Polygon", "coordinates": [[[50, 30], [90, 30], [90, 70], [50, 70], [50, 30]]]}},
        {"type": "Feature", "properties": {"classification": {"name": "Stroma"}},
         "geometry": {"type": "Polygon", "coordinates": [[[44, 24], [60, 24], [60, 40], [44, 40], [44, 24]]]}}]}))
    return {"slide": path, "geojson": geojson}


def make_state_dict_model(folder: Path, inputs: dict[str, Path]) -> Path:
    """A small torchvision network as a state_dict: lower precisions need a plain module."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=3, width_mult=0.25).eval()
    torch.save(net.state_dict(), folder / "mobile.pt")
    card = json.loads(inputs["card"].read_text(encoding="utf-8"))
    card.update(name="mobile", architecture="torchvision.mobilenet_v3_small",
                architecture_kwargs={"num_classes": 3, "width_mult": 0.25})
    (folder / "mobile.json").write_text(json.dumps(card), encoding="utf-8")
    return folder / "mobile.pt"


def make_ct(folder: Path) -> Path:
    """A 24×20 CT slice: stored uint16, slope 2, intercept −1024, a window in the file."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    y, x = np.mgrid[0:24, 0:20]
    stored = (400 + 20 * x + 5 * y).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = stored.tobytes()
    path = folder / "ct.dcm"
    ds.save_as(str(path), enforce_file_format=True)
    return path


#: name → the options of the original command (beyond model, image, device, seed, --out).
#: Each is a few steps on a 32×32 input: seconds.
CASES = {
    "square with a query budget": ["--attack", "square", "--eps", "16/255", "--queries", "30"],
    "transfer with input diversity": ["--surrogate", "{surrogate}", "--attack", "mifgsm", "--eps", "16/255",
                                      "--steps", "3", "--diversity", "0.5", "--random-start"],
    "ensemble": ["--attack", "ensemble", "--eps", "16/255", "--steps", "2", "--queries", "12",
                 "--label", "0"],
    "defence, adaptive": ["--defense", "bits:3", "--adaptive", "bpda", "--eps", "16/255", "--steps", "3"],
    "defence, naive, at int8": ["--model", "{mobile}", "--defense", "blur:1.5", "--precision", "int8",
                                "--steps", "2"],
    "masked, targeted, L2": ["--protect", "{protect}", "--targeted", "2", "--label", "0", "--norm", "l2",
                             "--eps", "0.5", "--step-size", "0.1", "--steps", "3", "--restarts", "2",
                             "--random-start", "--early-stop", "--robustness"],
    "saliency of the label": ["--mask", "{protect}", "--saliency", "gradient", "--saliency-class", "label",
                              "--label", "1", "--diagnostic", "{diagnostic}", "--steps", "2"],
    "slide region with annotations": ["--image", "{slide}", "--region", "20,10,32,32", "--level", "1",
                                      "--annotations", "{geojson}", "--protect-classes", "Tumor",
                                      "--diagnostic-classes", "Stroma", "--saliency", "gradient",
                                      "--steps", "2"],
    "DICOM window": ["--image", "{ct}", "--dicom-window", "-100,300", "--steps", "2"],
}


def original_command(name: str, inputs: dict[str, Path], tmp_path: Path, out: Path) -> list[str]:
    options = CASES[name]
    paths = {key: str(value) for key, value in inputs.items()}
    if "{slide}" in options:
        paths.update({key: str(value) for key, value in make_slide(tmp_path).items()})
    if "{ct}" in options:
        paths["ct"] = str(make_ct(tmp_path))
    if "{mobile}" in options:
        paths["mobile"] = str(make_state_dict_model(tmp_path, inputs))
    options = [option.format(**paths) for option in options]
    image = [] if "--image" in options else ["--image", str(inputs["image"])]
    model = [] if "--model" in options else ["--model", str(inputs["model"])]
    return ["advexplorer", "attack", *model, *image, "--device", "cpu", "--seed", "7", *options,
            "--quiet", "--out", str(out)]


def parsed(words: list[str]):
    """``words`` (a whole ``advexplorer attack …`` line) as the CLI parses them (see cli.main)."""
    assert words[:2] == ["advexplorer", "attack"]
    args = build_parser("attack").parse_args(attach_negative_values(words[2:]))
    args.command_line = list(words)
    return args


def requested(words: list[str]):
    """The RunRequest the CLI builds from ``words``, and the defence/precision it wraps the model in."""
    from advexplorer.commands.attack import build_request

    args = parsed(words)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        request = build_request(args)
    info = {key: {k: v for k, v in entry.items() if not k.startswith("_")}
            for key, entry in args.defence_info.items()}
    return request, info


def same_tensor(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def assert_same_request(original, again) -> None:
    (first, first_info), (second, second_info) = original, again
    assert second.config == first.config
    assert second.config.to_json() == first.config.to_json()
    assert first_info == second_info
    assert torch.equal(second.image.tensor, first.image.tensor)
    assert second.image.path == first.image.path and second.image.provenance == first.image.provenance
    assert same_tensor(second.allowed_mask, first.allowed_mask) and second.mask_mode == first.mask_mode
    assert same_tensor(second.diagnostic_mask, first.diagnostic_mask)
    assert (second.label, second.saliency, second.saliency_class, second.robustness) == \
        (first.label, first.saliency, first.saliency_class, first.robustness)
    assert second.annotations == first.annotations
    assert (second.surrogate is None) == (first.surrogate is None)
    if first.surrogate is not None:
        assert (second.surrogate.path, second.surrogate.sha256) == (first.surrogate.path, first.surrogate.sha256)
    assert (second.model.path, second.model.card_path) == (first.model.path, first.model.card_path)


def in_folder_terms(record: dict, folder: Path) -> dict:
    """``record`` with its run folder's own path written as RUN_FOLDER."""
    return json.loads(json.dumps(record).replace(json.dumps(str(folder.resolve()))[1:-1], "RUN_FOLDER"))


def record_of(folder: Path) -> dict:
    return json.loads((folder / "record.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(CASES))
def test_the_equivalent_command_repeats_the_run(name, inputs, tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    argv = original_command(name, inputs, tmp_path, first_dir)
    assert cli(*argv[1:]) == 0
    record = record_of(first_dir)
    command = equivalent_command(record, out=second_dir)
    assert command is not None and command[-2:] == ["--out", str(second_dir)]

    # The same run, as the real parser and the CLI's own request builder read both lines.
    assert_same_request(requested(argv), requested(command))

    # Run it: the same record (but for when and how it was started) and the same arrays.
    assert cli(*command[1:]) == 0
    again = record_of(second_dir)
    assert again["command_line"] == command
    # Masks made from annotations are stored in each run folder, and the record names that copy.
    record, again = (in_folder_terms(record, first_dir), in_folder_terms(again, second_dir))
    for key in sorted(set(record) | set(again)):
        if key not in VOLATILE:
            assert again.get(key) == record.get(key), key
    for file in sorted(record["files"].values()):
        path, other = first_dir / file, second_dir / file
        if file.endswith(".npy"):
            assert np.array_equal(np.load(path), np.load(other)), file
        else:
            assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(other))), file
    assert equivalent_command(again, out=second_dir) == command


def test_the_options_that_change_the_result_are_written(inputs, tmp_path):
    """The options each case gave are in its equivalent command, with the recorded values."""
    run_dir = tmp_path / "run"
    argv = original_command("transfer with input diversity", inputs, tmp_path, run_dir)
    assert cli(*argv[1:]) == 0
    command = equivalent_command(record_of(run_dir))
    value = {option: command[command.index(option) + 1] for option in ("--surrogate", "--diversity", "--seed")}
    assert value == {"--surrogate": str(inputs["surrogate"].resolve()), "--diversity": "0.5", "--seed": "7"}
    assert "--random-start" in command and command[command.index("--attack") + 1] == "mifgsm"


def test_square_is_given_its_queries_and_other_methods_a_changed_budget():
    record = {"model": {"path": "/m/tiny.pt"}, "image": {"path": "/i/a.png"},
              "attack": {"method": "square", "norm": "linf", "eps": 8 / 255, "steps": 30, "queries": 30,
                         "seed": 1}}
    words = equivalent_command(record)
    assert words[words.index("--queries") + 1] == "30" and "--steps" not in words  # steps = queries
    pgd = dict(record, attack=dict(record["attack"], method="pgd", steps=5, queries=1000))
    words = equivalent_command(pgd)
    assert "--queries" not in words and words[words.index("--steps") + 1] == "5"
    words = equivalent_command(dict(pgd, attack=dict(pgd["attack"], queries=50)))
    assert words[words.index("--queries") + 1] == "50"


def base_record(**changes) -> dict:
    record = {"model": {"path": "/m/tiny.pt", "card_path": "/m/tiny.json",
                        "card": {"classes": ["benign", "tumour", "stroma"]}},
              "image": {"path": "/i/a.png"}, "mask": {"mode": "none", "path": None},
              "attack": {"method": "pgd", "norm": "linf", "eps": 8 / 255, "step_size": None, "steps": 10,
                         "targeted": None, "random_start": False, "seed": 1, "restarts": 1,
                         "early_stop": False, "decay": 1.0, "queries": 1000, "diversity": 0.0},
              "label": None, "target": None, "device": "cpu"}
    record.update(changes)
    return record


def test_records_no_command_line_can_express_give_none():
    attack = base_record()["attack"]
    # MI-FGSM's momentum decay has no option (0 too: it is not the default 1.0) ...
    for decay in (0.0, 0.9):
        assert equivalent_command(base_record(attack=dict(attack, method="mifgsm", decay=decay))) is None
    # ... and no other attack reads it, so a PGD record that carries one still has its command.
    assert equivalent_command(base_record(attack=dict(attack, decay=0.9))) is not None
    # Annotation classes the comma-separated option cannot spell.
    annotations = {"path": "/a/t.geojson", "protect_classes": ["Tumor, grade 2"], "diagnostic_classes": []}
    assert equivalent_command(base_record(annotations=annotations,
                                          mask={"mode": "protect", "path": None})) is None


def test_a_class_named_like_an_index_is_given_by_its_name():
    """--label 0 would mean the class *named* "0"; the card matches names before indices."""
    record = base_record(label={"index": 0, "name": "1"})
    record["model"]["card"]["classes"] = ["1", "0", "2"]
    words = equivalent_command(record)
    assert words[words.index("--label") + 1] == "1"
    from advexplorer.io.cards import ModelCard

    card = ModelCard(name="t", classes=("1", "0", "2"), input_size=(8, 8), channels=3,
                     mean=(0.0,) * 3, std=(1.0,) * 3)
    assert card.class_index(words[words.index("--label") + 1]) == 0
    # Plain names: the index is written.
    words = equivalent_command(base_record(label={"index": 2, "name": "stroma"}))
    assert words[words.index("--label") + 1] == "2"


def test_a_file_window_and_a_naive_defence_add_no_options():
    image = {"path": "/i/ct.dcm", "dicom": {"window": [40.0, 400.0], "window_source": "file"}}
    words = equivalent_command(base_record(image=image, defence={"defence": "jpeg:75", "adaptive": "none"},
                                           precision={"precision": "float32"}))
    assert "--dicom-window" not in words and "--adaptive" not in words and "--precision" not in words
    assert words[words.index("--defense") + 1] == "jpeg:75"


def test_every_option_of_attack_is_written_back_or_has_no_effect():
    """A new option of ``advexplorer attack`` fails this until equivalent_command handles it."""
    parser = build_parser("attack")
    options = {text for action in parser._actions for text in action.option_strings}
    annotations = {"path": "/a/t.geojson", "sha256": "0" * 64, "protect_classes": ["Tumor"],
                   "diagnostic_classes": ["Stroma"]}
    attack = dict(base_record()["attack"], method="mifgsm", step_size=1 / 255, targeted=2, random_start=True,
                  restarts=2, early_stop=True, queries=50, diversity=0.5)
    slide = base_record(
        image={"path": "/s/slide.tif", "region": {"x": 1, "y": 2, "w": 32, "h": 32, "level": 1},
               "dicom": {"window": [-100.0, 300.0], "window_source": "given"}},
        mask={"mode": "protect", "path": None}, annotations=annotations, attack=attack,
        label={"index": 0}, target={"index": 2}, saliency={"method": "gradient"}, saliency_class="label",
        transfer={"surrogate": {"path": "/m/surrogate.pt", "sha256": "0" * 64}},
        defence={"defence": "bits:3", "adaptive": "bpda"}, precision={"precision": "int8"})
    masked = base_record(mask={"mode": "allowed", "path": "/i/allowed.png"}, robustness={},
                         diagnostic={"path": "/i/d.png", "sha256": "0" * 64})
    protected = base_record(mask={"mode": "protect", "path": "/i/p.png"})
    written = set()
    for record in (slide, masked, protected):
        words = equivalent_command(record)
        written |= {word for word in words if word.startswith("--")}
        parsed(words)  # each is a valid command line
    assert options - written - NO_EFFECT - ALIASES == set()


# --------------------------------------------------------------------- reproduce and the surrogate


@pytest.fixture
def own_inputs(tmp_path):
    """Inputs this test may change (the module's are shared)."""
    return make_inputs(tmp_path / "inputs")


def transfer_run(inputs, surrogate: Path, out: Path) -> Path:
    argv = original_command("transfer with input diversity", inputs | {"surrogate": surrogate}, out.parent, out)
    assert cli(*argv[1:]) == 0
    return out


def copy_surrogate(inputs, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(inputs["surrogate"], folder / "surrogate.pt")
    shutil.copy(inputs["surrogate_card"], folder / "surrogate.json")
    return folder / "surrogate.pt"


def test_a_transfer_run_records_its_surrogate_and_reproduce_checks_it(inputs, tmp_path, capsys):
    surrogate = copy_surrogate(inputs, tmp_path / "models")
    run_dir = transfer_run(inputs, surrogate, tmp_path / "run")
    entry = record_of(run_dir)["transfer"]["surrogate"]
    assert entry["sha256"] == sha256_file(surrogate)
    assert entry["card_path"] == str(surrogate.with_suffix(".json").resolve())
    assert entry["card_sha256"] == sha256_file(surrogate.with_suffix(".json"))
    capsys.readouterr()
    assert cli("reproduce", run_dir) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out and "surrogate model, surrogate card" in out


@pytest.mark.parametrize("changed", ["surrogate model", "surrogate card"])
def test_reproduce_refuses_a_surrogate_changed_after_the_run(inputs, tmp_path, capsys, changed):
    surrogate = copy_surrogate(inputs, tmp_path / "models")
    run_dir = transfer_run(inputs, surrogate, tmp_path / "run")
    path = surrogate if changed == "surrogate model" else surrogate.with_suffix(".json")
    recorded = sha256_file(path)
    if changed == "surrogate model":
        # Another network of the same shape in the same place: it would craft another attack.
        torch.manual_seed(5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(_TinyNet().eval(), torch.rand(1, 3, 32, 32)), path)
    else:
        card = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(card | {"std": [0.3, 0.3, 0.3]}), encoding="utf-8")
    capsys.readouterr()
    assert cli("reproduce", run_dir) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"the {changed} {path.resolve()} has changed" in captured.err
    assert recorded in captured.err and sha256_file(path) in captured.err


def test_reproduce_refuses_a_surrogate_that_is_gone(inputs, tmp_path, capsys):
    surrogate = copy_surrogate(inputs, tmp_path / "models")
    run_dir = transfer_run(inputs, surrogate, tmp_path / "run")
    surrogate.unlink()
    capsys.readouterr()
    assert cli("reproduce", run_dir) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "surrogate model" in error and "no longer exists" in error


def test_a_model_folder_is_checked_by_the_loader_s_hash(tmp_path):
    """A Hugging Face folder (model or surrogate) is hashed as the loader hashes it, not refused."""
    from advexplorer.commands.reproduce import check_inputs
    from advexplorer.errors import UserError
    from advexplorer.io.models import _model_sha256

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    record = {"model": {"path": str(folder), "sha256": _model_sha256(folder)},
              "image": {"path": str(image), "sha256": sha256_file(image)},
              "transfer": {"surrogate": {"path": str(folder), "sha256": _model_sha256(folder)}}}
    assert check_inputs(record) == ["model", "image", "surrogate model"]
    (folder / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(UserError, match="the surrogate model .* has changed"):
        check_inputs(record)
