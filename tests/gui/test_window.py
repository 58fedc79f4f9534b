"""The desktop app as a user drives it (pytest-qt, offscreen)."""

from __future__ import annotations

import numpy as np
import pytest


def _finish(qtbot, window, timeout=30000):
    qtbot.waitUntil(lambda: not window.controller.running, timeout=timeout)


def test_run_streams_steps_to_plots_and_finishes(qtbot, window):
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=6, seed=1)
    steps_seen = []
    window.controller.step.connect(steps_seen.append)
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.start_run()
    summary = finished.args[0]
    from advexplorer.gui.worker import Phase, StepUpdate

    updates = [s for s in steps_seen if isinstance(s, StepUpdate)]
    assert np.concatenate([s.indices for s in updates]).tolist() == list(range(7))
    assert [p.label for p in steps_seen if isinstance(p, Phase)] == ["Scoring the 8-bit export…"]
    assert window.plots.count == 7
    curve = next(iter(window.plots.curves.values()))
    assert len(curve.getData()[0]) == 7
    assert window.history.count() == 1 and window.session.current.runs[0] is summary
    assert summary.record["attack"]["steps"] == 6 and summary.record["mask"]["mode"] == "none"
    assert window.prediction_table.rowCount() >= 3
    assert window.live.strip.items["adversarial"].image is not None
    _finish(qtbot, window)
    assert window.run_button.isEnabled()


def _paint_left_half(window):
    masks = window.session.current.masks
    height, width = masks.attack.shape
    masks.attack.fill_rectangle(0, 0, width // 2 - 1, height - 1)
    return masks


@pytest.mark.parametrize("mode", ["protect", "allowed"])
def test_protect_and_allowed_masks_reach_the_engine(qtbot, window, mode):
    from advexplorer.io.images import mask_to_model

    masks = _paint_left_half(window)  # a.png is 32×24: columns 0–15 painted
    window.mode_combo.setCurrentIndex(window.mode_combo.findData(mode))
    assert masks.mode == mode
    painted = masks.attack.copy()
    window.attack_panel.set_values(method="pgd", eps="16/255", steps=3, seed=0)
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.start_run()
    summary = finished.args[0]
    request = summary.request
    expected_allowed = painted if mode == "allowed" else 1 - painted
    card = window.model.card
    assert request.mask_mode == mode and summary.record["mask"]["mode"] == mode
    np.testing.assert_array_equal(request.allowed_mask.numpy(),
                                  mask_to_model(expected_allowed, card).numpy())
    # at model scale (16×16) the left 8 columns were painted: the attack acts only where allowed
    changed = np.abs(summary.perturbation).max(axis=2) > 0
    allowed = request.allowed_mask.numpy() > 0
    assert not changed[~allowed].any()
    assert changed[allowed].any()
    assert allowed[:, :8].all() == (mode == "allowed") and allowed[:, 8:].all() == (mode == "protect")


def test_painting_during_a_run_does_not_change_the_runs_mask(qtbot, window):
    masks = _paint_left_half(window)
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=400)
    window.start_run()
    qtbot.waitUntil(lambda: window.plots.count >= 2, timeout=30000)
    masks.attack.clear()  # the user keeps editing while the attack runs
    window.cancel_run()
    _finish(qtbot, window)
    window.undo()
    assert masks.attack.data.sum() == 24 * 16


def test_cancel_stops_within_a_step_and_keeps_history(qtbot, window, monkeypatch):
    import advexplorer.session.runs as runs

    window.attack_panel.set_values(method="pgd", eps="8/255", steps=3)
    with qtbot.waitSignal(window.run_finished, timeout=30000):
        window.start_run()
    _finish(qtbot, window)

    produced = []  # steps the engine computed (not just those the GUI has drawn yet)
    real_run_steps = runs.run_steps

    def counting_run_steps(request):
        steps = real_run_steps(request)
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            produced.append(step.index)
            yield step

    monkeypatch.setattr(runs, "run_steps", counting_run_steps)
    window.attack_panel.set_values(steps=100000)
    window.start_run()
    qtbot.waitUntil(lambda: window.plots.count >= 3, timeout=30000)
    with qtbot.waitSignal(window.controller.cancelled, timeout=10000):
        window.cancel_run()
        at_cancel = len(produced)
    _finish(qtbot, window, timeout=10000)
    assert len(produced) - at_cancel <= 1, "the worker stops after at most the step in progress"
    assert len(window.session.current.runs) == 1, "a cancelled run is not added; the earlier one stays"
    assert "cancelled" in window.result_summary.text().lower()
    assert window.run_button.isEnabled()


