"""Running attacks off the GUI thread, over the same generator the CLI uses.

:func:`run_job` wraps :func:`advexplorer.session.runs.run_steps`: it builds the
:class:`RunRequest` from copies taken when Run was pressed (so the user can keep painting),
collects the engine's steps as numpy copies and hands them to the GUI in batches about
25 times a second (:class:`StepUpdate`: every step's probabilities and loss, plus the
latest images) — so a fast attack does not pay a signal and a Python callback per step
on the GUI thread — and returns a :class:`~advexplorer.session.state.RunSummary`. After
the last step it yields :class:`Phase` updates (scoring the 8-bit export, saliency maps,
robustness numbers), so the GUI can show that work as its own progress.

:class:`TaskRunner` is the app's one way to run work off the GUI thread: engine import,
model loading, runs, batches and cohort screens each own one. It drives a generator in a
superqt ``GeneratorWorker``; a cancel is checked after every engine step (a
``threading.Event``), pause/resume between yields. A plain function becomes a task with
:func:`call_task`.

superqt's worker swallows a ``RuntimeError`` from the generator (it takes it for a
deleted Qt object) without emitting ``errored`` — and torch raises RuntimeError for most
failures — so every exception is re-raised as :class:`JobFailed`.
"""

from __future__ import annotations

import inspect
import threading
import time
import traceback
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import GeneratorWorker

from advexplorer.errors import UserError
from advexplorer.session.state import RunSummary

#: Seconds between two batches sent to the GUI (each carries every step since the last).
#: A batch leaves only at the end of a step, so batches arrive this interval plus part of a
#: step apart: 1/30 s keeps them above the 20 a second the eye needs, and the GUI's own
#: throttle (25 Hz) caps the redraws.
UPDATE_INTERVAL_S = 1 / 30
#: Pool threads: engine import, a model load, a run and a cohort screen may overlap, and
#: Qt's default (one per core) would queue one behind another on a 2-core machine.
MIN_POOL_THREADS = 4


