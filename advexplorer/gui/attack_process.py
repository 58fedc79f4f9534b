"""Live attacks in a process of their own, so that drawing them never slows them down.

A run in a worker *thread* shares the interpreter lock with the GUI thread, and Qt paints
while holding it: every frame drawn is time the attack waits (measured: a live run took
1.2–1.4× the headless one on a 2-core machine). Here one long-lived child process (spawned,
so it shares nothing with Qt) imports the engine, keeps the current model loaded, and runs
the very same :func:`advexplorer.gui.worker.run_job` generator the thread would; its
:class:`StepUpdate` and :class:`Phase` items and the final outcome come back pickled over a
pipe. The GUI process keeps its own copy of the model for everything else (saliency views,
reports, cohorts), and the finished run is summarised there with its own request, so a
:class:`RunSummary` from the process is the same as one from the thread.

What goes to the process: single runs on the CPU of a model loaded from a file, once the
process has that model loaded (:meth:`AttackProcess.can_run`). Everything else — the first
seconds after start-up while the process imports torch, batches, transfer runs, GPU
devices (a second copy of a large model in GPU memory is not worth it) — runs in a thread
as before. ``ADVEXPLORER_ATTACK_PROCESS=0`` turns the process off.

The model file is checked in the process by its SHA-256: a file changed on disk since the
GUI loaded it is refused with one line, not attacked under the old name.
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from advexplorer.errors import UserError

#: Seconds between two looks at cancel/pause while waiting for the process.
POLL_S = 0.05


#: Preferences → "Run live attacks in a process of their own" (set by the workspace).
PREFERENCE = True


def enabled() -> bool:
    """The process is used unless ``ADVEXPLORER_ATTACK_PROCESS`` is 0/no/off/false or the
    Preferences turned it off."""
    variable = os.environ.get("ADVEXPLORER_ATTACK_PROCESS", "1").strip().lower()
    return PREFERENCE and variable not in ("0", "no", "off", "false")


def set_preference(on: bool) -> None:
    """Preferences: off stops a running process (runs go to a thread); on starts it with the next model."""
    global PREFERENCE
    PREFERENCE = bool(on)
    if not PREFERENCE:
        stop()


def prepare(model, trust_pickle: bool = False) -> None:
    """Have the app's process (when it is used) load ``model`` for the next run."""
    if enabled() and model is not None:
        shared().preload(model, trust_pickle)


def stop() -> None:
    """End the app's process if it runs (e.g. to start again with other threads); the next
    :func:`prepare` starts a new one."""
    if _shared is not None and _shared.alive:
        _shared.shutdown()


@dataclass(frozen=True)
class ModelSpec:
    """How the process loads the GUI's model: the same file, card, device and trust."""

    path: str
    card_path: str
    device: str
    trust_pickle: bool
    sha256: str
    card_sha256: str | None = None

    @classmethod
    def of(cls, model, trust_pickle: bool) -> ModelSpec | None:
        """The spec of a LoadedModel, or None when the process cannot load it the same way
        (not on the CPU, or its card is not a file the process can read too)."""
        path, card_path = getattr(model, "path", None), getattr(model, "card_path", None)
        if path is None or card_path is None or str(getattr(model, "device", "")) != "cpu" \
                or not getattr(model, "sha256", None):
            return None
        return cls(str(Path(path).resolve()), str(Path(card_path).resolve()), "cpu", bool(trust_pickle),
                   str(model.sha256), getattr(model, "card_sha256", None))


class ProcessFailed(Exception):
    """An error raised in the process, with its own traceback text (for the details box)."""

    def __init__(self, message: str, details: str):
        super().__init__(message)
        self.details = details


# -- the child ------------------------------------------------------------------------------
#: The hidden first argument of ``advexplorer`` that makes a (frozen) app the attack process.
CHILD_COMMAND = "_attack-process"
KEY_VARIABLE = "ADVEXPLORER_ATTACK_KEY"  # the channel's key travels in the environment, not argv


