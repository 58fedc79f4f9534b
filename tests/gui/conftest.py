"""Fixtures for the desktop app tests: a tiny TorchScript model with its card, small images.

Everything is offscreen (``QT_QPA_PLATFORM=offscreen``) and the app's settings go to a
temporary file, so tests never touch a user's layout or recent files.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(),
                                      nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.Tanh(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A 3-class TorchScript CNN on 16×16 RGB input, with its card beside it."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    network = _TinyNet().eval()
    path = folder / "tiny.pt"
    torch.jit.script(network).save(str(path))
    card = {"name": "Tiny test net", "classes": ["benign", "tumour", "stroma"],
            "input_size": [16, 16], "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    (folder / "tiny.json").write_text(json.dumps(card))
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from advexplorer.io.models import load_model

    return load_model(tiny_model_path, device="cpu")


@pytest.fixture
def image_files(tmp_path):
    """Two RGB images: 32×24 and 20×20 (file sizes differ from the model's 16×16)."""
    rng = np.random.default_rng(0)
    paths = []
    for name, (h, w) in (("a.png", (24, 32)), ("b.png", (20, 20))):
        path = tmp_path / name
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session", autouse=True)
def _collect_qt_garbage_while_qt_lives():
    """Collect Python wrappers of Qt objects before interpreter shutdown (see gui.app.run_app)."""
    yield
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    from PySide6.QtCore import QThreadPool

    if QCoreApplication.instance() is not None:
        QThreadPool.globalInstance().waitForDone(10000)
        QCoreApplication.processEvents()  # workers' last signals, while their receivers live
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    """Settings and the autosave/recovery folder go to the test's own folder."""
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("ADVEXPLORER_SETTINGS", str(path))
    monkeypatch.setenv("ADVEXPLORER_DATA_DIR", str(tmp_path / "data"))
    return path


@pytest.fixture
def errors(monkeypatch):
    """Record error dialogs instead of blocking on them."""
    from PySide6.QtWidgets import QMessageBox

    shown = []

    def fake_exec(box):
        shown.append((box.windowTitle(), box.text()))
        if box.windowTitle() == "Quit AdvExplorer":  # closing a test window discards its work
            return QMessageBox.StandardButton.Discard
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return shown


@pytest.fixture
def window(qtbot, settings_file, errors, tiny_model, image_files):
    """The main window with the tiny model loaded and the two images open, engine ready."""
    from advexplorer.gui.app import application
    from advexplorer.gui.main_window import MainWindow, StartOptions

    application()
    win = MainWindow(StartOptions(use_default_model=False, images=list(image_files)))
    qtbot.addWidget(win)
    win.show()
    win.start()
    qtbot.waitUntil(lambda: win.engine.is_ready, timeout=30000)
    win.set_model(tiny_model)
    assert win.can_run()
    yield win
    stop_tasks(win)


def stop_tasks(win) -> None:
    """Every background task ends with its window (run, model load, cohort), so no worker
    outlives the test and nothing Qt-owned is left for the interpreter's shutdown."""
    for tasks in (win.controller, win.models.tasks, win.cohort_panel.controller, win.engine.tasks):
        if tasks.running:
            tasks.stop_and_wait(10000)


@pytest.fixture
def fresh_window(qtbot, settings_file, errors):
    """``fresh_window()``: another main window, empty (no model, no images), engine ready —
    where a saved project is opened; its tasks are stopped after the test."""
    from advexplorer.gui.main_window import MainWindow, StartOptions

    made = []

    def make():
        win = MainWindow(StartOptions(use_default_model=False, images=[]))
        qtbot.addWidget(win)
        win.show()
        win.start()
        qtbot.waitUntil(lambda: win.engine.is_ready, timeout=30000)
        made.append(win)
        return win

    yield make
    for win in made:
        stop_tasks(win)


@pytest.fixture
def wand_in_a_worker(monkeypatch):
    """Every image counts as large for the magic wand and the fill tool (they then work in a
    worker); returns a list that gets, per flood fill, whether it ran on the GUI thread."""
    import threading

    from advexplorer.core import stain as core_stain
    from advexplorer.gui import canvas as canvas_module

    monkeypatch.setattr(canvas_module, "WAND_BACKGROUND_PIXELS", 100)
    on_gui_thread = []
    real = core_stain.magic_wand

    def recording(*args, **kwargs):
        on_gui_thread.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(core_stain, "magic_wand", recording)
    return on_gui_thread
