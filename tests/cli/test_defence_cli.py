"""``advexplorer attack --defense … --adaptive …``: the record and the summary show naive and adaptive."""

from __future__ import annotations

import json

from advexplorer.cli import main


def test_bit_depth_defence_holds_naively_and_falls_to_bpda_in_the_record(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["attack", "--defense", "bits:3", "--adaptive", "bpda", "--eps", "8/255", "--steps", "10",
                 "--seed", "0", "--out", str(out), "--device", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    assert "defence  bit-depth reduction (bits 3): naive attack fails" in text and "bpda attack succeeds" in text
    record = json.loads((out / "record.json").read_text())
    assert record["defence"]["defence"] == "bits:3"
    assert record["defence"]["naive"]["success"] is False
    assert record["defence"]["adaptive_result"]["success"] is True
    assert record["success"] is True  # the run itself is the adaptive attack


def test_defence_options_are_refused_in_one_line(tmp_path, capsys):
    for extra, message in ((["--defense", "jpeg:0"], "from 1 to 100"), (["--adaptive", "bpda"], "add --defense")):
        code = main(["attack", *extra, "--out", str(tmp_path / "never"), "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_a_defended_run_reproduces_behind_the_same_defence(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["attack", "--defense", "jpeg:75", "--adaptive", "bpda", "--eps", "8/255", "--steps", "5",
                 "--seed", "0", "--quiet", "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["reproduce", str(out)]) == 0   # without the defence the attack would succeed now
    assert "MISMATCH" not in capsys.readouterr().out
