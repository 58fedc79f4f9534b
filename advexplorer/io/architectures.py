"""Architectures by name (torchvision, timm) and inferred from a state_dict.

A state_dict holds weights but not the network that uses them, so the network is built
by name — ``torchvision.resnet18``, ``timm.convnext_tiny`` or a bare name looked up in
torchvision first, then timm — with random weights (nothing is downloaded), and the file's
weights are fitted onto it with every key checked.

When the card does not name the architecture, :func:`infer_architecture` guesses it from
the key names and shapes: it picks the families whose characteristic keys appear (a ResNet
has ``layer1.0.conv1.weight``, a timm ViT ``blocks.0.attn.qkv.weight``, …), builds each
candidate of those families on the ``meta`` device (shapes without memory, so trying a
hundred costs seconds) with the class count read from the head, and keeps those whose keys
*and* shapes match exactly. Several may match (timm's ``resnet50`` and torchvision's have
the same keys): all are reported, the first is used.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advexplorer.errors import UserError
from advexplorer.io.torchvision_import import torchvision_models

#: Key prefixes that wrappers add in front of the network's own names: DataParallel
#: (``module.``), Lightning modules and EMA wrappers (``model.``), torch.compile (``_orig_mod.``).
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "net.", "network.", "backbone.")
#: Checkpoint entries that hold the state_dict itself.
STATE_DICT_ENTRIES = ("state_dict", "model_state_dict", "model", "module", "net", "network",
                      "state_dict_ema", "model_ema")


@dataclass(frozen=True)
class ArchitectureMatch:
    """An architecture whose keys and shapes fit a state_dict exactly."""

    name: str                       # "torchvision.resnet18" / "timm.convnext_tiny"
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: What the library says the model expects, when it says (timm's pretrained_cfg):
    #: ``input_size`` (H, W), ``mean``, ``std``, ``resize``.
    defaults: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- building by name

def _timm():
    try:
        import timm
    except ImportError:
        raise UserError("timm is not installed; install AdvExplorer with the 'models' extra "
                        "(pip install 'advexplorer[models]').") from None
    return timm


@functools.lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    tvm = torchvision_models()
    return frozenset(tvm.list_models(module=tvm))


@functools.lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    try:
        return frozenset(_timm().list_models())
    except UserError:
        return frozenset()


def split_name(name: str) -> tuple[str, str]:
    """``("torchvision", "resnet18")`` from ``torchvision.resnet18`` / ``timm.resnet50`` /
    a bare ``resnet18`` (torchvision first, then timm); raises a UserError naming close
    spellings when the name exists in neither."""
    name = name.strip()
    prefix, _, function = name.rpartition(".")
    if prefix in ("torchvision", "torchvision.models", "tv"):
        libraries = ("torchvision",)
    elif prefix == "timm":
        libraries = ("timm",)
    elif prefix:
        raise UserError(f"Unknown architecture {name!r}: name a torchvision or timm model, e.g. "
                        "'torchvision.resnet18' or 'timm.convnext_tiny'.")
    else:
        libraries = ("torchvision", "timm")
    known = {"torchvision": _torchvision_names, "timm": _timm_names}
    names = {library: known[library]() for library in libraries}
    for library in libraries:
        if function in names[library]:
            return library, function
    stem = function.split("_")[0].rstrip("0123456789") or function
    close = sorted({f"{lib}.{m}" for lib, found in names.items() for m in found if m.startswith(stem)},
                   key=lambda m: (len(m), m))[:6]
    hint = f" Similar names: {', '.join(close)}." if close else ""
    where = " or ".join(libraries)
    raise UserError(f"{where} has no classification model {function!r}; name a torchvision or timm "
                    f"model such as 'torchvision.resnet18' or 'timm.convnext_tiny'.{hint}")


def build_by_name(name: str, kwargs: dict[str, Any] | None = None,
                  num_classes: int | None = None) -> nn.Module:
    """Build ``name`` with random weights (never downloaded). ``num_classes`` is a default
    that ``kwargs`` may override."""
    library, function = split_name(name)
    kwargs = dict(kwargs or {})
    if num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if library == "torchvision":
                return torchvision_models().get_model(function, weights=None, **kwargs)
            return _timm().create_model(function, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise UserError(f"Cannot build {library}.{function} with architecture_kwargs {kwargs}: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.") from None


def library_defaults(name: str, model: nn.Module | None = None) -> dict[str, Any]:
    """What the library says the architecture expects: ``input_size``, ``mean``, ``std``,
    ``resize`` (timm's pretrained_cfg; torchvision's ImageNet recipe: 224 px, ImageNet
    statistics)."""
    library, _ = split_name(name)
    if library == "timm":
        config = getattr(model, "pretrained_cfg", None) or {}
        size = config.get("input_size") or (3, 224, 224)
        crop = config.get("crop_pct")
        return {"input_size": (int(size[1]), int(size[2])),
                "mean": tuple(float(v) for v in config.get("mean", (0.485, 0.456, 0.406))),
                "std": tuple(float(v) for v in config.get("std", (0.229, 0.224, 0.225))),
                "resize": "center-crop" if crop and crop < 1 else "stretch"}
    return {"input_size": (224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
            "resize": "center-crop"}


# --------------------------------------------------------------------------- state_dicts

def _strip_common_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The network's own state_dict inside a checkpoint: the ``state_dict``/``model``/…
    entry of a checkpoint dict (Lightning's included, whose keys start with the attribute
    name of the network), with wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``)
    removed. Non-tensor entries beside the weights (a step counter) are dropped."""
    for _ in range(3):  # checkpoints nest at most a couple of levels
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in STATE_DICT_ENTRIES
                      if isinstance(obj.get(k), dict) and obj[k]), None)
        if inner is None or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path.name} holds a {type(obj).__name__}, not a state_dict of tensors. Save "
                        "the weights with torch.save(model.state_dict(), ...) or export TorchScript.")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) < len(obj) / 2:
        raise UserError(f"{path.name} is a dict of {len(obj)} entries but not a state_dict of tensors "
                        f"(entries: {', '.join(map(str, list(obj)[:5]))}). Save model.state_dict().")
    return _strip_common_prefix(tensors)


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def fit_problems(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading into ``model``: missing keys, unexpected keys and
    shape mismatches, each as a short phrase (empty when it fits exactly)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} is {list(state[k].shape)} in the file but {list(expected[k].shape)} in "
                  "the architecture" for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_few(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_few(mismatched)}")
    return problems


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """Load ``state`` into ``model`` strictly, or raise one line naming the keys that do not fit."""
    problems = fit_problems(model, state)
    if problems:
        raise UserError(f"The weights in {path.name} do not fit {what}: {'; '.join(problems)}. Check "
                        "the architecture, its num_classes, and that this is the right weights file.")
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- inference

