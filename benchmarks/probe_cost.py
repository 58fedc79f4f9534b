"""Cost of the sequence probe: the batched exhaustive scan vs one forward pass per
substitution, and the HotFlip search vs the exact greedy search, in this one process.

* ``scan, batched`` — :func:`advexplorer.core.sequences.scan_steps` (``--batch-size``
  mutants per forward pass) vs ``scan, one by one`` — the plain loop a user would write:
  one forward pass per allowed single substitution. Both score the same substitutions;
  the script checks that they agree.
* ``search, HotFlip`` — :func:`advexplorer.core.sequences.search_steps` (one gradient
  ranks every substitution, ``--candidates`` are verified exactly) vs ``search, exact
  greedy`` — the same greedy search scoring *every* open substitution exactly at each step
  (``candidates`` = all of them). Printed: substitutions found, forward and backward
  passes, wall time as a ratio to the baseline (median of ``--repeats``).

Default: the bundled protein motif demo, the showcase sequence of the sample FASTA, all
positions allowed, BLOSUM62 ≥ 0. Run: ``python benchmarks/probe_cost.py [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _median_time(function, repeats: int):
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", default="", help="allowed positions (default: all)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--max-subs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from advexplorer.core.attacks import drive
    from advexplorer.core.sequences import (encode, parse_positions, scan_steps, search_steps,
                                            substitution_table)
    from advexplorer.io.sequences import DEMO_SEQUENCE_MODEL, SAMPLE_FASTA, load_sequence_model, read_fasta

    torch.set_num_threads(args.threads)
    loaded = load_sequence_model(DEMO_SEQUENCE_MODEL)
    model = loaded.classifier
    record = read_fasta(SAMPLE_FASTA, loaded.card.alphabet, loaded.card.max_length)[0]
    tokens = encode(record.sequence)
    allowed = parse_positions(args.positions, len(tokens))
    table = substitution_table("blosum62")
    pairs = (table[tokens] & allowed[:, None]).nonzero().tolist()
    print(f"{loaded.card.name}, {record.name} ({len(tokens)} residues), {len(pairs)} allowed single "
          f"substitutions, {args.threads} thread(s)")

    batched_s, scan = _median_time(lambda: drive(scan_steps(model, tokens, allowed, table,
                                                            batch_size=args.batch_size)), args.repeats)

    def one_by_one():
        rows = {}
        for position, replacement in pairs:
            mutant = tokens.clone()
            mutant[position] = replacement
            rows[position, replacement] = torch.softmax(model.logits_for(mutant), dim=1)[0]
        return rows

    loop_s, rows = _median_time(one_by_one, args.repeats)
    worst = max(float((scan.probabilities[p, r] - rows[p, r]).abs().max()) for p, r in pairs)
    print(f"scan, one by one : {len(pairs)} forward passes, {loop_s * 1000:8.1f} ms  (baseline)")
    print(f"scan, batched    : {scan.forward_passes} forward passes in "
          f"{-(-len(pairs) // args.batch_size)} batches, {batched_s * 1000:8.1f} ms  "
          f"= {loop_s / batched_s:.1f}× faster; largest difference {worst:.1e}")

    def search(candidates):
        return drive(search_steps(model, tokens, allowed, table, max_substitutions=args.max_subs,
                                  candidates=candidates))

    exact_s, exact = _median_time(lambda: search(len(pairs)), args.repeats)
    hot_s, hot = _median_time(lambda: search(args.candidates), args.repeats)
    for name, result, seconds in (("search, exact greedy", exact, exact_s),
                                  (f"search, HotFlip top-{args.candidates}", hot, hot_s)):
        found = ", ".join(s.label() for s in result.substitutions) or "none"
        print(f"{name:<22}: {found} (success {result.success}), {result.forward_passes} forward + "
              f"{result.backward_passes} backward passes, {seconds * 1000:8.1f} ms"
              + ("  (baseline)" if result is exact else f"  = {exact_s / seconds:.1f}× faster"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
