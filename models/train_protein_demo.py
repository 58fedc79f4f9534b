"""Train the protein motif demo: ``python models/train_protein_demo.py``.

A small 1-D CNN (:class:`advexplorer.core.sequences.MotifCNN`) that reads an amino-acid
sequence and predicts one of three classes. The data are **synthetic**, on purpose:

* background residues are drawn independently from the natural amino-acid frequencies of
  UniProtKB/Swiss-Prot, and resampled until they contain neither motif by chance;
* a *metalloprotease* carries a planted HExxH (the zinc-binding motif of gluzincins), a
  *dehydrogenase* a planted GxGxxG (the Rossmann-fold dinucleotide-binding motif), and
  *other* neither; the label is always decided by these rules on the final sequence, so
  HExxH anywhere makes a metalloprotease even next to a GxGxxG;
* every class also receives near misses (HExx followed by anything but H, GxGxx followed by
  anything but G, HxxxH) so that the model must read the whole motif.

So the model learns exactly one thing — text patterns — and we know which. That is what
makes it a good subject for the probe: one conservative substitution in a loop far from
any active site (Y → H, BLOSUM62 +2) completes an HExxH and flips a "dehydrogenase" into a
"metalloprotease". A real function predictor that does this has learned the same shortcut.

Writes ``models/protein_motifs.pt`` (a state_dict, loaded with ``weights_only=True``),
``models/protein_motifs.json`` (its sequence card) and
``resources/samples/proteins/motif_demo.fasta``. One CPU thread, well under two minutes;
the same seed on the same machine and library versions gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:  # the script runs from a checkout, installed or not
    sys.path.insert(0, str(REPO_DIR))

from advexplorer.core.sequences import AMINO_ACIDS, NATURAL_FREQUENCIES, MotifCNN  # noqa: E402

SEED = 0
CLASSES = ("other", "dehydrogenase", "metalloprotease")
MAX_LENGTH = 96
MIN_LENGTH = 48
TRAIN_SIZE = 6000
HELD_OUT_SIZE = 1500
HELD_OUT_SEED = 1
EPOCHS = 12
BATCH_SIZE = 64
LR = 3e-3
FILTERS = 32
WIDTH = 7
METALLO = re.compile(r"HE..H")
ROSSMANN = re.compile(r"G.G..G")
SAMPLES_DIR = REPO_DIR / "resources" / "samples" / "proteins"
#: The loop of the showcase sequence: a flexible region where any residue should do.
DEMO_LOOP = (40, 55)  # 1-based, inclusive


def label_of(sequence: str) -> int:
    """The rule that defines the classes: HExxH first, then GxGxxG, else other."""
    if METALLO.search(sequence):
        return CLASSES.index("metalloprotease")
    if ROSSMANN.search(sequence):
        return CLASSES.index("dehydrogenase")
    return CLASSES.index("other")


class SequenceFactory:
    """Synthetic sequences from one numpy generator (same seed → same sequences)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        frequencies = np.array([NATURAL_FREQUENCIES[a] for a in AMINO_ACIDS])
        self.frequencies = frequencies / frequencies.sum()

    def residues(self, count: int) -> str:
        return "".join(np.array(list(AMINO_ACIDS))[self.rng.choice(20, count, p=self.frequencies)])

    def background(self, length: int) -> str:
        while True:
            sequence = self.residues(length)
            if not METALLO.search(sequence) and not ROSSMANN.search(sequence):
                return sequence

    def residue_except(self, excluded: str) -> str:
        while True:
            residue = self.residues(1)
            if residue not in excluded:
                return residue

    def metallo(self) -> str:
        return "HE" + self.residues(2) + "H"

    def rossmann(self) -> str:
        return "G" + self.residues(1) + "G" + self.residues(2) + "G"

    def near_miss(self) -> str:
        kind = self.rng.integers(3)
        if kind == 0:
            return "HE" + self.residues(2) + self.residue_except("H")
        if kind == 1:
            return "G" + self.residues(1) + "G" + self.residues(2) + self.residue_except("G")
        return "H" + self.residue_except("E") + self.residues(2) + "H"

    def plant(self, sequence: str, piece: str) -> str:
        start = int(self.rng.integers(0, len(sequence) - len(piece) + 1))
        return sequence[:start] + piece + sequence[start + len(piece):]

    def example(self) -> tuple[str, int]:
        wanted = int(self.rng.integers(3))
        sequence = self.background(int(self.rng.integers(MIN_LENGTH, MAX_LENGTH + 1)))
        for _ in range(int(self.rng.integers(0, 3))):
            sequence = self.plant(sequence, self.near_miss())
        if wanted == CLASSES.index("dehydrogenase"):
            sequence = self.plant(sequence, self.rossmann())
        elif wanted == CLASSES.index("metalloprotease"):
            if self.rng.random() < 0.3:
                sequence = self.plant(sequence, self.rossmann())
            sequence = self.plant(sequence, self.metallo())
        return sequence, label_of(sequence)  # the rule decides, whatever planting did

    def dataset(self, size: int) -> tuple[list[str], np.ndarray]:
        pairs = [self.example() for _ in range(size)]
        return [s for s, _ in pairs], np.array([y for _, y in pairs])


