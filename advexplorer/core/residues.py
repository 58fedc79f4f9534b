"""The torch-free half of the sequence probe: alphabet, BLOSUM62, motifs, position ranges.

The GUI uses these before torch is loaded (motif highlighting, the allowed-region text);
:mod:`advexplorer.core.sequences` re-exports them next to the probe itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from advexplorer.errors import UserError

#: The 20 standard amino acids, one-letter codes in alphabetical order.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"

#: Natural amino-acid frequencies (%) in UniProtKB/Swiss-Prot (release statistics); the
#: background of the synthetic demo sequences.
NATURAL_FREQUENCIES: dict[str, float] = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75,
    "G": 7.07, "H": 2.27, "I": 5.96, "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86,
    "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08, "Y": 2.92, "V": 6.87,
}

# BLOSUM62 (Henikoff & Henikoff, PNAS 1992, https://doi.org/10.1073/pnas.89.22.10915),
# in the row/column order of the NCBI distribution file.
_BLOSUM62_ORDER = "ARNDCQEGHILKMFPSTWYV"
_BLOSUM62_ROWS = """
A  4 -1 -2 -2  0 -1 -1  0 -2 -1 -1 -1 -1 -2 -1  1  0 -3 -2  0
R -1  5  0 -2 -3  1  0 -2  0 -3 -2  2 -1 -3 -2 -1 -1 -3 -2 -3
N -2  0  6  1 -3  0  0  0  1 -3 -3  0 -2 -3 -2  1  0 -4 -2 -3
D -2 -2  1  6 -3  0  2 -1 -1 -3 -4 -1 -3 -3 -1  0 -1 -4 -3 -3
C  0 -3 -3 -3  9 -3 -4 -3 -3 -1 -1 -3 -1 -2 -3 -1 -1 -2 -2 -1
Q -1  1  0  0 -3  5  2 -2  0 -3 -2  1  0 -3 -1  0 -1 -2 -1 -2
E -1  0  0  2 -4  2  5 -2  0 -3 -3  1 -2 -3 -1  0 -1 -3 -2 -2
G  0 -2  0 -1 -3 -2 -2  6 -2 -4 -4 -2 -3 -3 -2  0 -2 -2 -3 -3
H -2  0  1 -1 -3  0  0 -2  8 -3 -3 -1 -2 -1 -2 -1 -2 -2  2 -3
I -1 -3 -3 -3 -1 -3 -3 -4 -3  4  2 -3  1  0 -3 -2 -1 -3 -1  3
L -1 -2 -3 -4 -1 -2 -3 -4 -3  2  4 -2  2  0 -3 -2 -1 -2 -1  1
K -1  2  0 -1 -3  1  1 -2 -1 -3 -2  5 -1 -3 -1  0 -1 -3 -2 -2
M -1 -1 -2 -3 -1  0 -2 -3 -2  1  2 -1  5  0 -2 -1 -1 -1 -1  1
F -2 -3 -3 -3 -2 -3 -3 -3 -1  0  0 -3  0  6 -4 -2 -2  1  3 -1
P -1 -2 -2 -1 -3 -1 -1 -2 -2 -3 -3 -1 -2 -4  7 -1 -1 -4 -3 -2
S  1 -1  1  0 -1  0  0  0 -1 -2 -2  0 -1 -2 -1  4  1 -3 -2 -2
T  0 -1  0 -1 -1 -1 -1 -2 -2 -1 -1 -1 -1 -2 -1  1  5 -2 -2  0
W -3 -3 -4 -4 -2 -2 -3 -2 -2 -3 -2 -3 -1  1 -4 -3 -2 11  2 -3
Y -2 -2 -2 -3 -2 -1 -2 -3  2 -1 -1 -2 -1  3 -3 -2 -2  2  7 -1
V  0 -3 -3 -3 -1 -2 -2 -3 -3  3  1 -2  1 -1 -2 -2  0 -3 -1  4
"""


def _parse_blosum62() -> dict[tuple[str, str], int]:
    table = {}
    for line in _BLOSUM62_ROWS.strip().splitlines():
        letter, *scores = line.split()
        for other, score in zip(_BLOSUM62_ORDER, scores, strict=True):
            table[letter, other] = int(score)
    return table


#: BLOSUM62 score of every pair of standard amino acids: ``BLOSUM62["H", "Y"] == 2``.
BLOSUM62: dict[tuple[str, str], int] = _parse_blosum62()


def blosum62(original: str, replacement: str) -> int | None:
    """BLOSUM62 score of a substitution, or None when a letter is not a standard amino acid."""
    return BLOSUM62.get((original.upper(), replacement.upper()))


# ----------------------------------------------------------------------------- motifs

@dataclass(frozen=True)
class Motif:
    """A sequence motif as a regular expression (``x`` in the name = any residue)."""

    name: str
    pattern: str
    meaning: str = ""

    def __post_init__(self):
        try:
            re.compile(self.pattern)
        except re.error as error:
            raise UserError(f"Motif {self.name!r}: {self.pattern!r} is not a regular "
                            f"expression ({error}).") from None


@dataclass(frozen=True)
class MotifHit:
    """One occurrence of a motif: 0-based ``start``, exclusive ``end``, the matched text."""

    motif: str
    start: int
    end: int
    text: str

    def label(self) -> str:
        return f"{self.motif} {self.text} at {self.start + 1}–{self.end}"


#: The motifs a new probe looks for; users edit the list (GUI) or pass ``--motifs``.
DEFAULT_MOTIFS: tuple[Motif, ...] = (
    Motif("HExxH", "HE..H", "zinc-binding site of metalloproteases (gluzincins)"),
    Motif("GxGxxG", "G.G..G", "dinucleotide (NAD(P)/FAD) binding of Rossmann-fold dehydrogenases"),
)


def parse_motifs(text: str) -> tuple[Motif, ...]:
    """Motifs from lines ``NAME = REGEX  # meaning`` (blank lines and ``#`` lines skipped)."""
    motifs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line, _, meaning = line.partition("#")
        name, sep, pattern = line.partition("=")
        if not sep or not name.strip() or not pattern.strip():
            raise UserError(f"Motif line {number} ({raw.strip()!r}) must read NAME = REGEX, "
                            "e.g. HExxH = HE..H")
        motifs.append(Motif(name.strip(), pattern.strip(), meaning.strip()))
    return tuple(motifs)


