"""``advexplorer reproduce``: a fresh run matches bit for bit; changed inputs are refused."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from make_run import make_inputs, plain_run, protect_run  # noqa: E402

from advexplorer.cli import main  # noqa: E402
from advexplorer.io.hashing import sha256_file  # noqa: E402


def cli(*argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(list(argv))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("reproduce_inputs"))


def test_a_fresh_run_is_reproduced_bit_for_bit(inputs, tmp_path, capsys):
    run_dir = protect_run(inputs, tmp_path / "run")  # masks, saliency, diagnostic region
    capsys.readouterr()
    assert cli("reproduce", str(run_dir)) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out and "bit for bit" in out and "FAIL" not in out
    for checked in ("perturbation", "adversarial.png", "prediction after", "saliency before"):
        assert checked in out


def test_a_different_result_is_a_mismatch(inputs, tmp_path, capsys):
    run_dir = plain_run(inputs, tmp_path / "run")
    perturbation = np.load(run_dir / "perturbation.npy")
    perturbation[0, 0, 0] = np.nextafter(perturbation[0, 0, 0], np.float32(1))  # one ulp
    np.save(run_dir / "perturbation.npy", perturbation)
    capsys.readouterr()
    assert cli("reproduce", str(run_dir)) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "FAIL perturbation" in out
    # A stated tolerance accepts a one-ulp difference, and says so.
    assert cli("reproduce", str(run_dir), "--tolerance", "1e-6") == 0
    assert "within tolerance 1e-06" in capsys.readouterr().out


@pytest.mark.parametrize("role", ["image", "model", "protect"])
def test_a_changed_input_is_refused(tmp_path, capsys, role):
    inputs = make_inputs(tmp_path / "inputs")
    run_dir = plain_run(inputs, tmp_path / "run") if role != "protect" else \
        plain_run_with_mask(inputs, tmp_path / "run")
    path = inputs[role]
    recorded = sha256_file(path)
    if role == "model":
        with open(path, "ab") as handle:
            handle.write(b"\0")
    else:
        array = np.array(Image.open(path))
        array.flat[0] ^= 1
        Image.fromarray(array).save(path)
    capsys.readouterr()
    assert cli("reproduce", str(run_dir)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "has changed" in error
    assert str(path) in error and recorded in error and sha256_file(path) in error


def plain_run_with_mask(inputs, out):
    from make_run import attack

    return attack(inputs, out, "--protect", str(inputs["protect"]), "--steps", "2")


def test_a_missing_input_is_refused(tmp_path, capsys):
    inputs = make_inputs(tmp_path / "inputs")
    run_dir = plain_run_with_mask(inputs, tmp_path / "run")
    moved = shutil.move(inputs["protect"], tmp_path / "elsewhere.png")
    capsys.readouterr()
    assert cli("reproduce", str(run_dir)) == 2
    error = capsys.readouterr().err
    assert "no longer exists" in error and "protect.png" in error
    assert Path(moved).exists()


# --------------------------------------------------------------------- runs made in the app


@pytest.fixture(scope="module")
def app_finished_run(inputs):
    """A run made as the desktop app makes it: painted masks, command line 'advexplorer gui'."""
    from make_run import app_run

    return app_run(inputs)


def saved_from_app(run, folder: Path) -> Path:
    from advexplorer.session.runs import write_run_folder

    return write_run_folder(folder, run.request, run.outcome, dict(run.record))


def reproduced(capsys, run_dir) -> str:
    capsys.readouterr()
    code = cli("reproduce", str(run_dir))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MATCH" in out and "FAIL" not in out
    return out


def test_a_run_saved_from_the_app_is_reproduced_with_its_painted_masks(app_finished_run, tmp_path, capsys):
    import json

    folder = saved_from_app(app_finished_run, tmp_path / "saved").resolve()
    record = json.loads((folder / "record.json").read_text())
    assert record["started_from"] == ["advexplorer", "gui"]
    command = record["command_line"]
    assert command[:2] == ["advexplorer", "attack"] and command[-2:] == ["--out", str(folder)]
    assert command[command.index("--protect") + 1] == str(folder / "source_mask.png")
    assert command[command.index("--diagnostic") + 1] == str(folder / "source_diagnostic.png")
    out = reproduced(capsys, folder)
    assert "protect mask" in out and "saliency before" in out


def test_the_recorded_command_of_an_app_run_repeats_it_exactly(app_finished_run, tmp_path):
    import json

    folder = saved_from_app(app_finished_run, tmp_path / "saved")
    command = json.loads((folder / "record.json").read_text())["command_line"]
    again = tmp_path / "again"
    assert cli(*command[1:-1], str(again), "--quiet") == 0
    for name in ("perturbation.npy", "saliency_before.npy", "saliency_after.npy"):
        assert np.array_equal(np.load(folder / name), np.load(again / name)), name
    assert np.array_equal(np.asarray(Image.open(folder / "mask.png")), np.asarray(Image.open(again / "mask.png")))


def test_an_app_run_folder_that_was_moved_is_still_reproduced(app_finished_run, tmp_path, capsys):
    folder = saved_from_app(app_finished_run, tmp_path / "saved")
    moved = shutil.move(folder, tmp_path / "archive")
    reproduced(capsys, moved)


def test_an_older_app_record_without_mask_files_uses_the_masks_in_the_folder(app_finished_run, tmp_path, capsys):
    import json

    folder = saved_from_app(app_finished_run, tmp_path / "saved")
    record = json.loads((folder / "record.json").read_text())
    # As the app wrote records before masks were stored: no mask or diagnostic file at all.
    record["mask"] = {"mode": "protect", "path": None, "sha256": None}
    record["diagnostic"] = None
    for role in ("source_mask", "source_diagnostic"):
        (folder / record["files"].pop(role)).unlink()
    (folder / "record.json").write_text(json.dumps(record))
    reproduced(capsys, folder)


def test_a_report_written_from_the_app_names_a_run_folder_that_exists(app_finished_run, inputs, tmp_path,
                                                                      capsys):
    import shlex

    from make_run import app_run

    from advexplorer.report.run import write_report_with_runs

    second = app_run(inputs, number=2, saliency=None)
    report = write_report_with_runs(tmp_path / "findings.html", [app_finished_run, second])
    html = report.read_text()
    for number in (1, 2):
        folder = (tmp_path / "findings_runs" / f"run-{number}").resolve()
        assert (folder / "record.json").is_file()
        assert shlex.join(["advexplorer", "reproduce", str(folder)]) in html
    assert "advexplorer gui" not in html and "advexplorer attack --model" in html
    reproduced(capsys, tmp_path / "findings_runs" / "run-2")
    # Writing the same report again is refused unless asked to overwrite.
    with pytest.raises(Exception, match="already exists"):
        write_report_with_runs(tmp_path / "findings.html", [app_finished_run])
    write_report_with_runs(tmp_path / "findings.html", [app_finished_run], overwrite=True)
