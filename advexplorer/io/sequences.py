"""Protein sequences from files: FASTA, sequence model cards, sequence models.

**FASTA**: ``>name description`` lines, each followed by sequence lines (wrapped or not).
Letters are read case-insensitively, white space is ignored and one trailing ``*`` (a stop)
is dropped. A letter outside the model's alphabet is an error that names the letter, the
record and the 1-based positions, so the user can fix the file.

**Sequence card** (the JSON beside the model, same stem)::

    {
      "name": "Protein motif classifier",
      "kind": "sequence",
      "classes": ["other", "dehydrogenase", "metalloprotease"],
      "alphabet": "ACDEFGHIKLMNPQRSTVWY",   # index order of the one-hot / token ids
      "max_length": 96,                      # longest sequence the model accepts
      "padding": "right",                    # 'right': pad to max_length; 'none': as is
      "pad_index": 20,                       # token models: the padding id (default len(alphabet))
      "input": "onehot",                     # 'onehot' (N×A×L float) or 'tokens' (N×L int64)
      "architecture": "advexplorer.MotifCNN", "architecture_kwargs": {...},  # state_dict only
      "description": "...", "training_data": "...", "synthetic": true,
      "suggested_positions": "40-55",
      "samples": [{"fasta": "../resources/samples/proteins/motif_demo.fasta", "positions": "40-55"}]
    }

**Models**: TorchScript (any suffix; the archive holds code, not pickles) or a state_dict
of an architecture the card names (:data:`advexplorer.core.sequences.SEQUENCE_ARCHITECTURES`),
read with ``torch.load(weights_only=True)`` — never an unpickled object.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advexplorer.errors import UserError
from advexplorer.io.hashing import sha256_file
from advexplorer.paths import MODELS_DIR, SAMPLES_DIR

#: The bundled demo model and its sample FASTA.
DEMO_SEQUENCE_MODEL = MODELS_DIR / "protein_motifs.pt"
SAMPLE_FASTA = SAMPLES_DIR / "proteins" / "motif_demo.fasta"
STANDARD_ALPHABET = "ACDEFGHIKLMNPQRSTVWY"  # = core.sequences.AMINO_ACIDS, without torch


@dataclass(frozen=True)
class FastaRecord:
    """One sequence of a FASTA file: ``name`` (first word of the header), the rest of the
    header, the upper-case sequence and the 1-based line of its header."""

    name: str
    description: str
    sequence: str
    line: int

    def __len__(self) -> int:
        return len(self.sequence)


def parse_fasta(text: str, source: str = "the FASTA text") -> list[FastaRecord]:
    """Records of a FASTA text (not yet checked against an alphabet)."""
    records: list[FastaRecord] = []
    header, header_line, chunks = None, 0, []

    def close():
        sequence = "".join(chunks).upper()
        if sequence.endswith("*"):
            sequence = sequence[:-1]
        if not sequence:
            raise UserError(f"Record {header.split()[0] if header.split() else '(unnamed)'} "
                            f"(line {header_line} of {source}) has no sequence.")
        name, _, description = header.partition(" ")
        records.append(FastaRecord(name or f"record_{len(records) + 1}", description.strip(),
                                   sequence, header_line))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            if header is not None:
                close()
            header, header_line, chunks = line[1:].strip(), number, []
        elif header is None:
            raise UserError(f"{source} does not start with a '>' header line (line {number} is "
                            f"{line[:20]!r}); a FASTA record reads '>name' then the sequence.")
        else:
            chunks.append("".join(line.split()))
    if header is None:
        raise UserError(f"{source} holds no FASTA record; a record reads '>name' then the sequence.")
    close()
    return records


def check_sequences(records: list[FastaRecord], alphabet: str = STANDARD_ALPHABET,
                    max_length: int | None = None, source: str = "the FASTA file") -> None:
    """Refuse letters outside ``alphabet`` and sequences longer than ``max_length``, naming
    the record, the letters and their 1-based positions."""
    for record in records:
        unknown: dict[str, list[int]] = {}
        for position, letter in enumerate(record.sequence, start=1):
            if letter not in alphabet:
                unknown.setdefault(letter, []).append(position)
        if unknown:
            def where(positions: list[int]) -> str:
                shown = ", ".join(map(str, positions[:5]))
                return shown + (f" (+{len(positions) - 5} more)" if len(positions) > 5 else "")
            letters = "; ".join(f"{letter!r} at {where(p)}" for letter, p in unknown.items())
            raise UserError(f"{record.name} in {source} has letters the model does not know: "
                            f"{letters}. The model's alphabet is {alphabet}; replace or remove them "
                            "(ambiguous codes such as X, B, Z are not residues it has seen).")
        if max_length and len(record.sequence) > max_length:
            raise UserError(f"{record.name} in {source} has {len(record.sequence)} residues but the "
                            f"model accepts at most {max_length}; probe a fragment of it.")


def read_fasta(path: str | Path, alphabet: str | None = None,
               max_length: int | None = None) -> list[FastaRecord]:
    """Read a FASTA file; with ``alphabet`` (and ``max_length``) every record is checked."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No FASTA file at {path}. Check the path (--fasta).")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path.name} is not a text file; a FASTA file is plain text.") from None
    records = parse_fasta(text, path.name)
    if alphabet is not None:
        check_sequences(records, alphabet, max_length, path.name)
    return records