def encode_batch(sequences: list[str]) -> torch.Tensor:
    """N×20×MAX_LENGTH one-hot, zero columns on the right (the card's padding)."""
    lookup = {a: i for i, a in enumerate(AMINO_ACIDS)}
    onehot = torch.zeros(len(sequences), len(AMINO_ACIDS), MAX_LENGTH)
    for row, sequence in enumerate(sequences):
        index = torch.tensor([lookup[c] for c in sequence])
        onehot[row, index, torch.arange(len(sequence))] = 1.0
    return onehot


def held_out() -> tuple[list[str], np.ndarray]:
    """The held-out split the card's accuracy is measured on (independent seed)."""
    return SequenceFactory(HELD_OUT_SEED).dataset(HELD_OUT_SIZE)


def accuracy(model: MotifCNN, sequences: list[str], labels: np.ndarray) -> float:
    with torch.no_grad():
        predictions = model(encode_batch(sequences)).argmax(dim=1).numpy()
    return float((predictions == labels).mean())


def train(epochs: int, seed: int) -> tuple[MotifCNN, dict]:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    sequences, labels = SequenceFactory(seed).dataset(TRAIN_SIZE)
    inputs, targets = encode_batch(sequences), torch.from_numpy(labels)
    model = MotifCNN(len(AMINO_ACIDS), FILTERS, WIDTH, len(CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    order_generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(TRAIN_SIZE, generator=order_generator)
        total = 0.0
        for start in range(0, TRAIN_SIZE, BATCH_SIZE):
            rows = order[start:start + BATCH_SIZE]
            loss = F.cross_entropy(model(inputs[rows]), targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / TRAIN_SIZE:.4f}", flush=True)
    model.eval()
    counts = {name: int((labels == i).sum()) for i, name in enumerate(CLASSES)}
    return model, {"train_accuracy": accuracy(model, sequences, labels), "class_counts": counts}


def showcase_sequences() -> list[tuple[str, str]]:
    """The sample FASTA: a showcase dehydrogenase whose loop holds a near-miss HExxY, and
    two held-out-style examples of each class (FASTA header, sequence)."""
    factory = SequenceFactory(7)
    records = []
    loop_start, loop_end = DEMO_LOOP
    while True:
        body = list(factory.background(84))
        body[9:15] = "GSGAAG"                   # Rossmann GxGxxG at 10–15
        body[44:49] = "HEDKY"                   # near miss in the loop, at 45–49
        sequence = "".join(body)
        if label_of(sequence) == CLASSES.index("dehydrogenase") and "HE" not in sequence[:44]:
            break
    records.append((f"demo_dehydrogenase_loop synthetic; GxGxxG at 10-15; flexible loop "
                    f"{loop_start}-{loop_end} with near-miss HEDKY at 45-49", sequence))
    made = {name: 0 for name in CLASSES}
    while min(made.values()) < 2:
        sequence, label = factory.example()
        name = CLASSES[label]
        if made[name] < 2:
            made[name] += 1
            records.append((f"synthetic_{name}_{made[name]} synthetic; length {len(sequence)}", sequence))
    return records


def write_fasta(path: Path, records: list[tuple[str, str]]) -> None:
    lines = []
    for header, sequence in records:
        lines.append(f">{header}")
        lines.extend(sequence[i:i + 60] for i in range(0, len(sequence), 60))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=REPO_DIR / "models")
    parser.add_argument("--samples", type=Path, default=SAMPLES_DIR, help="where the sample FASTA goes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    model, stats = train(args.epochs, args.seed)
    wall = time.perf_counter() - started
    test_sequences, test_labels = held_out()
    held_out_accuracy = accuracy(model, test_sequences, test_labels)
    print(f"held-out accuracy {held_out_accuracy:.4f} ({HELD_OUT_SIZE} sequences), {wall:.1f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "protein_motifs.pt"
    torch.save(model.state_dict(), weights)
    fasta = args.samples / "motif_demo.fasta"
    write_fasta(fasta, showcase_sequences())
    card = {
        "name": "Protein motif classifier (synthetic demo)",
        "kind": "sequence",
        "classes": list(CLASSES),
        "alphabet": AMINO_ACIDS,
        "max_length": MAX_LENGTH,
        "padding": "right",
        "input": "onehot",
        "architecture": "advexplorer.MotifCNN",
        "architecture_kwargs": {"alphabet_size": len(AMINO_ACIDS), "filters": FILTERS,
                                "width": WIDTH, "classes": len(CLASSES)},
        "description": "Demonstration model for AdvExplorer's sequence probe — not for any real "
                       "use. A 1-D CNN (Conv1d width 7, 32 filters, ReLU, max over positions, "
                       "linear) that reads a one-hot protein sequence of up to 96 residues.",
        "training_data": "SYNTHETIC sequences, on purpose: background residues drawn from natural "
                         "amino-acid frequencies (UniProtKB/Swiss-Prot), with planted motifs that "
                         "define the class by rule — HExxH anywhere = metalloprotease, else GxGxxG = "
                         "dehydrogenase, else other — plus near misses in every class. The model "
                         "can only learn text patterns, and we know which: that makes it a known "
                         "answer for the probe (one loop substitution that completes HExxH flips a "
                         "dehydrogenase). Nothing here is biology.",
        "synthetic": True,
        "clean_accuracy": round(held_out_accuracy, 4),
        "suggested_positions": f"{DEMO_LOOP[0]}-{DEMO_LOOP[1]}",
        "training": {
            "script": "models/train_protein_demo.py",
            "command": "python models/train_protein_demo.py" + (f" --epochs {args.epochs}" if args.epochs != EPOCHS else ""),
            "seed": args.seed, "epochs": args.epochs, "batch_size": BATCH_SIZE,
            "optimizer": f"Adam lr {LR}", "train_size": TRAIN_SIZE,
            "train_accuracy": round(stats["train_accuracy"], 4),
            "class_counts": stats["class_counts"], "wall_time_s": round(wall, 1),
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "numpy": np.__version__, "threads": 1, "device": "cpu"},
        },
        "held_out": {"how": "import models/train_protein_demo.py; held_out()",
                     "n": HELD_OUT_SIZE, "seed": HELD_OUT_SEED},
        "samples": [{"fasta": "../resources/samples/proteins/motif_demo.fasta",
                     "positions": f"{DEMO_LOOP[0]}-{DEMO_LOOP[1]}"}],
    }
    (args.out / "protein_motifs.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n",
                                                  encoding="utf-8")
    print(f"wrote {weights}, {args.out / 'protein_motifs.json'} and {fasta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
