"""How much does the attack engine cost on top of the model it attacks?

For a small CNN at 64 px and torchvision's resnet18 (random weights, nothing downloaded) at
224 px, batch 1 and 32, this times three things in the same process, interleaved, after a
warm-up, and reports the median of repeated runs:

* ``bare``  — a bare loop of 10 forward+backward passes: parameters frozen, input requires
  grad, ``torch.autograd.grad`` of the summed cross-entropy. No update, no projection:
  the least any 10-step gradient attack can cost.
* ``engine`` — :func:`advexplorer.core.attacks.run_attack`, PGD L∞, 10 steps, ε = 8/255,
  α = 2/255, no random start, no early stop (the same work torchattacks does), going
  through the step generator exactly as the CLI and the GUI do.
* ``torchattacks`` — ``torchattacks.PGD`` with the same settings.

How steps are counted: every column is divided by 10 steps. The engine's 10 steps include
one thing the others do not do: an 11th, forward-only pass that scores the final image
(so the result carries its probabilities and success flag, which a torchattacks user
must compute separately). It is counted as engine overhead in ``eng/bare`` and
``eng/ta``, the ratios the targets are about. ``fwd`` times one gradient-free forward
pass on its own, and ``eng/(bare+s)``, ``eng/(ta+s)`` add that one pass (÷10 steps) to
the baselines: the overhead of the engine's own bookkeeping alone.

Clock: on the CPU, the process's CPU time (``time.process_time``), so that other
processes on a shared machine do not land in one column more than another; run with
``--threads 1`` there. On CUDA/MPS, wall-clock time with the device synchronised.

Targets (issue 2): engine/bare ≤ 1.05 and engine/torchattacks ≤ 1.00 on every row.

``--threat-models`` adds APGD-CE (per step) and Square (per query batch). A query of the
small CNN at batch 32 costs ~60 ms of forward pass and ~1–2 ms of the attack's own work, so
that row's ratio is the model's cost measured twice: on a loaded machine it moves by ±30 %
between runs (0.94 and 1.35 were both seen). The ``pool-linear`` model (average pooling and
a linear head, almost free) makes the attack's own per-query work the whole cost::

    python benchmarks/attack_overhead.py --only-threat-models --rows pool-linear:32 --threads 1

Usage::

    python benchmarks/attack_overhead.py            # default: a few minutes on 2 CPU cores
    python benchmarks/attack_overhead.py --quick    # fewer repeats
    python benchmarks/attack_overhead.py --device cuda --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.model import Classifier, pick_device

STEPS = 10
EPS, ALPHA = 8 / 255, 2 / 255
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: the size of the bundled demo models."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.features(x))


def build(name: str, device: torch.device) -> tuple[Classifier, int]:
    torch.manual_seed(0)
    if name == "small-cnn":
        return Classifier(SmallCNN(), IMAGENET_MEAN, IMAGENET_STD).to(device), 64
    if name == "pool-linear":  # almost free: the attack's own work per step or query is the cost
        network = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 10))
        return Classifier(network, IMAGENET_MEAN, IMAGENET_STD).to(device), 64
    import torchvision
    network = torchvision.models.resnet18(weights=None)  # random init: no download
    return Classifier(network, IMAGENET_MEAN, IMAGENET_STD).to(device), 224


def bare_loop(model, images, labels, steps=STEPS):
    """The floor: ``steps`` forward+backward passes w.r.t. the input, nothing else."""
    for _ in range(steps):
        x = images.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        torch.autograd.grad(loss, x)


def forward_loop(model, images, steps=STEPS):
    """``steps`` forward passes without gradients: one of them is what scoring costs."""
    with torch.no_grad():
        for _ in range(steps):
            model(images)


def engine(model, images, labels, steps=STEPS):
    config = AttackConfig(method="pgd", norm="linf", eps=EPS, step_size=ALPHA, steps=steps)
    return run_attack(model, images, None, labels, config).adversarial


def torchattacks_pgd(model, steps=STEPS):
    """torchattacks' PGD, built once per row (building it is not part of its per-step cost)."""
    import torchattacks
    return torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=steps, random_start=False)


