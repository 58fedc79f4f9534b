"""The run folder (advexplorer.io.runfolder): strict JSON, one-line errors, lazy arrays, and
no half-written folder even when the writer is killed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from advexplorer.errors import UserError
from advexplorer.io.runfolder import (RunArrays, RunFolder, equivalent_command, leftover_partials,
                                      record_text, write_run_folder)


def arrays(size: int = 8) -> RunArrays:
    rng = np.random.default_rng(0)
    image = rng.random((3, size, size), dtype=np.float32)
    return RunArrays(input_image=image, perturbation=np.zeros_like(image),
                     adversarial_png=(image.transpose(1, 2, 0) * 255).astype(np.uint8),
                     allowed_mask=np.ones((size, size), bool))


def strict_json(text: str):
    """Parse as strict JSON: NaN and Infinity are not JSON, and other tools reject them."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    record = {"advexplorer_record": 1, "spearman": float("nan"), "radius": [float("inf"), 0.5],
              "margin": np.float32("nan"), "nested": {"ssim": -float("inf")}}
    folder = write_run_folder(tmp_path / "run", record, arrays())
    written = strict_json((folder / "record.json").read_text())
    assert written["spearman"] is None and written["margin"] is None
    assert written["radius"] == [None, 0.5] and written["nested"] == {"ssim": None}
    assert written["files"]["input"] == "input.npy"
    assert "NaN" not in record_text({"advexplorer_record": 1, "x": math.nan})


def test_a_run_folder_reads_back_what_was_written(tmp_path):
    written = arrays()
    folder = write_run_folder(tmp_path / "run", {"advexplorer_record": 1}, written)
    run = RunFolder.open(folder)
    assert np.array_equal(run.input_image, written.input_image)
    assert np.array_equal(run.adversarial_png, written.adversarial_png)
    assert run.array("saliency_before") is None and not run.names("diagnostic")


def test_arrays_are_read_only_when_asked_for(tmp_path):
    folder = write_run_folder(tmp_path / "run", {"advexplorer_record": 1}, arrays())
    (folder / "input.npy").write_bytes(b"not an array")
    run = RunFolder.open(folder)  # the record alone is read here
    with pytest.raises(UserError) as error:
        run.input_image
    assert "input.npy" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("damage, says", [
    ("{ not json", "is not valid JSON"),
    ('{"an": "other file"}', "not an AdvExplorer run record"),
    (None, "has no record.json"),
])
def test_a_damaged_record_is_one_line_naming_the_folder(tmp_path, damage, says):
    folder = write_run_folder(tmp_path / "run", {"advexplorer_record": 1}, arrays())
    if damage is None:
        (folder / "record.json").unlink()
    else:
        (folder / "record.json").write_text(damage)
    with pytest.raises(UserError) as error:
        RunFolder.open(folder)
    message = str(error.value)
    assert says in message and str(folder) in message and "\n" not in message


def test_a_record_cannot_point_outside_its_folder(tmp_path):
    folder = write_run_folder(tmp_path / "run", {"advexplorer_record": 1}, arrays())
    record = json.loads((folder / "record.json").read_text())
    record["files"]["input"] = "../../secret.npy"
    (folder / "record.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="outside the run folder"):
        RunFolder.open(folder).input_image


def test_a_folder_is_not_replaced_without_overwrite(tmp_path):
    folder = write_run_folder(tmp_path / "run", {"advexplorer_record": 1}, arrays())
    with pytest.raises(UserError, match="not empty"):
        write_run_folder(folder, {"advexplorer_record": 2}, arrays())
    write_run_folder(folder, {"advexplorer_record": 2}, arrays(), overwrite=True)
    assert RunFolder.open(folder).record["advexplorer_record"] == 2


def test_a_writer_killed_mid_write_leaves_no_run_folder_and_the_next_write_cleans_up(tmp_path):
    destination = tmp_path / "run"
    # Kill the writer (SIGKILL: no clean-up code runs) while it writes the PNG.
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from advexplorer.io import runfolder
        runfolder._save_png = lambda path, array: os.kill(os.getpid(), signal.SIGKILL)
        image = np.zeros((3, 4, 4), np.float32)
        runfolder.write_run_folder({str(destination)!r}, {{"advexplorer_record": 1}},
            runfolder.RunArrays(image, image, np.zeros((4, 4, 3), np.uint8), np.ones((4, 4))))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()
    assert not destination.exists()
    leftovers = leftover_partials(destination)
    assert len(leftovers) == 1 and (leftovers[0] / "input.npy").is_file()
    with pytest.raises(UserError, match="unfinished run folder"):
        RunFolder.open(leftovers[0])
    write_run_folder(destination, {"advexplorer_record": 1}, arrays())
    assert RunFolder.open(destination).record["files"]["mask"] == "mask.png"
    assert leftover_partials(destination) == []


def test_the_equivalent_command_writes_fractions_and_needs_files():
    record = {"model": {"path": "/m/tiny.pt", "card_path": "/m/tiny.json"},
              "image": {"path": "/i/tile.png"}, "mask": {"mode": "protect", "path": "/i/p.png"},
              "attack": {"method": "pgd", "norm": "linf", "eps": 8 / 255, "step_size": 2 / 255,
                         "steps": 10, "seed": 3, "random_start": True, "restarts": 2},
              "label": {"index": 1}, "device": "cpu"}
    words = equivalent_command(record, out="/r/run-1")
    assert words[:4] == ["advexplorer", "attack", "--model", "/m/tiny.pt"]
    assert words[words.index("--protect") + 1] == "/i/p.png"
    assert words[words.index("--eps") + 1] == "8/255" and words[words.index("--step-size") + 1] == "2/255"
    assert "--random-start" in words and words[-2:] == ["--out", "/r/run-1"]
    # A mask painted and never saved: no command line can repeat the run.
    assert equivalent_command(record | {"mask": {"mode": "protect", "path": None}}) is None
