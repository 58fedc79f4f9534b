"""A saved project keeps the Cohort panel's form — images folder, masks, ε list, norm, attack,
steps, batch, noise baseline, check-monotone and the defence row (kind + parameter, adaptive
mode, precision) — and File → Open project… restores it in a fresh window; the screen's
results are not kept. A project saved before the form was kept (format 2) opens with the
panel's defaults. A folder gone since is restored as text, and Screen says it is missing in
the panel's status line (no dialog at open)."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from PySide6.QtWidgets import QFileDialog

from advexplorer.session.project import FORMAT_VERSION, ProjectState, open_project, save_project

#: Every field away from a fresh panel's value.
SET = {"mask_mode": "protect-dir", "eps": "0,3/255,6/255", "norm": "l2", "method": "fgsm",
       "steps": 7, "batch": 5, "noise_baseline": True, "verify_monotone": 12,
       "defence": "bits:3", "adaptive": "bpda", "precision": "float16"}


def fill_through_widgets(panel, images, masks):
    """Set every field of the Cohort panel's form through its widgets, as a user would."""
    panel.images_edit.setText(str(images))
    panel.mask_mode.setCurrentIndex(panel.mask_mode.findData(SET["mask_mode"]))
    panel.masks_edit.setText(str(masks))
    panel.eps_edit.setText(SET["eps"])
    panel.norm.setCurrentIndex(panel.norm.findData(SET["norm"]))
    panel.attack.setCurrentIndex(panel.attack.findData(SET["method"]))
    panel.steps.setValue(SET["steps"])
    panel.batch.setValue(SET["batch"])
    panel.noise.setChecked(SET["noise_baseline"])
    panel.verify.setValue(SET["verify_monotone"])
    panel.defence_kind.setCurrentIndex(panel.defence_kind.findData("bits"))
    panel.defence_value.setText("3")
    panel.adaptive.setCurrentIndex(panel.adaptive.findData(SET["adaptive"]))
    panel.precision.setCurrentIndex(panel.precision.findData(SET["precision"]))


def widget_values(panel) -> dict:
    """The form read from the widgets themselves (not through form_state)."""
    return {"images": panel.images_edit.text(), "mask_mode": panel.mask_mode.currentData(),
            "masks": panel.masks_edit.text(), "eps": panel.eps_edit.text(), "norm": panel.norm.currentData(),
            "method": panel.attack.currentData(), "steps": panel.steps.value(), "batch": panel.batch.value(),
            "noise_baseline": panel.noise.isChecked(), "verify_monotone": panel.verify.value(),
            "defence": (panel.defence_kind.currentData(), panel.defence_value.text()),
            "adaptive": panel.adaptive.currentData(), "precision": panel.precision.currentData()}


def save_as(window, path, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))
    window.workspace.project.save_as_action.trigger()
    assert path.is_file()