class JobFailed(Exception):
    """An exception raised inside a worker, carried to the GUI thread with its traceback."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error
        self.is_user_error = isinstance(error, UserError)
        remote = getattr(error, "details", None)  # raised in the attack process: its traceback
        self.details = remote if isinstance(remote, str) and remote else \
            "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.remote = isinstance(remote, str)

    @property
    def message(self) -> str:
        if self.is_user_error or self.remote:  # the process's text already names the type
            return str(self.error)
        return f"{type(self.error).__name__}: {self.error}"


@dataclass
class RunJob:
    """What one run needs, all of it copied on the GUI thread when Run was pressed."""

    model: Any                               # advexplorer.io.models.LoadedModel
    image_path: Path
    config_kwargs: dict
    allowed_at_file_size: np.ndarray | None  # H×W uint8 at file size (None = no mask)
    mask_mode: str                           # 'none' | 'allowed' | 'protect'
    diagnostic_at_file_size: np.ndarray | None = None
    mask_path: Path | None = None
    diagnostic_path: Path | None = None
    label: int | None = None
    saliency: str | None = None
    number: int = 0
    command_line: list[str] = field(default_factory=lambda: ["advexplorer", "gui"])
    #: Transfer: the model the attack is crafted on — a LoadedModel, or the Path of one the
    #: worker loads on the target's device (the CLI's --surrogate); None attacks ``model``.
    surrogate: Any = None
    trust_pickle: bool = False
    #: A tile cut in the slide view: its slide region (io.slides.tile_region), so the run's
    #: record names the slide and the region, as the CLI's --image SLIDE --region does.
    region: dict | None = None
    dicom_window: tuple[float, float] | None = None  # a DICOM file's window; None: the file's


@dataclass
class StepUpdate:
    """The engine steps since the last update, as numpy copies the GUI may keep (one image).

    ``indices``/``restarts_seen``/``losses`` have one entry per step and ``probabilities``
    one row (K values) per step; ``index``/``restart`` are the latest step's, and the
    images (H×W×C float32) are the latest step's too (None in batch mode).
    """

    indices: np.ndarray               # (n,)
    restarts_seen: np.ndarray         # (n,)
    probabilities: np.ndarray         # (n, K)
    losses: np.ndarray                # (n,)
    total_steps: int
    restarts: int
    success: bool
    elapsed_s: float                  # since the first step (the clean image scored): the attack's own time
    adversarial: np.ndarray | None
    perturbation: np.ndarray | None
    original: np.ndarray | None = None
    stage: str | None = None          # the ensemble's running attack ('apgd-t'), else None
    #: Transfer runs: the target's probabilities (K) for the latest step's image, and for the
    #: clean image (sent once, with ``original``); the rows above are then the surrogate's.
    target_probabilities: np.ndarray | None = None
    target_before: np.ndarray | None = None

    @property
    def index(self) -> int:
        return int(self.indices[-1])

    @property
    def restart(self) -> int:
        return int(self.restarts_seen[-1])

    @property
    def count(self) -> int:
        return len(self.indices)

    @property
    def is_last(self) -> bool:
        return self.index == self.total_steps and self.restart == self.restarts - 1


@dataclass(frozen=True)
class Phase:
    """Work after the last attack step: ``label`` ('Scoring the 8-bit export…'), ``index`` of ``total``."""

    label: str
    index: int
    total: int


def _hwc(tensor) -> np.ndarray:
    """First image of an N×C×H×W tensor as a contiguous H×W×C float32 numpy copy."""
    return np.ascontiguousarray(tensor[0].detach().float().cpu().permute(1, 2, 0).numpy())


def build_request(job: RunJob):
    """The :class:`RunRequest` the CLI would build for the same inputs (engine needed)."""
    from advexplorer.core.attacks import AttackConfig
    from advexplorer.io.dicom import is_dicom_file, load_dicom_image
    from advexplorer.io.images import load_image, mask_to_model
    from advexplorer.session.runs import RunRequest

    card = job.model.card
    if job.region is not None:
        from advexplorer.io.slides import load_tile

        image = load_tile(job.image_path, job.region, card)
    elif is_dicom_file(job.image_path):  # as --dicom-window does: the window is recorded
        image = load_dicom_image(job.image_path, card, job.dicom_window)
    else:
        image = load_image(job.image_path, card)
    width, height = image.file_size
    allowed = diagnostic = None
    for name, array in (("mask", job.allowed_at_file_size), ("diagnostic region", job.diagnostic_at_file_size)):
        if array is not None and array.shape != (height, width):
            raise UserError(f"The {name} is {array.shape[1]}×{array.shape[0]} but {image.name} is "
                            f"{width}×{height}; repaint or reload the mask for this image.")
    if job.allowed_at_file_size is not None:
        allowed = mask_to_model(job.allowed_at_file_size, card)
        if not bool(allowed.any()):
            raise UserError("At the model's input size the mask leaves no pixel for the attack to "
                            "change. Protect less, or allow a larger region.")
    if job.diagnostic_at_file_size is not None:
        diagnostic = mask_to_model(job.diagnostic_at_file_size, card)
        if not bool(diagnostic.any()):
            diagnostic = None
    config = AttackConfig(**job.config_kwargs).validate()
    surrogate = job.surrogate
    if surrogate is not None and not hasattr(surrogate, "classifier"):  # a path: load it now
        from advexplorer.io.models import load_model

        surrogate = load_model(Path(surrogate), device=str(job.model.device), trust_pickle=job.trust_pickle)
    return RunRequest(model=job.model, image=image, config=config, allowed_mask=allowed,
                      mask_mode=job.mask_mode if allowed is not None else "none",
                      mask_path=job.mask_path, diagnostic_mask=diagnostic,
                      diagnostic_path=job.diagnostic_path, label=job.label,
                      saliency=job.saliency, command_line=list(job.command_line), surrogate=surrogate)


def run_job(job: RunJob, update_interval_s: float = UPDATE_INTERVAL_S, *, with_images: bool = True,
            stop: threading.Event | None = None) -> Generator[StepUpdate, None, RunSummary | None]:
    """Yield :class:`StepUpdate` batches; return the finished :class:`RunSummary`.

    ``stop`` is checked after every engine step: once set, the batch so far is yielded at
    once (so the worker can see its abort flag) and no further step is computed.
    """
    try:
        return (yield from _run_job(job, update_interval_s, with_images, stop))
    except GeneratorExit:
        raise
    except Exception as error:  # see the module docstring: never let a RuntimeError through
        raise JobFailed(error) from error


def _run_job(job: RunJob, update_interval_s: float, with_images: bool, stop: threading.Event | None):
    from advexplorer.session.runs import build_record, run_steps

    request = build_request(job)
    explain = bool(request.saliency or request.robustness)
    # The attack and the 8-bit scoring run in the engine's generator; saliency and robustness
    # are computed here, one phase each, so the GUI can say which one it is waiting for.
    steps = run_steps(replace(request, saliency=None, robustness=False) if explain else request)
    phases = 3 if explain else 1
    restarts = int(request.config.restarts)
    last_yield = -float("inf")
    first_step_at = None
    pending: list = []
    original_sent = False
    while True:
        try:
            step = next(steps)
        except StopIteration as stop_iteration:
            outcome = stop_iteration.value
            break
        pending.append((int(step.index), int(step.restart),
                        step.probabilities[0].detach().float().cpu().numpy(), float(step.loss[0])))
        now = time.perf_counter()
        if first_step_at is None:  # step 0: loading, set-up and the clean pass are behind us
            first_step_at = now
        final = step.index == step.total_steps and step.restart == restarts - 1
        stopping = stop is not None and stop.is_set()
        if not (final or stopping or not original_sent or now - last_yield >= update_interval_s):
            continue
        last_yield = now
        adversarial = perturbation = original = target_before = target_now = None
        if request.surrogate is not None:  # the steps are the surrogate's; ask the target too
            target_now = _target_probabilities(request, step.adversarial)
            if not original_sent:
                target_before = _target_probabilities(request, step.images)
        if with_images:
            adversarial = _hwc(step.adversarial)
            perturbation = _hwc(step.adversarial - step.images)
            if not original_sent:
                original = _hwc(step.images)
        original_sent = True
        yield StepUpdate(
            indices=np.array([p[0] for p in pending]), restarts_seen=np.array([p[1] for p in pending]),
            probabilities=np.stack([p[2] for p in pending]), losses=np.array([p[3] for p in pending]),
            total_steps=int(step.total_steps), restarts=restarts, success=bool(step.success[0]),
            elapsed_s=now - first_step_at, adversarial=adversarial, perturbation=perturbation, original=original,
            stage=getattr(step, "stage", None), target_probabilities=target_now, target_before=target_before)
        pending = []
        if stopping:
            return None  # the worker aborts at the yield above; this only ends a direct caller
        if final:
            yield Phase("Scoring the 8-bit export…", 1, phases)
    if explain:
        outcome = yield from _explain(request, outcome, phases)
    record = build_record(request, outcome)
    return summarize(job, request, outcome, record)


def _target_probabilities(request, images) -> np.ndarray:
    """The target model's probabilities (K) for the first image of ``images`` (one forward pass)."""
    import torch

    with torch.no_grad():
        logits = request.model.classifier(images[:1].to(request.model.device))
    return torch.softmax(logits.float(), dim=1)[0].cpu().numpy().copy()


