"""A run through a defence: the HTML and PDF reports show the naive and the adaptive outcome
side by side and say what they mean together."""

from __future__ import annotations

import json

import pytest

from advexplorer.report import write_report
from advexplorer.report.content import defence_verdict
from make_run import attack


@pytest.fixture(scope="module")
def defended_run(report_inputs, tmp_path_factory):
    return attack(report_inputs, tmp_path_factory.mktemp("runs") / "bits", "--defense", "bits:3",
                  "--adaptive", "bpda", "--eps", "16/255", "--steps", "10")


def _entry(success: bool) -> dict:
    return {"success": success, "prediction": "benign", "probability": 0.9}


@pytest.mark.parametrize("naive, adaptive, words, good", [
    (False, True, "only hides the gradient", False),
    (True, True, "stops neither attack", False),
    (False, False, "holds here", True),
    (True, False, "does not stop the naive attack", False),
])
def test_the_verdict_follows_the_two_outcomes(naive, adaptive, words, good):
    verdict, tone = defence_verdict({"adaptive": "bpda", "naive": _entry(naive), "adaptive_result": _entry(adaptive)})
    assert words in verdict and tone is good


def test_a_naive_only_run_that_fails_suggests_the_adaptive_attack():
    verdict, tone = defence_verdict({"defence": "noise:0.1", "adaptive": "none", "naive": _entry(False)})
    assert "--adaptive eot" in verdict and tone is None


def test_html_report_shows_naive_and_adaptive_side_by_side(defended_run, tmp_path):
    record = json.loads((defended_run / "record.json").read_text(encoding="utf-8"))
    html = write_report(tmp_path / "report.html", [defended_run]).read_text(encoding="utf-8")
    assert "Defence: naive vs adaptive attack" in html
    assert "bit-depth reduction (bits 3) (bits:3)" in html
    assert "Adaptive attack (BPDA)" in html and "Naive attack (gradients through the defence" in html
    expected, _ = defence_verdict(record["defence"])
    assert expected.split(":")[0] in html
    # The equivalent command repeats the defence, so the run can be repeated as it was.
    assert "--defense bits:3 --adaptive bpda" in html


def test_pdf_report_has_the_defence_section(defended_run, tmp_path):
    pytest.importorskip("PySide6", reason="PDF reports are drawn by Qt (the gui extra)")
    from pdftext import pdf_text, squeeze

    text = squeeze(pdf_text(write_report(tmp_path / "report.pdf", [defended_run]))).lower()
    assert squeeze("Defence: naive vs adaptive attack").lower() in text   # headings are set in capitals
    assert squeeze("Adaptive attack (BPDA)").lower() in text


def _screen_defence(adaptive: str, naive_values, adaptive_values=None) -> dict:
    from advexplorer.core.screening import wilson_interval

    def share(k):
        return {"measure": "robust accuracy", "value": k / 40, "ci95": list(wilson_interval(k, 40)),
                "count": k, "n": 40}

    rows = []
    for j, k in enumerate(naive_values):
        row = {"eps": j / 255, "eps_label": f"{j}/255", "naive": share(k)}
        if adaptive_values is not None:
            row["adaptive"] = share(adaptive_values[j])
            row["gradient_hidden"] = row["naive"]["ci95"][0] > row["adaptive"]["ci95"][1]
        rows.append(row)
    return {"defence": "jpeg:75", "label": "JPEG compression (quality 75)", "adaptive": adaptive,
            "adaptive_label": adaptive, "per_eps": rows, "files": {"naive": "per_image.csv"}}


def test_a_screen_sentence_for_each_case():
    from advexplorer.report.cohort import defence_meaning, defence_section

    hidden = _screen_defence("bpda", [38, 38, 38], [38, 20, 2])
    assert defence_meaning(hidden).startswith("The naive attack overstates the defence")
    assert "at ε = 2/255" in defence_meaning(hidden)                 # where the drop is largest
    same = _screen_defence("bpda", [38, 30, 20], [38, 29, 18])
    assert "does no better than the naive one" in defence_meaning(same)
    naive_only = _screen_defence("none", [38, 38, 38])
    assert "--adaptive bpda" in defence_meaning(naive_only)
    html = defence_section({"defence": hidden})
    assert html.count("gradient hidden") == 2 and "BPDA attack" in html
    assert defence_section({}) == ""
    assert "Model precision" in defence_section({"precision": {"precision": "int8", "how": "int8 dynamic"}})
