"""``advexplorer screen``: one masked attack over a cohort, flip rate and robust accuracy vs ε.

Writes into ``--out``:

* ``per_image.csv`` — one line per image, written and flushed as images finish, so an
  interrupted screen (Ctrl-C) keeps them and ``--resume`` skips them;
* ``summary.json`` — per ε: n, cumulative flips, flip rate with its Wilson 95 % interval,
  robust accuracy (with labels), the noise baseline (``--noise-baseline``); plus hashes of
  the model and the image set, the parameters, versions and how the monotone shortcut was
  used and checked;
* ``report.html`` — curves with intervals, the table, and the worst cases with thumbnails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from advexplorer import config
from advexplorer.commands._args import add_model_arguments, number_list, positive_number

DEFAULT_EPS = "0,1/255,2/255,4/255,8/255"
SUMMARY_VERSION = 1
#: Settings that must match for ``--resume`` to continue an earlier screen.
RESUME_KEYS = ("model_sha256", "card_sha256", "images", "images_fingerprint", "mask_mode",
               "eps", "attack", "noise_baseline", "min_eps")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="DIR|FILE.npz",
                        help="folder of images (class sub-folders = true labels, ImageFolder "
                             "layout) or a MedMNIST-style .npz (test_images, test_labels)")
    add_model_arguments(parser)
    masks = parser.add_argument_group("masks (one of)").add_mutually_exclusive_group()
    masks.add_argument("--masks", metavar="DIR",
                       help="folder of allowed masks named like the images (non-zero = may change)")
    masks.add_argument("--protect-dir", metavar="DIR",
                       help="folder of protect masks named like the images (non-zero = must not change)")
    masks.add_argument("--mask", metavar="A.png", help="one allowed mask for every image")
    masks.add_argument("--protect", metavar="P.png", help="one protect mask for every image")
    attack = parser.add_argument_group("attack")
    attack.add_argument("--attack", default=config.METHODS[0], choices=config.METHODS)
    attack.add_argument("--norm", default=config.NORMS[0], choices=config.NORMS)
    attack.add_argument("--eps", type=number_list, default=number_list(DEFAULT_EPS), metavar="LIST",
                        help=f"budgets in pixel units, fractions allowed (default {DEFAULT_EPS}); "
                             "0 is the clean image")
    attack.add_argument("--steps", type=int, default=10, help="iterations (default 10)")
    attack.add_argument("--step-size", type=positive_number, default=None,
                        help="per-step size (default: 2.5·ε/steps for each ε; ε for FGSM)")
    attack.add_argument("--random-start", action="store_true", help="start from a random point in the ε-ball")
    attack.add_argument("--restarts", type=int, default=1, help="random restarts per image and ε")
    attack.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    screen = parser.add_argument_group("screen")
    screen.add_argument("--batch-size", type=int, default=32,
                        help="(image, ε) pairs per engine call and images per loaded batch (default 32)")
    screen.add_argument("--workers", type=int, default=None,
                        help="image-loading processes (default min(2, CPUs); 0 = main process)")
    screen.add_argument("--noise-baseline", action="store_true",
                        help="also screen random noise of the same budget (flip rate of chance)")
    screen.add_argument("--min-eps", action="store_true",
                        help="bisect the smallest flipping ε per image between grid values")
    screen.add_argument("--verify-monotone", type=int, default=0, metavar="N",
                        help="re-attack up to N flipped images at the larger ε the monotone "
                             "shortcut skipped, and report disagreements (default 0: off)")
    screen.add_argument("--worst", type=int, default=8, metavar="N",
                        help="worst cases (smallest flipping ε) shown in the report (default 8)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="DIR", help="new or empty folder (or an earlier one with --resume)")
    output.add_argument("--resume", action="store_true",
                        help="continue an interrupted screen in --out, skipping finished images")
    output.add_argument("--pdf", action="store_true", help="also write report.pdf (needs PySide6)")
    output.add_argument("--quiet", action="store_true", help="no progress, no table")


class Progress:
    """A progress bar with ETA on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream=None, *, quiet: bool = False, interval_s: float = 10.0):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s
        self.last = 0.0

    @staticmethod
    def _clock(seconds: float | None) -> str:
        if seconds is None or not math.isfinite(seconds):
            return "--:--"
        seconds = int(round(seconds))
        hours, rest = divmod(seconds, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"

    def update(self, progress, *, final: bool = False) -> None:
        if self.quiet:
            return
        total = progress.images_total
        done = progress.images_done
        worst = progress.flipped[-1] if progress.flipped else 0
        rate = f"flipped at max ε {worst}/{progress.n}" if progress.n else ""
        if progress.phase == "verify":
            text = f"checking the monotone shortcut… {self._clock(progress.elapsed_s)}"
        elif total:
            text = (f"{done}/{total} images · {rate} · elapsed {self._clock(progress.elapsed_s)}"
                    f" · ETA {self._clock(progress.eta_s)}")
        else:
            text = f"{done} images · {rate}"
        now = time.monotonic()
        if self.tty:
            width = 28
            filled = int(width * done / total) if total else 0
            bar = "█" * filled + "░" * (width - filled)
            self.stream.write(f"\r{bar} {text}\033[K")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        elif final or now - self.last >= self.interval_s:
            self.stream.write(f"screen: {text}\n")
            self.stream.flush()
            self.last = now

    def say(self, line: str) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self.stream.flush()


def _settings(loaded, cohort, fingerprint, eps, config, args) -> dict:
    return {
        "model_sha256": loaded.sha256, "card_sha256": loaded.card_sha256,
        "images": str(cohort.source), "images_fingerprint": fingerprint,
        "mask_mode": cohort.mask_mode, "eps": list(eps), "attack": config.to_json(),
        "noise_baseline": bool(args.noise_baseline), "min_eps": bool(args.min_eps),
    }


def _prepare_out(out: Path, resume: bool) -> bool:
    """Create ``out``; return True when an earlier screen there is to be resumed."""
    from advexplorer.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; choose another --out folder.")
    earlier = (out / "per_image.csv").is_file()
    if earlier and not resume:
        raise UserError(f"{out} already holds a screen (per_image.csv). Pass --resume to continue "
                        "it, or choose a new --out folder.")
    if out.is_dir() and any(out.iterdir()) and not earlier:
        raise UserError(f"Output folder {out} is not empty and holds no screen; choose a new or "
                        "empty folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot create the folder {out}: {error.strerror or error}.") from None
    from advexplorer.io.atomic import check_destination

    check_destination(out, directory=True, overwrite=True)  # refuses a read-only folder
    return earlier and resume


def run(args) -> int:
    from advexplorer import paths
    from advexplorer.core.attacks import AttackConfig
    from advexplorer.core.screening import BISECTION_STEPS, check_eps_list, eps_label, screen_steps, summarize
    from advexplorer.errors import UserError
    from advexplorer.io.atomic import atomic_write_text
    from advexplorer.io.cohort import PerImageWriter, open_cohort, read_per_image_csv
    from advexplorer.io.models import load_model

    out = Path(args.out).expanduser()
    resuming = _prepare_out(out, args.resume)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be at least 1.")
    if args.verify_monotone < 0 or args.worst < 0:
        raise UserError("--verify-monotone and --worst take a count ≥ 0.")
    config = AttackConfig(method=args.attack, norm=args.norm, eps=max(args.eps) if args.eps else 0,
                          step_size=args.step_size, steps=args.steps, random_start=args.random_start,
                          seed=args.seed, restarts=args.restarts, early_stop=True)
    eps = check_eps_list(args.eps, args.norm)
    config = config.validate()
    model_path = Path(args.model) if args.model else paths.DEFAULT_MODEL
    loaded = load_model(model_path, card=args.card, device=args.device, trust_pickle=args.trust_pickle)
    card = loaded.card
    cohort = open_cohort(args.images, card, masks_dir=args.masks, protect_dir=args.protect_dir,
                         mask=args.mask, protect=args.protect)
    fingerprint = cohort.fingerprint()
    settings = _settings(loaded, cohort, fingerprint, eps, config, args)
    settings_path = out / "screen_settings.json"
    previous_rows = []
    if resuming:
        if settings_path.is_file():
            earlier = json.loads(settings_path.read_text(encoding="utf-8"))
            changed = [key for key in RESUME_KEYS if earlier.get(key) != settings.get(key)]
            if changed:
                raise UserError(f"Cannot resume the screen in {out}: {', '.join(changed)} changed since "
                                "it started. Use the same model, images, masks and options, or a new "
                                "--out folder.")
        previous_rows = read_per_image_csv(out / "per_image.csv", eps, card.classes,
                                           noise_baseline=args.noise_baseline, min_eps=args.min_eps,
                                           notes=cohort.notes)
    atomic_write_text(settings_path, json.dumps(settings, indent=2) + "\n", overwrite=True)

    progress = Progress(quiet=args.quiet)
    for note in cohort.notes:
        progress.say(f"advexplorer: note: {note}")
    done = {row.file for row in previous_rows}
    if resuming:
        progress.say(f"advexplorer: resuming: {len(done)} of {len(cohort)} images already screened")
    loader = cohort.loader(args.batch_size, exclude=done, num_workers=args.workers)
    steps = screen_steps(loaded.classifier, loader, eps, config, noise_baseline=args.noise_baseline,
                         done=done, min_eps=args.min_eps, verify_monotone=args.verify_monotone,
                         batch_size=args.batch_size, worst_cases=args.worst)
    skipped: list[tuple[str, str]] = []
    started = time.perf_counter()
    with PerImageWriter(out / "per_image.csv", eps, card.classes, noise_baseline=args.noise_baseline,
                        min_eps=args.min_eps, append=resuming) as writer:
        try:
            while True:
                try:
                    snapshot = next(steps)
                except StopIteration as stop:
                    result = stop.value
                    break
                writer.write(snapshot.rows_done)
                for file_id, reason in snapshot.skipped:
                    skipped.append((file_id, reason))
                progress.update(snapshot)
        except KeyboardInterrupt:
            steps.close()
            progress.say(f"advexplorer: interrupted; the finished images are in {out / 'per_image.csv'}. "
                         f"Run the same command with --resume to continue.")
            return 130
    progress.update(snapshot if "snapshot" in locals() else _empty_progress(eps), final=True)
    if skipped:
        progress.say(f"advexplorer: warning: skipped {len(skipped)} unreadable image(s): "
                     + "; ".join(f"{name} ({reason})" for name, reason in skipped[:10])
                     + (" …" if len(skipped) > 10 else ""))
    for note in loader.notes:
        progress.say(f"advexplorer: note: {note}")

    rows = previous_rows + result.rows
    if not rows:
        raise UserError(f"None of the {len(cohort)} images could be read, so there is nothing to "
                        "summarise; see the warnings above.")
    per_eps = summarize(rows, eps, noise_baseline=args.noise_baseline)
    summary = {
        "advexplorer_screen": SUMMARY_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": list(getattr(args, "command_line", []) or []),
        "model": {"path": str(loaded.path), "sha256": loaded.sha256, "format": loaded.format,
                  "card_path": str(loaded.card_path) if loaded.card_path else None,
                  "card_sha256": loaded.card_sha256, "name": card.name, "classes": list(card.classes)},
        "images": {"source": str(cohort.source), "layout": cohort.layout, "count": len(cohort),
                   "screened": len(rows), "skipped": [{"file": f, "reason": r} for f, r in skipped],
                   "fingerprint_sha256": fingerprint, "labels": cohort.has_labels,
                   "mask": {"mode": cohort.mask_mode,
                            "source": str(cohort.mask_source) if cohort.mask_source else None},
                   "notes": cohort.notes + loader.notes},
        "attack": config.to_json(),
        "eps": list(eps),
        "definitions": {
            "flipped": "cumulative: the prediction differs from the clean prediction at this ε or "
                       "a smaller one in the list (early stop: any iterate counts)",
            "robust_accuracy": "labelled images classified correctly when clean and not flipped at this ε",
            "interval": "Wilson score interval, 95 %",
        },
        "per_eps": per_eps,
        "monotone_shortcut": {
            "used": True,
            "how": "an image flipped at ε_i is not attacked at larger ε; it is counted as flipped "
                   "there (exact for the cumulative definition of 'flipped')",
            "pairs_skipped_this_run": result.shortcut_pairs,
            "verification": (result.monotone_check.to_json() if result.monotone_check else
                             "not checked in this run; --verify-monotone N re-attacks N flipped "
                             "images at the larger ε and reports disagreements"),
        },
        "min_eps": ({"method": f"bisection between grid values, {BISECTION_STEPS} halvings",
                     "median": _median([r.min_eps for r in rows if r.min_eps is not None])}
                    if args.min_eps else None),
        "noise_baseline": bool(args.noise_baseline),
        "resumed_rows": len(previous_rows),
        "device": str(loaded.device),
        "versions": versions(),
        "cost": {"engine_calls": result.engine_calls, "attacked_pairs": result.attacked_pairs,
                 "forward_passes": result.forward_passes, "backward_passes": result.backward_passes},
        "wall_time_s": round(time.perf_counter() - started, 3),
        "files": {"per_image": "per_image.csv", "settings": "screen_settings.json",
                  "report": "report.html"},
    }
    from advexplorer.report.cohort import write_cohort_report

    written = write_cohort_report(out, summary, rows, result.worst_cases, card, pdf=args.pdf)
    summary["files"].update(written)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n",
                      overwrite=True)
    if not args.quiet:
        print(_table(per_eps, eps_label, labelled=cohort.has_labels, noise=args.noise_baseline))
        print(f"wrote {out / 'per_image.csv'}, {out / 'summary.json'}, "
              + ", ".join(str(out / name) for name in written.values()))
    return 0


