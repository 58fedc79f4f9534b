"""Live runs in the attack process (advexplorer.gui.attack_process), driven through the menus.

The rest of the suite runs attacks in a worker thread (``ADVEXPLORER_ATTACK_PROCESS=0`` in
tests/conftest.py: a process per window would cost seconds each); here one process serves
the module, as one serves the app.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest


@pytest.fixture(scope="module")
def process():
    from advexplorer.gui import attack_process

    before, os.environ["ADVEXPLORER_ATTACK_PROCESS"] = os.environ.get("ADVEXPLORER_ATTACK_PROCESS"), "1"
    previous = attack_process._shared
    attack_process._shared = shared = attack_process.AttackProcess(threads=1)
    yield shared
    shared.shutdown()
    attack_process._shared = previous
    if before is None:
        os.environ.pop("ADVEXPLORER_ATTACK_PROCESS", None)
    else:
        os.environ["ADVEXPLORER_ATTACK_PROCESS"] = before


def _ready(qtbot, process, model):
    from advexplorer.gui.attack_process import ModelSpec

    spec = ModelSpec.of(model, False)
    qtbot.waitUntil(lambda: process.loaded == spec, timeout=60000)


def _start_a_long_run(qtbot, process, window, model, steps_seen: int) -> None:
    """Press Run on an attack far longer than the test, in the process; wait for its first steps."""
    _ready(qtbot, process, model)
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=200000, saliency=None)
    window.run_action.trigger()
    qtbot.waitUntil(lambda: window.plots.count >= steps_seen, timeout=30000)
    assert window.runs.in_process


def _finish(qtbot, window, timeout=30000):
    qtbot.waitUntil(lambda: not window.controller.running, timeout=timeout)


def test_a_run_goes_to_the_process_and_equals_the_thread_run(qtbot, process, window, tiny_model):
    from advexplorer.gui.worker import run_job

    _ready(qtbot, process, tiny_model)
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=12, seed=3, random_start=True,
                                   saliency="gradient")
    with qtbot.waitSignal(window.run_finished, timeout=60000) as finished:
        window.run_action.trigger()
    _finish(qtbot, window)
    assert window.runs.in_process
    summary = finished.args[0]
    assert window.history.count() == 1 and window.session.current.runs[0] is summary
    assert window.plots.count == 13
    # The same job in a thread of this process: the same numbers, bit for bit.
    job = window.runs.make_job(window.session.current)
    steps = run_job(job)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            here = done.value
            break
    for name in ("original", "adversarial", "perturbation", "probability_trajectory", "loss_trajectory",
                 "probability_before", "probability_after"):
        np.testing.assert_array_equal(getattr(summary, name), getattr(here, name), err_msg=name)
    assert summary.record["attack"] == here.record["attack"]
    assert summary.record["model"]["sha256"] == here.record["model"]["sha256"]
    assert summary.request.model is tiny_model  # the GUI's own model, for views and reports
    assert summary.saliency is not None and summary.record["saliency"]["method"] == "gradient"


def test_pause_and_cancel_reach_the_process(qtbot, process, window, tiny_model):
    _start_a_long_run(qtbot, process, window, tiny_model, steps_seen=3)
    with qtbot.waitSignal(window.controller.paused_changed, timeout=10000):
        window.pause_action.trigger()
    seen: list = []
    window.controller.step.connect(lambda update: seen.append(update))
    # Steps sent before the pause may still arrive (later on a busy machine); then none: a
    # running tiny attack sends an update every 33 ms, so a stream that never falls quiet fails.
    deadline = time.monotonic() + 10
    while True:
        count = len(seen)
        qtbot.wait(300)
        if len(seen) == count:
            break
        assert time.monotonic() < deadline, "steps kept arriving while paused"
    seen.clear()
    at_pause = window.plots.count
    qtbot.wait(600)  # a running tiny attack makes hundreds of steps in this time
    assert not seen, "steps arrived while paused"
    # Paused, the screen shows the last step received, not the one of the last 4 Hz text update.
    assert window.runs.status.step.text().startswith(f"step {window.plots.count - 1}/")
    curve = next(iter(window.plots.curves.values()))
    assert len(curve.getData()[0]) == window.plots.count
    assert window.controller.paused and window.pause_button.text() == "Resume"
    with qtbot.waitSignal(window.controller.paused_changed, timeout=10000):
        window.pause_action.trigger()
    qtbot.waitUntil(lambda: bool(seen), timeout=10000)
    first = int(seen[0].indices[0])
    assert first - at_pause < 60, f"the process went on while paused ({at_pause} → {first})"
    with qtbot.waitSignal(window.controller.cancelled, timeout=10000):
        window.cancel_action.trigger()
    _finish(qtbot, window)
    assert "cancelled" in window.result_summary.text().lower()
    # The next run is not confused by the cancelled one's last messages.
    window.attack_panel.set_values(steps=5)
    with qtbot.waitSignal(window.run_finished, timeout=60000) as finished:
        window.run_action.trigger()
    _finish(qtbot, window)
    assert window.runs.in_process and len(finished.args[0].probability_trajectory) == 6


def test_a_user_error_in_the_process_is_one_line(qtbot, process, tiny_model, tmp_path):
    from PIL import Image

    from advexplorer.gui.worker import JobFailed, RunJob

    process.preload(tiny_model)
    _ready(qtbot, process, tiny_model)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    job = RunJob(model=tiny_model, image_path=image, config_kwargs={"method": "pgd", "eps": 0.03, "steps": 2},
                 allowed_at_file_size=np.ones((5, 5), np.uint8), mask_mode="allowed")
    assert process.can_run(job)
    with pytest.raises(JobFailed) as failure:
        list(process.run(job))
    assert failure.value.is_user_error
    assert failure.value.message.startswith("The mask is 5×5 but x.png is 30×20")


def test_a_model_the_process_cannot_load_alike_runs_in_a_thread(qtbot, process, window, tiny_model, monkeypatch):
    from dataclasses import replace

    from advexplorer.gui.attack_process import ModelSpec

    _ready(qtbot, process, tiny_model)
    changed = replace(tiny_model, sha256="0" * 64)  # as if the file changed after the app loaded it
    window.set_model(changed)
    qtbot.waitUntil(lambda: ModelSpec.of(changed, False) in process.refused, timeout=30000)
    assert process.loaded is None
    sent = []
    real_send = process._send
    monkeypatch.setattr(process, "_send", lambda message: (sent.append(message[0]), real_send(message)))
    window.attack_panel.set_values(method="fgsm", eps="4/255", saliency=None)
    for _ in range(2):
        with qtbot.waitSignal(window.run_finished, timeout=60000):
            window.run_action.trigger()
        _finish(qtbot, window)
        assert not window.runs.in_process  # the app's own copy of the model was attacked
    assert "load" not in sent, "a model the process refused is not loaded again for every run"


def test_a_process_that_dies_fails_its_run_and_comes_back(qtbot, process, window, errors, tiny_model):
    _start_a_long_run(qtbot, process, window, tiny_model, steps_seen=2)
    with qtbot.waitSignal(window.controller.failed, timeout=30000):
        process.process.kill()
    _finish(qtbot, window)
    assert errors and "attack process ended unexpectedly" in errors[-1][1]
    window.attack_panel.set_values(steps=3)
    with qtbot.waitSignal(window.run_finished, timeout=60000):
        window.run_action.trigger()  # runs in a thread, and starts the process again
    _finish(qtbot, window)
    assert not window.runs.in_process
    _ready(qtbot, process, tiny_model)
    started = time.perf_counter()
    with qtbot.waitSignal(window.run_finished, timeout=60000):
        window.run_action.trigger()
    _finish(qtbot, window)
    assert window.runs.in_process, f"back in the process ({time.perf_counter() - started:.1f} s)"


def test_the_preference_turns_the_process_off_and_on(qtbot, process, window, tiny_model, monkeypatch):
    """Edit → Preferences → "Run live attacks in a process of their own": off stops the process
    and runs go to a thread; on again, the process comes back with the loaded model."""
    from advexplorer.gui import attack_process
    from advexplorer.gui.preferences import PreferencesDialog

    _ready(qtbot, process, tiny_model)
    monkeypatch.setattr(attack_process, "PREFERENCE", True)
    dialog = PreferencesDialog(window.settings, window)
    dialog.preferences_changed.connect(window.workspace.apply_preferences)
    assert dialog.attack_process.isChecked()
    dialog.attack_process.setChecked(False)
    dialog.accept()
    assert not process.alive and not attack_process.enabled()
    window.attack_panel.set_values(method="fgsm", eps="4/255", saliency=None)
    with qtbot.waitSignal(window.run_finished, timeout=60000):
        window.run_action.trigger()
    _finish(qtbot, window)
    assert not window.runs.in_process and not process.alive
    dialog = PreferencesDialog(window.settings, window)
    dialog.preferences_changed.connect(window.workspace.apply_preferences)
    assert not dialog.attack_process.isChecked()  # stored
    dialog.attack_process.setChecked(True)
    dialog.accept()
    _ready(qtbot, process, tiny_model)
    with qtbot.waitSignal(window.run_finished, timeout=60000):
        window.run_action.trigger()
    _finish(qtbot, window)
    assert window.runs.in_process
