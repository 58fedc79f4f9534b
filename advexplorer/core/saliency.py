"""Attribution maps before and after an attack, on one shared scale, with a verdict.

The maps come from Captum (https://captum.ai), not from code of our own:

* ``gradient`` — input gradient, Simonyan, Vedaldi, Zisserman, *Deep Inside Convolutional
  Networks*, 2013, https://arxiv.org/abs/1312.6034 (``captum.attr.Saliency``).
* ``smoothgrad`` — the gradient averaged over noisy copies of the image, Smilkov et al.,
  *SmoothGrad: removing noise by adding noise*, 2017, https://arxiv.org/abs/1706.03825
  (``captum.attr.NoiseTunnel`` around ``Saliency``).
* ``integrated-gradients`` — Sundararajan, Taly, Yan, *Axiomatic Attribution for Deep
  Networks*, ICML 2017, https://arxiv.org/abs/1703.01365 (``captum.attr.IntegratedGradients``).
* ``gradcam`` — Selvaraju et al., *Grad-CAM*, ICCV 2017, https://arxiv.org/abs/1610.02391
  (``captum.attr.LayerGradCam``, upsampled bilinearly to the input with
  ``LayerAttribution.interpolate``).

Conventions (what a user sees in the app and in ``saliency_*.npy``):

* A map is an H×W float32 array at the model's input size, non-negative, larger = more
  relevant. Gradient-type maps (gradient, SmoothGrad, IG) are reduced over colour channels
  by the **sum of absolute values** |a_R| + |a_G| + |a_B|, so evidence for and against the
  class both count as "the model looked here". Grad-CAM keeps only positive evidence (the
  ReLU of the paper) and has no channel axis.
* SmoothGrad averages the *signed* gradients over the noisy copies and takes the absolute
  value afterwards, as in the paper (averaging absolute values would keep the noise it is
  meant to remove).
* Before/after maps are divided by the larger of their two maxima, so equal colours mean
  equal attribution in both pictures.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from advexplorer.core.compare import (
    STAYED_SPEARMAN,
    STAYED_TOPK,
    MapComparison,
    as_diagnostic_mask,
    compare_maps,
)
from advexplorer.config import SALIENCY_METHODS
from advexplorer.errors import UserError


#: Defaults and accepted ``**options`` per method (the paper values, or why not).
METHOD_OPTIONS: dict[str, dict[str, object]] = {
    "gradient": {},
    # Smilkov et al. use σ = 10–20 % of the input range and see diminishing returns past
    # ~50 samples; 25 samples halve the cost with a visually similar map.
    "smoothgrad": {"samples": 25, "noise": 0.15},
    # 50 Gauss–Legendre steps (Captum's default) and the black image as baseline (the paper's
    # choice for images); ``baseline`` may be a number in [0,1] (e.g. 1.0 for white).
    "integrated-gradients": {"steps": 50, "baseline": 0.0},
    "gradcam": {},
}

VERDICT_FOLLOWED = "explanation followed the prediction"
VERDICT_STAYED = "prediction flipped but explanation stayed"
VERDICT_NO_FLIP = "no flip"


# --------------------------------------------------------------------------- Grad-CAM layer

def _inner_model(model: nn.Module) -> nn.Module:
    """The user's network inside a :class:`~advexplorer.core.model.Classifier` (or the model)."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) else model


def _is_scripted(module: nn.Module) -> bool:
    return isinstance(module, torch.jit.ScriptModule)


def _family_layer(network: nn.Module) -> tuple[str, str] | None:
    """(dotted name, family) of the Grad-CAM layer for known torchvision families, else None.

    The layer is the last one with a spatial output, as in the Grad-CAM paper ("the last
    convolutional layer"): ResNet ``layer4``; DenseNet ``features`` (after ``norm5``);
    VGG the ReLU after the last convolution; MobileNet v2/v3 and EfficientNet ``features``
    (their final 1×1 conv block). The family is looked up anywhere inside the model, so a
    wrapper such as ``nn.Sequential(normalise, resnet)`` still works.
    """
    tv = sys.modules.get("torchvision.models")
    if tv is None:  # torchvision never imported: no module here can be one of its classes
        return None
    families = (
        (tv.ResNet, "ResNet", lambda m: "layer4"),
        (tv.DenseNet, "DenseNet", lambda m: "features"),
        (tv.MobileNetV2, "MobileNetV2", lambda m: "features"),
        (tv.MobileNetV3, "MobileNetV3", lambda m: "features"),
        (tv.EfficientNet, "EfficientNet", lambda m: "features"),
        (tv.VGG, "VGG", _vgg_layer),
    )
    for prefix, module in network.named_modules():
        for cls, family, pick in families:
            if isinstance(module, cls):
                name = pick(module)
                return (f"{prefix}.{name}" if prefix else name), family
    return None