class _Control:
    """A run's ``stop`` inside the process: True once the GUI cancelled it; waits while paused."""

    def __init__(self, number: int, state: dict):
        self.number, self.state = number, state

    def is_set(self) -> bool:
        state = self.state
        while state["paused"] and state["cancelled"] < self.number:
            time.sleep(POLL_S)
        return state["cancelled"] >= self.number


def _load(spec: ModelSpec, models: dict):
    model = models.get(spec)
    if model is None:
        from advexplorer.io.models import load_model

        model = load_model(spec.path, card=spec.card_path, device=spec.device, trust_pickle=spec.trust_pickle)
        changed = [Path(name).name for name, ok in ((spec.path, model.sha256 == spec.sha256),
                                                    (spec.card_path, model.card_sha256 == spec.card_sha256)) if not ok]
        if changed:  # the app runs its own copy in a thread instead
            raise UserError(f"{' and '.join(changed)} changed on disk since the app loaded the model; "
                            f"open it again (File → Open model…) to use the new one.")
        models.clear()  # one model at a time: the GUI has one
        models[spec] = model
    return model


def child_main(argv: list[str]) -> int:
    """The process: connect back, then ("load", spec) and ("run", number, spec, job) until
    ("quit",) or the end of the channel (the app closed or died), which exit at once.

    A listener thread takes ("cancel", number) and ("pause", flag) as they come, so a
    run in progress sees them after its current step.
    """
    from multiprocessing.connection import Client

    address, threads = argv[0], int(argv[1]) if len(argv) > 1 else 1
    connection = Client(address, authkey=bytes.fromhex(os.environ.pop(KEY_VARIABLE, "")))
    state = {"cancelled": 0, "paused": False}
    commands: queue.Queue = queue.Queue()

    def listen() -> None:
        while True:
            try:
                message = pickle.loads(connection.recv_bytes())
            except (EOFError, OSError):
                # The app closed the channel (quit, or died): nothing this process does can reach
                # anyone any more, so end now, even in the middle of importing torch or a step.
                os._exit(0)
            if message[0] == "quit":  # the app is closing: nothing left to do for it
                os._exit(0)
            if message[0] == "cancel":
                state["cancelled"] = max(state["cancelled"], message[1])
            elif message[0] == "pause":
                state["paused"] = bool(message[1])
            else:
                commands.put(message)

    threading.Thread(target=listen, daemon=True, name="advexplorer-attack-commands").start()
    import torch

    torch.set_num_threads(max(1, threads))
    from advexplorer.gui.worker import JobFailed, run_job

    models: dict = {}
    warmed = False

    def send(message) -> None:
        connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    while True:
        message = commands.get()
        kind = message[0]
        try:  # ("quit",) and the end of the channel end the process in the listener thread
            if kind == "load":
                try:
                    _load(message[1], models)
                    send(("loaded", message[1]))
                    if not warmed:  # saliency's and robustness's modules, before the first run needs them
                        warmed = True
                        from advexplorer.gui.engine import import_optional

                        import_optional()
                except Exception as error:  # the GUI runs in a thread instead; it has said nothing
                    send(("load-failed", message[1], f"{type(error).__name__}: {error}"))
            elif kind == "run":
                _run_one(message, models, state, send, run_job, JobFailed)
        except (EOFError, OSError):  # the app is gone
            return 0


def _run_one(message, models: dict, state: dict, send, run_job, job_failed) -> None:
    _, number, spec, job = message
    state["paused"] = False
    if state["cancelled"] >= number:
        send(("done", number, None))
        return
    try:
        job = replace(job, model=_load(spec, models))
        steps = run_job(job, stop=_Control(number, state))
        while True:
            try:
                item = next(steps)
            except StopIteration as finished:
                summary = finished.value
                send(("done", number, None if summary is None else (summary.outcome, summary.record)))
                return
            send(("item", number, item))
    except (EOFError, OSError, BrokenPipeError):
        raise
    except Exception as error:
        failure = error if isinstance(error, job_failed) else job_failed(error)
        send(("failed", number, failure.is_user_error, failure.message, failure.details))


