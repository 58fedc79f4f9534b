"""Views of runs that are not (yet) a folder: the GUI's in-memory run, sparse records."""

from __future__ import annotations

import numpy as np
import pytest

from advexplorer.core.attacks import AttackConfig
from advexplorer.io.images import load_image, load_mask
from advexplorer.io.models import load_model
from advexplorer.report import RunView, load_run, render_html, write_report
from advexplorer.report.content import over_255, run_content
from advexplorer.session.runs import RunRequest, build_record, run, write_run_dir


def test_in_memory_run_reports_like_its_folder(report_inputs, tmp_path):
    """File → Export report in the GUI (no folder yet) shows what the CLI's folder shows."""
    model = load_model(report_inputs["model"], device="cpu")
    image = load_image(report_inputs["image"], model.card)
    allowed = load_mask(report_inputs["protect"], image, model.card, invert=True)
    request = RunRequest(model=model, image=image, config=AttackConfig(eps=8 / 255, steps=4, seed=1),
                         allowed_mask=allowed, mask_mode="protect", mask_path=report_inputs["protect"])
    outcome = run(request)
    record = build_record(request, outcome)
    in_memory = RunView.from_outcome(request, outcome, record)
    from_folder = load_run(write_run_dir(tmp_path / "run", request, outcome, dict(record)))
    assert np.array_equal(in_memory.perturbation, from_folder.perturbation)
    assert np.array_equal(in_memory.allowed_mask, from_folder.allowed_mask)
    assert np.array_equal(in_memory.exported, from_folder.exported)
    memory, folder = run_content(in_memory), run_content(from_folder)
    assert memory.question == folder.question and memory.norms == folder.norms
    assert memory.answer == folder.answer and memory.headline == folder.headline
    assert [p.png for p in memory.pictures] == [p.png for p in folder.pictures]
    write_report(tmp_path / "export.html", in_memory)
    assert (tmp_path / "export.html").stat().st_size > 0


def sparse_view(channels: int) -> RunView:
    rng = np.random.default_rng(0)
    image = rng.random((12, 10, channels), dtype=np.float32)
    perturbation = np.zeros_like(image)
    perturbation[2:5, 3:6] = 2 / 255
    record = {"advexplorer_record": 1,
              "model": {"card": {"name": "gray", "classes": ["a", "b"], "channels": channels}},
              "prediction_before": {"index": 0, "class": "a", "probability": 0.9,
                                    "top5": [{"index": 0, "class": "a", "probability": 0.9}]},
              "prediction_after": {"index": 0, "class": "a", "probability": 0.8, "top5": []},
              "attack": {"method": "fgsm", "norm": "linf", "eps": 2 / 255}, "flipped": False}
    return RunView(record=record, input_image=image, perturbation=perturbation)


@pytest.mark.parametrize("channels", [1, 3])
def test_sparse_records_still_render(channels, tmp_path):
    """A record missing optional parts (no hashes, trajectory, saliency) renders with gaps shown."""
    view = sparse_view(channels)
    page = render_html(view)
    assert "The prediction held" in page and "2/255" in page
    assert "not started from the command line" in page
    pytest.importorskip("PySide6")
    pdf = write_report(tmp_path / "sparse.pdf", view)
    assert pdf.read_bytes().startswith(b"%PDF-")


def test_budgets_are_shown_over_255_without_false_rounding():
    assert over_255(8 / 255) == "8/255"
    assert over_255(0.0472525) == "12.05/255"
    assert over_255(float("nan")) == "—"
