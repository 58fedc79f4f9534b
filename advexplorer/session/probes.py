"""Probing the sequences of a FASTA file, as the CLI and the sequence window both run it.

:func:`probe_run_steps` walks the records of a :class:`ProbeRequest` through
:func:`advexplorer.core.sequences.probe_steps` (or only the search, when screening) and
yields ``(record_index, ProbeProgress)`` so a window can show progress live; its return
value is one :class:`SequenceProbe` per record. :func:`build_probe_record` turns them into
the ``record.json`` dict (hashes, settings, results), which
:func:`advexplorer.report.sequences.write_probe_folder` writes with its HTML report.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import advexplorer
from advexplorer.core.screen_results import wilson_interval
from advexplorer.core.sequences import (DEFAULT_MOTIFS, Motif, ProbeOutcome, ProbeProgress,
                                        allowed_candidates, encode, find_motifs, format_positions, motif_changes,
                                        parse_positions, position_flags, probe_steps, search_steps,
                                        substitution_table)
from advexplorer.errors import UserError
from advexplorer.io.hashing import sha256_file
from advexplorer.io.sequences import FastaRecord, LoadedSequenceModel

PROBE_RECORD_VERSION = 1


@dataclass
class ProbeRequest:
    """Everything a probe needs. ``allowed`` holds one boolean list per record (True = may
    change); ``substitutions`` is ``any``, ``blosum62`` or a table mapping."""

    model: LoadedSequenceModel
    records: list[FastaRecord]
    allowed: list[list[bool]]
    substitutions: str | dict[str, str] = "blosum62"
    blosum_min: int = 0
    max_substitutions: int = 3
    target: int | None = None
    scan: bool = False
    saliency: str | None = "input-x-gradient"
    motifs: Sequence[Motif] = DEFAULT_MOTIFS
    candidates: int = 32
    screen: bool = False
    fasta_path: Path | None = None
    substitutions_path: Path | None = None
    command_line: list[str] | None = None

    def __post_init__(self):
        if len(self.allowed) != len(self.records):
            raise UserError(f"{len(self.allowed)} allowed regions for {len(self.records)} sequences.")
        for record, allowed in zip(self.records, self.allowed):
            self.model.classifier.check_length(len(record.sequence))
            if len(allowed) != len(record.sequence):
                raise UserError(f"The allowed region of {record.name} covers {len(allowed)} positions "
                                f"but it has {len(record.sequence)} residues.")
        if self.target is not None and not 0 <= self.target < self.model.card.num_classes:
            raise UserError(f"Target class {self.target} is out of range (0 to "
                            f"{self.model.card.num_classes - 1}).")

    def table(self) -> torch.Tensor:
        return substitution_table(self.substitutions, self.model.card.alphabet, blosum_min=self.blosum_min)

    def check(self) -> None:
        """Refuse, before any work, a record whose allowed region or table allows nothing."""
        table = self.table()
        for record, allowed in zip(self.records, self.allowed):
            try:
                allowed_candidates(encode(record.sequence, self.model.card.alphabet),
                                   torch.tensor(allowed, dtype=torch.bool), table)
            except UserError as error:
                raise UserError(f"{record.name}: {error}") from None


def allowed_from_text(records: Sequence[FastaRecord], positions: str | None) -> list[list[bool]]:
    """One allowed region per record from ``--positions`` text (all positions if empty);
    an error names the record whose length the text does not fit."""
    allowed = []
    for record in records:
        try:
            allowed.append(parse_positions(positions or "", len(record.sequence)).tolist())
        except UserError as error:
            raise UserError(f"{record.name}: {error}") from None
    return allowed


def class_index(value: str | int | None, classes: Sequence[str]) -> int | None:
    """A class given by name (case-insensitive) or index; None stays None."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    for index, name in enumerate(classes):
        if name.lower() == text.lower():
            return index
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    raise UserError(f"Unknown class {value!r}; the model's classes are {', '.join(classes)} "
                    f"(or 0 to {len(classes) - 1}).")