def _vgg_layer(vgg: nn.Module) -> str:
    last = None
    for name, module in vgg.features.named_children():
        if isinstance(module, nn.Conv2d):
            last = name
        elif isinstance(module, nn.ReLU) and last is not None:
            last = name  # the rectified feature map of the last convolution
    return f"features.{last}"


def _last_spatial_conv(model: nn.Module, network: nn.Module, image: torch.Tensor) -> str | None:
    """Name of the last Conv2d, in execution order, whose output is spatial (H, W > 1)."""
    names = {module: name for name, module in network.named_modules() if isinstance(module, nn.Conv2d)}
    if not names:
        return None
    executed: list[str] = []

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
            executed.append(names[module])

    handles = [module.register_forward_hook(record) for module in names]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return executed[-1] if executed else None


#: Names of the normalisation at the entry of a transformer block (timm ViT/DeiT/Swin
#: ``norm1``, Hugging Face ``layernorm_before``, torchvision ViT ``ln_1``).
_BLOCK_INPUT_NORMS = ("norm1", "layernorm_before", "ln_1", "ln1")


def _token_layer(model: nn.Module, network: nn.Module, image: torch.Tensor) -> str | None:
    """The input norm of the last transformer block whose output is a token sequence (N×T×D)
    or a token grid (N×H×W×C, Swin), found by one forward pass; None for other models.

    Not the final norm: a ViT's head reads only the class token there, so the patch tokens'
    gradients are zero and the map would be blank. The last block's input still holds one
    token per patch, and its attention carries the class evidence to the class token
    (the choice of pytorch-grad-cam for ViT, https://github.com/jacobgil/pytorch-grad-cam).
    """
    norms = {module: name for name, module in network.named_modules()
             if isinstance(module, nn.LayerNorm) and name.rpartition(".")[2] in _BLOCK_INPUT_NORMS}
    if not norms:
        return None
    executed: list[str] = []

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() in (3, 4):
            executed.append(norms[module])

    handles = [module.register_forward_hook(record) for module in norms]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return executed[-1] if executed else None


