"""Model cards: the JSON file beside a model that says what the model expects.

A card has the same stem as the model (``resnet.pt`` → ``resnet.json``)::

    {
      "name": "Histology DAB classifier",
      "classes": ["DAB-negative", "DAB-positive"],
      "input_size": [64, 64],            # [H, W] the model is fed
      "channels": 3,                     # 1 or 3
      "mean": [0.5, 0.5, 0.5],           # normalisation applied *inside* the wrapper
      "std": [0.25, 0.25, 0.25],
      "resize": "stretch",               # or "center-crop"
      "architecture": "torchvision.mobilenet_v3_small",   # for state_dict weights only
      "architecture_kwargs": {"num_classes": 2},
      "output": "logits",                # or "probabilities" (softmax/sigmoid outputs); detected if absent
      "output_key": "logits",            # which entry of a dict output holds the class scores
      "description": "...", "training_data": "...", "clean_accuracy": 0.93,
      "samples": [{"image": "../resources/samples/x.png", "protect": "...", "diagnostic": "..."}]
    }

Anything else in the card (robust accuracy, suggested ε, training command) is kept in
:attr:`ModelCard.extra` and reported verbatim.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advexplorer.errors import UserError

KNOWN_KEYS = {
    "name", "classes", "input_size", "channels", "mean", "std", "resize", "architecture",
    "architecture_kwargs", "description", "training_data", "clean_accuracy", "samples",
    "output", "output_key",
}
RESIZE_RULES = ("stretch", "center-crop")
OUTPUT_KINDS = ("logits", "probabilities")
#: The largest input side a card may ask for. 16384² RGB is already 3.2 GB as float32; larger
#: sizes are typing errors (100000 would try to allocate 120 GB for one blank image).
MAX_INPUT_SIDE = 16384
#: The smallest normalisation std: below it 1/std is not a float32 number (1e-300 is 0 there).
MIN_STD = 1e-6


@dataclass(frozen=True)
class Sample:
    """A sample image listed by a card, with its ready-made masks (absolute paths)."""

    image: Path
    protect: Path | None = None
    allowed: Path | None = None
    diagnostic: Path | None = None
    label: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """What a model expects and what it is. See the module docstring for the JSON form."""

    name: str
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: str = "stretch"
    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    training_data: str = ""
    clean_accuracy: float | None = None
    samples: tuple[Sample, ...] = ()
    output: str | None = None          # "logits" / "probabilities"; None: detected at load
    output_key: str | None = None      # the dict entry holding the class scores
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, name_or_index: str | int) -> int:
        """Turn a class name (or an index given as text) into an index, or say what exists."""
        if isinstance(name_or_index, int):
            index = name_or_index
        else:
            text = str(name_or_index).strip()
            if text in self.classes:
                return self.classes.index(text)
            lowered = [c.lower() for c in self.classes]
            if text.lower() in lowered:
                return lowered.index(text.lower())
            if not text.lstrip("-").isdigit():
                raise UserError(
                    f"Unknown class {text!r}. The model card lists: {', '.join(self.classes)}."
                )
            index = int(text)
        if not 0 <= index < self.num_classes:
            raise UserError(
                f"Class index {index} is out of range: the model has {self.num_classes} classes "
                f"(0 to {self.num_classes - 1})."
            )
        return index

    def to_json(self) -> dict[str, Any]:
        """The card as a JSON-ready dict (paths of samples relative to the card when possible)."""

        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            if self.path is not None:
                try:
                    return str(Path(p).relative_to(self.path.parent))
                except ValueError:
                    pass
            return str(p)

        out: dict[str, Any] = {
            "name": self.name,
            "classes": list(self.classes),
            "input_size": list(self.input_size),
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "architecture": self.architecture,
            "architecture_kwargs": dict(self.architecture_kwargs),
            "description": self.description,
            "training_data": self.training_data,
            "clean_accuracy": self.clean_accuracy,
        }
        if self.output is not None:
            out["output"] = self.output
        if self.output_key is not None:
            out["output_key"] = self.output_key
        if self.samples:
            out["samples"] = [
                {k: v for k, v in {
                    "image": rel(s.image), "protect": rel(s.protect), "allowed": rel(s.allowed),
                    "diagnostic": rel(s.diagnostic), "label": s.label}.items() if v is not None}
                for s in self.samples
            ]
        out.update(self.extra)
        return out


def card_path_for(model_path: str | Path) -> Path:
    """The card that belongs to a model file: same folder, same stem, ``.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".json") if model_path.suffix else \
        model_path.with_suffix(".json")


