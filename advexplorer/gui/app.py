"""Start the desktop app: QApplication, style, main window; then the engine in the background.

The window is shown *before* torch is imported (see :mod:`advexplorer.gui.engine`), so it
appears in about a second; Run becomes available when the engine and the model are ready.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QEvent, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication

from advexplorer.errors import UserError
from advexplorer.gui.main_window import MainWindow, StartOptions


@dataclass
class DemoOptions:
    """``advexplorer demo``: run PGD live on the bundled sample; optionally screenshot and exit."""

    steps: int = 20
    eps: float | None = None          # None: the card's suggested ε, else 8/255
    saliency: str | None = None
    screenshot: Path | None = None
    timeout_s: float = 600.0


def application() -> QApplication:
    """The QApplication (created once), with the app's name and dark style."""
    import pyqtgraph as pg

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    app.setApplicationName("AdvExplorer")
    app.setOrganizationName("AdvExplorer")
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    if not getattr(app, "_advexplorer_waits", False):
        # Background imports and loads cannot be interrupted: let them end before Python
        # tears the window's objects down, instead of emitting into deleted ones.
        app.aboutToQuit.connect(lambda: QThreadPool.globalInstance().waitForDone(15000))
        app._advexplorer_waits = True
    style = Path(__file__).with_name("style.qss")
    if style.is_file():
        from advexplorer.gui.icons import ICONS_DIR

        # Style sheets need absolute paths for images; the icons live in resources/icons.
        app.setStyleSheet(style.read_text(encoding="utf-8").replace("@ICONS@", ICONS_DIR.as_posix()))
    return app


def create_window(options: StartOptions | None = None) -> MainWindow:
    """Build and show the main window, then (on the next event-loop turn) open its content."""
    window = MainWindow(options)
    window.show()
    # Let the first frame paint before reading images and starting the engine thread.
    QTimer.singleShot(0, window.start)
    return window


class DemoDriver:
    """Waits until Run is possible, runs PGD, then saves a screenshot and quits (if asked)."""

    def __init__(self, window: MainWindow, demo: DemoOptions):
        self.window = window
        self.demo = demo
        self.exit_code = 0
        self.started = False
        window.non_interactive = demo.screenshot is not None
        window.run_enabled_changed.connect(self._maybe_start)
        window.run_finished.connect(self._finished)
        window.controller.failed.connect(self._failed)
        window.model_loaded.connect(lambda _m: QTimer.singleShot(0, lambda: self._maybe_start(window.can_run())))
        if demo.screenshot is not None:
            QTimer.singleShot(int(demo.timeout_s * 1000), self._timeout)

    def _maybe_start(self, enabled: bool) -> None:
        if not enabled or self.started or self.window.session.current is None:
            return
        self.started = True
        eps = self.demo.eps
        card = self.window.model.card if self.window.model is not None else None
        if eps is None and card is not None and isinstance(card.extra.get("suggested_eps"), (int, float)):
            eps = float(card.extra["suggested_eps"])
        eps = 8 / 255 if eps is None else eps
        panel = self.window.attack_panel
        panel.set_values(method="pgd", norm="linf", eps=f"{eps * 255:g}/255", steps=self.demo.steps,
                         step_size=None, seed=0, random_start=False, restarts=1, early_stop=False)
        if self.demo.saliency and panel.saliency.findData(self.demo.saliency) >= 0:
            panel.set_values(saliency=self.demo.saliency)
        self.window.start_run()

    def _finished(self, _summary) -> None:
        if self.demo.screenshot is not None:
            # One more turn of the event loop so the last redraw is on screen.
            QTimer.singleShot(150, self._screenshot)

    def _screenshot(self) -> None:
        path = Path(self.demo.screenshot)
        temporary = path.with_name(f".{path.stem}.part{path.suffix or '.png'}")
        if not self.window.grab().save(str(temporary), "PNG"):
            print(f"advexplorer: error: could not write {path}", file=sys.stderr)
            self.exit_code = 2
        else:
            temporary.replace(path)
            print(f"Saved screenshot {path}")
        self.window.close()
        QApplication.instance().exit(self.exit_code)

    def _failed(self, failure) -> None:
        if self.demo.screenshot is not None:
            print(f"advexplorer: error: the demo run failed: {failure.message}", file=sys.stderr)
            self.exit_code = 1
            self.window.close()
            QApplication.instance().exit(1)

    def _timeout(self) -> None:
        print(f"advexplorer: error: the demo did not finish within {self.demo.timeout_s:.0f} s",
              file=sys.stderr)
        self.window.close()
        QApplication.instance().exit(1)


def run_app(options: StartOptions | None = None, demo: DemoOptions | None = None,
            on_window: Callable[[MainWindow], None] | None = None) -> int:
    """Run the app until its window closes; returns the exit status."""
    started = time.perf_counter()
    app = application()
    window = create_window(options)
    window.startup_s = time.perf_counter() - started
    driver = DemoDriver(window, demo) if demo is not None else None
    if on_window is not None:
        on_window(window)
    code = app.exec()
    if driver is not None:
        code = code or driver.exit_code
    # Delete the window and collect Python garbage while Qt is still alive: left to the
    # interpreter's shutdown, wrapper objects can be torn down after their C++ side
    # (seen as a rare "none_dealloc" abort at exit).
    window.close()
    window.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    return int(code)


def check_demo_model() -> None:
    """The demo needs the bundled model; say how to get it when it is missing."""
    from advexplorer import paths

    if not paths.DEFAULT_MODEL.is_file():
        raise UserError(f"The bundled demo model {paths.DEFAULT_MODEL} is missing. Reinstall "
                        "AdvExplorer, or open your own model with `advexplorer gui --model M`.")