def test_pause_and_resume(qtbot, window):
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=300)
    window.start_run()
    qtbot.waitUntil(lambda: window.plots.count >= 2, timeout=30000)
    with qtbot.waitSignal(window.controller.paused_changed, timeout=10000):
        window.toggle_pause()
    assert window.pause_button.text() == "Resume"
    count = window.plots.count
    qtbot.wait(300)
    assert window.plots.count == count, "no step arrives while paused"
    assert window.runs.status.step.text() == f"step {count - 1}/300", "paused: the last step is shown"
    with qtbot.waitSignal(window.run_finished, timeout=60000):
        window.toggle_pause()
    assert window.plots.count == 301


def test_worker_error_shows_a_dialog_and_keeps_state(qtbot, window, errors, monkeypatch):
    import advexplorer.session.runs as runs

    window.attack_panel.set_values(method="pgd", eps="8/255", steps=2)
    with qtbot.waitSignal(window.run_finished, timeout=30000):
        window.start_run()
    _finish(qtbot, window)
    masks = _paint_left_half(window)
    painted = masks.attack.copy()
    real_run_steps = runs.run_steps

    def broken(request):
        yield from []  # a generator that fails at its first step, as a CUDA OOM would
        raise RuntimeError("simulated failure inside the engine")

    monkeypatch.setattr(runs, "run_steps", broken)
    with qtbot.waitSignal(window.controller.failed, timeout=30000):
        window.start_run()
    _finish(qtbot, window)
    assert errors and "simulated failure" in errors[-1][1]
    np.testing.assert_array_equal(masks.attack.data, painted)
    assert len(window.session.current.runs) == 1
    monkeypatch.setattr(runs, "run_steps", real_run_steps)
    with qtbot.waitSignal(window.run_finished, timeout=30000):
        window.start_run()
    assert len(window.session.current.runs) == 2


def test_bad_model_and_bad_image_show_messages(qtbot, window, errors, tmp_path):
    bad_model = tmp_path / "broken.pt"
    bad_model.write_bytes(b"this is not a model")
    (tmp_path / "broken.json").write_text('{"classes": ["a", "b"], "input_size": [8, 8]}')
    window.open_model(bad_model)
    qtbot.waitUntil(lambda: not window.model_loading and bool(errors), timeout=30000)
    assert "model" in errors[-1][0].lower()
    assert window.model is not None and window.can_run(), "the previous model stays usable"

    bad_image = tmp_path / "scan.png"
    bad_image.write_bytes(b"\x89PNG truncated")
    count = len(window.session.images)
    window.add_images([bad_image])
    assert len(errors) == 2 and "scan.png" in errors[-1][1]
    assert len(window.session.images) == count


def test_form_refuses_invalid_values(qtbot, window):
    panel = window.attack_panel
    panel.eps.setText("eight")
    assert not panel.is_valid() and "not a number" in panel.error
    assert panel.error_label.isVisible() and not window.run_button.isEnabled()
    panel.eps.setText("2")
    assert "out of range" in panel.error and not window.run_button.isEnabled()
    panel.eps.setText("4/255")
    assert panel.is_valid() and window.run_button.isEnabled()
    assert "4/255" in panel.eps_scale.text()
    panel.step_size.setText("-1")
    assert "Step size" in panel.error and not window.run_button.isEnabled()
    window.start_run()  # refused quietly: nothing starts
    assert not window.controller.running
    panel.step_size.setText("")
    assert panel.is_valid()


