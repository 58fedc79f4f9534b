"""What does adversarial training cost per epoch, relative to a clean epoch?

Trains the same model on the same images for one epoch with each method of
:mod:`advexplorer.core.training` — clean, PGD-k AT and fast FGSM-AT — through the same
generator the CLI and the Train panel run (so the inner attack is the app's own engine),
and reports the epoch time of each as a ratio to the clean epoch measured in the same run.
Each method starts from the same weights; the held-out measurement after the epoch is not
part of the epoch time (:attr:`EpochProgress.seconds`).

Model and data: the bundled histology architecture (torchvision MobileNetV3-small, width
0.5, 64×64 RGB, random weights — the cost does not depend on them) on N seeded random
tiles, batch 64.

What the ratios should be: a PGD-k epoch does k input-gradient passes (forward + backward
to the input, no weight gradients), one forward pass in which the engine scores the final
iterate, and the training step itself, so ≈ k + 1 clean-epoch equivalents; fast-AT does one
input-gradient pass, the scoring pass and the training step, ≈ 2. Targets (issue 14):
PGD-k ≤ (k + 1.2)× and fast ≤ 2.3× a clean epoch.

Clock: CPU time of the process (``time.process_time``) on the CPU with one thread, so other
processes on a shared machine do not land in one column more than another; wall clock with
the device synchronised on CUDA. The median of ``--repeats`` epochs per method, interleaved.

Usage::

    python benchmarks/adversarial_training.py            # k = 7, 512 tiles, 3 repeats
    python benchmarks/adversarial_training.py --quick    # 256 tiles, 1 repeat
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advexplorer.core.model import Classifier  # noqa: E402
from advexplorer.core.training import EpochProgress, LabelledImages, TrainConfig, train_steps  # noqa: E402


def one_epoch(base: Classifier, train: LabelledImages, held: LabelledImages, method: str, steps: int,
              device: torch.device) -> float:
    classifier = copy.deepcopy(base)
    config = TrainConfig(method=method, eps=4 / 255, steps=steps, epochs=1, batch_size=64, eval_steps=1)
    generator = train_steps(classifier, train, held, config)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = clock()
    for item in generator:
        if isinstance(item, EpochProgress):
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = clock() - started
            generator.close()
            return elapsed
    raise RuntimeError("the epoch did not finish")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=512)
    parser.add_argument("--steps", type=int, default=7, help="k of PGD-k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tiles, args.repeats = 256, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=2, width_mult=0.5)
    base = Classifier(net, [0.5] * 3, [0.25] * 3, ("a", "b")).to(device)
    images = torch.rand(args.tiles, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(device)
    labels = (torch.arange(args.tiles) % 2).to(device)
    train = LabelledImages(images, labels)
    held = LabelledImages(images[:8], labels[:8])  # the (excluded) measurement is kept tiny
    methods = ("clean", "pgd", "fast")
    times = {method: [] for method in methods}
    one_epoch(base, train, held, "clean", args.steps, device)  # warm-up
    for _ in range(args.repeats):
        for method in methods:  # interleaved, so a slow spell of the machine hits all three
            times[method].append(one_epoch(base, train, held, method, args.steps, device))
    median = {method: statistics.median(values) for method, values in times.items()}
    print(f"adversarial training epoch cost — MobileNetV3-small ×0.5, {args.tiles} tiles 64×64, batch 64, "
          f"{device}, {args.threads} thread(s), torch {torch.__version__}, median of {args.repeats}")
    print(f"{'method':<10}{'epoch s':>10}{'× clean':>10}{'target':>10}  ok")
    targets = {"clean": 1.0, "pgd": args.steps + 1.2, "fast": 2.3}
    names = {"clean": "clean", "pgd": f"PGD-{args.steps}", "fast": "fast-AT"}
    for method in methods:
        ratio = median[method] / median["clean"]
        ok = "yes" if ratio <= targets[method] + 1e-9 else "NO"
        print(f"{names[method]:<10}{median[method]:>10.2f}{ratio:>10.2f}{targets[method]:>10.1f}  {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
