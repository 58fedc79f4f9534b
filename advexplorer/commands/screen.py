"""``advexplorer screen``: one masked attack over a cohort, flip rate and robust accuracy vs ε.

Writes into ``--out``:

* ``per_image.csv`` — one line per image, written and flushed as images finish, so an
  interrupted screen (Ctrl-C) keeps them and ``--resume`` skips them;
* ``summary.json`` — per ε: n, cumulative flips, flip rate with its Wilson 95 % interval,
  robust accuracy (with labels), the noise baseline (``--noise-baseline``); plus hashes of
  the model and the image set, the parameters, versions and how the monotone shortcut was
  used and checked;
* ``report.html`` — curves with intervals, the table, and the worst cases with thumbnails.

With ``--defense`` the screened model is the defended one; with ``--adaptive bpda|eot`` the
same screen is also run with the naive attack (``per_image_naive.csv``) and ``summary.json``'s
``defence`` entry holds both robust accuracies per ε side by side. ``--precision`` screens the
model at float16, bfloat16, int8 (dynamic) or int8-static (calibrated on the cohort's first 64
images), recorded as ``precision``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from advexplorer import config
from advexplorer.commands._args import add_model_arguments, number_list, positive_number
from advexplorer.commands._defence import (NAIVE_CSV, SETTINGS_DEFAULTS, add_defence_arguments,
                                           cohort_calibration, naive_classifier, screen_defence_lines,
                                           screen_settings, wrap_model)
from advexplorer.commands._sources import add_source_arguments
from advexplorer.session.screen_record import seed_csv_name

DEFAULT_EPS = "0,1/255,2/255,4/255,8/255"
#: Settings that must match for ``--resume`` to continue an earlier screen.
RESUME_KEYS = ("model_sha256", "card_sha256", "images", "images_fingerprint", "mask_mode",
               "eps", "attack", "noise_baseline", "min_eps", "seeds", "mixed_precision",
               "defence", "adaptive", "precision")
#: What a settings file written before a key existed meant by it.
RESUME_DEFAULTS = {"mixed_precision": "off", **SETTINGS_DEFAULTS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", metavar="DIR|FILE.npz",
                        help="folder of images (class sub-folders = true labels, ImageFolder "
                             "layout) or a MedMNIST-style .npz (test_images, test_labels)")
    tiled = parser.add_argument_group("one large image, tile by tile (instead of --images)")
    tiled.add_argument("--image", metavar="BIG.tif", help="a large image or slide to screen tile by tile; "
                       "--out gets a flip map over it (use --region for a slide)")
    tiled.add_argument("--tiles", type=int, metavar="N", help="tile side in pixels (e.g. the model's input size)")
    add_source_arguments(parser, annotations=False)
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
    attack.add_argument("--queries", type=int, default=config.DEFAULT_QUERIES, metavar="N",
                        help="query budget per image and ε of the Square attack and the ensemble "
                             f"(default {config.DEFAULT_QUERIES})")
    screen = parser.add_argument_group("screen")
    screen.add_argument("--batch-size", type=int, default=32,
                        help="(image, ε) pairs per engine call and images per loaded batch (default 32)")
    screen.add_argument("--workers", type=int, default=None,
                        help="image-loading processes (default min(2, CPUs); 0 = main process)")
    screen.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="repeat the random-start attack with K seeds (--seed, --seed+1, …) and "
                             "report the spread of robust accuracy with a bootstrap interval (default 1)")
    screen.add_argument("--ranks", type=int, default=None, metavar="N",
                        help="run N worker processes on this machine through torchrun (one device "
                             "each: cuda:0…N-1, or the CPU with gloo); or start the command under "
                             "torchrun yourself")
    screen.add_argument("--mixed-precision", default="off", choices=("off", "bfloat16", "float16"),
                        help="run the model's forward under autocast in this precision; the loss and "
                             "the attack step stay in float32 (default off)")
    screen.add_argument("--noise-baseline", action="store_true",
                        help="also screen random noise of the same budget (flip rate of chance)")
    screen.add_argument("--min-eps", action="store_true",
                        help="bisect the smallest flipping ε per image between grid values")
    screen.add_argument("--verify-monotone", type=int, default=0, metavar="N",
                        help="re-attack up to N flipped images at the larger ε the monotone "
                             "shortcut skipped, and report disagreements (default 0: off)")
    screen.add_argument("--worst", type=int, default=8, metavar="N",
                        help="worst cases (smallest flipping ε) shown in the report (default 8)")
    add_defence_arguments(parser)
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
        """A line the user must see (notes), even with --quiet."""
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self.stream.flush()

    def info(self, line: str) -> None:
        """A line about progress (which pass runs now): not with --quiet."""
        if not self.quiet:
            self.say(line)


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
    from advexplorer.commands._distributed import part_files

    # A screen on several ranks that stopped before merging left only its part files.
    earlier = (out / "per_image.csv").is_file() or bool(part_files(out, "per_image.csv"))
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
    from advexplorer.commands._distributed import join, launch, without_ranks

    if getattr(args, "image", None):
        from advexplorer.commands._tiles import run_tiled

        return run_tiled(args, run)
    if not args.images:
        from advexplorer.errors import UserError

        raise UserError("Give --images DIR|FILE.npz (a cohort), or --image BIG.tif --tiles N (one large image).")

    if getattr(args, "ranks", None) is not None:
        if args.ranks < 1:
            from advexplorer.errors import UserError

            raise UserError(f"--ranks {args.ranks} must be at least 1.")
        if args.ranks > 1 and int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
            argv = list(getattr(args, "command_line", []) or [])[1:]
            return launch(without_ranks(argv), args.ranks)
    ranks = join(args.device)
    try:
        return _run(args, ranks)
    finally:
        ranks.close()


def _shared_or_raise(ranks, compute):
    """Run ``compute`` on rank 0 and hand its result (or its one-line error) to every rank."""
    from advexplorer.errors import UserError

    value, error = None, None
    if ranks.leader:
        try:
            value = compute()
        except UserError as caught:
            error = str(caught)
            if not ranks.active:
                raise
    value, error = ranks.share((value, error))
    if error is not None:
        raise UserError(error)
    return value


def _run(args, ranks) -> int:
    from advexplorer import paths
    from advexplorer.commands._distributed import part_files, part_path
    from advexplorer.core.attacks import AttackConfig
    from advexplorer.core.groups import significant_gaps
    from advexplorer.core.screening import MixedPrecisionForward, check_eps_list, eps_label, screen_steps
    from advexplorer.core.seeds import seeds_are_random
    from advexplorer.errors import UserError
    from advexplorer.io.atomic import atomic_write_text
    from advexplorer.io.cohort import PerImageWriter, open_cohort, read_per_image_csv
    from advexplorer.io.models import load_model

    out = Path(args.out).expanduser()
    resuming = _shared_or_raise(ranks, lambda: _prepare_out(out, args.resume))
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be at least 1.")
    if args.verify_monotone < 0 or args.worst < 0:
        raise UserError("--verify-monotone and --worst take a count ≥ 0.")
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds} must be at least 1.")
    config = AttackConfig(method=args.attack, norm=args.norm, eps=max(args.eps) if args.eps else 0,
                          step_size=args.step_size, steps=args.steps, random_start=args.random_start,
                          seed=args.seed, restarts=args.restarts, early_stop=True,
                          queries=getattr(args, "queries", AttackConfig.queries))
    eps = check_eps_list(args.eps, args.norm)
    config = config.validate()
    if args.seeds > 1 and not seeds_are_random(config):
        raise UserError(f"--seeds {args.seeds} repeats a random attack with other seeds, but this "
                        f"{args.attack} attack draws nothing at random (every seed would give the "
                        "same result); add --random-start, or use --seeds 1.")
    seeds = [args.seed + k for k in range(args.seeds)]
    device = ranks.device(args.device)
    model_path = Path(args.model) if args.model else paths.DEFAULT_MODEL
    defence_settings = screen_settings(args)  # bad --defense/--adaptive/--precision: before loading
    if defence_settings["precision"] != "float32" and args.mixed_precision != "off":
        raise UserError(f"--precision {defence_settings['precision']} and --mixed-precision "
                        f"{args.mixed_precision} both set the model's precision; give one of them.")
    loaded = load_model(model_path, card=args.card, device=device, trust_pickle=args.trust_pickle)
    card = loaded.card
    cohort = open_cohort(args.images, card, masks_dir=args.masks, protect_dir=args.protect_dir,
                         mask=args.mask, protect=args.protect)
    # The defended / lower-precision model (int8-static is calibrated on the cohort's first images).
    loaded, defence_info = wrap_model(loaded, args, calibration=lambda: cohort_calibration(cohort))
    classifier = loaded.classifier
    naive = naive_classifier(defence_info)
    if args.mixed_precision != "off":
        classifier = MixedPrecisionForward(classifier, args.mixed_precision)
        naive = naive and MixedPrecisionForward(naive, args.mixed_precision)
    # One pass per seed; with an adaptive attack one more: the naive attack on the first seed.
    passes = [("seed", seed, classifier, seed_csv_name(k, seed)) for k, seed in enumerate(seeds)]
    if naive is not None:
        passes.append(("naive", seeds[0], naive, NAIVE_CSV))
    fingerprint = cohort.fingerprint()
    settings = _settings(loaded, cohort, fingerprint, eps, config, args)
    settings.update({"seeds": seeds, "mixed_precision": args.mixed_precision, **defence_settings,
                     "world_size": ranks.world_size, "devices": ranks.gather(str(loaded.device))})
    settings_path = out / "screen_settings.json"

    def check_settings():
        if resuming and settings_path.is_file():
            earlier = json.loads(settings_path.read_text(encoding="utf-8"))
            defaults = {**RESUME_DEFAULTS, "seeds": [args.seed]}  # a screen from before --seeds
            changed = [key for key in RESUME_KEYS
                       if earlier.get(key, defaults.get(key)) != settings.get(key)]
            if changed:
                raise UserError(f"Cannot resume the screen in {out}: {', '.join(changed)} changed since "
                                "it started. Use the same model, images, masks and options, or a new "
                                "--out folder.")
        atomic_write_text(settings_path, json.dumps(settings, indent=2) + "\n", overwrite=True)

    _shared_or_raise(ranks, check_settings)
    # Rank 0 speaks for all ranks; the others say nothing.
    progress = Progress(quiet=args.quiet) if ranks.leader else Progress(open(os.devnull, "w"), quiet=True)
    share = cohort.shard(ranks.rank, ranks.world_size) if ranks.active else None
    if ranks.active and ranks.leader:
        progress.say(f"advexplorer: {ranks.world_size} ranks on "
                     + ", ".join(f"{d}" for d in settings["devices"])
                     + f"; rank 0 shows its share of {len(share)} images")
    started = time.perf_counter()
    rows_by_seed, previous_counts, outcomes = [], [], []
    naive_rows = None
    for pass_index, (kind, seed, model, name) in enumerate(passes):
        main_csv = out / name
        # The naive comparison pass screens the grid only (no noise baseline, no bisection).
        csv_options = ({"noise_baseline": args.noise_baseline, "min_eps": args.min_eps} if kind == "seed"
                       else {"noise_baseline": False, "min_eps": False})

        def read_earlier():
            earlier_rows = []
            if resuming and main_csv.is_file():
                earlier_rows += read_per_image_csv(main_csv, eps, card.classes, notes=cohort.notes,
                                                   **csv_options)
            for part in part_files(out, name):  # rows of ranks of an earlier, stopped screen
                earlier_rows += read_per_image_csv(part, eps, card.classes, notes=cohort.notes,
                                                   **csv_options)
            return earlier_rows

        said = len(cohort.notes) if pass_index else 0
        previous_rows = read_earlier() if ranks.leader else None
        for note in cohort.notes[said:]:  # the cohort's, and what reading earlier rows found
            progress.say(f"advexplorer: note: {note}")
        done = ranks.share({row.file for row in previous_rows} if ranks.leader else None)
        if resuming and ranks.leader:
            prefix = "naive attack: " if kind == "naive" else (f"seed {seed}: " if len(seeds) > 1 else "")
            missing = [entry.id for entry in cohort.entries if entry.id not in done]
            progress.info(f"advexplorer: {prefix}resuming: {len(done)} of {len(cohort)} images already screened"
                         + (f"; screening the {len(missing)} missing: {', '.join(missing[:5])}"
                            + (" …" if len(missing) > 5 else "") if missing else ""))
        elif kind == "naive":
            progress.info("advexplorer: the same screen with the naive attack (gradients through the "
                         "defence as implemented), for comparison")
        elif len(seeds) > 1:
            progress.info(f"advexplorer: seed {seed} ({pass_index + 1} of {len(seeds)})")
        workers = args.workers
        if workers is None and ranks.active:
            from advexplorer.io.cohort import default_workers

            workers = default_workers() // ranks.local_world_size
        loader = cohort.loader(args.batch_size, exclude=done, num_workers=workers, only=share)
        verify = args.verify_monotone if kind == "seed" else 0
        steps = screen_steps(model, loader, eps, replace(config, seed=seed), done=done, **csv_options,
                             verify_monotone=verify // ranks.world_size + (
                                 ranks.rank < verify % ranks.world_size),
                             batch_size=args.batch_size, worst_cases=args.worst,
                             keep_rows=not ranks.active)
        target = part_path(out, name, ranks.rank) if ranks.active else main_csv
        target.parent.mkdir(parents=True, exist_ok=True)
        skipped: list[tuple[str, str]] = []
        with PerImageWriter(target, eps, card.classes, append=resuming or ranks.active,
                            **csv_options) as writer:
            try:
                snapshot = None
                while True:
                    try:
                        snapshot = next(steps)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    writer.write(snapshot.rows_done)
                    skipped.extend(snapshot.skipped)
                    progress.update(snapshot)
            except KeyboardInterrupt:
                steps.close()
                progress.say(f"advexplorer: interrupted; the finished images are in {out}. "
                             f"Run the same command with --resume to continue.")
                return 130
        progress.update(snapshot or _empty_progress(eps), final=True)
        gathered = ranks.gather({"skipped": skipped, "worst": result.worst_cases,
                                 "check": result.monotone_check, "notes": loader.notes,
                                 "halvings": result.batch_halvings,
                                 "cost": (result.engine_calls, result.attacked_pairs, result.shortcut_pairs,
                                          result.forward_passes, result.backward_passes)})
        ranks.barrier()  # every part file is complete
        if not ranks.leader:
            continue
        if ranks.active or part_files(out, name):
            rows = _merge_parts(out, name, cohort, eps, card, csv_options, resuming)
        else:
            rows = previous_rows + result.rows
        if kind == "naive":
            naive_rows = rows
            continue
        rows_by_seed.append(rows)
        previous_counts.append(len(previous_rows))
        outcomes.append(_combine(gathered, args.worst))
    if not ranks.leader:
        return 0

    rows = rows_by_seed[0]
    outcome = outcomes[0]
    skipped = outcome["skipped"]
    if skipped:
        progress.say(f"advexplorer: warning: skipped {len(skipped)} unreadable image(s): "
                     + "; ".join(f"{name} ({reason})" for name, reason in skipped[:10])
                     + (" …" if len(skipped) > 10 else ""))
    for note in outcome["notes"]:
        progress.say(f"advexplorer: note: {note}")
    flagged = [r.file for r in rows if r.excluded]
    if flagged:
        progress.say(f"advexplorer: warning: the model returned non-finite logits on {len(flagged)} "
                     f"image(s), flagged in per_image.csv and left out of the rates: "
                     + ", ".join(flagged[:10]) + (" …" if len(flagged) > 10 else ""))
    if not rows:
        raise UserError(f"None of the {len(cohort)} images could be read, so there is nothing to "
                        "summarise; see the warnings above.")
    from advexplorer.report.cohort import write_cohort_report
    from advexplorer.session.screen_record import SETTINGS_FILE, ScreenCounts, screen_summary, write_summary

    engine_calls, attacked_pairs, shortcut_pairs, forward_passes, backward_passes = outcome["cost"]
    counts = ScreenCounts(skipped=skipped, notes=outcome["notes"], monotone_check=outcome["check"],
                          shortcut_pairs=shortcut_pairs, batch_halvings=outcome["halvings"],
                          engine_calls=engine_calls, attacked_pairs=attacked_pairs,
                          forward_passes=forward_passes, backward_passes=backward_passes)
    summary = screen_summary(
        command_line=list(getattr(args, "command_line", []) or []), model=loaded, cohort=cohort,
        fingerprint=fingerprint, config=config, eps=eps, rows_by_seed=rows_by_seed, seeds=seeds,
        counts=counts, wall_time_s=time.perf_counter() - started, noise_baseline=args.noise_baseline,
        min_eps=args.min_eps, defence_info=defence_info, naive_rows=naive_rows,
        resumed_rows=previous_counts[0], world_size=ranks.world_size, devices=settings["devices"],
        mixed_precision=args.mixed_precision, settings_file=SETTINGS_FILE)
    per_eps, groups = summary["per_eps"], summary["groups"]
    spread = summary["seeds"] if len(seeds) > 1 else None
    written = write_summary(out, summary, lambda folder, record: write_cohort_report(
        folder, record, rows, outcome["worst"], card, pdf=args.pdf))
    if not args.quiet:
        print(_table(per_eps, eps_label, labelled=cohort.has_labels, noise=args.noise_baseline))
        if spread is not None:
            print(_seed_table(spread))
        for line in screen_defence_lines(summary):
            print(line)
        if groups is not None:
            for line in significant_gaps(groups):
                print(f"significant gap: {line}")
        for flag in summary["flags"]:
            print(f"FLAG {flag['title']} ({flag['detail']}). {flag['suggestion']}")
        print(f"wrote {out / 'per_image.csv'}, {out / 'summary.json'}, "
              + ", ".join(str(out / name) for name in written.values()))
    return 0


def _merge_parts(out: Path, name: str, cohort, eps, card, csv_options: dict, resuming: bool) -> list:
    """Merge ``per_image.csv`` and every rank's part file into ``per_image.csv`` (cohort order,
    each image once), atomically, then remove the parts; return the merged rows."""
    import csv
    import io

    from advexplorer.commands._distributed import part_files
    from advexplorer.io.atomic import atomic_write_text
    from advexplorer.io.cohort import csv_columns, read_per_image_csv, row_to_csv

    main_csv = out / name
    sources = ([main_csv] if main_csv.is_file() else []) + part_files(out, name)
    by_id = {}
    for path in sources:
        for row in read_per_image_csv(path, eps, card.classes, **csv_options):
            by_id.setdefault(row.file, row)
    order = {entry.id: i for i, entry in enumerate(cohort.entries)}
    rows = sorted(by_id.values(), key=lambda r: (order.get(r.file, len(order)), r.file))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(csv_columns(eps, **csv_options))
    for row in rows:
        writer.writerow(row_to_csv(row, eps, card.classes, **csv_options))
    atomic_write_text(main_csv, buffer.getvalue(), overwrite=True)
    for path in part_files(out, name):
        path.unlink()
    return rows


def _combine(gathered: list[dict], worst: int) -> dict:
    """One rank's outcome, or every rank's together (rank 0 after a distributed screen)."""
    from advexplorer.core.screening import MonotoneCheck

    skipped = [entry for part in gathered for entry in part["skipped"]]
    cases = sorted((case for part in gathered for case in part["worst"]),
                   key=lambda c: (c.flip_eps, -c.adversarial_probability, c.file))[:worst]
    checks = [part["check"] for part in gathered if part["check"] is not None]
    check = None
    if checks:
        check = MonotoneCheck(images_checked=sum(c.images_checked for c in checks),
                              pairs_checked=sum(c.pairs_checked for c in checks),
                              disagreements=[d for c in checks for d in c.disagreements])
    notes = []
    for part in gathered:
        notes += [n for n in part["notes"] if n not in notes]
    cost = tuple(sum(part["cost"][k] for part in gathered) for k in range(5))
    halvings = [size for part in gathered for size in part["halvings"]]
    return {"skipped": skipped, "worst": cases, "check": check, "notes": notes, "cost": cost,
            "halvings": halvings}


def _empty_progress(eps):
    from advexplorer.core.screening import ScreenProgress

    return ScreenProgress(phase="screen", images_done=0, images_total=0, eps=tuple(eps), n=0,
                          flipped=tuple(0 for _ in eps), n_labelled=0, robust=tuple(0 for _ in eps),
                          noise_flipped=None, elapsed_s=0.0, eta_s=None)


def _seed_table(spread: dict) -> str:
    """Robust accuracy (or flip rate) over the seeds: min / median / max and bootstrap interval."""
    labelled = any("robust_accuracy" in e for e in spread["per_eps"])
    key, what = ("robust_accuracy", "robust accuracy") if labelled else ("flip_rate", "flip rate")
    lines = [f"{what} over {len(spread['seeds'])} seeds (n = {spread['n']}): min / median / max, "
             "bootstrap 95 % interval"]
    for entry in spread["per_eps"]:
        value = entry[key]
        interval = value["bootstrap_ci95"]
        text = (f"{100 * value['min']:5.1f} / {100 * value['median']:5.1f} / {100 * value['max']:5.1f} %"
                if value["min"] is not None else "–")
        if interval:
            text += f"  [{100 * interval[0]:4.1f}, {100 * interval[1]:4.1f}]"
        lines.append(f"{entry['eps_label']:>10}  {text}")
    return "\n".join(lines)


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
