"""Load the engine (torch and the attack code) in a background thread.

``import torch`` takes seconds; the window appears first and shows "Loading engine…",
and Run is enabled when :attr:`EngineLoader.ready` fires. Python's import lock makes a
second import of the same module wait for the first, so the GUI thread must simply not
touch torch until then.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time

from PySide6.QtCore import QObject, Signal

#: What the app needs before it can run an attack, in import order.
ENGINE_MODULES = (
    "torch",
    "advexplorer.core.attacks",
    "advexplorer.io.models",
    "advexplorer.io.images",
    "advexplorer.session.runs",
)
#: Imported after Run is enabled (saliency pulls in scipy, ~1.5 s): a first run with saliency
#: then rarely imports them in its worker thread while the GUI is drawing, and they do not
#: delay the model load or Run (a run that needs them first waits on Python's import lock).
OPTIONAL_MODULES = ("advexplorer.core.saliency", "advexplorer.core.robustness")


def module_exists(name: str) -> bool:
    """Whether a module is installed/written, without importing it (cheap, no torch)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


#: Preferences → Torch threads (0: automatic); set by the workspace at start and on OK.
THREADS_PREFERENCE = 0


def engine_threads() -> int:
    """Torch threads for attacks in the app: all cores but one, which stays free for drawing.

    On a small machine this matters a lot: torch's threads spin while they wait, and a
    GUI thread competing with them for the only other core slows *both* down (measured
    10× slower for PGD on a 2-core box under load). ``ADVEXPLORER_THREADS=N`` overrides,
    then the Preferences' number (:data:`THREADS_PREFERENCE`).
    """
    override = os.environ.get("ADVEXPLORER_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    if THREADS_PREFERENCE > 0:
        return THREADS_PREFERENCE
    return max(1, (os.cpu_count() or 2) - 1)


def set_threads_preference(threads: int) -> bool:
    """Use ``threads`` (0: automatic) from now on; True when the engine's count changed.

    A loaded engine switches at once; the attack process, started with the old count, is
    stopped and starts again with the new one for the next run."""
    global THREADS_PREFERENCE
    before = engine_threads()
    THREADS_PREFERENCE = max(0, int(threads))
    if engine_threads() == before:
        return False
    torch = sys.modules.get("torch")  # only once the engine has imported it
    if torch is not None:
        torch.set_num_threads(engine_threads())
    from advexplorer.gui import attack_process

    attack_process.stop()  # it starts again, with the new count, for the next model or run
    return True


def import_engine() -> float:
    """Import :data:`ENGINE_MODULES`; the seconds it took."""
    started = time.perf_counter()
    for name in ENGINE_MODULES:
        importlib.import_module(name)
    import torch

    torch.set_num_threads(engine_threads())
    return time.perf_counter() - started


def import_optional() -> float:
    """Import :data:`OPTIONAL_MODULES` that exist; the seconds it took."""
    started = time.perf_counter()
    for name in OPTIONAL_MODULES:
        if module_exists(name):
            importlib.import_module(name)
    return time.perf_counter() - started


class EngineLoader(QObject):
    """Imports :data:`ENGINE_MODULES` off the GUI thread; ``ready(seconds)`` or ``failed(text)``.

    It runs on the app's task runner like every other background job.
    """

    ready = Signal(float)
    failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        from advexplorer.gui.worker import TaskRunner

        self.is_ready = False
        self.seconds = 0.0
        self._started = False
        self._done = threading.Event()
        self.tasks = TaskRunner(self)
        self.tasks.finished_run.connect(self._mark_ready)
        self.tasks.failed.connect(self._failed)
        self.tasks.stopped.connect(self._done.set)
        self.warm_tasks = TaskRunner(self)  # the optional modules, once Run is possible
        self._warmed = False

    def _mark_ready(self, seconds: float) -> None:
        self.is_ready = True
        self.seconds = seconds
        self.ready.emit(seconds)

    def _failed(self, failure) -> None:  # a broken install: say what failed, keep the window
        self.failed.emit(f"{failure.message}\n\n{failure.details}")

    def start(self) -> None:
        """Begin importing (once)."""
        if self._started:
            return
        from advexplorer.gui.worker import call_task

        self._started = True
        self.tasks.start(call_task, import_engine)

    def warm_up(self) -> None:
        """Import the optional modules in the background (once, after the engine)."""
        if self._warmed or not self.is_ready:
            return
        from advexplorer.gui.worker import call_task

        self._warmed = True
        self.warm_tasks.start(call_task, import_optional)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the import has ended (tests, the demo); True if it ended.

        The result is delivered through the event loop, so this processes events while waiting.
        """
        from PySide6.QtCore import QCoreApplication

        if not self._started:
            return False
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._done.is_set():
            QCoreApplication.processEvents()
            if deadline is not None and time.perf_counter() > deadline:
                return False
            time.sleep(0.01)
        return True
