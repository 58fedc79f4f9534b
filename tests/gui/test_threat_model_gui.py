"""The Square attack and reliability flags as a GUI user sees them (pytest-qt, offscreen)."""

from __future__ import annotations


def test_square_run_counts_queries_and_shows_the_records_flags(qtbot, window):
    panel = window.attack_panel
    panel.set_values(method="pgd")
    assert panel.queries.isHidden()  # a white-box attack has no query budget
    panel.set_values(method="square", eps="8/255", queries=20, seed=1)
    assert not panel.queries.isHidden()
    assert panel.make_config().queries == 20

    window.run_action.trigger()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=60000)

    assert "query" in window.step_label.text()
    assert window.step_label.text().endswith("/20")
    summary = window.runs.shown_run
    assert summary.record["attack"]["queries"] == 20
    expected = "\n".join(f"⚠ {flag['title']} ({flag['detail']}). {flag['suggestion']}"
                         for flag in summary.record["flags"])
    assert window.runs.results.flags.text() == expected
    assert window.runs.results.flags.isVisible() == bool(expected)


def test_ensemble_status_names_the_running_stage():
    import numpy as np

    from advexplorer.gui.controllers.runs import step_text
    from advexplorer.gui.worker import StepUpdate

    def update(index, total, stage):
        return StepUpdate(indices=np.array([index]), restarts_seen=np.array([0]),
                          probabilities=np.zeros((1, 3)), losses=np.zeros(1), total_steps=total,
                          restarts=1, success=False, elapsed_s=1.0, adversarial=None,
                          perturbation=None, stage=stage)

    assert step_text(update(3, 10, "apgd-t"), "ensemble") == "APGD-T · step 3/10"
    assert step_text(update(40, 100, "square"), "ensemble") == "Square · query 40/100"
    assert step_text(update(40, 100, None), "square") == "query 40/100"
    assert step_text(update(3, 10, None), "pgd") == "step 3/10"


def test_a_flag_that_fires_is_shown_with_what_was_measured_and_what_to_do(qtbot, window, tiny_model):
    """A rounding input layer (8-bit levels) has zero input gradients: PGD cannot move, and
    the Results panel says so in orange rather than reporting a robust model."""
    from dataclasses import replace

    import torch

    class RoundedInput(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, x):
            return self.classifier(torch.round(x * 255) / 255)

    window.set_model(replace(tiny_model, classifier=RoundedInput(tiny_model.classifier)))
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=5, seed=0)
    window.run_action.trigger()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=60000)

    shown = window.runs.results.flags
    assert shown.isVisible()
    lines = shown.text().split("\n")
    assert lines[0] == ("⚠ Input gradients are zero or not finite (its input gradients are exactly zero). "
                        "White-box attacks cannot work here (gradient masking): rely on the Square attack "
                        "or the ensemble, which runs it.")
    assert len(lines) == len(window.runs.shown_run.record["flags"])
    assert shown.styleSheet() == "color: #e0a040"  # orange, apart from the summary