# ----------------------------------------------------------------------------- cards

@dataclass(frozen=True)
class SequenceCard:
    """What a sequence model expects, read from its card."""

    name: str
    classes: tuple[str, ...]
    alphabet: str = STANDARD_ALPHABET
    max_length: int | None = None
    padding: str = "none"
    pad_index: int | None = None
    input_kind: str = "onehot"
    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    training_data: str = ""
    synthetic: bool = False
    suggested_positions: str | None = None
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def sequence_card_from_dict(data: dict[str, Any], path: Path | None = None) -> SequenceCard:
    """Validate a card's fields, saying which one is wrong and how to fix it."""
    where = path.name if path else "the model card"
    if not isinstance(data, dict):
        raise UserError(f"{where} must hold a JSON object.")
    classes = data.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{where}: 'classes' must list at least two class names.")
    alphabet = data.get("alphabet", STANDARD_ALPHABET)
    if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
        raise UserError(f"{where}: 'alphabet' must be a string of distinct letters, e.g. "
                        f"{STANDARD_ALPHABET!r}.")
    max_length = data.get("max_length")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise UserError(f"{where}: 'max_length' must be a positive whole number.")
    padding = data.get("padding", "none")
    if padding not in ("none", "right"):
        raise UserError(f"{where}: 'padding' is {padding!r}; use 'right' (pad to max_length) or 'none'.")
    if padding == "right" and not max_length:
        raise UserError(f"{where}: padding 'right' needs 'max_length'.")
    input_kind = data.get("input", "onehot")
    if input_kind not in ("onehot", "tokens"):
        raise UserError(f"{where}: 'input' is {input_kind!r}; use 'onehot' (N×A×L float) or "
                        "'tokens' (N×L integer ids).")
    return SequenceCard(
        name=str(data.get("name") or (path.stem if path else "sequence model")),
        classes=tuple(classes), alphabet=alphabet.upper(), max_length=max_length, padding=padding,
        pad_index=data.get("pad_index"), input_kind=input_kind,
        architecture=data.get("architecture"), architecture_kwargs=dict(data.get("architecture_kwargs") or {}),
        description=str(data.get("description", "")), training_data=str(data.get("training_data", "")),
        synthetic=bool(data.get("synthetic", False)), suggested_positions=data.get("suggested_positions"),
        path=path, raw=data)


def load_sequence_card(path: str | Path) -> SequenceCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"No model card at {path}. A sequence model needs a JSON card beside it "
                        "(same name, .json) giving 'classes', 'alphabet' and 'max_length'.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path.name} is not valid JSON ({error}).") from None
    return sequence_card_from_dict(data, path)


def is_sequence_card(path: str | Path) -> bool:
    """Whether the card beside a model describes a sequence model (no torch needed)."""
    card = Path(path).with_suffix(".json")
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (data.get("kind") == "sequence" or "alphabet" in data)


def read_substitution_rule(spec: str) -> str | dict[str, str]:
    """``any``, ``blosum62``, or the table in a JSON file ``{"A": "GSTV", "L": "IVM"}``
    (original residue → the replacements allowed for it)."""
    if spec.strip().lower() in ("any", "blosum62"):
        return spec.strip().lower()
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--substitutions {spec!r} is neither 'any', 'blosum62' nor a JSON file; "
                        "a table reads {\"A\": \"GSTV\", \"L\": \"IVM\"}.")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path.name} is not valid JSON ({error}).") from None
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in table.items()):
        raise UserError(f"{path.name} must map each original residue to a string of allowed "
                        "replacements, e.g. {\"A\": \"GSTV\", \"L\": \"IVM\"}.")
    return {k.strip().upper(): v.strip().upper() for k, v in table.items()}