@dataclass
class SequenceProbe:
    """The outcome for one record, with its wall time."""

    record: FastaRecord
    allowed: list[bool]
    outcome: ProbeOutcome
    wall_time_s: float


def probe_run_steps(request: ProbeRequest) -> Generator[tuple[int, ProbeProgress], None, list[SequenceProbe]]:
    """Probe every record in turn; yield ``(record_index, progress)``; return the probes."""
    model = request.model.classifier
    table = request.table()
    probes = []
    for index, (record, allowed) in enumerate(zip(request.records, request.allowed)):
        started = time.perf_counter()
        tokens = encode(record.sequence, model.alphabet)
        allowed_tensor = torch.tensor(allowed, dtype=torch.bool)
        try:
            if request.screen:
                steps = search_steps(model, tokens, allowed_tensor, table,
                                     max_substitutions=request.max_substitutions,
                                     target=request.target, candidates=request.candidates)
            else:
                steps = probe_steps(model, tokens, allowed_tensor, table,
                                    max_substitutions=request.max_substitutions, target=request.target,
                                    scan=request.scan, saliency=request.saliency,
                                    motifs=request.motifs, candidates=request.candidates)
            while True:
                try:
                    progress = next(steps)
                except StopIteration as stop:
                    outcome = stop.value
                    break
                yield index, progress
        except UserError as error:
            raise UserError(f"{record.name}: {error}") from None
        if request.screen:  # the search alone: wrap it like a full probe
            created, destroyed = motif_changes(outcome.original, outcome.probed, request.motifs)
            outcome = ProbeOutcome(search=outcome, motifs_created=created, motifs_destroyed=destroyed)
        probes.append(SequenceProbe(record, list(allowed), outcome, time.perf_counter() - started))
    return probes


def screen_summary(probes: Sequence[SequenceProbe], max_substitutions: int) -> dict[str, Any]:
    """Fraction of sequences the search flipped with ≤ k substitutions, k = 1…K, with
    Wilson 95 % intervals. A lower bound on the true fraction: the search is greedy."""
    n = len(probes)
    needed = [len(p.outcome.search.substitutions) if p.outcome.search.success else None for p in probes]
    rows = []
    for k in range(1, max_substitutions + 1):
        flipped = sum(1 for count in needed if count is not None and count <= k)
        low, high = wilson_interval(flipped, n)
        rows.append({"k": k, "n": n, "flippable": flipped, "fraction": flipped / n if n else None,
                     "ci95": [low, high]})
    return {"n": n, "per_k": rows,
            "already_target": sum(1 for c in needed if c == 0),
            "definition": "a sequence counts as flippable by ≤ k when the greedy HotFlip search "
                          "found ≤ k allowed substitutions that flip it (or reach the target); "
                          "the search is greedy, so the true fraction may be higher"}


