"""``advexplorer probe``: single-residue probes of a protein sequence classifier.

For each sequence of a FASTA file, the fewest substitutions in the allowed positions that
flip the prediction (or reach ``--target``), found by gradient-ranked HotFlip candidates
verified by exact forward passes; with ``--scan`` also every single substitution (the heat
map). ``--screen`` probes a cohort and reports the fraction flippable by ≤ k substitutions
with Wilson 95 % intervals. Writes ``record.json`` and ``report.html`` into ``--out``,
all or nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs = parser.add_argument_group("model and sequences")
    inputs.add_argument("--model", metavar="M",
                        help="sequence model: TorchScript or state_dict with a sequence card beside it "
                             "(default: the bundled synthetic protein motif demo)")
    inputs.add_argument("--card", metavar="CARD.json", help="its card, if not beside it with the same stem")
    inputs.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    inputs.add_argument("--fasta", metavar="F", help="FASTA file, one or many sequences (default: the "
                                                     "bundled sample)")
    inputs.add_argument("--record", action="append", metavar="NAME",
                        help="probe only this record (repeat for several; default: every record)")
    probe = parser.add_argument_group("probe")
    probe.add_argument("--positions", metavar="RANGES", default="",
                       help="positions that may change, 1-based inclusive, e.g. 10-20,35 (default: all)")
    probe.add_argument("--substitutions", default="blosum62", metavar="any|blosum62|TABLE.json",
                       help="allowed substitutions: any change, BLOSUM62 score ≥ --blosum-min "
                            "(default), or a JSON table {\"A\": \"GSTV\", ...}")
    probe.add_argument("--blosum-min", type=int, default=0, help="lowest BLOSUM62 score allowed (default 0)")
    probe.add_argument("--max-subs", type=int, default=3, metavar="K",
                       help="most substitutions to try (default 3)")
    probe.add_argument("--target", metavar="CLASS", help="reach this class (name or index) instead of "
                                                         "any change of class")
    probe.add_argument("--scan", action="store_true",
                       help="also score every single substitution exactly (L × 19 forward passes, "
                            "batched): the heat map, and proof when one substitution suffices")
    probe.add_argument("--saliency", default="input-x-gradient",
                       choices=("input-x-gradient", "integrated-gradients", "none"),
                       help="per-position attribution before and after (Captum; default input-x-gradient)")
    probe.add_argument("--motifs", metavar="FILE",
                       help="motifs to report, lines 'NAME = REGEX' (default: HExxH = HE..H, "
                            "GxGxxG = G.G..G)")
    probe.add_argument("--candidates", type=int, default=32, metavar="N",
                       help="gradient-ranked candidates verified exactly per step (default 32)")
    probe.add_argument("--screen", action="store_true",
                       help="cohort mode: fraction flippable by ≤ k substitutions, Wilson intervals "
                            "(no scan, no saliency)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", help="new or empty folder (required unless --reproduce)")
    output.add_argument("--reproduce", metavar="RUN_DIR",
                        help="repeat a recorded probe after checking the SHA-256 of its model, card "
                             "and FASTA; exit 0: same result, 1: differs, 2: inputs changed "
                             "(with --out, also write the new run folder)")
    output.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    output.add_argument("--quiet", action="store_true", help="print nothing but errors")


def run(args: argparse.Namespace) -> int:
    from advexplorer.errors import UserError
    from advexplorer.io.atomic import check_destination
    from advexplorer.io.sequences import (DEMO_SEQUENCE_MODEL, SAMPLE_FASTA, load_sequence_model,
                                          read_fasta, read_motifs, read_substitution_rule)

    if args.reproduce:
        return _reproduce(args)
    if not args.out:
        raise UserError("--out DIR is required: the folder for record.json and report.html.")
    if args.max_subs < 1:
        raise UserError("--max-subs must be at least 1.")
    if args.candidates < 1:
        raise UserError("--candidates must be at least 1.")
    check_destination(args.out, overwrite=args.overwrite, directory=True)
    rule = read_substitution_rule(args.substitutions)
    motifs = read_motifs(args.motifs) if args.motifs else None
    model = load_sequence_model(args.model or DEMO_SEQUENCE_MODEL, args.card, device=args.device)
    fasta = Path(args.fasta) if args.fasta else SAMPLE_FASTA
    records = read_fasta(fasta, model.card.alphabet, model.card.max_length)
    if args.record:
        wanted = set(args.record)
        missing = wanted - {r.name for r in records}
        if missing:
            raise UserError(f"{fasta.name} has no record named {', '.join(sorted(missing))}; its "
                            f"records are {', '.join(r.name for r in records[:8])}"
                            f"{' …' if len(records) > 8 else ''}.")
        records = [r for r in records if r.name in wanted]

    from advexplorer.core.sequences import DEFAULT_MOTIFS
    from advexplorer.report.sequences import write_probe_folder
    from advexplorer.session.probes import (ProbeRequest, allowed_from_text, build_probe_record,
                                            class_index, run_probe)

    request = ProbeRequest(
        model=model, records=records, allowed=allowed_from_text(records, args.positions),
        substitutions=rule, blosum_min=args.blosum_min, max_substitutions=args.max_subs,
        target=class_index(args.target, model.card.classes), scan=args.scan,
        saliency=None if args.saliency == "none" else args.saliency,
        motifs=motifs or DEFAULT_MOTIFS, candidates=args.candidates, screen=args.screen,
        fasta_path=fasta, substitutions_path=None if isinstance(rule, str) else Path(args.substitutions),
        command_line=getattr(args, "command_line", None))
    request.check()  # a region or a table that allows nothing fails here, before any work
    if not args.quiet:
        print(f"{model.card.name}: {len(records)} sequence(s) from {fasta.name}", file=sys.stderr)

    announced = set()

    def show(index, progress):  # one line per sequence as it starts
        if not args.quiet and index not in announced:
            announced.add(index)
            print(f"  probing {records[index].name} ({index + 1}/{len(records)})", file=sys.stderr)

    probes, wall = run_probe(request, on_progress=show)
    record = build_probe_record(request, probes, wall)
    write_probe_folder(args.out, record, overwrite=args.overwrite)
    if not args.quiet:
        _print_summary(record)
        print(f"wrote {Path(args.out) / 'record.json'} and {Path(args.out) / 'report.html'}")
    return 0


def _print_summary(record: dict) -> None:
    if "screen" in record:
        for row in record["screen"]["per_k"]:
            low, high = row["ci95"]
            print(f"flippable by ≤ {row['k']}: {row['flippable']}/{row['n']} = "
                  f"{100 * row['fraction']:.1f} % (Wilson 95 %: {100 * low:.1f}–{100 * high:.1f} %)")
        return
    for result in record["results"]:
        before, after = result["prediction_before"], result["prediction_after"]
        subs = ", ".join(s["label"] for s in result["substitutions"]) or "none"
        if result["success"]:
            status = "flipped" + (" (minimal)" if result["minimal"] else "")
        else:
            status, subs = "held", f"best attempt {subs}"
        motifs = "; ".join([f"+{m['motif']} {m['text']} at {m['start'] + 1}" for m in result["motifs_created"]]
                           + [f"-{m['motif']} {m['text']} at {m['start'] + 1}" for m in result["motifs_destroyed"]])
        line = (f"{result['name']}: {before['class']} {before['probabilities'][before['class']]:.3f} → "
                f"{after['class']} {after['probabilities'][after['class']]:.3f} | {status} | {subs}")
        print(line + (f" | {motifs}" if motifs else ""))
        if "scan" in result:
            scan = result["scan"]
            print(f"  scan: {scan['flips']} of {scan['candidates']} single substitutions succeed alone")


def _reproduce(args: argparse.Namespace) -> int:
    """Repeat a recorded probe and compare: 0 same, 1 differs (inputs changed: UserError, 2)."""
    import json

    from advexplorer.errors import UserError
    from advexplorer.io.atomic import check_destination
    from advexplorer.report.sequences import write_probe_folder
    from advexplorer.session.probes import (build_probe_record, compare_probe_records,
                                            request_from_record, run_probe)

    record_path = Path(args.reproduce) / "record.json"
    try:
        recorded = json.loads(record_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{args.reproduce} holds no record.json; give a folder written by "
                        "'advexplorer probe --out'.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{record_path} is not valid JSON ({error}).") from None
    if args.out:
        check_destination(args.out, overwrite=args.overwrite, directory=True)
    request = request_from_record(recorded)
    request.command_line = getattr(args, "command_line", None)
    probes, wall = run_probe(request)
    repeated = build_probe_record(request, probes, wall)
    if args.out:
        write_probe_folder(args.out, repeated, overwrite=args.overwrite)
    differences = compare_probe_records(recorded, repeated)
    if not args.quiet:
        for line in differences:
            print(line)
        print("same result" if not differences else f"{len(differences)} difference(s)")
    return 1 if differences else 0
