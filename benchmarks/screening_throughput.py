"""Throughput of the cohort screen (images/s) against two baselines measured in this process.

What is compared, for PGD-10 (L∞, no random start, step 2.5·ε/10) over a cohort with a
different allowed mask per image and three budgets ε:

* **screen** — :func:`advexplorer.core.screening.screen_steps`: (image, ε) pairs packed into
  full engine batches with a per-image ε, the monotone shortcut (an image flipped at ε_i is
  not attacked at larger ε) and early stop inside each call (the default of
  ``advexplorer screen``; an image counts as flipped if any iterate flips it).
* **per-image loop** — the same engine called on one image at a time, ε ascending, stopping
  at the first ε that flips the image (so it has the shortcut and early stop too; only the
  batching differs). It is slow, so by default it is timed on the first 64 images (its rate
  is per image; its flip counts are checked against a screen of the same 64 images).
* **torchattacks** — ``torchattacks.PGD`` run batch-wise, once per ε over the whole cohort
  (it has no early stop and no ε sweep). The mask is applied by hand through a model
  wrapper ``m(x) = model(x0 + mask⊙(x − x0))``: the gradient with respect to x is then
  mask⊙∇, whose sign is 0 outside the mask, so torchattacks' iterates never change a
  pixel outside the mask and are exactly the masked PGD iterates. torchattacks judges the
  **last iterate**, so for an exact comparison of flip counts the screen is also run with
  ``early_stop=False`` (last iterate; the shortcut still applies) — "screen (last iterate)".

Flip counts are cumulative (flipped at this ε or a smaller one) and must be identical
between the methods that share a definition; the script checks and prints them.

Workers: ``advexplorer screen`` itself on N exported 64 px tiles, one process vs ``--ranks 2``
(torchrun, gloo on the CPU; on CUDA ``cuda:0``/``cuda:1`` where there are two), images/s by the
screen's own wall time, the load average of the (shared) machine, and on CUDA the GPU's busy
fraction.

Usage: ``python benchmarks/screening_throughput.py [--small N] [--large N] [--large-arch A]
[--workers N | --only-workers]``.
Defaults suit a 2-core CPU: the 224 px case screens 8 images with ResNet-18 (random init),
because at 224 px it costs ~0.4 s per forward+backward per image on two cores (≈ 15 min per
method for 64 images); pass ``--large 64`` on a bigger machine or a GPU for the full case
of the issue. (Not ``mobilenet_v3_small``: randomly initialised, its logits are ~1e-9, so
its gradients are denormal floats: meaningless flips and very slow CPU arithmetic.)
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.model import Classifier, pick_device
from advexplorer.core.screening import CohortBatch, run_screen

#: Budgets at which the randomly initialised models flip some images but not all (at 1–4/255
#: they flip almost none, and a screen with nothing to skip measures only the engine).
EPS = (4 / 255, 8 / 255, 16 / 255)
STEPS = 10


class SmallCNN(nn.Module):
    """Four conv layers, global pooling, linear head: a typical small 64 px classifier."""

    def __init__(self, classes: int = 4):
        super().__init__()
        layers, channels = [], 3
        for width in (8, 16, 32, 32):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        return self.head(self.features(x))


class MaskedInput(nn.Module):
    """``model(x0 + mask⊙(x − x0))``: torchattacks' gradient becomes the masked gradient."""

    def __init__(self, model: nn.Module, x0: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.model, self.x0, self.mask = model, x0, mask

    def forward(self, x):
        return self.model(self.x0 + self.mask * (x - self.x0))


def make_cohort(n: int, size: int, device, seed: int = 0):
    """Smooth random images (upsampled noise) and per-image masks protecting a centred box."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=generator)
    images = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    images = (images + 0.05 * torch.randn(n, 3, size, size, generator=generator)).clamp(0, 1)
    masks = torch.ones(n, size, size)
    for i in range(n):
        half = int(size * (0.15 + 0.25 * torch.rand(1, generator=generator).item()))
        centre = size // 2
        masks[i, centre - half:centre + half, centre - half:centre + half] = 0.0  # protected
    return images.to(device), masks.to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device):
    """Wall seconds and process CPU seconds (all threads) of one call.

    On a shared CPU the wall time depends on what else runs; the CPU time counts only
    this process's work, so both are printed and both give ratios.
    """
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    value = function()
    sync(device)
    return (time.perf_counter() - start, time.process_time() - cpu_start), value


def screen(model, images, masks, batch_size, early_stop):
    batches = [CohortBatch(ids=[f"{i:05d}" for i in range(b, min(b + batch_size, len(images)))],
                           images=images[b:b + batch_size], allowed_masks=masks[b:b + batch_size])
               for b in range(0, len(images), batch_size)]
    result = run_screen(model, batches, (0.0, *EPS), AttackConfig(method="pgd", steps=STEPS),
                        batch_size=batch_size, worst_cases=0, early_stop=early_stop)
    flags = {row.file: row.flipped[1:] for row in result.rows}
    return [sum(flags[f"{i:05d}"][j] for i in range(len(images))) for j in range(len(EPS))]


def per_image_loop(model, images, masks, early_stop):
    counts = [0] * len(EPS)
    for i in range(len(images)):
        for j, eps in enumerate(EPS):
            result = run_attack(model, images[i:i + 1], masks[i:i + 1], None,
                                AttackConfig(method="pgd", eps=eps, steps=STEPS, early_stop=early_stop))
            if bool(result.flipped[0]):
                for k in range(j, len(EPS)):
                    counts[k] += 1
                break
    return counts


def torchattacks_pgd(model, images, masks, batch_size):
    import torchattacks

    with torch.no_grad():
        clean = torch.cat([model(images[b:b + batch_size]).argmax(1)
                           for b in range(0, len(images), batch_size)])
    flipped = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    counts = []
    for eps in EPS:
        for b in range(0, len(images), batch_size):
            x0, mask = images[b:b + batch_size], masks[b:b + batch_size, None]
            wrapper = MaskedInput(model, x0, mask).eval()
            attack = torchattacks.PGD(wrapper, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS,
                                      random_start=False)
            adversarial = attack(x0, clean[b:b + batch_size])
            with torch.no_grad():
                changed = model(adversarial).argmax(1) != clean[b:b + batch_size]
            flipped[b:b + batch_size] |= changed
        counts.append(int(flipped.sum()))
    return counts


def case(name, model, n, size, batch_size, device, loop_count):
    images, masks = make_cohort(n, size, device)
    # Warm-up outside the timings, on a full batch through every path (allocator, oneDNN
    # kernels for the batch shapes): whichever method ran first would otherwise pay for it.
    warm = min(batch_size, n)
    screen(model, images[:warm], masks[:warm], batch_size, True)
    screen(model, images[:warm], masks[:warm], batch_size, False)
    torchattacks_pgd(model, images[:warm], masks[:warm], batch_size)
    print(f"\n== {name}: {n} images at {size} px, PGD-{STEPS} L∞, ε = "
          f"{', '.join(f'{round(e * 255)}/255' for e in EPS)}, "
          f"per-image masks, batch {batch_size}, device {device} ==")
    rows = []
    seconds, ta_counts = timed(lambda: torchattacks_pgd(model, images, masks, batch_size), device)
    rows.append(("torchattacks PGD (last iterate)", n, seconds, ta_counts))
    seconds, last_counts = timed(lambda: screen(model, images, masks, batch_size, False), device)
    rows.append(("screen (last iterate)", n, seconds, last_counts))
    seconds, counts = timed(lambda: screen(model, images, masks, batch_size, True), device)
    rows.append(("screen (early stop)", n, seconds, counts))
    loop_images = images[:loop_count]
    seconds, loop_counts = timed(lambda: per_image_loop(model, loop_images, masks[:loop_count], True), device)
    rows.append((f"per-image loop (early stop){'' if loop_count == n else f', first {loop_count}'}",
                 loop_count, seconds, loop_counts))
    wall = {label: count / seconds[0] for label, count, seconds, _ in rows}
    cpu = {label: count / seconds[1] for label, count, seconds, _ in rows}
    print(f"{'method':<40} {'images':>6} {'wall s':>8} {'img/s':>7} {'CPU s':>8} {'img/CPU-s':>9}"
          "  flipped per ε (cumulative)")
    for label, count, seconds, flips in rows:
        print(f"{label:<40} {count:>6} {seconds[0]:>8.2f} {count / seconds[0]:>7.2f} {seconds[1]:>8.2f} "
              f"{count / seconds[1]:>9.2f}  {flips}")
    loop_label = rows[3][0]
    ta = "torchattacks PGD (last iterate)"
    for text, a, b in (("screen / per-image loop (both early stop)", "screen (early stop)", loop_label),
                       ("screen (last iterate) / torchattacks (last iterate)", "screen (last iterate)", ta),
                       ("screen (early stop, the default) / torchattacks", "screen (early stop)", ta)):
        print(f"ratio {text:<52} wall {wall[a] / wall[b]:5.2f}×   CPU {cpu[a] / cpu[b]:5.2f}×")
    screen_subset = screen(model, loop_images, masks[:loop_count], batch_size, True) \
        if loop_count != n else counts
    same_loop = screen_subset == loop_counts
    same_ta = last_counts == ta_counts
    print(f"flip counts identical: screen vs per-image loop {same_loop} "
          f"({screen_subset} vs {loop_counts}); screen (last iterate) vs torchattacks {same_ta}")
    return same_loop and same_ta


def _write_cli_cohort(folder, n: int, size: int):
    """The small CNN as TorchScript + card and ``n`` PNG tiles: what ``advexplorer screen`` reads."""
    import json

    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    torch.jit.script(SmallCNN().eval()).save(str(folder / "small.pt"))
    (folder / "small.json").write_text(json.dumps({
        "name": "small CNN", "classes": ["a", "b", "c", "d"], "input_size": [size, size],
        "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}))
    images, _ = make_cohort(n, size, torch.device("cpu"))
    (folder / "tiles").mkdir()
    for i in range(n):
        pixels = (images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / "tiles" / f"{i:05d}.png")


def _cli_screen(folder, out, ranks: int, device: str, extra=(), threads: int | None = None) -> dict:
    """Run ``advexplorer screen`` (``--ranks`` > 1 through torchrun) and return its summary."""
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "advexplorer", "screen", "--model", str(folder / "small.pt"),
               "--images", str(folder / "tiles"), "--eps", ",".join(f"{e:.6g}" for e in (0.0, *EPS)),
               "--steps", str(STEPS), "--batch-size", "64", "--device", device, "--quiet",
               "--out", str(out), *extra]
    if ranks > 1:
        command += ["--ranks", str(ranks)]
    import os

    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    subprocess.run(command, check=True, env=env)
    return json.loads((out / "summary.json").read_text())


def workers_case(n: int, size: int, device: str) -> None:
    """images/s of ``advexplorer screen`` in one process vs two ranks (torchrun, gloo on CPU).

    Timed by the screen's own ``wall_time_s`` (from the first image to the summary, so the
    seconds each process spends importing torch and loading the model are not counted; rank
    0's clock includes waiting for the other rank). On CUDA the GPU's busy fraction is
    sampled (``torch.cuda.utilization``, NVML) while the one-process screen runs.
    """
    import os
    import tempfile
    import threading
    from pathlib import Path

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        _write_cli_cohort(folder, n, size)
        load = os.getloadavg()
        print(f"\n== advexplorer screen, one process vs two ranks: {n} images of {size} px, "
              f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
              "(1 / 5 / 15 min)")
        busy, stop = [], threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                try:
                    busy.append(torch.cuda.utilization())
                except Exception:  # no NVML: the busy fraction is not measured
                    return

        sampler = threading.Thread(target=sample, daemon=True) if device.startswith("cuda") else None
        if sampler:
            sampler.start()
        one = _cli_screen(folder, folder / "one", 1, device)
        stop.set()
        two = _cli_screen(folder, folder / "two", 2, device)
        # torchrun gives each rank 1 thread; one process with 1 thread separates "two processes"
        # from "fewer threads fighting over busy cores".
        single = _cli_screen(folder, folder / "single", 1, device, threads=1)
        rate_one, rate_two = n / one["wall_time_s"], n / two["wall_time_s"]
        rate_single = n / single["wall_time_s"]
        same = one["per_eps"] == two["per_eps"]
        print(f"  1 process : {rate_one:7.1f} images/s ({one['wall_time_s']:.1f} s, devices {one['devices']})")
        print(f"  1 process, 1 thread: {rate_single:7.1f} images/s ({single['wall_time_s']:.1f} s)")
        print(f"  2 ranks   : {rate_two:7.1f} images/s ({two['wall_time_s']:.1f} s, devices {two['devices']})")
        print(f"  speed-up  : {rate_two / rate_one:.2f}× (target ≥ 1.6× on 2 idle CPUs); summaries "
              f"{'identical' if same else 'DIFFER'}; vs one 1-thread process {rate_two / rate_single:.2f}×")
        if sampler:
            print(f"  GPU busy  : {100 * sum(busy) / len(busy):.0f} % of {len(busy)} samples"
                  if busy else "  GPU busy  : not measured (NVML unavailable)")
        load = os.getloadavg()
        print(f"  load average after: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=256, help="images in the 64 px case (default 256)")
    parser.add_argument("--large", type=int, default=8, help="images in the 224 px case (default 8)")
    parser.add_argument("--large-arch", default="resnet18",
                        help="torchvision architecture for 224 px (default resnet18)")
    parser.add_argument("--loop", type=int, default=64,
                        help="images timed in the per-image loop (default 64: it is slow; its rate "
                             "is per image, and its flip counts are checked against a screen of "
                             "the same images)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--workers", type=int, default=256, metavar="N",
                        help="images in the one-process vs two-ranks CLI case (default 256; 0 = skip)")
    parser.add_argument("--only-workers", action="store_true", help="run only the workers case")
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    ok = True
    if args.only_workers:
        args.skip_small = args.skip_large = True
    if not args.skip_small:
        small = Classifier(SmallCNN(), [0.5] * 3, [0.25] * 3).to(device)
        ok = case("small CNN", small, args.small, 64, 64, device, min(args.loop or args.small, args.small))
    if not args.skip_large:
        torch.manual_seed(0)
        network = getattr(torchvision.models, args.large_arch)(num_classes=10)
        large = Classifier(network, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).to(device)
        ok &= case(f"{args.large_arch} (random init)", large, args.large, 224, 16, device,
                   min(args.loop or args.large, args.large))
    if args.workers:
        workers_case(args.workers, 64, "cuda" if device.type == "cuda" else "cpu")
    print("\nall flip counts identical" if ok else "\nFLIP COUNTS DIFFER (see above)")


if __name__ == "__main__":
    main()