def _prediction(probabilities: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    index = int(probabilities.argmax())
    return {"index": index, "class": classes[index],
            "probabilities": {name: float(p) for name, p in zip(classes, probabilities.tolist())}}


def probe_json(probe: SequenceProbe, classes: Sequence[str], alphabet: str) -> dict[str, Any]:
    """One record's results as plain JSON (positions 1-based)."""
    outcome, search = probe.outcome, probe.outcome.search
    watched = search.target if search.target is not None else search.reference
    path = search.probability_path
    substitutions = [
        {"label": s.label(), "position": s.position + 1, "from": s.original, "to": s.replacement,
         "blosum62": s.blosum62,
         "probability_before": float(path[k, watched]), "probability_after": float(path[k + 1, watched])}
        for k, s in enumerate(search.substitutions)]
    result: dict[str, Any] = {
        "name": probe.record.name, "description": probe.record.description,
        "length": len(probe.record.sequence), "sequence": probe.record.sequence,
        "allowed_positions": format_positions(probe.allowed),
        "allowed_count": int(sum(probe.allowed)),
        "prediction_before": _prediction(search.probabilities_before, classes),
        "prediction_after": _prediction(search.probabilities_after, classes),
        "watched_class": {"index": watched, "name": classes[watched]},
        "success": search.success, "minimal": search.minimal,
        "substitutions": substitutions, "probed_sequence": search.probed,
        "motifs_before": [vars(h) for h in find_motifs(search.original)],
        "motifs_created": [vars(h) for h in outcome.motifs_created],
        "motifs_destroyed": [vars(h) for h in outcome.motifs_destroyed],
        "forward_passes": search.forward_passes, "backward_passes": search.backward_passes,
        "wall_time_s": round(probe.wall_time_s, 4),
    }
    if outcome.scan is not None:
        scan = outcome.scan
        delta = scan.delta.clone()
        delta[scan.predictions < 0] = float("nan")
        result["scan"] = {
            "watched_class": {"index": scan.watched_class, "name": classes[scan.watched_class]},
            "candidates": scan.candidates, "forward_passes": scan.forward_passes,
            "flips": len(scan.flips), "strongest_flips": [s.label() for s in scan.flips[:20]],
            "alphabet": alphabet,
            "delta": [[None if v != v else round(float(v), 6) for v in row] for row in delta.tolist()],
        }
    if outcome.saliency_before is not None:
        result["saliency"] = {
            "method": outcome.saliency_method,
            "class_before": classes[search.prediction_before],
            "class_after": classes[search.prediction_after],
            "before": [round(float(v), 6) for v in outcome.saliency_before.tolist()],
            "after": [round(float(v), 6) for v in outcome.saliency_after.tolist()],
        }
    return result


def versions() -> dict[str, str]:
    """Versions that decide whether a probe can be repeated bit for bit."""
    import captum

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "captum": captum.__version__, "advexplorer": advexplorer.__version__}


def build_probe_record(request: ProbeRequest, probes: Sequence[SequenceProbe],
                       wall_time_s: float) -> dict[str, Any]:
    """The ``record.json`` of a probe run: hashes, settings, versions, results."""
    model, card = request.model, request.model.card
    substitutions: dict[str, Any] = {"rule": request.substitutions if isinstance(request.substitutions, str)
                                     else "table", "blosum_min": request.blosum_min}
    if not isinstance(request.substitutions, str):
        substitutions["table"] = dict(request.substitutions)
    if request.substitutions_path is not None:
        substitutions.update(path=str(Path(request.substitutions_path).resolve()),
                             sha256=sha256_file(request.substitutions_path))
    record: dict[str, Any] = {
        "advexplorer_probe_record": PROBE_RECORD_VERSION,
        "kind": "sequence-probe",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": request.command_line, "cwd": os.getcwd(),
        "model": {"path": str(model.path), "sha256": model.sha256, "format": model.format,
                  "card_path": str(model.card_path), "card_sha256": model.card_sha256,
                  "card": card.raw},
        "fasta": {"path": str(Path(request.fasta_path).resolve()) if request.fasta_path else None,
                  "sha256": sha256_file(request.fasta_path) if request.fasta_path else None,
                  "records": len(request.records)},
        "settings": {"mode": "screen" if request.screen else "probe",
                     "substitutions": substitutions, "max_substitutions": request.max_substitutions,
                     "target": None if request.target is None else
                     {"index": request.target, "name": card.classes[request.target]},
                     "scan": request.scan and not request.screen,
                     "saliency": None if request.screen else request.saliency,
                     "candidates_per_step": request.candidates,
                     "motifs": [vars(m) for m in request.motifs],
                     "method": "greedy HotFlip (Ebrahimi et al. 2018, arXiv:1712.06751): gradient-"
                               "ranked candidates verified by exact forward passes, then pruning"},
        "device": str(model.classifier.device),
        "versions": versions(),
        "results": [probe_json(p, card.classes, card.alphabet) for p in probes],
        "wall_time_s": round(wall_time_s, 4),
        "files": {"record": "record.json", "report": "report.html"},
    }
    if request.screen:
        record["screen"] = screen_summary(probes, request.max_substitutions)
    return record


