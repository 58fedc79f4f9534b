"""The user's own models at real sizes: load time, one PGD step, one saliency map, overhead.

Per model (random weights, made locally — nothing is downloaded): timm resnet50,
convnext_tiny and vit_small_patch16_224, a Hugging Face ViT from a small random config, and
torchvision resnet18 exported to ONNX and converted back. Each is saved to a temporary
folder, carded with the same inference as ``advexplorer card`` and loaded with
``load_model`` (load time includes the dry run and, for ONNX, the onnxruntime check). Then,
at 224 px, batch 1: the engine's PGD per-step time, one Grad-CAM map, and the ratio of the
engine's per-step time to a bare forward+backward loop on the same module (target ≤ 1.10).
Last row: the ONNX-converted resnet18's per-step time over torchvision's own (target ≤ 1.3).

    python benchmarks/model_zoo.py [--device cpu|cuda] [--steps 10] [--repeats 3]

Times are CPU time of this process on the CPU (a shared machine's neighbours are left
out) and wall-clock on an accelerator, as in benchmarks/attack_overhead.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_overhead import timed  # noqa: E402

from advexplorer.core.attacks import AttackConfig, run_attack  # noqa: E402
from advexplorer.core.model import pick_device  # noqa: E402
from advexplorer.core.saliency import attribution_map  # noqa: E402
from advexplorer.io.card_inference import infer_card  # noqa: E402
from advexplorer.io.models import load_model  # noqa: E402

SIZE = 224


def save_timm(name: str, folder: Path) -> Path:
    import timm
    from safetensors.torch import save_file

    path = folder / f"{name}.safetensors"
    save_file(timm.create_model(name, pretrained=False, num_classes=2).state_dict(), str(path))
    return path


def save_hf(folder: Path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=SIZE, patch_size=16, hidden_size=192, num_hidden_layers=6,
                       num_attention_heads=3, intermediate_size=768, num_labels=2)
    target = folder / "hf_vit"
    ViTForImageClassification(config).save_pretrained(target)
    ViTImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(target)
    return target


def save_onnx(folder: Path) -> tuple[Path, Path]:
    import torchvision

    net = torchvision.models.resnet18(num_classes=2).eval()
    torch.save(net.state_dict(), folder / "tv_resnet18.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.rand(1, 3, SIZE, SIZE), str(folder / "resnet18.onnx"), input_names=["x"],
                          dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False)
    return folder / "resnet18.onnx", folder / "tv_resnet18.pt"


def load(path: Path, device: str, architecture: str | None = None):
    start = time.perf_counter()
    inferred = infer_card(path, architecture=architecture, input_size=(SIZE, SIZE), device=device)
    loaded = load_model(path, card=inferred.card, device=device)
    return loaded, time.perf_counter() - start


def bare_loop(model, images, labels, steps):
    for _ in range(steps):
        x = images.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(x), labels, reduction="sum"), x)


def engine(model, images, labels, steps):
    config = AttackConfig(method="pgd", norm="linf", eps=8 / 255, step_size=2 / 255, steps=steps)
    run_attack(model, images, None, labels, config)


def row(name: str, loaded, load_seconds: float, device: torch.device, steps: int, repeats: int) -> dict:
    model = loaded.classifier
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).to(device)
    labels = torch.zeros(1, dtype=torch.long, device=device)
    engine(model, images, labels, 1)  # warm-up
    bare_loop(model, images, labels, 1)
    engine_times, bare_times = [], []
    for _ in range(repeats):
        engine_times.append(timed(engine, device, model, images, labels, steps) / steps)
        bare_times.append(timed(bare_loop, device, model, images, labels, steps) / steps)
    saliency = timed(attribution_map, device, model, images, 0, "gradcam")
    per_step, bare = statistics.median(engine_times), statistics.median(bare_times)
    return {"model": name, "load": load_seconds, "step": per_step, "saliency": saliency,
            "ratio": per_step / bare}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("resnet50", "convnext_tiny", "vit_small_patch16_224"):
            path = save_timm(name, folder)
            rows.append(row(f"timm {name}", *load(path, args.device, f"timm.{name}"), device, args.steps, args.repeats))
        rows.append(row("HF ViT (6×192, random)", *load(save_hf(folder), args.device), device, args.steps, args.repeats))
        onnx_path, torchvision_path = save_onnx(folder)
        rows.append(row("ONNX resnet18", *load(onnx_path, args.device), device, args.steps, args.repeats))
        rows.append(row("torchvision resnet18", *load(torchvision_path, args.device), device, args.steps, args.repeats))
    print(f"device {device}, {SIZE} px, batch 1, {args.steps} PGD steps × {args.repeats} repeats (median)")
    print(f"{'model':<26} {'load s':>7} {'PGD step ms':>12} {'Grad-CAM ms':>12} {'engine/bare':>12}")
    for r in rows:
        flag = "" if r["ratio"] <= 1.10 else "  (> 1.10)"
        print(f"{r['model']:<26} {r['load']:>7.2f} {r['step'] * 1e3:>12.1f} {r['saliency'] * 1e3:>12.1f} "
              f"{r['ratio']:>12.3f}{flag}")
    onnx_ratio = rows[-2]["step"] / rows[-1]["step"]
    print(f"ONNX-converted resnet18 per step / torchvision resnet18: {onnx_ratio:.3f} (target ≤ 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