def timed(function, device, *args, **kwargs) -> float:
    """Seconds ``function`` takes. On the CPU this is the process's CPU time, which on a
    shared machine leaves out the time other processes hold the cores (wall-clock there
    mostly measures the neighbours); on an accelerator it is wall-clock time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    start = clock()
    function(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    return clock() - start


def measure(model, images, labels, device, repeats: int) -> tuple[dict[str, float], bool]:
    """Median seconds per step of each method (and whether the engine's result equals
    torchattacks'); the methods are interleaved in rotating order so that load from
    other processes hits all of them alike."""
    reference_attack, warm_attack = torchattacks_pgd(model), torchattacks_pgd(model, steps=2)
    methods = {
        "bare": lambda: bare_loop(model, images, labels),
        "forward": lambda: forward_loop(model, images),
        "engine": lambda: engine(model, images, labels),
        "torchattacks": lambda: reference_attack(images, labels),
    }
    # Warm-up (allocator, kernels) with 2-step runs, which also check that the engine and
    # torchattacks compute the same thing here.
    bare_loop(model, images, labels, steps=2)
    same = torch.equal(engine(model, images, labels, steps=2), warm_attack(images, labels))
    samples: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            samples[name].append(timed(methods[name], device) / STEPS)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return medians, same


class CountingModel(nn.Module):
    """Counts the images the wrapped model sees (one query = one image through the model)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x):
        self.images += x.shape[0]
        return self.model(x)