#: Families: (a key every state_dict of the family has, another one, the common models
#: tried first, name patterns tried when none of those fits).
_FAMILIES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("layer1.0.conv1.weight", "fc.weight",
     ("torchvision.resnet18", "torchvision.resnet34", "torchvision.resnet50", "torchvision.resnet101",
      "torchvision.resnet152", "torchvision.resnext50_32x4d", "torchvision.resnext101_32x8d",
      "torchvision.wide_resnet50_2", "timm.resnet18", "timm.resnet34", "timm.resnet50", "timm.resnet101",
      "timm.resnet152", "timm.resnet18d", "timm.resnet34d", "timm.resnet50d", "timm.resnet26"),
     ("torchvision.resnet*", "torchvision.resnext*", "torchvision.wide_resnet*", "timm.resnet*",
      "timm.resnext*", "timm.wide_resnet*")),
    ("stages.0.blocks.0.conv_dw.weight", "head.fc.weight",
     ("timm.convnext_atto", "timm.convnext_femto", "timm.convnext_pico", "timm.convnext_nano",
      "timm.convnext_tiny", "timm.convnext_small", "timm.convnext_base", "timm.convnext_large"),
     ("timm.convnext*",)),
    ("features.1.0.block.0.weight", "classifier.2.weight",
     ("torchvision.convnext_tiny", "torchvision.convnext_small", "torchvision.convnext_base",
      "torchvision.convnext_large"), ()),
    ("blocks.0.attn.qkv.weight", "pos_embed",
     ("timm.vit_tiny_patch16_224", "timm.vit_small_patch16_224", "timm.vit_base_patch16_224",
      "timm.vit_large_patch16_224", "timm.vit_small_patch32_224", "timm.vit_base_patch32_224",
      "timm.deit_tiny_patch16_224", "timm.deit_small_patch16_224", "timm.deit_base_patch16_224",
      "timm.deit_tiny_distilled_patch16_224", "timm.deit_small_distilled_patch16_224",
      "timm.deit_base_distilled_patch16_224"),
     ("timm.vit_*", "timm.deit_*", "timm.deit3_*")),
    ("layers.0.blocks.0.attn.qkv.weight", "head.fc.weight",
     ("timm.swin_tiny_patch4_window7_224", "timm.swin_small_patch4_window7_224",
      "timm.swin_base_patch4_window7_224"), ("timm.swin*",)),
    ("features.0.0.weight", "features.1.0.block.0.0.weight",
     tuple(f"torchvision.efficientnet_b{i}" for i in range(8)) + (
         "torchvision.mobilenet_v2", "torchvision.mobilenet_v3_small", "torchvision.mobilenet_v3_large"),
     ("torchvision.efficientnet*", "torchvision.mobilenet*")),
    ("conv_stem.weight", "blocks.0.0.conv_dw.weight",
     ("timm.efficientnet_b0", "timm.efficientnet_b1", "timm.efficientnet_b2", "timm.efficientnet_b3",
      "timm.tf_efficientnet_b0", "timm.mobilenetv3_large_100", "timm.mobilenetv3_small_100",
      "timm.mobilenetv2_100"),
     ("timm.efficientnet_b*", "timm.mobilenetv3*", "timm.mobilenetv2*", "timm.tf_efficientnet_b*")),
    ("features.denseblock1.denselayer1.conv1.weight", "classifier.weight",
     ("torchvision.densenet121", "torchvision.densenet161", "torchvision.densenet169",
      "torchvision.densenet201"), ()),
    ("encoder.layers.encoder_layer_0.ln_1.weight", "heads.head.weight",
     ("torchvision.vit_b_16", "torchvision.vit_b_32", "torchvision.vit_l_16"), ("torchvision.vit_*",)),
    ("features.0.weight", "classifier.0.weight", (), ("torchvision.vgg*", "torchvision.alexnet")),
    ("features.0.0.weight", "classifier.3.weight",
     ("torchvision.mobilenet_v3_small", "torchvision.mobilenet_v3_large"), ()),
    ("features.0.0.weight", "classifier.1.weight",
     ("torchvision.mobilenet_v2",) + tuple(f"torchvision.efficientnet_b{i}" for i in range(8)), ()),
)
#: timm variants that would only repeat a name already tried (same modules, other sizes).
_TIMM_SKIP = ("*_384", "*_448", "*_512")