def find_motifs(sequence: str, motifs: Iterable[Motif] = DEFAULT_MOTIFS) -> list[MotifHit]:
    """Every occurrence of every motif, overlapping ones included, in sequence order."""
    hits = []
    for motif in motifs:
        # A zero-width lookahead finds overlapping matches (HEAAHEAAH holds two HExxH).
        for match in re.finditer(f"(?=({motif.pattern}))", sequence):
            text = match.group(1)
            if text:
                hits.append(MotifHit(motif.name, match.start(), match.start() + len(text), text))
    return sorted(hits, key=lambda hit: (hit.start, hit.motif))


def motif_changes(before: str, after: str, motifs: Iterable[Motif] = DEFAULT_MOTIFS
                  ) -> tuple[list[MotifHit], list[MotifHit]]:
    """Motif occurrences (created, destroyed) by turning ``before`` into ``after``."""
    motifs = tuple(motifs)
    old = {(h.motif, h.start): h for h in find_motifs(before, motifs)}
    new = {(h.motif, h.start): h for h in find_motifs(after, motifs)}
    created = [hit for key, hit in new.items() if key not in old]
    destroyed = [hit for key, hit in old.items() if key not in new]
    return created, destroyed


# ----------------------------------------------------------------------------- positions

def position_flags(text: str, length: int) -> list[bool]:
    """Allowed positions from ``"10-20,35"`` (1-based, inclusive ranges) as ``length``
    booleans; ``"all"`` or an empty string allows every position."""
    allowed = [False] * length
    text = (text or "").strip()
    if text.lower() in ("", "all"):
        return [True] * length
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            start = int(first)
            end = int(last) if sep else start
        except ValueError:
            raise UserError(f"{part!r} is not a position or range; write e.g. 10-20,35 "
                            "(1-based, inclusive).") from None
        if start < 1 or end < start:
            raise UserError(f"The range {part!r} is empty or starts before 1; positions are "
                            "1-based, e.g. 10-20.")
        if end > length:
            raise UserError(f"Position {end} in {part!r} is past the end of the sequence "
                            f"({length} residues).")
        allowed[start - 1:end] = [True] * (end - start + 1)
    return allowed


def format_positions(allowed) -> str:
    """The inverse of :func:`position_flags`: ``"10-20,35"`` (1-based); takes any sequence
    of booleans (a list, a numpy array, a tensor)."""
    flags = [bool(v) for v in (allowed.tolist() if hasattr(allowed, "tolist") else allowed)]
    ranges, start = [], None
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            ranges.append(f"{start + 1}" if index - 1 == start else f"{start + 1}-{index}")
            start = None
    return ",".join(ranges)