def _explain(request, outcome, phases: int):
    """Saliency before/after and robustness for a finished attack, as ``run_steps`` would."""
    started = time.perf_counter()
    result = outcome.result
    explanation = robustness = None
    classifier = request.model.classifier
    images = request.image.tensor[None].to(request.model.device)
    if request.saliency:
        yield Phase(f"Saliency maps before and after ({request.saliency})…", 2, phases)
        from advexplorer.session.runs import explain_request

        explanation = explain_request(request, classifier, images, result)
    yield Phase("Robustness numbers (margin, Lipschitz, noise)…", phases, phases)
    from advexplorer.core.robustness import robustness_summary

    mask = None if request.allowed_mask is None else request.allowed_mask.to(request.model.device)
    robustness = robustness_summary(classifier, images, allowed_mask=mask, norm=request.config.norm,
                                    eps=request.config.eps, label=request.label, seed=result.seed)
    return replace(outcome, explanation=explanation, robustness=robustness,
                   wall_time_s=outcome.wall_time_s + time.perf_counter() - started)


def summarize(job: RunJob, request, outcome, record: dict) -> RunSummary:
    """Turn the engine's outcome into the numpy-only :class:`RunSummary` the GUI keeps."""
    from advexplorer.core.attacks import perturbation_norms

    result = outcome.result
    norms = {k: float(v[0]) for k, v in perturbation_norms(result.perturbation).items()}
    step_index = np.array([index for _, index in result.trajectory_steps], dtype=np.int64)
    return RunSummary(
        number=job.number, image_path=Path(job.image_path), model_name=request.model.card.name,
        classes=tuple(request.model.card.classes), config=result.config.to_json(),
        mask_mode=request.mask_mode,
        original=_hwc(result.images), adversarial=_hwc(result.adversarial),
        perturbation=_hwc(result.perturbation),
        probability_trajectory=result.probability_trajectory[:, 0].detach().float().cpu().numpy().copy(),
        loss_trajectory=result.loss_trajectory[:, 0].detach().float().cpu().numpy().copy(),
        step_index=step_index,
        prediction_before=int(result.clean_prediction[0]),
        prediction_after=int(result.adversarial_prediction[0]),
        probability_before=result.clean_probabilities[0].detach().float().cpu().numpy().copy(),
        probability_after=result.adversarial_probabilities[0].detach().float().cpu().numpy().copy(),
        success=bool(result.success[0]), label=request.label,
        target=None if result.targets is None else int(result.targets[0]),
        norms=norms, wall_time_s=float(outcome.wall_time_s), record=record,
        saliency=outcome.explanation, request=request, outcome=outcome,
    )


