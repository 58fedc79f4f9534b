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
    expected = "\n".join(f"⚠ {flag['title']} — {flag['suggestion']}" for flag in summary.record["flags"])
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
