"""The Cohort panel inside the main window: where it opens, what its rows ask for, and what a
screen's defence row means (parsing it, the two numbers, the summary and report it writes);
and the screen as the worker runs it (:class:`CohortJob` in, :func:`cohort_job`,
:class:`CohortOutcome` out).

Torch-free at import, like the panel: the engine is imported inside the functions that need it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow

from advexplorer.config import DEFENCE_KINDS, AttackConfig, eps_argument
from advexplorer.errors import UserError
from advexplorer.gui.worker import JobFailed
from advexplorer.session.defended import defence_settings

#: The attack form's fields (AttackPanel.set_values keywords) a cohort row may set when it asks
#: to open its image (:func:`form_values`), and that a screen's settings fill in
#: (:func:`attack_settings`). AttackConfig fields the form does not show (queries, diversity)
#: are left out rather than refused by it; ``label`` and ``saliency`` are form fields that
#: AttackConfig.to_json has not, so attack_settings never yields them.
FORM_KEYS = ("method", "norm", "eps", "step_size", "steps", "restarts", "random_start", "seed",
             "early_stop", "decay", "targeted", "label", "saliency")


def form_values(settings: dict | None) -> dict:
    """The attack form's values for a cohort row's settings (ε as text such as '3/255')."""
    values = {key: value for key, value in (settings or {}).items() if key in FORM_KEYS}
    for key in ("eps", "step_size"):
        if isinstance(values.get(key), (int, float)) and not isinstance(values[key], bool):
            values[key] = eps_argument(values[key])
    return values


def attack_settings(config_kwargs: dict, eps: float) -> dict:
    """The attack form's values (:meth:`AttackPanel.set_values` keys) for one image of a screen.

    The screen's own settings at budget ``eps``, written as the form shows it ('3/255'),
    with early stop on because the screen counts an image as flipped at the first iterate
    that flips it.
    """
    config = AttackConfig(**{**config_kwargs, "eps": eps})
    settings = {key: value for key, value in config.to_json().items() if key in FORM_KEYS}
    settings["eps"] = eps_argument(eps) if config.norm == "linf" else repr(float(eps))
    settings["early_stop"] = True
    return settings


class CohortDockController(QObject):
    """Keeps the Cohort dock inside the screen: it opens floating, sized to the screen's
    available area, and if docking it would push the window past the screen it is tabbed
    with the Results dock instead (its curves need height a bottom dock cannot give)."""

    def __init__(self, window: QMainWindow, dock: QDockWidget, results_dock: QDockWidget):
        super().__init__(window)
        self.window, self.dock, self.results_dock = window, dock, results_dock
        dock.topLevelChanged.connect(self._floating_changed)

    def _floating_changed(self, floating: bool) -> None:
        if not floating:
            QTimer.singleShot(0, self.keep_on_screen)

    def _screen(self):
        return (self.window.screen() or self.dock.screen()).availableGeometry()

    def show(self) -> None:
        dock = self.dock
        if not dock.isVisible() and not dock.isFloating():
            dock.setFloating(True)
            screen = self._screen()
            dock.resize(max(min(1100, screen.width() - 80), 200), max(min(760, screen.height() - 80), 200))
            frame = self.window.frameGeometry()
            dock.move(max(screen.left(), min(frame.x() + 40, screen.right() - dock.width())),
                      max(screen.top(), min(frame.y() + 60, screen.bottom() - dock.height())))
        dock.show()
        dock.raise_()

    def keep_on_screen(self) -> None:
        screen = self._screen()
        frame = self.window.frameGeometry()
        if frame.height() > screen.height() or frame.width() > screen.width():
            self.window.tabifyDockWidget(self.results_dock, self.dock)
            self.dock.raise_()
            self.window.setGeometry(self.window.geometry().intersected(screen))


# ------------------------------------------------------------------ defence, adaptive, precision

#: The adaptive modes as the panel lists them: key, short label, what it means (one line).
ADAPTIVE_CHOICES = (
    ("none", "naive", "naive: the attack's gradients go through the defence as implemented, so a "
                      "defence that rounds or compresses can blind it (no gradient) and merely look robust"),
    ("bpda", "BPDA", "BPDA: the real defence on the forward pass, the identity on the backward pass, "
                     "so the attack sees through rounding and compression (Athalye et al. 2018)"),
    ("eot", "EOT", "EOT: the logits averaged over draws of a random defence, with BPDA through each, "
                   "so the attack follows the expected gradient (Athalye et al. 2018)"),
)
ADAPTIVE_TOOLTIP = ("How the attack treats the defence.\n"
                    + "\n".join(f"• {text}" for _key, _label, text in ADAPTIVE_CHOICES)
                    + "\nWith BPDA or EOT the naive attack is screened too and both robust accuracies are "
                      "shown. A defence screened only naively proves little: its robustness may be a "
                      "hidden gradient.")
PRECISION_TOOLTIP = ("Screen the model at this precision: float16/bfloat16 weights, int8 (dynamic quantisation "
                     "of Linear layers) or int8-static (convolutions too, calibrated on the cohort's first "
                     "64 images); quantised models are attacked with BPDA through the quantiser.")


def parse_defence_form(kind: str | None, value: str, adaptive: str | None, precision: str | None) -> dict:
    """The defence row's values, parsed by :func:`advexplorer.session.defended.defence_settings`
    (the CLI's parsers): ``{"defence": "jpeg:75" | None, "adaptive", "precision"}``.

    ``kind`` None means no defence (the adaptive mode is then ``none``). A bad value raises
    :class:`UserError` with the CLI's one line, worded for the form ("Defence 'bits:9': …").
    """
    text = f"{kind}:{str(value).strip()}" if kind else None
    try:
        return defence_settings(text, adaptive if kind else "none", precision)
    except UserError as error:
        message = str(error).replace("--defense ", "Defence ", 1).replace("--precision ", "Precision ", 1)
        raise UserError(message) from None


@dataclass
class CohortOutcome:
    """What a finished screen of the panel hands back to the GUI thread.

    ``result``: the screen's own :class:`~advexplorer.core.screening.ScreenResult` (through the
    defence, with the adaptive attack when one was chosen); ``naive``: the naive attack's beside
    an adaptive one, else None; ``info``: :func:`advexplorer.session.defended.defend_model`'s
    entries; ``model``: the screened (wrapped) LoadedModel; ``cohort``: the opened cohort.
    """

    result: object
    naive: object | None = None
    info: dict = field(default_factory=dict)
    model: object | None = None
    cohort: object | None = None
    fingerprint: str = ""
    #: ``summary.json`` as the CLI writes it, built in the worker (its flags probe the model).
    summary: dict | None = None
    elapsed_s: float = 0.0


def defence_table_cells(defence: dict) -> tuple[list[str], list[tuple[list[str], bool]]]:
    """The report's defence table (:func:`advexplorer.report.cohort.defence_table`) as the
    panel shows it: "gradient hidden" joins the gap's cell instead of a column of its own."""
    from advexplorer.report.cohort import defence_table as report_table

    head, body = report_table(defence)
    if len(head) < 5:
        return head, body
    return head[:4], [(cells[:3] + [cells[3] + (" · gradient hidden" if hidden else "")], hidden)
                      for cells, hidden in body]