def versions() -> dict[str, str]:
    """Versions that decide whether a screen can be reproduced (read from package metadata:
    importing torchvision just for its version costs seconds)."""
    import platform
    from importlib import metadata

    import numpy
    import torch

    import advexplorer

    try:
        torchvision = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        torchvision = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision, "numpy": numpy.__version__,
            "advexplorer": advexplorer.__version__}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _empty_progress(eps):
    from advexplorer.core.screening import ScreenProgress

    return ScreenProgress(phase="screen", images_done=0, images_total=0, eps=tuple(eps), n=0,
                          flipped=tuple(0 for _ in eps), n_labelled=0, robust=tuple(0 for _ in eps),
                          noise_flipped=None, elapsed_s=0.0, eta_s=None)


def _table(per_eps: list[dict], eps_label, *, labelled: bool, noise: bool) -> str:
    def pct(value, interval) -> str:
        return f"{100 * value:5.1f} % [{100 * interval[0]:4.1f}, {100 * interval[1]:4.1f}]"

    head = f"{'ε':>10}  {'n':>5}  {'flipped':>7}  {'flip rate [95 % CI]':<24}"
    if labelled:
        head += f"  {'robust accuracy [95 % CI]':<26}"
    if noise:
        head += f"  {'noise flip rate [95 % CI]':<26}"
    lines = [head]
    for entry in per_eps:
        line = (f"{eps_label(entry['eps']):>10}  {entry['n']:>5}  {entry['flipped']:>7}  "
                f"{pct(entry['flip_rate'], entry['flip_rate_ci95']):<24}")
        if labelled and "robust_accuracy" in entry:
            line += f"  {pct(entry['robust_accuracy'], entry['robust_accuracy_ci95']):<26}"
        if noise:
            line += f"  {pct(entry['noise_flip_rate'], entry['noise_flip_rate_ci95']):<26}"
        lines.append(line)
    return "\n".join(lines)