def test_closing_during_a_run_stops_the_worker(qtbot, window):
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=100000)
    window.start_run()
    qtbot.waitUntil(lambda: window.plots.count >= 2, timeout=30000)
    window.close()
    assert not window.controller.running
    from PySide6.QtCore import QThreadPool

    assert QThreadPool.globalInstance().activeThreadCount() == 0


def test_batch_runs_every_selected_image(qtbot, window):
    window.attack_panel.set_values(method="fgsm", eps="8/255")
    window.image_list.selectAll()
    with qtbot.waitSignal(window.controller.stopped, timeout=60000):
        window.start_batch()
    assert window.batch_progress.value() == 2
    assert [window.batch_table.item(r, 6).text() for r in range(2)] == ["done", "done"]
    assert all(len(entry.runs) == 1 for entry in window.session.images)


def test_compare_two_runs(qtbot, window):
    for eps in ("2/255", "16/255"):
        window.attack_panel.set_values(method="pgd", eps=eps, steps=3)
        with qtbot.waitSignal(window.run_finished, timeout=30000):
            window.start_run()
        _finish(qtbot, window)
    window.history.selectAll()
    assert window.compare_button.isEnabled()
    dialog = window.compare_selected_runs()
    qtbot.addWidget(dialog)
    assert "#1" in dialog.windowTitle() and "#2" in dialog.windowTitle()
    dialog.close()


def test_recent_models_and_layout_go_to_the_settings_file(qtbot, window, settings_file, tiny_model):
    window.close()
    text = settings_file.read_text()
    assert "recent_images" in text and "geometry" in text
    assert str(tiny_model.path) in text


def test_gui_modules_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; import advexplorer.gui.app, advexplorer.gui.main_window, advexplorer.commands.gui; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_saliency_before_and_after_share_one_scale(qtbot, window):
    window.attack_panel.set_values(method="pgd", eps="16/255", steps=3, saliency="gradient")
    assert window.attack_panel.saliency_method == "gradient"
    with qtbot.waitSignal(window.run_finished, timeout=60000) as finished:
        window.start_run()
    summary = finished.args[0]
    assert summary.saliency is not None and "saliency" in summary.record
    before = window.live.strip.items["saliency_before"]
    after = window.live.strip.items["saliency_after"]
    assert before.image is not None and after.image is not None
    assert tuple(before.getLevels()) == tuple(after.getLevels())
    assert "Verdict" in window.live.verdict.text() and "Spearman" in window.live.verdict.text()


def test_gui_command_line_becomes_start_options(tmp_path):
    from advexplorer.cli import build_parser
    from advexplorer.commands.gui import options_from_args

    image = tmp_path / "x.png"
    args = build_parser("gui").parse_args(["--model", "m.pt", "--image", str(image), "b.png",
                                           "--protect", "p.png", "--device", "cpu"])
    options = options_from_args(args)
    assert options.model.name == "m.pt" and [p.name for p in options.images] == ["x.png", "b.png"]
    assert options.protect.name == "p.png" and options.mask is None and options.device == "cpu"


def test_gui_command_refuses_missing_files(tmp_path):
    from advexplorer.cli import main

    assert main(["gui", "--image", str(tmp_path / "missing.png")]) == 2


def test_demo_screenshot_exits_zero(tmp_path, settings_file):
    """`advexplorer demo --screenshot` on the bundled model: the window, a live PGD, a PNG."""
    import os
    import subprocess
    import sys

    from advexplorer import paths

    if not paths.DEFAULT_MODEL.is_file():
        pytest.skip("the bundled histology model is not built")
    target = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "advexplorer.cli", "demo", "--screenshot", str(target),
                           "--steps", "3", "--saliency", "none", "--size", "1000x700"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    with Image.open(target) as shot:
        assert shot.size[0] == 1000  # (the docks set a minimum height)
        assert len(np.unique(np.asarray(shot.convert("L")))) > 50  # a real picture, not a blank window


