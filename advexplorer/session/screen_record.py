"""A cohort screen's record: ``summary.json`` and the folder that holds it.

One builder for ``advexplorer screen`` (:mod:`advexplorer.commands.screen`) and the app's
Cohort panel (:mod:`advexplorer.gui.controllers.cohort`), so the two write the same keys and
the same explanatory texts; each caller hands it plain values (the screened model, the opened
cohort, the rows, the attack configuration, the engine's counts, the command line). The
report (``report.html``) is written by :mod:`advexplorer.report.cohort`, a layer above this
one: callers pass it in as a function, and :func:`write_summary` writes ``summary.json``
after it, with the report's files listed.

Importing this module imports neither torch nor Qt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from advexplorer.session.defended import NAIVE_CSV, screen_defence_summary

#: ``summary.json``'s ``advexplorer_screen`` (its format version).
SUMMARY_VERSION = 1
SUMMARY_FILE = "summary.json"
PER_IMAGE_CSV = "per_image.csv"
SETTINGS_FILE = "screen_settings.json"
REPORT_FILE = "report.html"

#: What the per-ε numbers mean.
DEFINITIONS = {
    "flipped": "cumulative: the prediction differs from the clean prediction at this ε or "
               "a smaller one in the list (early stop: any iterate counts)",
    "robust_accuracy": "labelled images classified correctly when clean and not flipped at this ε",
    "interval": "Wilson score interval, 95 %",
}
#: How the monotone shortcut works.
SHORTCUT_HOW = ("an image flipped at ε_i is not attacked at larger ε; it is counted as flipped there "
                "(exact for the cumulative definition of 'flipped')")
#: How to check the shortcut, named as the CLI names it (the panel names its own control).
VERIFY_OPTION = "--verify-monotone N"


def unchecked_shortcut(option: str = VERIFY_OPTION) -> str:
    """``monotone_shortcut.verification`` when the shortcut was not checked; ``option`` names
    the control that checks it (the CLI's option, or the panel's field)."""
    return (f"not checked in this run; {option} re-attacks N flipped images at the larger ε and "
            "reports disagreements")


@dataclass(frozen=True)
class ScreenCounts:
    """What the engine did in a screen (one rank's, or every rank's together): the images it
    could not read, what it noted, the monotone check and the cost."""

    skipped: list = field(default_factory=list)           # (file, reason) pairs
    notes: list = field(default_factory=list)             # the loader's notes, beyond the cohort's
    monotone_check: object | None = None                  # core.screening.MonotoneCheck
    shortcut_pairs: int = 0
    batch_halvings: list = field(default_factory=list)
    engine_calls: int = 0
    attacked_pairs: int = 0
    forward_passes: int = 0
    backward_passes: int = 0

    @classmethod
    def of(cls, result, notes: Sequence[str] = ()) -> "ScreenCounts":
        """The counts of a :class:`~advexplorer.core.screening.ScreenResult`."""
        return cls(skipped=list(result.skipped), notes=list(notes), monotone_check=result.monotone_check,
                   shortcut_pairs=result.shortcut_pairs, batch_halvings=list(result.batch_halvings),
                   engine_calls=result.engine_calls, attacked_pairs=result.attacked_pairs,
                   forward_passes=result.forward_passes, backward_passes=result.backward_passes)


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def screen_summary(*, command_line: Sequence[str], model, cohort, fingerprint: str, config,
                   eps: Sequence[float], rows_by_seed: Sequence[Sequence], seeds: Sequence[int],
                   counts: ScreenCounts, wall_time_s: float, noise_baseline: bool = False,
                   min_eps: bool = False, defence_info: dict | None = None, naive_rows=None,
                   resumed_rows: int = 0, world_size: int = 1, devices: Sequence[str] | None = None,
                   mixed_precision: str | None = None, versions: dict | None = None,
                   settings_file: str | None = None, verify_option: str = VERIFY_OPTION) -> dict:
    """A screen's ``summary.json`` (before its report's files are added, see :func:`write_summary`).

    ``model``: the screened :class:`~advexplorer.io.models.LoadedModel` (defended or at
    another precision, as attacked); ``cohort``: the opened :class:`~advexplorer.io.cohort.Cohort`;
    ``config``: the :class:`~advexplorer.core.attacks.AttackConfig` at the largest ε;
    ``rows_by_seed``: the per-image rows of each seed in ``seeds`` (the first seed's are the
    screen's own); ``naive_rows``: the naive attack's rows beside an adaptive one, with
    ``defence_info`` from :func:`advexplorer.session.defended.defend_model`. ``devices``
    defaults to the model's; ``versions`` to :func:`advexplorer.session.runs.versions`;
    ``settings_file`` is listed under ``files`` when the caller wrote one (``--resume`` reads it).
    The flags (:func:`advexplorer.core.flags.screen_flags`) probe ``model.classifier`` once.
    """
    from advexplorer.core.flags import flags_to_json, screen_flags
    from advexplorer.core.groups import group_summary
    from advexplorer.core.screening import BISECTION_STEPS, summarize
    from advexplorer.core.seeds import seed_spread

    eps = list(eps)
    rows = list(rows_by_seed[0])
    seeds = list(seeds)
    card = model.card
    check = counts.monotone_check
    per_eps = summarize(rows, eps, noise_baseline=noise_baseline)
    kept = [r for r in rows if not r.excluded]
    spread = (seed_spread([[r for r in seed_rows if not r.excluded] for seed_rows in rows_by_seed], eps, seeds)
              if len(seeds) > 1 else None)
    if versions is None:
        from advexplorer.session.runs import versions as run_versions

        versions = run_versions()
    files = {"per_image": PER_IMAGE_CSV}
    if settings_file:
        files["settings"] = settings_file
    files["report"] = REPORT_FILE
    summary = {
        "advexplorer_screen": SUMMARY_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": [str(word) for word in command_line],
        "model": {"path": str(model.path), "sha256": model.sha256, "format": model.format,
                  "card_path": str(model.card_path) if model.card_path else None,
                  "card_sha256": model.card_sha256, "name": card.name, "classes": list(card.classes)},
        "images": {"source": str(cohort.source), "layout": cohort.layout, "count": len(cohort),
                   "screened": len(rows), "skipped": [{"file": f, "reason": r} for f, r in counts.skipped],
                   "missing": list(cohort.missing),
                   "non_finite_logits": [r.file for r in rows if r.excluded],
                   "fingerprint_sha256": fingerprint, "labels": cohort.has_labels,
                   "mask": {"mode": cohort.mask_mode,
                            "source": str(cohort.mask_source) if cohort.mask_source else None},
                   "notes": list(cohort.notes) + list(counts.notes)},
        "attack": config.to_json(),
        "eps": eps,
        "definitions": dict(DEFINITIONS),
        "per_eps": per_eps,
        "groups": group_summary(kept, cohort.groups, eps) if cohort.groups else None,
        "seeds": spread if spread is not None else {"seeds": seeds},
        "monotone_shortcut": {
            "used": True,
            "how": SHORTCUT_HOW,
            "pairs_skipped_this_run": counts.shortcut_pairs,
            "verification": check.to_json() if check else unchecked_shortcut(verify_option),
        },
        "min_eps": ({"method": f"bisection between grid values, {BISECTION_STEPS} halvings",
                     "median": median([r.min_eps for r in rows if r.min_eps is not None])}
                    if min_eps else None),
        "noise_baseline": bool(noise_baseline),
        "resumed_rows": resumed_rows,
        "device": str(model.device),
        "world_size": world_size,
        "devices": list(devices) if devices is not None else [str(model.device)],
        "mixed_precision": mixed_precision if mixed_precision not in (None, "off") else None,
        "batch_halvings": list(counts.batch_halvings),
        "versions": versions,
        "cost": {"engine_calls": counts.engine_calls, "attacked_pairs": counts.attacked_pairs,
                 "forward_passes": counts.forward_passes, "backward_passes": counts.backward_passes},
        "wall_time_s": round(wall_time_s, 3),
        "files": files,
    }
    summary.update(screen_defence_summary(defence_info or {}, per_eps,
                                          summarize(naive_rows, eps) if naive_rows is not None else None))
    if naive_rows is not None:
        files["per_image_naive"] = NAIVE_CSV
    # The reliability of this evaluation (core/flags.py), as a run's record has them.
    summary["flags"] = flags_to_json(screen_flags(model.classifier, per_eps, eps,
                                                  input_shape=(card.channels, *card.input_size),
                                                  model_notes=model.notes))
    if len(seeds) > 1:
        files["per_image_seeds"] = [seed_csv_name(k, s) for k, s in enumerate(seeds)][1:]
    return summary


def seed_csv_name(seed_index: int, seed: int) -> str:
    """``per_image.csv`` for the first seed; ``per_image_seed{S}.csv`` for the repeats."""
    return PER_IMAGE_CSV if seed_index == 0 else f"per_image_seed{seed}.csv"


def write_summary(folder: str | Path, summary: dict,
                  report: Callable[[Path, dict], dict] | None = None) -> dict[str, str]:
    """Write ``summary.json`` into ``folder`` (atomically), after the report.

    ``report(folder, summary)`` writes the report and returns its files (``{"report":
    "report.html", …}``), which ``summary.json`` lists under ``files``; ``summary`` itself is
    left as it was. Returns the report's files.
    """
    from advexplorer.io.atomic import atomic_write_text

    folder = Path(folder)
    written = dict(report(folder, summary)) if report is not None else {}
    record = dict(summary, files={**summary["files"], **written})
    atomic_write_text(folder / SUMMARY_FILE, json.dumps(record, indent=2, allow_nan=False) + "\n",
                      overwrite=True)
    return written


def write_screen_folder(folder: str | Path, summary: dict, rows, classes: Sequence[str], *,
                        naive_rows=None, report: Callable[[Path, dict], dict] | None = None) -> Path:
    """Write a screen held in memory (the panel's) into ``folder``, new or empty, as
    ``advexplorer screen`` leaves its ``--out``: ``per_image.csv`` (and ``per_image_naive.csv``
    of the naive attack), the report (``report``, see :func:`write_summary`) and
    ``summary.json``. Returns the folder; one that cannot take it is one
    :class:`~advexplorer.errors.UserError` line, before anything is written."""
    from advexplorer.errors import UserError
    from advexplorer.io.atomic import check_destination
    from advexplorer.io.cohort import PerImageWriter

    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder; choose a new or empty folder for the report.")
    if folder.is_dir() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty; choose a new or empty folder for the screen's report.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot create the folder {folder}: {error.strerror or error}.") from None
    check_destination(folder, directory=True, overwrite=True)
    eps = summary["eps"]
    min_eps = summary.get("min_eps") is not None
    with PerImageWriter(folder / PER_IMAGE_CSV, eps, classes, noise_baseline=summary["noise_baseline"],
                        min_eps=min_eps) as writer:
        writer.write(rows)
    if naive_rows is not None:  # the naive pass screens the grid only, as the CLI's
        with PerImageWriter(folder / NAIVE_CSV, eps, classes, noise_baseline=False, min_eps=False) as writer:
            writer.write(naive_rows)
    write_summary(folder, summary, report)
    return folder
