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