def run_probe(request: ProbeRequest, on_progress=None) -> tuple[list[SequenceProbe], float]:
    """Run :func:`probe_run_steps` to completion; returns the probes and the wall time."""
    started = time.perf_counter()
    steps = probe_run_steps(request)
    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            return stop.value, time.perf_counter() - started
        if on_progress is not None:
            on_progress(*item)


# ----------------------------------------------------------------------------- reproducing

class InputsChanged(UserError):
    """A recorded input file is missing or no longer has its recorded SHA-256."""


def _recorded_file(entry: dict[str, Any] | None, key: str, what: str) -> Path:
    path = Path(entry.get(key) or "") if entry else Path("")
    digest = entry.get(key.replace("path", "sha256")) if entry else None
    if not entry or not entry.get(key) or not path.is_file():
        raise InputsChanged(f"The recorded {what} {path} is missing; the probe cannot be repeated.")
    if digest and sha256_file(path) != digest:
        raise InputsChanged(f"The {what} {path} changed since the probe was recorded (SHA-256 differs).")
    return path


def request_from_record(record: dict[str, Any]) -> ProbeRequest:
    """Rebuild the request of a recorded probe, after checking every input's SHA-256."""
    from advexplorer.io.sequences import load_sequence_model, read_fasta

    if record.get("kind") != "sequence-probe":
        raise UserError("This record.json is not a sequence probe; use 'advexplorer reproduce' for attacks.")
    model_path = _recorded_file(record.get("model"), "path", "model")
    card_path = _recorded_file(record.get("model"), "card_path", "model card")
    fasta_path = _recorded_file(record.get("fasta"), "path", "FASTA file")
    settings = record["settings"]
    rule = settings["substitutions"]
    model = load_sequence_model(model_path, card_path, device=record.get("device") or "cpu")
    by_name = {r.name: r for r in read_fasta(fasta_path, model.card.alphabet, model.card.max_length)}
    results = record["results"]
    records = [by_name[r["name"]] for r in results]
    return ProbeRequest(
        model=model, records=records,
        allowed=[position_flags(r["allowed_positions"], r["length"]) for r in results],
        substitutions=rule.get("table") or rule["rule"], blosum_min=int(rule.get("blosum_min", 0)),
        max_substitutions=int(settings["max_substitutions"]),
        target=None if settings["target"] is None else int(settings["target"]["index"]),
        scan=bool(settings["scan"]), saliency=settings.get("saliency"),
        motifs=tuple(Motif(m["name"], m["pattern"], m.get("meaning", "")) for m in settings["motifs"]),
        candidates=int(settings["candidates_per_step"]), screen=settings["mode"] == "screen",
        fasta_path=fasta_path, command_line=record.get("command_line"))


def compare_probe_records(recorded: dict[str, Any], repeated: dict[str, Any],
                          tolerance: float = 1e-5) -> list[str]:
    """The differences between two probe records' results (empty when they agree): the
    substitutions and success must be identical, probabilities within ``tolerance``."""
    differences = []
    for old, new in zip(recorded["results"], repeated["results"]):
        name = old["name"]
        old_subs = [s["label"] for s in old["substitutions"]]
        new_subs = [s["label"] for s in new["substitutions"]]
        if old_subs != new_subs or old["success"] != new["success"]:
            differences.append(f"{name}: recorded {old_subs or 'none'} (success {old['success']}), "
                               f"now {new_subs or 'none'} (success {new['success']})")
            continue
        for when in ("prediction_before", "prediction_after"):
            for cls, p in old[when]["probabilities"].items():
                q = new[when]["probabilities"][cls]
                if abs(p - q) > tolerance:
                    differences.append(f"{name}: p({cls}) {when.split('_')[1]} was {p:.6g}, now {q:.6g}")
    return differences