def read_motifs(path: str | Path):
    """Motifs from a text file of ``NAME = REGEX  # meaning`` lines."""
    from advexplorer.core.sequences import parse_motifs

    path = Path(path)
    if not path.is_file():
        raise UserError(f"No motif file at {path}; it holds lines such as 'HExxH = HE..H'.")
    return parse_motifs(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- models

@dataclass
class LoadedSequenceModel:
    """A ready-to-probe sequence model and where it came from."""

    classifier: Any            # advexplorer.core.sequences.SequenceClassifier
    card: SequenceCard
    path: Path
    card_path: Path
    sha256: str
    card_sha256: str
    format: str

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes


def _build_architecture(card: SequenceCard, path: Path):
    from advexplorer.core.sequences import SEQUENCE_ARCHITECTURES

    if not card.architecture:
        raise UserError(f"{path.name} holds weights (a state_dict), so its card must name the "
                        f"architecture: one of {', '.join(SEQUENCE_ARCHITECTURES)}; or export TorchScript.")
    builder = SEQUENCE_ARCHITECTURES.get(card.architecture)
    if builder is None:
        raise UserError(f"Unknown sequence architecture {card.architecture!r}; known: "
                        f"{', '.join(SEQUENCE_ARCHITECTURES)}. Or export the model as TorchScript.")
    try:
        return builder(**card.architecture_kwargs)
    except TypeError as error:
        raise UserError(f"Cannot build {card.architecture} with {card.architecture_kwargs}: {error}.") from None


def _load_network(path: Path, card: SequenceCard, device):
    import torch

    from advexplorer.io.model_formats import _fit_state_dict, _is_torchscript, _unwrap_state_dict

    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location=device), "torchscript"
        except Exception as error:
            raise UserError(f"{path.name} looks like TorchScript but cannot be loaded ({error}).") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path.name} contains pickled Python objects (probably a whole model), which "
                        "could run code when loaded; save model.state_dict() and name the "
                        "architecture in the card, or export TorchScript.") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise UserError(f"{path.name} is not a PyTorch model file, or it is truncated.") from None
    state = _unwrap_state_dict(obj, path)
    network = _build_architecture(card, path)
    _fit_state_dict(network, state, card, path)
    return network.to(device), "state_dict"


def load_sequence_model(path: str | Path, card: str | Path | SequenceCard | None = None,
                        device: str = "cpu") -> LoadedSequenceModel:
    """Load a sequence classifier and its card; check both on one dry forward pass."""
    import torch

    from advexplorer.core.model import pick_device
    from advexplorer.core.sequences import SequenceClassifier

    path = Path(path)
    if not path.is_file():
        raise UserError(f"No model file at {path}. Check the path (--model).")
    if not isinstance(card, SequenceCard):
        card = load_sequence_card(Path(card) if card else path.with_suffix(".json"))
    target = pick_device(device)
    network, fmt = _load_network(path, card, target)
    classifier = SequenceClassifier(network, card.alphabet, card.classes, input_kind=card.input_kind,
                                    max_length=card.max_length, padding=card.padding,
                                    pad_index=card.pad_index)
    length = min(card.max_length or 16, 16)
    try:
        logits = classifier.logits_for(torch.zeros(1, length, dtype=torch.long, device=target))
    except UserError:
        raise
    except Exception as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise UserError(f"{path.name} fails on a {length}-residue sequence as its card describes "
                        f"({lines[-1] if lines else type(error).__name__}). Check 'input', "
                        "'alphabet', 'max_length' and 'padding' in the card.") from None
    if logits.shape[1] != card.num_classes:
        raise UserError(f"{path.name} outputs {logits.shape[1]} classes but its card lists "
                        f"{card.num_classes}; fix 'classes' in the card or load the matching weights.")
    return LoadedSequenceModel(classifier=classifier, card=card, path=path.resolve(),
                               card_path=card.path.resolve() if card.path else path.with_suffix(".json"),
                               sha256=sha256_file(path),
                               card_sha256=sha256_file(card.path) if card.path else "",
                               format=fmt)
