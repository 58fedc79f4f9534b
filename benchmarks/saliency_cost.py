"""Time and peak memory of each saliency method: AdvExplorer's wrapper vs Captum called directly.

Model: torchvision resnet18 (random init, eval) at 224×224, one image, target = its
prediction. For each method three variants run:

* ``advexplorer`` — :func:`advexplorer.core.saliency.attribution_map` with its defaults
  (SmoothGrad 25 samples σ=0.15, IG 50 steps; noisy copies / path points in batches of 16;
  channel reduction and Grad-CAM upsampling included).
* ``captum-same`` — Captum called directly with the *same* settings but without an internal
  batch size (all noisy copies / path points in one batch): isolates the wrapper's overhead
  and what the bounded batch saves in memory.
* ``captum-default`` — Captum called directly with its own defaults (Saliency abs=True;
  NoiseTunnel 5 samples σ=1.0; IG 50 steps, no internal batch; LayerGradCam on layer4 +
  LayerAttribution.interpolate).

Time: median wall time of ``--repeats`` calls (more for cheap methods, up to 25) after one
warm-up call, all variants
interleaved **in this one process** (so machine load affects them alike).
Peak memory: on the CPU, torch's allocations are invisible to ``tracemalloc``, so each
(method, variant) runs once in a **fresh subprocess** and reports the growth of the
process's peak resident set size during the call, after the model was built and one plain
forward pass had warmed up the libraries: the kernel's peak mark is reset through
``/proc/self/clear_refs`` and read back as ``VmHWM`` − ``VmRSS`` (on systems without it,
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` growth, which can read 0 when importing
torch left a higher peak). On CUDA it is ``torch.cuda.max_memory_allocated`` growth instead.

Run: ``python benchmarks/saliency_cost.py [--repeats 3] [--threads N] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

METHODS = ("gradient", "smoothgrad", "integrated-gradients", "gradcam")
VARIANTS = ("advexplorer", "captum-same", "captum-default")


def build(device: str, size: int = 224):
    import torch
    import torchvision

    from advexplorer.core.model import Classifier

    torch.manual_seed(0)
    network = torchvision.models.resnet18(weights=None)
    model = Classifier(network, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).to(device)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        target = int(model(image).argmax())
    return model, image, target


def call(variant: str, method: str, model, image, target: int):
    """One attribution, returned as an H×W tensor/array (so every variant does the reduction
    a user needs to look at the map)."""
    import torch
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    from advexplorer.core.saliency import METHOD_OPTIONS, attribution_map

    if variant == "advexplorer":
        return attribution_map(model, image, target, method)
    options = METHOD_OPTIONS[method]
    x = image.clone().requires_grad_(True)
    with torch.enable_grad():
        if method == "gradient":
            attribution = Saliency(model).attribute(x, target=target)
        elif method == "smoothgrad":
            if variant == "captum-same":
                attribution = NoiseTunnel(Saliency(model)).attribute(
                    x, nt_type="smoothgrad", nt_samples=options["samples"], stdevs=options["noise"],
                    target=target, abs=False)
            else:
                attribution = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", target=target)
        elif method == "integrated-gradients":
            attribution = IntegratedGradients(model).attribute(x, target=target, n_steps=options["steps"])
        else:
            cam = LayerGradCam(model, model.model.layer4).attribute(
                x, target=target, relu_attributions=variant == "captum-same")
            return LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), "bilinear")[0, 0].detach()
    return attribution.detach().abs().sum(dim=1)[0]


def _sync(device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_memory(method: str, variant: str, device: str) -> float:
    """Peak memory growth (MiB) of one call, in this (fresh) process."""
    import resource

    import torch

    model, image, target = build(device)
    with torch.no_grad():
        model(image)  # load kernels and libraries before the baseline is taken
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.max_memory_allocated()
        call(variant, method, model, image, target)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    if _reset_peak_rss():
        before = _status_kib("VmRSS")
        call(variant, method, model, image, target)
        return (_status_kib("VmHWM") - before) / 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    call(variant, method, model, image, target)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ≥ 4.0: write 5 to /proc/self/clear_refs).

    Without it, the peak left by importing torch and building the model can hide the
    call's own peak; ``ru_maxrss`` cannot be reset, hence this first choice.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


def _status_kib(key: str) -> int | None:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def memory_in_subprocess(method: str, variant: str, args) -> float:
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", method, variant, "--device", args.device],
        check=True, capture_output=True, text=True, env=env).stdout
    return float(json.loads(output.strip().splitlines()[-1])["peak_mib"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory runs")
    parser.add_argument("--memory-child", nargs=2, metavar=("METHOD", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps({"peak_mib": measure_memory(*args.memory_child, args.device)}))
        return 0

    methods = [m for m in args.methods.split(",") if m]
    model, image, target = build(args.device)
    times: dict[tuple[str, str], list[float]] = {(m, v): [] for m in methods for v in VARIANTS}
    repeats = {}
    for method in methods:
        for variant in VARIANTS:  # warm-up: first calls pay one-off costs (imports, kernels)
            call(variant, method, model, image, target)
        # At least --repeats rounds; cheap methods repeat for ≈3 s (at most 25) so their
        # medians are stable. Variants alternate within a round, so load hits them alike.
        began, rounds = time.perf_counter(), 0
        while rounds < args.repeats or (time.perf_counter() - began < 3.0 and rounds < 25):
            for variant in VARIANTS:
                _sync(args.device)
                start = time.perf_counter()
                call(variant, method, model, image, target)
                _sync(args.device)
                times[(method, variant)].append(time.perf_counter() - start)
            rounds += 1
        repeats[method] = rounds
    memory = {} if args.no_memory else {
        (m, v): memory_in_subprocess(m, v, args) for m in methods for v in VARIANTS}

    print(f"resnet18 (random init) at 224×224 on {args.device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} to 25 calls ({', '.join(f'{m} {n}' for m, n in repeats.items())}); memory = peak "
          f"{'CUDA allocation' if args.device.startswith('cuda') else 'RSS'} growth in a fresh process")
    header = f"{'method':<22}{'variant':<16}{'time s':>9}{'peak MiB':>10}{'time ×':>9}{'mem ×':>8}"
    print(header)
    print("-" * len(header))
    for method in methods:
        same_time = statistics.median(times[(method, "captum-same")])
        same_mem = memory.get((method, "captum-same"))
        for variant in VARIANTS:
            t = statistics.median(times[(method, variant)])
            mem = memory.get((method, variant))
            mem_text = "" if mem is None else f"{mem:10.1f}"
            ratio_mem = "" if mem is None or not same_mem else f"{mem / same_mem:8.2f}"
            print(f"{method:<22}{variant:<16}{t:9.3f}{mem_text:>10}{t / same_time:9.2f}{ratio_mem:>8}")
    print("ratios (×) are against captum-same: Captum called directly with the same settings "
          "and no internal batching")
    return 0


if __name__ == "__main__":
    sys.exit(main())