def open_through_menu(window, path, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    window.workspace.project.open_action.trigger()


def test_a_fresh_panels_form_is_the_defaults_old_projects_get(qtbot):
    from advexplorer.gui.cohort_panel import FORM_DEFAULTS, CohortPanel

    panel = CohortPanel()
    qtbot.addWidget(panel)
    assert panel.form_state() == FORM_DEFAULTS
    assert all(FORM_DEFAULTS[key] != value for key, value in SET.items())  # SET moves every field


def test_the_cohort_form_survives_save_and_open_in_a_fresh_window(qtbot, window, fresh_window, tmp_path, monkeypatch,
                                                                  errors):
    images, masks = tmp_path / "cohort", tmp_path / "cohort-masks"
    images.mkdir()
    masks.mkdir()
    window.cohort_action.trigger()  # View → Screen a cohort…
    panel = window.cohort_panel
    fill_through_widgets(panel, images, masks)
    expected = widget_values(panel)
    assert expected["defence"] == ("bits", "3")

    path = tmp_path / "cohort.advx"
    save_as(window, path, monkeypatch)
    saved = json.loads(zipfile.ZipFile(path).read("project.json"))
    assert saved["format_version"] == FORMAT_VERSION == 3
    assert saved["cohort_form"] == {**SET, "images": str(images), "masks": str(masks)}
    assert not any(key in saved["cohort_form"] for key in ("rows", "result", "summary"))  # the form only

    other = fresh_window()
    assert widget_values(other.cohort_panel) != expected
    open_through_menu(other, path, monkeypatch)
    assert widget_values(other.cohort_panel) == expected
    assert other.cohort_panel.adaptive.isEnabled()  # a defence is on: its mode can be changed
    assert not errors


def test_a_format_2_project_opens_with_the_panels_defaults(qtbot, window, image_files, tmp_path, monkeypatch):
    from advexplorer.gui.cohort_panel import CohortPanel

    panel = window.cohort_panel
    fill_through_widgets(panel, tmp_path, tmp_path)
    path = tmp_path / "old.advx"
    manifest = {"advexplorer_project": True, "format_version": 2, "saved_by": "AdvExplorer 1.0",
                "model": {"path": None, "card_path": None, "card": None, "device": "auto"},
                "attack_form": {"method": "pgd", "eps": "2/255", "steps": 4}, "current_index": 0,
                "images": [{"path": str(image_files[0]), "sha256": None, "size": None, "mask_mode": "protect",
                            "label": None, "attack_mask": None, "diagnostic_mask": None, "runs": []}]}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("project.json", json.dumps(manifest))
    assert open_project(path).state.cohort_form == {}
    open_through_menu(window, path, monkeypatch)
    assert window.attack_panel.steps.value() == 4  # the project did open
    fresh = CohortPanel()
    qtbot.addWidget(fresh)
    assert widget_values(panel) == widget_values(fresh)
    assert not panel.adaptive.isEnabled()


def test_a_folder_gone_since_is_restored_as_text_and_screen_says_so(qtbot, window, tmp_path, monkeypatch, errors):
    images = tmp_path / "cohort"
    images.mkdir()
    panel = window.cohort_panel
    panel.set_source(images)
    path = tmp_path / "moved.advx"
    save_as(window, path, monkeypatch)
    shutil.rmtree(images)
    panel.set_form_state({})
    assert panel.images_edit.text() == ""

    open_through_menu(window, path, monkeypatch)
    assert panel.images_edit.text() == str(images) and not errors  # no dialog at open
    qtbot.waitUntil(lambda: window.models.model is not None and not window.models.loading, timeout=30000)
    qtbot.waitUntil(panel.run_button.isEnabled, timeout=10000)
    panel.run_button.click()
    qtbot.waitUntil(lambda: not panel.running and "No images at" in panel.status.text(), timeout=30000)
    assert str(images) in panel.status.text() and not errors


@pytest.mark.parametrize("state, shown", [
    ({"defence": "jpeg:60", "adaptive": "none", "precision": "bfloat16"},
     {"defence": "jpeg:60", "adaptive": "none", "precision": "bfloat16"}),
    ({"defence": "noise:0.1", "adaptive": "eot"}, {"defence": "noise:0.1", "adaptive": "eot"}),
    ({"steps": 10 ** 12, "batch": 0, "verify_monotone": -3}, {"steps": 1000, "batch": 1}),  # clamped
    # What this version does not offer, or a wrong type, takes the default.
    ({"method": "no-such-attack", "steps": "7", "noise_baseline": 1, "defence": "unknown:1",
      "adaptive": "bpda", "precision": "float8", "mask_mode": "elsewhere"}, {}),
])
def test_set_form_state_takes_what_it_knows_and_defaults_the_rest(qtbot, state, shown):
    from advexplorer.gui.cohort_panel import FORM_DEFAULTS, CohortPanel

    panel = CohortPanel()
    qtbot.addWidget(panel)
    panel.set_form_state({**FORM_DEFAULTS, **SET})  # away from the defaults first
    panel.set_form_state(state)
    assert panel.form_state() == {**FORM_DEFAULTS, **shown}


def test_the_project_file_round_trips_the_cohort_form(tmp_path):
    form = {**SET, "images": "/data/cohort", "masks": "/data/masks"}
    path = save_project(tmp_path / "p.advx", ProjectState(cohort_form=form))
    assert open_project(path).state.cohort_form == form


def test_a_screens_attack_settings_are_the_form_fields_they_were():
    from advexplorer.gui.controllers.cohort import attack_settings, form_values

    settings = attack_settings({"method": "pgd", "norm": "linf", "steps": 5, "seed": 0}, 3 / 255)
    assert set(settings) == {"method", "norm", "eps", "step_size", "steps", "targeted", "random_start",
                             "seed", "restarts", "early_stop", "decay"}
    assert settings["eps"] == "3/255" and settings["early_stop"] is True
    assert form_values({**settings, "label": 2, "saliency": "gradient", "queries": 9}) == \
        {**settings, "label": 2, "saliency": "gradient"}


def test_opening_a_project_clears_a_screen_on_show(qtbot, window, image_files, tmp_path, monkeypatch, errors):
    """A finished screen's table, curves and Report button belong to the form they were run
    with: opening a project that brings another form clears them (not a stale panel)."""
    path = tmp_path / "empty.advx"
    save_as(window, path, monkeypatch)  # a project with the panel's default form
    window.cohort_action.trigger()
    panel = window.cohort_panel
    panel.images_edit.setText(str(image_files[0].parent))
    panel.eps_edit.setText("0,8/255")
    panel.steps.setValue(2)
    with qtbot.waitSignal(panel.screen_finished, timeout=60000):
        panel.run_button.click()
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    assert panel.table.rowCount() == 2 and panel.report_button.isEnabled()
    assert len(panel.curves["flip"].getData()[0]) == 2
    open_through_menu(window, path, monkeypatch)
    assert panel.table.rowCount() == 0 and not panel.report_button.isEnabled()
    assert panel.summary is None and panel.rows == [] and panel.status.text() == ""
    x, _ = panel.curves["flip"].getData()
    assert x is None or len(x) == 0
    assert not errors