def token_grid(activations: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """N×C×h×w from transformer tokens: N×T×D with the leading class (and distillation or
    register) tokens dropped and the patch tokens laid out on the image's grid, or a Swin
    N×H×W×C grid. Raises a UserError when the tokens do not form a grid."""
    if activations.dim() == 4:  # Swin keeps a channels-last grid
        return activations.permute(0, 3, 1, 2)
    count = activations.shape[1]
    height, width = image_shape
    for extra in range(0, min(count, 9)):  # class token, distillation token, a few registers
        patches = count - extra
        rows = round((patches * height / width) ** 0.5)
        if rows > 0 and patches % rows == 0 and abs(rows / (patches // rows) - height / width) < 0.25:
            return activations[:, extra:].reshape(activations.shape[0], rows, patches // rows, -1).permute(0, 3, 1, 2)
    raise UserError(f"Grad-CAM cannot lay the model's {count} tokens on a grid of the {height}×{width} "
                    "image; use --saliency gradient or smoothgrad for this model.")


def _token_gradcam(model: nn.Module, module: nn.Module, image: torch.Tensor, class_index: int) -> torch.Tensor:
    """Grad-CAM on a token layer (1×1×h×w): the paper's channel weights (gradients averaged
    over the grid) times the activations, summed over channels, ReLU. Captum's LayerGradCam
    averages over every axis after the first, which for N×T×D tokens is the wrong one, and
    has no hook to reshape tokens to a grid; so these three lines are written here."""
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        captured["tokens"] = output

    handle = module.register_forward_hook(keep)
    try:
        # Frozen weights: the input must require grad for the tokens to have a gradient.
        logits = model(image.clone().requires_grad_(True))
    finally:
        handle.remove()
    gradient, = torch.autograd.grad(logits[0, class_index], captured["tokens"])
    activations = token_grid(captured["tokens"].detach(), tuple(image.shape[-2:]))
    gradients = token_grid(gradient, tuple(image.shape[-2:]))
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activations).sum(dim=1, keepdim=True))


def find_gradcam_layer(model: nn.Module, image: torch.Tensor | None = None,
                       layer: str | None = None) -> tuple[str, nn.Module]:
    """Choose the layer Grad-CAM explains: ``(dotted name, module)``.

    ``layer`` (a dotted module name inside the user's network, e.g. ``"layer3"`` or
    ``"features.12"``) overrides the automatic choice. Otherwise known torchvision
    families get their usual layer (see :func:`_family_layer`), and any other model gets
    the last ``Conv2d`` whose output is spatial, found by one forward pass on ``image``.
    """
    network = _inner_model(model)
    if _is_scripted(network) or any(_is_scripted(m) for m in network.modules()):
        raise UserError(
            "Grad-CAM needs to hook one of the model's layers, and a TorchScript model does not "
            "allow that. Use --saliency gradient, smoothgrad or integrated-gradients, or load the "
            "model as a state_dict with its architecture named in the model card.")
    if isinstance(network, torch.fx.GraphModule) and \
            not any(isinstance(m, (nn.Conv2d, nn.LayerNorm)) for m in network.modules()):
        # torch.export's module keeps the weights but runs one flat graph: no layer to hook.
        # (A graph converted from ONNX keeps its convolutions as modules, and those can be.)
        raise UserError(
            "Grad-CAM needs to hook one of the model's layers, and an exported (.pt2) model runs "
            "as one flat graph without them. Use --saliency gradient, smoothgrad or "
            "integrated-gradients, or load the model as a state_dict with its architecture named "
            "in the model card.")
    if layer:
        name = layer[len("model."):] if layer.startswith("model.") and network is not model else layer
        try:
            return name, network.get_submodule(name)
        except AttributeError:
            convs = [n for n, m in network.named_modules() if isinstance(m, nn.Conv2d)][-3:]
            hint = f" Convolution layers near the end: {', '.join(convs)}." if convs else ""
            raise UserError(f"The model has no layer named {layer!r} for Grad-CAM; give a dotted "
                            f"module name such as 'layer4' or 'features.12'.{hint}") from None
    found = _family_layer(network)
    if found is not None:
        return found[0], network.get_submodule(found[0])
    tokens = _token_layer(model, network, image) if image is not None else None
    if tokens is not None:
        return tokens, network.get_submodule(tokens)
    name = _last_spatial_conv(model, network, image) if image is not None else None
    if name is None and image is None:
        convs = [n for n, m in network.named_modules() if isinstance(m, nn.Conv2d)]
        name = convs[-1] if convs else None
    if name is None:
        raise UserError(
            "Grad-CAM needs a convolutional layer with a spatial output, and this model has none. "
            "Use --saliency gradient or smoothgrad instead.")
    return name, network.get_submodule(name)


# --------------------------------------------------------------------------- maps

def _check_image(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    image = torch.as_tensor(image)
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1:
        raise UserError(f"A saliency map explains one image (1×C×H×W); got shape {tuple(image.shape)}.")
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        image = image.to(device)
    return image.detach().float()


def _options(method: str, options: dict) -> dict:
    accepted = METHOD_OPTIONS[method]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise UserError(f"Unknown option(s) {', '.join(unknown)} for the {method} map "
                        f"(accepted: {allowed}).")
    merged = dict(accepted)
    merged.update(options)
    return merged


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed Captum's noise (it draws from the global RNG) without disturbing the caller's."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def attribution_map(model: nn.Module, image: torch.Tensor, class_index: int,
                    method: str = "gradient", *, layer: str | None = None, seed: int = 0,
                    internal_batch_size: int = 16, **options) -> np.ndarray:
    """An H×W float32 attribution map of ``image`` (1×C×H×W in [0,1]) for ``class_index``.

    ``method`` is one of :data:`SALIENCY_METHODS` (papers in the module docstring).
    ``internal_batch_size`` bounds memory: SmoothGrad evaluates its noisy copies and IG its
    path points in batches of this many images. ``layer`` overrides Grad-CAM's layer.
    ``options``: SmoothGrad ``samples``/``noise`` (σ in pixel units), IG ``steps``/
    ``baseline`` (a grey level). ``seed`` fixes SmoothGrad's noise.
    """
    if method not in SALIENCY_METHODS:
        raise UserError(f"Unknown saliency method {method!r}; choose one of {', '.join(SALIENCY_METHODS)}.")
    image = _check_image(model, image)
    opts = _options(method, options)
    batch = max(1, int(internal_batch_size))
    class_index = int(class_index)
    if class_index < 0:  # a negative index would silently explain a class counted from the end
        raise UserError(f"Class index {class_index} is out of range: classes are numbered from 0.")
    try:
        return _attribute(model, image, class_index, method, opts, batch, layer, seed)
    except (IndexError, RuntimeError):
        # Checked only on failure, so a valid call pays no extra forward pass.
        with torch.no_grad():
            num_classes = model(image).shape[1]
        if class_index >= num_classes:
            raise UserError(f"Class index {class_index} is out of range: the model has {num_classes} "
                            f"classes (0 to {num_classes - 1}).") from None
        raise


def _attribute(model, image, class_index, method, opts, batch, layer, seed) -> np.ndarray:
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    # Captum needs grad mode; a GUI worker thread may be running under no_grad.
    with torch.enable_grad():
        if method == "gradient":
            # A leaf that already requires grad, so Captum does not warn that it had to set it.
            attribution = Saliency(model).attribute(image.clone().requires_grad_(True),
                                                    target=class_index, abs=False)
        elif method == "smoothgrad":
            samples = int(opts["samples"])
            if samples < 1 or not float(opts["noise"]) >= 0:
                raise UserError("SmoothGrad needs samples ≥ 1 and a noise level σ ≥ 0 (e.g. 0.15).")
            with _seeded(seed, image.device):
                attribution = NoiseTunnel(Saliency(model)).attribute(
                    image, nt_type="smoothgrad", nt_samples=samples,
                    nt_samples_batch_size=min(batch, samples), stdevs=float(opts["noise"]),
                    target=class_index, abs=False)
        elif method == "integrated-gradients":
            steps = int(opts["steps"])
            if steps < 2:
                raise UserError("Integrated gradients needs at least 2 steps (the paper uses 20 to 300).")
            baseline = opts["baseline"]
            baselines = torch.as_tensor(baseline, dtype=image.dtype, device=image.device)
            baselines = baselines.expand_as(image) if baselines.dim() == 0 else baselines.reshape(image.shape)
            attribution = IntegratedGradients(model).attribute(
                image, baselines=baselines, target=class_index, n_steps=steps,
                internal_batch_size=batch)
        else:
            name, module = find_gradcam_layer(model, image, layer)
            if isinstance(module, nn.LayerNorm):
                cam = _token_gradcam(model, module, image, class_index)
                attribution = LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), "bilinear")
                return attribution.detach()[0, 0].float().cpu().numpy().copy()
            try:
                cam = LayerGradCam(model, module).attribute(image, target=class_index,
                                                            relu_attributions=True)
            except AssertionError:  # Captum: "Forward hook did not obtain any outputs"
                raise UserError(f"Grad-CAM could not see the output of layer {name!r} (the model "
                                "never runs it as a module, e.g. an exported graph). Choose another "
                                "layer, or use --saliency gradient or smoothgrad.") from None
            if cam.dim() != 4:
                raise UserError(f"Grad-CAM layer {name!r} has no spatial output (shape "
                                f"{tuple(cam.shape)}); choose a convolutional layer.")
            attribution = LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), "bilinear")
            return attribution.detach()[0, 0].float().cpu().numpy().copy()
    # Sum of |attribution| over colour channels (module docstring).
    return attribution.detach().abs().sum(dim=1)[0].float().cpu().numpy().copy()