# -- the GUI side ---------------------------------------------------------------------------
def child_command(address: str, threads: int) -> list[str]:
    """How to start the process: this Python with ``-m``, or the frozen app with its hidden command."""
    if getattr(sys, "frozen", False):
        return [sys.executable, CHILD_COMMAND, address, str(threads)]
    return [sys.executable, "-m", "advexplorer.gui.attack_process", address, str(threads)]


class AttackProcess:
    """The app's one attack process: started on demand, fed models and runs, stopped at exit."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.process: subprocess.Popen | None = None
        self.connection = None
        self.loaded: ModelSpec | None = None   # the model the process has ready
        self.messages: queue.Queue = queue.Queue()
        self.failure: str | None = None        # why the process is not used (None: it is)
        self._send_lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._pending: list = []               # what to send once the process has connected
        self._listener = None                  # until the process has called back
        self.refused: set[ModelSpec] = set()   # models the process could not load as the app did

    # lifecycle
    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> bool:
        """Start the process (once); False if it cannot be (then runs use a thread)."""
        if self.alive:
            return True
        if self.failure is not None or not enabled():
            return False
        from multiprocessing.connection import Listener

        from advexplorer.gui.engine import engine_threads

        key = secrets.token_bytes(32)
        try:
            listener = Listener(authkey=key)
            environment = dict(os.environ, **{KEY_VARIABLE: key.hex()})
            process = subprocess.Popen(child_command(listener.address, self.threads or engine_threads()),
                                       env=environment, stdin=subprocess.DEVNULL)
        except Exception as error:  # a sandbox without processes or sockets: threads it is
            self.failure = f"the attack process could not start ({type(error).__name__}: {error})"
            return False
        self.process, self.connection, self.loaded = process, None, None
        self._listener = listener
        self.messages = queue.Queue()
        threading.Thread(target=self._read, args=(listener, process, self.messages), daemon=True,
                         name="advexplorer-attack-reader").start()
        return True

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Close the channel (the process ends at EOF); terminate it if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        connection, self.connection = self.connection, None
        if connection is not None:
            # Said, not just closed: the reader thread is blocked on this socket, so closing it
            # here sends no end-of-file until that read returns.
            try:
                with self._send_lock:
                    connection.send_bytes(pickle.dumps(("quit",)))
            except OSError:
                pass
            connection.close()
        listener, self._listener = self._listener, None
        if listener is not None:  # a process that never called back: unblock the reader, remove the socket
            try:
                listener.close()
            except OSError:
                pass
        try:  # a process that has not called back yet is still importing torch: no reason to wait
            process.wait(timeout_s if connection is not None else 0)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(1.0)
            except subprocess.TimeoutExpired:
                process.kill()
        self.loaded = None

    def _send(self, message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            if self.connection is None:  # not connected yet: sent when it is
                self._pending.append(data)
                return
            self.connection.send_bytes(data)

    def _read(self, listener, process, messages: queue.Queue) -> None:
        """The reader thread: accept the process's call, then queue what it says."""
        try:
            connection = listener.accept()
        except Exception:  # the process died before it called, a stranger called, or shut down
            messages.put(("died",))
            return
        finally:
            if self._listener is listener:
                self._listener = None
                listener.close()
        with self._send_lock:
            if self.process is not process:  # shut down meanwhile
                connection.close()
                return
            self.connection = connection
            for data in self._pending:
                connection.send_bytes(data)
            self._pending = []
        while True:
            try:
                message = pickle.loads(connection.recv_bytes())
            except (EOFError, OSError):
                messages.put(("died",))
                return
            except Exception as error:  # an item that does not unpickle: the run must hear of it
                messages.put(("failed", None, False, f"{type(error).__name__}: {error}", ""))
                continue
            if message[0] == "loaded":
                self.loaded = message[1]
            elif message[0] == "load-failed":
                self.loaded = None
                self.refused.add(message[1])
            else:
                messages.put(message)

    # models and runs
    def preload(self, model, trust_pickle: bool = False) -> None:
        """Have ``model`` (a LoadedModel) ready in the process for the next run."""
        spec = ModelSpec.of(model, trust_pickle)
        if spec is None or spec in self.refused or (spec == self.loaded and self.alive) or not self.start():
            return  # refused once (the file changed since the app loaded it): not loaded again per run
        try:
            self._send(("load", spec))
        except OSError:
            pass

    def can_run(self, job) -> bool:
        """Whether ``job`` (a RunJob) can run in the process now (else: in a thread)."""
        if not self.alive or self.connection is None or job.surrogate is not None:
            return False
        spec = ModelSpec.of(job.model, job.trust_pickle)
        return spec is not None and spec == self.loaded

    def run(self, job, stop=None):
        """A generator like :func:`advexplorer.gui.worker.run_job`, run by the process.

        ``stop`` is the task's control (:class:`advexplorer.gui.worker.Control`): its cancel
        and pause reach the process at once; cancel is also checked here every ``POLL_S``.
        """
        from advexplorer.gui.worker import JobFailed, build_request, summarize

        spec = ModelSpec.of(job.model, job.trust_pickle)
        number = next(self._numbers)
        if stop is not None and hasattr(stop, "listen"):
            stop.listen(lambda what, value: self._mirror(number, what, value))
        try:
            self._send(("run", number, spec, replace(job, model=None, surrogate=None)))
        except OSError as error:
            raise JobFailed(RuntimeError(f"the attack process is gone ({error}); press Run again")) from error
        request = None
        cancelled = False
        while True:
            if stop is not None and stop.is_set() and not cancelled:
                cancelled = True
                self._mirror(number, "stop", True)
            try:
                message = self.messages.get(timeout=POLL_S)
            except queue.Empty:
                if not self.alive:
                    raise JobFailed(RuntimeError(self._death())) from None
                continue
            kind = message[0]
            if kind == "died":
                raise JobFailed(RuntimeError(self._death()))
            if message[1] not in (number, None):
                continue  # a cancelled run's last words
            if kind == "item":
                yield message[2]
                if request is None:  # the GUI's own request (its model), built while the attack runs
                    request = build_request(job)
            elif kind == "done":
                if message[2] is None:
                    return None
                outcome, record = message[2]
                return summarize(job, request or build_request(job), outcome, record)
            elif kind == "failed":
                _, _, is_user_error, text, details = message
                raise JobFailed(UserError(text) if is_user_error else ProcessFailed(text, details))

    def _mirror(self, number: int, what: str, value: bool) -> None:
        """The task's cancel/pause, passed on to the process."""
        try:
            self._send(("cancel", number) if what == "stop" else ("pause", bool(value)))
        except OSError:
            pass

    def _death(self) -> str:
        process = self.process
        code = None if process is None else process.poll()
        self.loaded = None
        return (f"The attack process ended unexpectedly (exit code {code}); nothing was saved from "
                f"this run. Press Run again (it runs in the app while the process restarts).")


_shared: AttackProcess | None = None


def shared() -> AttackProcess:
    """The app's attack process (not started until a model is preloaded)."""
    global _shared
    if _shared is None:
        _shared = AttackProcess()
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(_shared.shutdown)
    return _shared


def details_of(error: BaseException) -> str | None:
    """The process's traceback text for an error that came from it (None otherwise)."""
    return getattr(error, "details", None) if isinstance(error, ProcessFailed) else None


__all__: list[Any] = ["AttackProcess", "ModelSpec", "ProcessFailed", "child_main", "enabled", "shared"]

if __name__ == "__main__":  # python -m advexplorer.gui.attack_process ADDRESS THREADS
    from advexplorer.gui.attack_process import child_main as _child_main

    sys.exit(_child_main(sys.argv[1:]))