def defence_verdict(defence: dict) -> str:
    """What the two numbers mean, in the panel's words (the report's sentence when both exist)."""
    if defence.get("adaptive", "none") == "none":
        random = DEFENCE_KINDS[defence["defence"].split(":")[0]].random
        return (f"{defence['label']}, naive attack only. A defence that rounds, compresses or randomises "
                "the image can look robust because it hides the gradient; screen it with "
                f"{'EOT' if random else 'BPDA'} to see what is left of it.")
    from advexplorer.report.cohort import defence_meaning

    return f"{defence['label']}: " + defence_meaning(defence)


# ------------------------------------------------------------------ the summary and report

#: The panel's mask modes as ``advexplorer screen`` options.
MASK_OPTIONS = {"allowed-dir": "--masks", "protect-dir": "--protect-dir", "allowed-file": "--mask",
                "protect-file": "--protect"}
#: The panel's control that checks the monotone shortcut, as the summary names it.
VERIFY_CONTROL = "“check monotone”"


def equivalent_command(job, out: str | Path = "OUT") -> list[str]:
    """The ``advexplorer screen`` command line that screens what the panel screened."""
    config = job.config_kwargs
    argv = ["advexplorer", "screen", "--model", str(job.model.path), "--images", str(job.images)]
    if job.mask_mode in MASK_OPTIONS and job.masks is not None:
        argv += [MASK_OPTIONS[job.mask_mode], str(job.masks)]
    argv += ["--attack", config["method"], "--norm", config["norm"],
             "--eps", ",".join(eps_argument(e) for e in sorted(set(job.eps))),
             "--steps", str(config["steps"]), "--seed", str(config.get("seed") or 0),
             "--batch-size", str(job.batch_size), "--device", str(job.model.device)]
    if job.noise_baseline:
        argv.append("--noise-baseline")
    if job.verify_monotone:
        argv += ["--verify-monotone", str(job.verify_monotone)]
    if job.defence:
        argv += ["--defense", job.defence, "--adaptive", job.adaptive]
    if job.precision != "float32":
        argv += ["--precision", job.precision]
    return argv + ["--out", str(out)]


def screen_summary(job, outcome: CohortOutcome, rows) -> dict:
    """The panel's screen as ``summary.json`` of ``advexplorer screen``: built by
    :func:`advexplorer.session.screen_record.screen_summary`, the CLI's own builder."""
    from advexplorer.session.screen_record import ScreenCounts
    from advexplorer.session.screen_record import screen_summary as build_summary

    result = outcome.result
    eps = list(result.eps)
    # The attack as the CLI's --attack/--norm/--steps/--seed make it: at the largest ε, early stop on.
    config = AttackConfig(**{**job.config_kwargs, "eps": max(eps), "early_stop": True}).validate()
    return build_summary(
        command_line=equivalent_command(job), model=outcome.model or job.model, cohort=outcome.cohort,
        fingerprint=outcome.fingerprint, config=config, eps=eps, rows_by_seed=[rows], seeds=[config.seed],
        counts=ScreenCounts.of(result), wall_time_s=outcome.elapsed_s, noise_baseline=job.noise_baseline,
        defence_info=outcome.info, naive_rows=outcome.naive.rows if outcome.naive is not None else None,
        verify_option=VERIFY_CONTROL)