def test_dropped_folder_and_model_open(qtbot, window, tmp_path, tiny_model_path):
    from PIL import Image

    folder = tmp_path / "slides"
    folder.mkdir()
    for name in ("c.png", "d.png"):
        Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(folder / name)
    protect = np.zeros((12, 12), np.uint8)
    protect[:6] = 255
    Image.fromarray(protect).save(folder / "c_protect.png")  # a companion mask, not an image
    window.model = None
    window.open_paths([folder, tiny_model_path])
    assert [e.name for e in window.session.images[-2:]] == ["c.png", "d.png"]
    entry = window.session.images[-2]
    assert entry.masks.mode == "protect" and entry.masks.attack.data[:6].all()
    qtbot.waitUntil(lambda: window.model is not None and not window.model_loading, timeout=30000)
    assert window.model.card.name == "Tiny test net"


def test_run_is_saved_as_a_run_folder_and_report(qtbot, window, tmp_path):
    import json

    window.attack_panel.set_values(method="pgd", eps="8/255", steps=2)
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.start_run()
    summary = finished.args[0]
    folder = window.save_run(summary, tmp_path / "run1")
    record = json.loads((folder / "record.json").read_text())
    assert record["attack"]["steps"] == 2 and record["started_from"][:2] == ["advexplorer", "gui"]
    assert record["command_line"][:2] == ["advexplorer", "attack"]  # a command a reader can run
    assert (folder / "adversarial.png").is_file()
    assert window.save_run(summary, folder) is None and "not empty" in window.last_error
    report = window.write_report([summary], tmp_path / "report.html")
    assert report is not None and "<html" in report.read_text().lower()


def test_cohort_panel_gets_the_model_and_opens_requested_images(qtbot, window, tmp_path):
    from PIL import Image

    assert window.cohort_panel.model is window.model
    path = tmp_path / "tile.png"
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(path)
    mask = tmp_path / "tile_mask.png"
    Image.fromarray(np.pad(np.full((8, 16), 255, np.uint8), ((0, 8), (0, 0)))).save(mask)
    window.attack_panel.set_values(method="fgsm", eps="8/255")
    with qtbot.waitSignal(window.run_finished, timeout=30000) as finished:
        window.open_from_cohort(path, mask, "protect")
    assert window.session.current.path == path.resolve()
    assert finished.args[0].record["mask"]["mode"] == "protect"


def test_step_rate_counts_the_attack_not_its_set_up(window):
    """The status bar's steps/s is over the time since the first step: the first update of a
    run (step 0, the clean image scored) is the origin, so loading the image and the model's
    first pass do not make a 0.15 s attack read '13 steps/s'."""
    from advexplorer.gui.worker import run_job

    window.attack_panel.set_values(method="pgd", eps="8/255", steps=4, saliency=None)
    updates = []
    steps = run_job(window.runs.make_job(window.session.current), update_interval_s=0.0)
    while True:
        try:
            updates.append(next(steps))
        except StopIteration:
            break
    from advexplorer.gui.worker import StepUpdate

    updates = [u for u in updates if isinstance(u, StepUpdate)]
    assert updates[0].indices.tolist() == [0] and updates[0].elapsed_s == 0.0
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(updates, updates[1:]))


def test_status_counters_belong_to_the_run_on_screen(qtbot, window):
    """After a run, switching to another image (or to a stored run) leaves no 'step 6/6 ·
    N steps/s' of the last live run in the status bar; a batch shows none either."""
    window.attack_panel.set_values(method="pgd", eps="8/255", steps=6, saliency=None)
    with qtbot.waitSignal(window.run_finished, timeout=30000):
        window.run_action.trigger()
    _finish(qtbot, window)
    status = window.runs.status
    assert status.step.text() == "step 6/6"
    window.image_list.setCurrentRow(1)  # the second image, no run yet
    assert status.step.text() == "" and status.rate.text() == ""
    window.image_list.setCurrentRow(0)  # back: its stored run, not a live one
    assert status.step.text() == "" and status.rate.text() == ""