def head_classes(state: dict[str, torch.Tensor]) -> int | None:
    """The class count of the classifier head: rows of the head's Linear weight.

    Keys are not in module order in every file (safetensors sorts them), so the head is
    found by name — ``fc``, ``head``, ``classifier`` outside the blocks — taking the last
    layer of a multi-layer head (``classifier.6`` after ``classifier.0``).
    """
    def natural(key: str):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]

    inner = ("blocks", "layers", "stages", "mlp", "attn", "encoder", "features")
    heads = [key for key, tensor in state.items() if key.endswith("weight") and tensor.dim() == 2
             and any(word in key for word in ("fc", "head", "classifier"))
             and not any(word in key.split(".") or word in key for word in inner)]
    if heads:
        return int(state[max(heads, key=natural)].shape[0])
    for key in reversed(list(state)):
        tensor = state[key]
        if key.endswith("weight") and tensor.dim() == 2:
            return int(tensor.shape[0])
    return None


def _candidates(state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """(common models of the matching families, every other model of those families)."""
    families = [(common, globs) for first, second, common, globs in _FAMILIES
                if first in state and second in state]
    if not families:  # no known family: every torchvision classifier is cheap enough to try
        families = [((), ("torchvision.*",))]
    first = list(dict.fromkeys(name for common, _ in families for name in common))
    patterns = [p for _, globs in families for p in globs]
    pools = {"torchvision": sorted(_torchvision_names()) if any(p.startswith("torchvision.") for p in patterns) else [],
             "timm": sorted(_timm_names()) if any(p.startswith("timm.") for p in patterns) else []}
    rest: list[str] = []
    for pattern in patterns:
        library, _, glob = pattern.partition(".")
        for name in pools[library]:
            full = f"{library}.{name}"
            if fnmatch.fnmatch(name, glob) and full not in first and full not in rest and \
                    not any(fnmatch.fnmatch(name, skip) for skip in _TIMM_SKIP):
                rest.append(full)
    return first, rest


def _shape_signature(module_state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module_state.items()}


def infer_architecture(state: dict[str, torch.Tensor], *, limit: int = 400) -> list[ArchitectureMatch]:
    """Architectures (torchvision and timm) whose keys and shapes equal ``state``'s exactly.

    Candidates are built on the ``meta`` device (no memory, no weights) with the class count
    of the head in ``state``; at most ``limit`` are tried.
    """
    common, rest = _candidates(state)
    matches = _matching(state, common)
    # The common models answer almost every real checkpoint; the whole family (hundreds of
    # timm variants, a minute or more) is searched only when none of them fits.
    return matches or _matching(state, rest[:limit])


class _SkipInitialisation(torch.overrides.TorchFunctionMode):
    """Random initialisation of meta tensors does nothing but costs most of a build (each
    in-place op on ``meta`` goes through Python decompositions); skip in-place ops there."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.endswith("__") and args and \
                isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def _matching(state: dict[str, torch.Tensor], names: list[str]) -> list[ArchitectureMatch]:
    wanted = _shape_signature(state)
    classes = head_classes(state)
    kwargs = {"num_classes": classes} if classes is not None else {}
    matches: list[ArchitectureMatch] = []
    for name in names:
        try:
            with warnings.catch_warnings(), torch.device("meta"), _SkipInitialisation():
                warnings.simplefilter("ignore")
                model = build_by_name(name, kwargs)
        except Exception:  # noqa: BLE001 — a candidate that cannot be built is simply not a match
            continue
        if _shape_signature(model.state_dict()) == wanted:
            matches.append(ArchitectureMatch(name=name, kwargs=dict(kwargs),
                                             defaults=library_defaults(name, model)))
    return matches


def describe_matches(matches: Iterable[ArchitectureMatch]) -> str:
    """``torchvision.resnet18 (also: timm.resnet18)``: how the card command says what matched."""
    names = [m.name for m in matches]
    if not names:
        return "none"
    return names[0] + (f" (also: {', '.join(names[1:])})" if len(names) > 1 else "")