# --------------------------------------------------------------------------- explanation

@dataclass(frozen=True)
class Explanation:
    """Maps of the clean and the adversarial image on one scale, their comparison and a verdict.

    ``before``/``after`` are H×W float32 divided by ``scale`` (the larger of the two raw
    maxima, 1 when both maps are zero), so both lie in [0,1] and compare colour for colour.
    """

    method: str
    class_index: int
    class_index_after: int
    before: np.ndarray
    after: np.ndarray
    scale: float
    comparison: MapComparison
    flipped: bool
    verdict: str
    #: Grad-CAM only: the layer explained (chosen automatically unless given).
    layer: str | None = None

    def to_json(self) -> dict:
        """The ``saliency`` object of ``record.json``."""
        data = {"method": self.method, "class_index": self.class_index}
        if self.layer is not None:
            data["layer"] = self.layer
        if self.class_index_after != self.class_index:
            data["class_index_after"] = self.class_index_after
        data.update(self.comparison.to_json())
        data["scale"] = self.scale
        data["flipped"] = self.flipped
        data["verdict"] = self.verdict
        data["thresholds"] = {
            "stayed_if_spearman_at_least": STAYED_SPEARMAN,
            "and_topk_intersection_at_least": STAYED_TOPK,
            "topk_fraction": self.comparison.topk_fraction,
        }
        return data


