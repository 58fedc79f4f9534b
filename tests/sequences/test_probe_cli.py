"""``advexplorer probe``: the run folder, the report, the screen and the one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from advexplorer.cli import main
from advexplorer.io.hashing import sha256_file
from advexplorer.io.sequences import DEMO_SEQUENCE_MODEL, SAMPLE_FASTA


def test_probe_writes_record_and_report(tmp_path, capsys, showcase, loop):
    out = tmp_path / "run"
    code = main(["probe", "--record", showcase.name, "--positions", loop, "--scan", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "dehydrogenase" in printed and "Y49H" in printed and "+HExxH HEDKH at 45" in printed
    record = json.loads((out / "record.json").read_text())
    assert record["model"]["sha256"] == sha256_file(DEMO_SEQUENCE_MODEL)
    assert record["fasta"]["sha256"] == sha256_file(SAMPLE_FASTA)
    assert record["settings"]["substitutions"]["rule"] == "blosum62"
    [result] = record["results"]
    assert result["allowed_positions"] == loop
    assert result["success"] and result["minimal"]
    assert result["prediction_after"]["class"] == "metalloprotease"
    [substitution] = result["substitutions"]
    assert (substitution["position"], substitution["from"], substitution["to"], substitution["blosum62"]) == \
        (49, "Y", "H", 2)
    assert substitution["probability_before"] > 0.9 > substitution["probability_after"]
    assert result["scan"]["flips"] >= 1 and result["scan"]["strongest_flips"][0] == "Y49H"
    assert len(result["scan"]["delta"]) == len(showcase.sequence)
    assert len(result["saliency"]["before"]) == len(showcase.sequence)
    page = (out / "report.html").read_text()
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert "Y49H" in page and "HExxH" in page


def test_screen_reports_wilson_intervals(tmp_path, capsys):
    out = tmp_path / "screen"
    assert main(["probe", "--screen", "--max-subs", "2", "--quiet", "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    rows = record["screen"]["per_k"]
    assert [r["k"] for r in rows] == [1, 2] and rows[0]["n"] == len(record["results"])
    for row in rows:
        low, high = row["ci95"]
        assert 0 <= low <= row["fraction"] <= high <= 1
    assert rows[0]["flippable"] <= rows[1]["flippable"]
    assert "saliency" not in record["results"][0]


@pytest.mark.parametrize("arguments, message", [
    (["--fasta", "{bad}"], "letters the model does not know: 'X' at 3"),
    (["--positions", "90-99"], "past the end"),
    (["--substitutions", "{table}", "--positions", "1-3"], "allows no change"),
    (["--record", "nope"], "no record named nope"),
    (["--target", "kinase"], "Unknown class 'kinase'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, arguments, message):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">x\nACXDE\n")
    table = tmp_path / "table.json"
    table.write_text('{"W": "F"}')
    arguments = [a.format(bad=bad, table=table) for a in arguments]
    out = tmp_path / "out"
    assert main(["probe", *arguments, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    error = lines[-1]
    assert re.match(r"advexplorer( probe)?: error: ", error) and message in error
    assert not out.exists() or not any(out.iterdir())


def test_reproduce_same_differs_and_changed_inputs(tmp_path, capsys, showcase, loop):
    run = tmp_path / "run"
    assert main(["probe", "--record", showcase.name, "--positions", loop, "--saliency", "none",
                 "--quiet", "--out", str(run)]) == 0
    assert main(["probe", "--reproduce", str(run)]) == 0
    assert "same result" in capsys.readouterr().out

    record = json.loads((run / "record.json").read_text())
    record["results"][0]["substitutions"][0]["label"] = "Y49W"   # a record that no longer matches
    (run / "record.json").write_text(json.dumps(record))
    assert main(["probe", "--reproduce", str(run)]) == 1
    assert "recorded ['Y49W']" in capsys.readouterr().out

    record["model"]["sha256"] = "0" * 64
    (run / "record.json").write_text(json.dumps(record))
    assert main(["probe", "--reproduce", str(run)]) == 2
    assert "changed since the probe was recorded" in capsys.readouterr().err