def _number_list(value: Any, key: str, length: int, where: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        value = [value] * length
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise UserError(f"{where}: '{key}' must be a list of {length} numbers.")
    if not all(math.isfinite(v) for v in value):
        raise UserError(f"{where}: '{key}' holds {value}; every value must be a finite number.")
    if len(value) == 1:
        value = value * length
    if len(value) != length:
        raise UserError(f"{where}: '{key}' has {len(value)} values but 'channels' is {length}.")
    return tuple(float(v) for v in value)


def parse_card(data: Any, path: Path | None = None) -> ModelCard:
    """Validate a card's JSON content and return a :class:`ModelCard`."""
    where = f"Model card {path}" if path else "Model card"
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a JSON object with 'classes' and 'input_size'.")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{where}: 'classes' must be a non-empty list of class names.")
    if len(set(classes)) != len(classes):
        raise UserError(f"{where}: 'classes' has duplicate names; each class needs its own name.")
    size = data.get("input_size")
    if isinstance(size, int):
        size = [size, size]
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise UserError(f"{where}: 'input_size' must be [height, width] in pixels, e.g. [224, 224].")
    if max(size) > MAX_INPUT_SIDE:
        raise UserError(f"{where}: 'input_size' {size} is larger than {MAX_INPUT_SIDE} pixels per side, "
                        "more than any classifier takes (and more memory than a machine has); "
                        "give the size the model was trained on, e.g. [224, 224].")
    channels = data.get("channels", 3)
    if channels not in (1, 3):
        raise UserError(f"{where}: 'channels' must be 1 (grayscale) or 3 (RGB), not {channels!r}.")
    mean = _number_list(data.get("mean", [0.0] * channels), "mean", channels, where)
    std = _number_list(data.get("std", [1.0] * channels), "std", channels, where)
    if any(s < MIN_STD for s in std):
        raise UserError(f"{where}: every 'std' value must be positive (at least {MIN_STD:g}); "
                        f"got {list(std)}. Normalisation divides by it.")
    resize = data.get("resize", "stretch")
    if resize not in RESIZE_RULES:
        raise UserError(f"{where}: 'resize' must be 'stretch' or 'center-crop', not {resize!r}.")
    architecture = data.get("architecture")
    if architecture is not None and not isinstance(architecture, str):
        raise UserError(f"{where}: 'architecture' must be a name such as 'torchvision.resnet18'.")
    kwargs = data.get("architecture_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UserError(f"{where}: 'architecture_kwargs' must be a JSON object.")
    output = data.get("output")
    if output is not None and output not in OUTPUT_KINDS:
        raise UserError(f"{where}: 'output' must be 'logits' or 'probabilities', not {output!r}.")
    output_key = data.get("output_key")
    if output_key is not None and not isinstance(output_key, str):
        raise UserError(f"{where}: 'output_key' must be the name of the model's output entry, e.g. 'logits'.")
    accuracy = data.get("clean_accuracy")
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))):
        raise UserError(f"{where}: 'clean_accuracy' must be a number between 0 and 1.")

    base = path.parent if path is not None else Path(".")
    samples = []
    for entry in data.get("samples") or []:
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict) or "image" not in entry:
            raise UserError(f"{where}: each entry of 'samples' needs an 'image' path.")
        resolve = lambda key: (base / entry[key]).resolve() if entry.get(key) else None  # noqa: E731
        samples.append(Sample(image=resolve("image"), protect=resolve("protect"),
                              allowed=resolve("allowed"), diagnostic=resolve("diagnostic"),
                              label=entry.get("label")))

    return ModelCard(
        name=str(data.get("name") or (path.stem if path else "model")),
        classes=tuple(classes),
        input_size=(int(size[0]), int(size[1])),
        channels=int(channels),
        mean=mean,
        std=std,
        resize=resize,
        architecture=architecture,
        architecture_kwargs=dict(kwargs),
        description=str(data.get("description", "")),
        training_data=str(data.get("training_data", "")),
        clean_accuracy=float(accuracy) if accuracy is not None else None,
        samples=tuple(samples),
        output=output,
        output_key=output_key,
        extra={k: v for k, v in data.items() if k not in KNOWN_KEYS},
        path=path.resolve() if path is not None else None,
    )


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a model card file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"No model card at {path}. Put a JSON card with the model's stem beside it "
            f"(it gives 'classes', 'input_size', 'mean' and 'std')."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"),
                          parse_constant=lambda name: _refuse_constant(name, path))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"Model card {path} is not valid JSON ({exc}). Fix the file and retry.") from None
    return parse_card(data, path)