def threat_model_rows(model, images, labels, device, repeats: int, queries: int) -> dict[str, tuple]:
    """APGD-CE (per step) and Square (per query) of the engine and of torchattacks 3.5.

    APGD: same settings (L∞, 8/255, ``STEPS`` steps, one restart, seed 0), and both compute the
    same adversarial images (checked). Square: L∞, ε = 1/255 so that few images are fooled and
    both spend the budget; its cost is divided by the image-queries each one made (counted
    by a wrapper around the model), since a random search stops early at different times.
    """
    import torchattacks

    counted = CountingModel(model)
    config_apgd = AttackConfig(method="apgd-ce", eps=EPS, steps=STEPS, seed=0)
    reference_apgd = torchattacks.APGD(counted, eps=EPS, steps=STEPS, seed=0, loss="ce")
    config_square = AttackConfig(method="square", eps=1 / 255, queries=queries, seed=0)
    reference_square = torchattacks.Square(counted, eps=1 / 255, n_queries=queries, seed=0)

    def per_query(function):
        counted.images = 0
        seconds = timed(function, device)
        return seconds / max(counted.images, 1) * images.shape[0]

    methods = {
        "apgd-engine": lambda: timed(lambda: run_attack(counted, images, None, labels, config_apgd), device) / STEPS,
        "apgd-ta": lambda: timed(lambda: reference_apgd(images, labels), device) / STEPS,
        "square-engine": lambda: per_query(lambda: run_attack(counted, images, None, labels, config_square)),
        "square-ta": lambda: per_query(lambda: reference_square(images, labels)),
    }
    for method in methods.values():  # warm-up
        method()
    samples = {name: [] for name in methods}
    names = list(methods)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            samples[name].append(methods[name]())
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ours = ~run_attack(model, images, None, labels, config_apgd).success
    with torch.no_grad():
        theirs = model(reference_apgd(images, labels)).argmax(1) == labels
    return {"apgd": (medians["apgd-engine"], medians["apgd-ta"], bool(torch.equal(ours, theirs))),
            "square": (medians["square-engine"], medians["square-ta"], None)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a rough look)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per row (default: more for the fast rows)")
    parser.add_argument("--rows", default="small-cnn:1,small-cnn:32,resnet18:1,resnet18:32",
                        help="model:batch list")
    parser.add_argument("--threat-models", action="store_true",
                        help="also time APGD-CE and Square against torchattacks (issue 13)")
    parser.add_argument("--queries", type=int, default=100, help="Square's query budget (default 100)")
    parser.add_argument("--only-threat-models", action="store_true",
                        help="skip the PGD table (implies --threat-models)")
    args = parser.parse_args(argv)
    if args.only_threat_models:
        args.threat_models = True
        args.rows_pgd = ""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    # Fast rows get more repeats: their medians are what small overheads show up in.
    default_repeats = {("small-cnn", 1): 40, ("small-cnn", 32): 15, ("resnet18", 1): 8,
                       ("resnet18", 32): 3}
    if device.type != "cpu":
        default_repeats = {key: max(value, 20) for key, value in default_repeats.items()}

    import torchattacks
    print(f"attack_overhead: PGD L∞, {STEPS} steps, ε=8/255, α=2/255, no random start, "
          f"no early stop")
    print(f"device {device} ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"threads {torch.get_num_threads()}, python {platform.python_version()}")
    print("times: median ms per step (fwd: per forward pass; s = fwd/10, the engine's final "
          "scoring pass spread over its 10 steps), " +
          ("CPU time of this process" if device.type == "cpu" else "wall-clock, synchronised"))
    header = (f"{'model':<9} {'px':>3} {'batch':>5} {'reps':>4} | {'bare':>8} {'engine':>8} "
              f"{'ta':>8} {'fwd':>8} | {'eng/bare':>8} {'eng/ta':>7} | {'eng/(bare+s)':>12} "
              f"{'eng/(ta+s)':>10} {'same':>4}")
    print(header)
    print("-" * len(header))
    worst = {"bare": 0.0, "ta": 0.0, "bare+s": 0.0, "ta+s": 0.0}
    for row in ([] if args.only_threat_models else args.rows.split(",")):
        name, batch = row.split(":")
        batch = int(batch)
        model, size = build(name, device)
        generator = torch.Generator().manual_seed(1)
        images = torch.rand(batch, 3, size, size, generator=generator).to(device)
        with torch.no_grad():
            labels = model(images).argmax(dim=1)
        repeats = args.repeats or default_repeats.get((name, batch), 5)
        if args.quick:
            repeats = max(1, repeats // 3)
        times, same = measure(model, images, labels, device, repeats)
        score = times["forward"] / STEPS  # the engine's one scoring pass, per step
        ratios = {"bare": times["engine"] / times["bare"],
                  "ta": times["engine"] / times["torchattacks"],
                  "bare+s": times["engine"] / (times["bare"] + score),
                  "ta+s": times["engine"] / (times["torchattacks"] + score)}
        worst = {key: max(worst[key], value) for key, value in ratios.items()}
        print(f"{name:<9} {size:>3} {batch:>5} {repeats:>4} | {times['bare'] * 1e3:>8.3f} "
              f"{times['engine'] * 1e3:>8.3f} {times['torchattacks'] * 1e3:>8.3f} "
              f"{times['forward'] * 1e3:>8.3f} | {ratios['bare']:>8.3f} {ratios['ta']:>7.3f} | "
              f"{ratios['bare+s']:>12.3f} {ratios['ta+s']:>10.3f} {'yes' if same else 'NO':>4}",
              flush=True)
    if args.threat_models:
        print(f"\nthreat models: APGD-CE (ms per step: {STEPS} steps, L∞ 8/255) and Square "
              f"(ms per query batch: {args.queries} queries, L∞ 1/255), engine vs torchattacks; "
              "target engine/ta ≤ 1.05")
        print(f"{'model':<9} {'batch':>5} | {'apgd eng':>8} {'apgd ta':>8} {'ratio':>6} {'same':>4} | "
              f"{'sq eng':>8} {'sq ta':>8} {'ratio':>6}")
        for row in args.rows.split(","):
            name, batch = row.split(":")
            model, size = build(name, device)
            images = torch.rand(int(batch), 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
            with torch.no_grad():
                labels = model(images).argmax(dim=1)
            repeats = max(1, (args.repeats or 5) // (3 if args.quick else 1))
            rows = threat_model_rows(model, images, labels, device, repeats, args.queries)
            (ae, at, same), (se, st, _) = rows["apgd"], rows["square"]
            print(f"{name:<9} {batch:>5} | {ae * 1e3:>8.3f} {at * 1e3:>8.3f} {ae / at:>6.3f} "
                  f"{'yes' if same else 'NO':>4} | {se * 1e3:>8.3f} {st * 1e3:>8.3f} {se / st:>6.3f}", flush=True)
    if args.only_threat_models:
        return 0
    verdict = "met" if worst["bare"] <= 1.05 and worst["ta"] <= 1.0 else "NOT met"
    print(f"summary: worst engine/bare {worst['bare']:.3f}x (target ≤ 1.05), worst "
          f"engine/torchattacks {worst['ta']:.3f}x (target ≤ 1.00): targets {verdict}; "
          f"counting the engine's final scoring pass in the baselines: worst "
          f"{worst['bare+s']:.3f}x bare, {worst['ta+s']:.3f}x torchattacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
