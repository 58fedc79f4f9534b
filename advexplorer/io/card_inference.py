"""Making a model card from what a model file says (``advexplorer card``, the Import model
dialog): the architecture from the weights' keys and shapes, classes, size and
normalisation from the file or the library's recipe, checked by :func:`load_model`'s dry run.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from advexplorer.core.model import Classifier, ModelForwardError, last_line, pick_device, select_scores
from advexplorer.errors import UserError
from advexplorer.io import architectures
from advexplorer.io.cards import NORMALIZATIONS, ModelCard, card_path_for
from advexplorer.io.model_formats import _is_torchscript, _load_raw
from advexplorer.io.models import LoadedModel, _probe_images, load_model


@dataclass
class InferredCard:
    """A card made from what a model file says, and where each field came from."""

    card: ModelCard
    format: str
    #: field → where its value came from ("key names and shapes", "config.json id2label", …)
    sources: dict[str, str]
    #: architectures whose keys fit exactly (state_dict weights), best first
    matches: list[str] = field(default_factory=list)


def _per_channel(values, channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    return values * channels if len(values) == 1 else values[:channels] if channels == 1 else values


def _model_kind(path: Path, trust_pickle: bool) -> tuple[str, object]:
    """(format, payload) without building anything: the state_dict for weights, else None."""
    from advexplorer.io import hf, onnx_models

    if path.is_dir():
        if not hf.is_hf_folder(path):
            raise UserError(f"{path.name} is a folder without config.json; a model folder must be a "
                            "Hugging Face save_pretrained folder (config.json + weights).")
        return "huggingface", None
    if not path.is_file():
        raise UserError(f"No model file at {path}. Check the path.")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise UserError(f"{path.name} is not a readable safetensors file ({exc}).") from None
        return "safetensors", architectures.unwrap_state_dict(state, path)
    if path.suffix.lower() == ".pt2":
        return "export", None
    if onnx_models.looks_like_onnx(path):
        return "onnx", None
    if _is_torchscript(path):
        return "torchscript", None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) and "global" in str(exc).lower():
            if trust_pickle:
                return "pickle", None
            raise UserError(f"{path.name} contains pickled Python objects (probably a whole model); "
                            "unpickling runs code from the file, so it is refused by default. Pass "
                            "--trust-pickle only if you trust the file.") from None
        raise UserError(f"{path.name} is none of the model kinds AdvExplorer reads (TorchScript, "
                        "state_dict, safetensors, .pt2, ONNX, or a Hugging Face folder).") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile):
        raise UserError(f"{path.name} is none of the model kinds AdvExplorer reads (TorchScript, "
                        "state_dict, safetensors, .pt2, ONNX, or a Hugging Face folder).") from None
    return "state_dict", architectures.unwrap_state_dict(obj, path)


def infer_card(path: str | Path, *, architecture: str | None = None,
               architecture_kwargs: dict | None = None, classes: list[str] | None = None, input_size: tuple[int, int] | None = None,
               normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
               resize: str | None = None, trust_pickle: bool = False,
               device: str = "cpu") -> InferredCard:
    """Make a card for ``path`` from what the file says, the choices given, and a dry run.

    Architecture: ``architecture`` or, for state_dict weights, the torchvision/timm models
    whose keys and shapes fit exactly. Classes: ``classes``, a Hugging Face ``id2label``, or
    ``class_0…`` for as many outputs as the dry run counts. Size, normalisation and resize
    rule: the choices, else the preprocessor config (HF), the library's recipe (timm's
    pretrained_cfg, torchvision's ImageNet recipe), the ONNX input shape, else 224 px and
    no normalisation. The card is then checked by :func:`load_model`'s dry run.
    """
    from advexplorer.io import hf, onnx_models

    path = Path(path)
    fmt, state = _model_kind(path, trust_pickle)
    sources: dict[str, str] = {}
    defaults: dict = {}
    matches: list[str] = []
    kwargs: dict = {}
    if architecture:
        name = architecture
        library, function = architectures.split_name(architecture)
        name = f"{library}.{function}"
        sources["architecture"] = "--architecture"
        if state is not None and architectures.head_classes(state):
            kwargs = {"num_classes": architectures.head_classes(state)}
        kwargs.update(architecture_kwargs or {})
        defaults = architectures.library_defaults(name, architectures.build_by_name(name, kwargs)
                                                  if library == "timm" else None)
        defaults_source = f"{library}'s recipe for {function}"
    elif state is not None:
        found = architectures.infer_architecture(state)
        if not found:
            raise UserError(f"The weights in {path.name} fit no torchvision or timm architecture exactly "
                            "(by key names and shapes); name it with --architecture, e.g. "
                            "--architecture timm.resnet50.")
        name, kwargs, defaults = found[0].name, dict(found[0].kwargs), found[0].defaults
        matches = [m.name for m in found]
        sources["architecture"] = "key names and shapes" + (
            f" (also fit: {', '.join(matches[1:])})" if len(matches) > 1 else "")
        defaults_source = f"{name.split('.')[0]}'s recipe for {name.split('.')[1]}"
    else:
        name = None
        defaults_source = ""
    channels = 3
    hf_classes = None
    if fmt == "huggingface":
        config = hf.read_config(path)
        defaults = hf.preprocessing(path, config)
        hf_classes = hf.classes_from_config(config)
        channels = defaults.get("channels", 3)
        defaults_source = "the Hugging Face folder"
    elif fmt == "onnx":
        shape = onnx_models.input_shape(path)
        if shape and len(shape) == 4:
            channels = shape[1] if shape[1] in (1, 3) else 3
            if shape[2] and shape[3]:
                defaults["input_size"] = (shape[2], shape[3])
                defaults_source = "the ONNX graph's input shape"

    def pick(key: str, chosen, option: str, fallback, fallback_source: str):
        if chosen is not None:
            sources[key] = option
            return chosen
        if key in defaults:
            sources[key] = defaults.get("sources", {}).get(key, defaults_source) if fmt == "huggingface" \
                else defaults_source
            return defaults[key]
        sources[key] = fallback_source
        return fallback

    size = pick("input_size", input_size, "--input-size", (224, 224), "assumed (give --input-size)")
    chosen_norm = normalization
    if chosen_norm is None and "mean" in defaults:
        mean, std = defaults["mean"], defaults["std"]
        sources["normalization"] = defaults.get("sources", {}).get("normalization", defaults_source) \
            if fmt == "huggingface" else defaults_source
    elif chosen_norm is not None:
        mean, std = chosen_norm
        sources["normalization"] = "--normalization"
    else:
        mean, std = NORMALIZATIONS["none"]
        sources["normalization"] = "none assumed: the model is taken to normalise inside (give --normalization)"
    rule = pick("resize", resize, "--resize", "stretch", "default")
    provisional = {"name": path.stem, "classes": ["class_0"], "input_size": list(size), "channels": channels,
                   "mean": list(_per_channel(mean, channels)), "std": list(_per_channel(std, channels)),
                   "resize": rule}
    if name:
        provisional["architecture"], provisional["architecture_kwargs"] = name, kwargs
    outputs = _count_outputs(path, provisional, trust_pickle, device)
    if classes is not None:
        sources["classes"] = "given"
        chosen_classes = list(classes)
    elif hf_classes and len(hf_classes) == outputs:
        chosen_classes, sources["classes"] = list(hf_classes), "config.json id2label"
    else:
        chosen_classes = [f"class_{i}" for i in range(outputs)]
        sources["classes"] = f"the dry run's {outputs} outputs (name them with --classes)"
    if len(chosen_classes) != outputs:
        raise UserError(f"{path.name} has {outputs} outputs but {len(chosen_classes)} classes were given "
                        f"({', '.join(chosen_classes[:5])}); give one name per output.")
    provisional["classes"] = chosen_classes
    from advexplorer.io.cards import parse_card

    card = parse_card(provisional)
    return InferredCard(card=card, format=fmt, sources=sources, matches=matches)


def _count_outputs(path: Path, card_data: dict, trust_pickle: bool, device: str) -> int:
    """How many classes the model outputs on one noise image (a single logit counts as 2)."""
    from advexplorer.io.cards import parse_card

    card = parse_card(card_data)
    target = pick_device(device)
    raw, _ = _load_raw(path, card, target, trust_pickle, [])
    classifier = Classifier(raw, card.mean, card.std, card.classes).to(target)
    image = _probe_images(card, target, path)["noise"]
    try:
        with torch.no_grad():
            scores = select_scores(classifier.raw_output(image), card.output_key)
    except ModelForwardError as exc:
        raise UserError(f"{path.name} fails on a 1×{card.channels}×{card.input_size[0]}×{card.input_size[1]} "
                        f"test image ({last_line(exc.__cause__ or exc)}); give --input-size.") from None
    if scores.dim() != 2 or scores.shape[0] != 1:
        raise UserError(f"{path.name}'s output has shape {tuple(scores.shape)}; AdvExplorer needs N×C "
                        "class logits from an image classifier.")
    return 2 if scores.shape[1] == 1 else int(scores.shape[1])


def make_card(path: str | Path, inferred: InferredCard, *, device: str = "cpu",
              trust_pickle: bool = False, overwrite: bool = False) -> tuple[Path, LoadedModel]:
    """Dry-run ``inferred.card`` on the model, then write it beside the model atomically."""
    from advexplorer.io.atomic import atomic_write_text

    path = Path(path)
    destination = card_path_for(path)
    if destination.exists() and not overwrite:
        raise UserError(f"{destination} already exists; pass --overwrite to replace it.")
    loaded = load_model(path, card=inferred.card, device=device, trust_pickle=trust_pickle)
    data = loaded.card.to_json()
    atomic_write_text(destination, json.dumps(data, indent=2) + "\n", overwrite=overwrite)
    return destination, loaded