def batch_job(jobs: list[RunJob], *, stop: threading.Event | None = None) -> Generator[tuple, None, list]:
    """Run several jobs in turn; yield ``("step", i, update)`` and ``("done", i, summary or JobFailed)``.

    One image failing (a mask that does not fit, say) is reported in its row and the batch
    goes on with the next image.
    """
    summaries = []
    surrogate = None  # a transfer batch loads its surrogate once, with the first image
    for position, job in enumerate(jobs):
        if surrogate is not None and isinstance(job.surrogate, Path) and \
                Path(job.surrogate).resolve() == Path(surrogate.path).resolve():
            job = replace(job, surrogate=surrogate)
        steps = run_job(job, update_interval_s=0.25, with_images=False, stop=stop)
        while True:
            try:
                update = next(steps)
            except StopIteration as finished:
                if finished.value is None:  # stopped
                    return summaries
                summaries.append(finished.value)
                surrogate = getattr(finished.value.request, "surrogate", None) or surrogate
                yield ("done", position, finished.value)
                break
            except JobFailed as failure:
                summaries.append(failure)
                yield ("done", position, failure)
                break
            yield ("step", position, update)
        if stop is not None and stop.is_set():
            break
    return summaries


def call_task(function, *args, **kwargs) -> Generator[None, None, Any]:
    """A plain call (importing the engine, loading a model) as a task: no steps, one result."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # see the module docstring: never let a RuntimeError through
        raise JobFailed(error) from error
    yield  # unreachable; makes this a generator function  # noqa


class Control:
    """A task's cancel and pause, as the task sees them: ``is_set()`` like a ``threading.Event``
    (set: stop after the current step), plus listeners told ``("stop", True)`` and
    ``("pause", flag)`` at once — the attack process mirrors them into its own events."""

    def __init__(self):
        self._stop = threading.Event()
        self._listeners: list = []

    def is_set(self) -> bool:
        return self._stop.is_set()

    def set(self) -> None:
        self._stop.set()
        self._tell("stop", True)

    def pause(self, paused: bool) -> None:
        self._tell("pause", paused)

    def listen(self, listener) -> None:
        self._listeners.append(listener)

    @property
    def listened(self) -> bool:
        """A task that listens pauses itself (the attack process); others pause between yields."""
        return bool(self._listeners)

    def _tell(self, what: str, value: bool) -> None:
        for listener in list(self._listeners):
            listener(what, value)


class TaskRunner(QObject):
    """Runs one generator at a time off the GUI thread; start, pause, resume, cancel.

    Signals: ``step(object)`` per yielded item, ``finished_run(object)`` with the return
    value, ``failed(JobFailed)``, ``cancelled()``, ``stopped()`` (always, last), and
    ``paused_changed(bool)``.
    """

    step = Signal(object)
    finished_run = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    stopped = Signal()
    paused_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.worker: GeneratorWorker | None = None
        self.stop_event = Control()
        self._self_paused = False  # a task that pauses itself (Control.listened) is paused
        self.pool = QThreadPool.globalInstance()
        if self.pool.maxThreadCount() < MIN_POOL_THREADS:
            self.pool.setMaxThreadCount(MIN_POOL_THREADS)

    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def paused(self) -> bool:
        return self.worker is not None and (self._self_paused or self.worker.is_paused)

    def start(self, generator_function, *args, **kwargs) -> None:
        """Run ``generator_function(*args, **kwargs)`` in the thread pool.

        A function with a ``stop`` parameter also gets ``stop=event``: :meth:`cancel` sets
        the event, so it can stop inside a batch instead of at its next yield.
        """
        if self.worker is not None:
            raise RuntimeError("a task is already in progress")
        self.stop_event = Control()
        target = generator_function.func if hasattr(generator_function, "func") else generator_function
        try:
            takes_stop = "stop" in inspect.signature(target).parameters
        except (TypeError, ValueError):
            takes_stop = False
        if takes_stop:
            kwargs["stop"] = self.stop_event
        worker = GeneratorWorker(generator_function, *args, **kwargs)
        worker.yielded.connect(self.step)
        worker.returned.connect(self.finished_run)
        worker.errored.connect(self._errored)
        worker.aborted.connect(self.cancelled)
        worker.paused.connect(self._paused)
        worker.resumed.connect(self._resumed)
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()

    def _paused(self) -> None:
        self.paused_changed.emit(True)

    def _resumed(self) -> None:
        self.paused_changed.emit(False)

    def _errored(self, error: Exception) -> None:
        self.failed.emit(error if isinstance(error, JobFailed) else JobFailed(error))

    def _finished(self) -> None:
        self.worker = None
        self._self_paused = False
        self.stopped.emit()

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.stop_event.listened:  # it waits where it is, and says so now
            self._self_paused = not self._self_paused
            self.stop_event.pause(self._self_paused)
            self.paused_changed.emit(self._self_paused)
        else:
            self.worker.toggle_pause()

    def cancel(self) -> None:
        """Ask the worker to stop; it does after the engine step in progress."""
        if self.worker is not None:
            self.stop_event.set()
            self.worker.quit()
            if self._self_paused:
                self._self_paused = False
                self.stop_event.pause(False)
            if self.worker.is_paused:
                self.worker.resume()

    def stop_and_wait(self, timeout_ms: int = 10000) -> bool:
        """Cancel and block until the worker thread has ended (closing the window)."""
        self.cancel()
        done = self.pool.waitForDone(timeout_ms)
        if done:  # the worker's own "finished" arrives later through the (stopped) event loop
            self.worker = None
        return done


#: The name the cohort panel and older code use.
RunController = TaskRunner
