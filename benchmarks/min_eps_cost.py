"""Cost of the minimal-ε search: batched ε ladder + refinement vs plain bisection.

Both searches find the smallest ε at which PGD (early stop, no random start) flips the
prediction, to the same relative tolerance, on the same image, in this one process:

* ``bisection`` — the textbook baseline: check ``eps_max``, then halve the bracket with one
  single-image attack per step (early stop on, so successes stop early too). It is the same
  search, :class:`advexplorer.core.robustness.EpsBracket`, with one ε per round (``grid=1``:
  the ladder is ``eps_max`` alone, and each round splits the bracket in two).
* ``batched grid=G`` — :func:`advexplorer.core.robustness.minimal_eps`: G copies of the
  image with G different ε per batch (the engine's per-image ε), early stop, and each round
  searches only inside the previous bracket.

Printed: the ε found, its bracket, image-passes (forward + backward, the hardware-neutral
cost), attack batches (sequential rounds: what latency depends on), and wall time as a
ratio to bisection (median of ``--repeats``).

Default model and image: the bundled histology model and its first sample with its
protect mask (a background-only search). ``--model/--image/--protect`` override them.
Run: ``python benchmarks/min_eps_cost.py [--threads 1] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--image")
    parser.add_argument("--protect")
    parser.add_argument("--eps-max", type=float, default=64 / 255)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from advexplorer import paths
    from advexplorer.core.robustness import minimal_eps
    from advexplorer.io.images import load_image, load_mask
    from advexplorer.io.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model or paths.DEFAULT_MODEL, device=args.device)
    card = loaded.card
    sample = card.samples[0] if card.samples else None
    image_path = args.image or (sample.image if sample else None)
    protect_path = args.protect or (sample.protect if sample and not args.image else None)
    if image_path is None:
        parser.error("the model card has no sample; give --image")
    image = load_image(image_path, card)
    mask = load_mask(protect_path, image, card, invert=True) if protect_path else None
    x = image.tensor[None].to(loaded.device)
    mask = None if mask is None else mask.to(loaded.device)
    model = loaded.classifier

    def run_batched(grid):
        found = minimal_eps(model, x, allowed_mask=mask, eps_max=args.eps_max, tolerance=args.tolerance,
                            steps=args.steps, grid=grid, max_rounds=64)
        return (found.eps, found.bracket, found.cost["forward_passes"], found.cost["backward_passes"],
                found.cost["attack_batches"])

    variants = {"bisection": lambda: run_batched(1)}
    for grid in (4, 8, 16):
        variants[f"batched grid={grid}"] = lambda grid=grid: run_batched(grid)
    for run in variants.values():  # warm-up
        run()
    times = {name: [] for name in variants}
    outcomes = {}
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            outcomes[name] = run()
            times[name].append(time.perf_counter() - start)

    print(f"{card.name} on {loaded.device}, torch threads {torch.get_num_threads()}, "
          f"{'protect mask ' + str(protect_path) if protect_path else 'whole image'}; "
          f"PGD {args.steps} steps, tolerance {args.tolerance:g}, median of {args.repeats}")
    header = (f"{'search':<18}{'ε found':>10}{'ε·255':>8}{'bracket width':>15}{'fwd':>7}{'bwd':>7}"
              f"{'batches':>9}{'time s':>9}{'time ×':>8}")
    print(header)
    print("-" * len(header))
    base = statistics.median(times["bisection"])
    for name, (eps, bracket, forward, backward, batches) in outcomes.items():
        t = statistics.median(times[name])
        eps_text = "—" if eps is None else f"{eps:.5f}"
        eps_255 = "—" if eps is None else f"{eps * 255:.2f}"
        width = "—" if bracket[1] is None else f"{(bracket[1] - bracket[0]) / bracket[1]:.4f}"
        print(f"{name:<18}{eps_text:>10}{eps_255:>8}{width:>15}{forward:>7}{backward:>7}{batches:>9}"
              f"{t:9.3f}{t / base:8.2f}")
    print("time × is against bisection (one single-image attack per step), measured in this process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