def _refuse_constant(name: str, path: Path):
    """``json`` accepts NaN and Infinity, which are not JSON and would poison every record."""
    raise UserError(f"Model card {path} contains {name}, which is not a number in JSON; write the "
                    "real value (e.g. a std such as 0.229).")


# --------------------------------------------------------------------------- making a card
# Torch-free parsing shared by `advexplorer card` and the GUI's Import model dialog.

#: Normalisations by name: (mean, std) per channel.
NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def parse_input_size(text: str) -> tuple[int, int]:
    """``224`` → (224, 224); ``256x192`` → (256, 192)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", text or "")
    if not match or int(match.group(1)) <= 0 or (match.group(2) and int(match.group(2)) <= 0):
        raise UserError(f"--input-size {text!r} is not a size: give N or HxW in pixels, e.g. 224 or 256x192.")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def parse_normalization(text: str, channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A named normalisation, ``MEAN,STD`` (one value each or one per channel), or
    ``from-folder DIR`` (per-channel mean and std of the folder's images)."""
    from advexplorer.config import parse_number_list

    text = text.strip()
    if text.lower() in NORMALIZATIONS:
        return NORMALIZATIONS[text.lower()]
    if text.lower().startswith("from-folder"):
        folder = text[len("from-folder"):].strip(" =:")
        if not folder:
            raise UserError("--normalization from-folder needs a folder: 'from-folder DIR'.")
        return folder_statistics(Path(folder))
    values = parse_number_list(text, "--normalization")
    if len(values) == 2:
        return (values[0],) * channels, (values[1],) * channels
    if len(values) == 2 * channels:
        return tuple(values[:channels]), tuple(values[channels:])
    raise UserError(f"--normalization {text!r}: give imagenet, half, none, MEAN,STD (2 numbers), "
                    f"{channels} means then {channels} stds, or 'from-folder DIR'.")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def folder_statistics(folder: Path, limit: int = 500) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (pixel units, [0,1]) of up to ``limit`` RGB images in ``folder``."""
    import numpy as np
    from PIL import Image

    if not folder.is_dir():
        raise UserError(f"--normalization from-folder: {folder} is not a folder.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise UserError(f"--normalization from-folder: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for file in files:
        try:
            pixels = np.asarray(Image.open(file).convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
        except OSError as exc:
            raise UserError(f"--normalization from-folder: cannot read {file} ({exc}).") from None
        total += pixels.sum(axis=0)
        total_sq += (pixels ** 2).sum(axis=0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