def write_screen_folder(folder: str | Path, summary: dict, outcome: CohortOutcome, rows, card) -> Path:
    """Write the panel's screen into ``folder`` (new or empty) as ``advexplorer screen`` does:
    ``per_image.csv`` (and ``per_image_naive.csv``), ``summary.json`` and ``report.html``
    (:func:`advexplorer.session.screen_record.write_screen_folder`). Returns the report's path;
    a folder that cannot take it is one :class:`UserError` line."""
    from advexplorer.report.cohort import write_cohort_report
    from advexplorer.session.screen_record import REPORT_FILE
    from advexplorer.session.screen_record import write_screen_folder as write_folder

    written = write_folder(folder, summary, rows, card.classes,
                           naive_rows=outcome.naive.rows if outcome.naive is not None else None,
                           report=lambda where, record: write_cohort_report(
                               where, record, rows, outcome.result.worst_cases, card))
    return written / REPORT_FILE


# ------------------------------------------------------------------ the screen, in the worker

#: Worst cases kept for the panel (the CLI's --worst default).
WORST_CASES = 8


@dataclass
class CohortJob:
    """What a screen needs, taken on the GUI thread when Run was pressed."""

    model: object
    images: Path
    masks: Path | None
    mask_mode: str
    eps: list[float]
    config_kwargs: dict
    noise_baseline: bool
    batch_size: int
    verify_monotone: int = 0
    worst_cases: int = WORST_CASES
    defence: str | None = None        # "jpeg:75", parsed by advexplorer.config
    adaptive: str = "none"
    precision: str = "float32"


def cohort_job(job: CohortJob):
    """Worker generator: ``("cohort", entries)``, then ``("progress", ScreenProgress)``…,
    with an adaptive attack then ``("naive", ScreenProgress)``… of the naive one; returns a
    :class:`~advexplorer.gui.controllers.cohort.CohortOutcome`."""
    try:
        return (yield from _cohort_job(job))
    except GeneratorExit:
        raise
    except Exception as error:  # superqt drops RuntimeErrors; carry everything as JobFailed
        raise JobFailed(error) from error


def _cohort_job(job: CohortJob):
    from advexplorer.core.screening import screen_steps
    from advexplorer.io.cohort import open_cohort
    from advexplorer.session.defended import cohort_calibration, defend_model, naive_classifier

    started = time.perf_counter()
    mode = job.mask_mode
    cohort = open_cohort(
        job.images, job.model.card,
        masks_dir=job.masks if mode == "allowed-dir" else None,
        protect_dir=job.masks if mode == "protect-dir" else None,
        mask=job.masks if mode == "allowed-file" else None,
        protect=job.masks if mode == "protect-file" else None)
    entries = {e.id: (e.path, e.mask_path or cohort.mask_source, cohort.mask_mode) for e in cohort.entries}
    yield ("cohort", entries)
    fingerprint = cohort.fingerprint()  # the image set's SHA-256, as the CLI records it
    # The defended / lower-precision model, as `advexplorer screen` builds it (int8-static is
    # calibrated on the cohort's first images).
    model, info = defend_model(job.model, job.defence, job.adaptive, job.precision,
                               calibration=lambda: cohort_calibration(cohort))
    config = AttackConfig(**job.config_kwargs)
    steps = screen_steps(model.classifier, cohort.loader(job.batch_size, num_workers=0), job.eps, config,
                         noise_baseline=job.noise_baseline, batch_size=job.batch_size,
                         verify_monotone=job.verify_monotone, worst_cases=job.worst_cases)
    # A generator function, not a generator expression: `yield from` hands back the
    # screen's ScreenResult only when the inner generator itself returns it.
    result = yield from _tagged("progress", steps)
    naive = naive_classifier(info)
    naive_result = None
    if naive is not None:  # the CLI's naive pass: the grid only (no noise baseline, no check)
        steps = screen_steps(naive, cohort.loader(job.batch_size, num_workers=0), job.eps, config,
                             batch_size=job.batch_size, worst_cases=job.worst_cases)
        naive_result = yield from _tagged("naive", steps)
    outcome = CohortOutcome(result=result, naive=naive_result, info=info, model=model, cohort=cohort,
                            fingerprint=fingerprint, elapsed_s=time.perf_counter() - started)
    # Built here, not on the GUI thread: the summary's flags run the model (a gradient probe).
    outcome.summary = screen_summary(job, outcome, list(result.rows))
    return outcome


def _tagged(kind: str, generator):
    """Re-yield a generator's items as ``(kind, item)`` and return its return value."""
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value
        yield (kind, item)