def verdict_for(comparison: MapComparison, flipped: bool) -> str:
    """The verdict of one attack on one explanation.

    *no flip* when the prediction did not change. Otherwise the explanation *stayed* when
    the maps agree in rank order (Spearman ρ ≥ 0.8, conventionally "very strong") **and**
    in their most relevant pixels (top-10 % intersection ≥ 0.7; two unrelated maps share
    about 10 % by chance). Both are required: a global rank agreement can be carried by a
    flat background alone, and a shared hotspot alone can hide a changed remainder. Anything
    else: the explanation *followed* the prediction.
    """
    if not flipped:
        return VERDICT_NO_FLIP
    if comparison.spearman >= STAYED_SPEARMAN and comparison.topk_intersection >= STAYED_TOPK:
        return VERDICT_STAYED
    return VERDICT_FOLLOWED


def shared_scale(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Divide two non-negative maps by the larger of their maxima (1 if both are zero)."""
    scale = float(max(np.max(before), np.max(after), 0.0))
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return ((before / scale).astype(np.float32), (after / scale).astype(np.float32), scale)


def explain_attack(model: nn.Module, image: torch.Tensor, adversarial: torch.Tensor, *,
                   method: str, class_index: int, diagnostic_mask=None, flipped: bool,
                   topk: float = 0.1, seed: int = 0, class_index_after: int | None = None,
                   layer: str | None = None, internal_batch_size: int = 16,
                   **options) -> Explanation:
    """Explain ``class_index`` on the clean and the adversarial image and compare the maps.

    Both maps are for the same class by default (the clean prediction, the label or the
    target — the caller chooses); ``class_index_after`` explains another class on the
    adversarial image (e.g. the adversarial prediction). ``diagnostic_mask`` (H×W at the
    model's input size, 1 = the region a clinician says matters) adds the relevance mass
    inside it before and after. ``flipped`` is whether the attack changed the prediction.
    """
    image = _check_image(model, image)
    adversarial = _check_image(model, adversarial)
    if adversarial.shape != image.shape:
        raise UserError(f"The adversarial image {tuple(adversarial.shape)} and the clean image "
                        f"{tuple(image.shape)} differ in size.")
    height, width = image.shape[-2:]
    diagnostic = as_diagnostic_mask(diagnostic_mask, (height, width))
    after_class = class_index if class_index_after is None else int(class_index_after)
    common = dict(method=method, layer=layer, seed=seed, internal_batch_size=internal_batch_size, **options)
    raw_before = attribution_map(model, image, class_index, **common)
    raw_after = attribution_map(model, adversarial, after_class, **common)
    before, after, scale = shared_scale(raw_before, raw_after)
    comparison = compare_maps(before, after, topk=topk, diagnostic_mask=diagnostic)
    layer_name = find_gradcam_layer(model, image, layer)[0] if method == "gradcam" else None
    return Explanation(method=method, class_index=int(class_index), class_index_after=after_class,
                       before=before, after=after, scale=scale, comparison=comparison,
                       flipped=bool(flipped), verdict=verdict_for(comparison, bool(flipped)),
                       layer=layer_name)
