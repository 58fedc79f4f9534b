"""Hugging Face image classifiers from a local folder, offline and without pickles.

A folder saved by ``model.save_pretrained(folder)`` (and, optionally, the image processor's
``save_pretrained``) holds ``config.json``, the weights and ``preprocessor_config.json``.
The network is built by ``AutoModelForImageClassification.from_pretrained(folder,
local_files_only=True)`` — only classes that ship with transformers (no
``trust_remote_code``), nothing fetched from the hub. The weights are checked here first:
``model.safetensors`` (preferred; sharded ``model.safetensors.index.json`` too) or
``pytorch_model.bin`` read with ``torch.load(weights_only=True)``, so a ``.bin`` that
pickles anything but tensors is refused before transformers opens it.

What the card needs comes from the folder: classes from ``id2label``, input size, mean, std
and resize rule from the preprocessor config (else the model config's ``image_size``).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advexplorer.errors import UserError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLED_WEIGHTS = "pytorch_model.bin"
PICKLED_INDEX = "pytorch_model.bin.index.json"


def is_hf_folder(path: Path) -> bool:
    """A folder with a ``config.json``: what ``save_pretrained`` writes."""
    return path.is_dir() and (path / "config.json").is_file()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path.parent.name}/{path.name} is not readable JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise UserError(f"{path.parent.name}/{path.name} must be a JSON object.")
    return data


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a Hugging Face folder, as a dict."""
    return _read_json(folder / "config.json")


def classes_from_config(config: dict[str, Any]) -> tuple[str, ...] | None:
    """Class names in index order from ``id2label`` (None when absent or only ``LABEL_i``)."""
    labels = config.get("id2label")
    if not isinstance(labels, dict) or not labels:
        return None
    try:
        ordered = [str(labels[key]) for key in sorted(labels, key=lambda k: int(k))]
    except (TypeError, ValueError):
        return None
    return tuple(ordered)


def _size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return (int(value["height"]), int(value["width"]))
        if "shortest_edge" in value:
            return (int(value["shortest_edge"]),) * 2
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    return None


def preprocessing(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """``input_size``, ``mean``, ``std``, ``resize`` and where each came from.

    From ``preprocessor_config.json`` when the folder has one (``crop_size`` when it crops,
    else ``size``; ``image_mean``/``image_std`` unless ``do_normalize`` is false), else the
    model config's ``image_size``. Keys absent from both are left out.
    """
    found: dict[str, Any] = {"sources": {}}
    processor_path = folder / "preprocessor_config.json"
    processor = _read_json(processor_path) if processor_path.is_file() else {}
    crops = bool(processor.get("do_center_crop"))
    size = _size(processor.get("crop_size")) if crops else None
    size = size or _size(processor.get("size"))
    if size:
        found["input_size"], found["sources"]["input_size"] = size, "preprocessor_config.json"
    elif _size(config.get("image_size")):
        found["input_size"], found["sources"]["input_size"] = _size(config["image_size"]), "config.json image_size"
    if processor:
        found["resize"], found["sources"]["resize"] = ("center-crop" if crops else "stretch"), \
            "preprocessor_config.json"
    if processor.get("do_normalize", True) and "image_mean" in processor and "image_std" in processor:
        found["mean"], found["std"] = tuple(processor["image_mean"]), tuple(processor["image_std"])
        found["sources"]["normalization"] = "preprocessor_config.json"
    elif processor and not processor.get("do_normalize", True):
        found["sources"]["normalization"] = "preprocessor_config.json (do_normalize is false)"
        found["mean"], found["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if "num_channels" in config:
        found["channels"] = int(config["num_channels"])
    return found


def _weights_only(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path.parent.name}/{path.name} pickles Python objects besides tensors, and "
                        "unpickling runs code from the file, so it is refused. Re-save the model with "
                        "save_pretrained(..., safe_serialization=True) to get model.safetensors.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path.parent.name}/{path.name} is not readable ({str(exc).splitlines()[0]}).") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path.parent.name}/{path.name} is not a state_dict of tensors.")
    return obj


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors has its own error types for corrupt headers
        raise UserError(f"{path.parent.name}/{path.name} is not a readable safetensors file ({exc}).") from None


def _inside(folder: Path, name: str) -> Path:
    """A file named by an index, refused if the name leads out of the folder."""
    target = (folder / name).resolve()
    if os.path.commonpath([target, folder.resolve()]) != str(folder.resolve()):
        raise UserError(f"{folder.name}'s weight index points outside the folder ({name}); refused.")
    return target


def read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict of a Hugging Face folder and the file(s) it came from."""
    for index_name, reader in ((SAFETENSORS_INDEX, _safetensors), (PICKLED_INDEX, _weights_only)):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set((_read_json(index).get("weight_map") or {}).values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(reader(_inside(folder, shard)))
            return state, f"{index_name} ({len(shards)} shards)"
    if (folder / SAFETENSORS).is_file():
        return _safetensors(folder / SAFETENSORS), SAFETENSORS
    if (folder / PICKLED_WEIGHTS).is_file():
        return _weights_only(folder / PICKLED_WEIGHTS), PICKLED_WEIGHTS
    raise UserError(f"The Hugging Face folder {folder.name} has a config.json but no weights "
                    f"({SAFETENSORS} or {PICKLED_WEIGHTS}); save them with model.save_pretrained(folder).")


def load_hf_model(folder: Path) -> nn.Module:
    """Build the folder's image classifier offline and load its weights, every key checked.

    The weights are read here first (``.bin`` with ``weights_only=True``, so a pickle that
    holds more than tensors is refused before transformers sees it); transformers then loads
    them itself with ``local_files_only=True`` because it knows how the names of older
    checkpoints map onto current modules. Missing or unexpected keys are refused, naming them.
    """
    try:
        from transformers import AutoModelForImageClassification
    except ImportError:
        raise UserError("transformers is not installed; install AdvExplorer with the 'models' extra "
                        "(pip install 'advexplorer[models]').") from None
    _, source = read_weights(folder)  # refuses a folder without weights, or unsafe pickles
    try:
        with warnings.catch_warnings(), _quiet_transformers():
            warnings.simplefilter("ignore")
            model, info = AutoModelForImageClassification.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False,
                use_safetensors=source.startswith("model.safetensors"), output_loading_info=True)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise UserError(f"transformers cannot build an image classifier from {folder.name} "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
    problems = []
    for key, what in (("missing_keys", "missing keys"), ("unexpected_keys", "unexpected keys"),
                      ("mismatched_keys", "shape mismatch")):
        keys = [str(k[0] if isinstance(k, tuple) else k) for k in (info.get(key) or [])]
        if keys:
            problems.append(f"{what}: {', '.join(keys[:4])}" + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""))
    if problems:
        raise UserError(f"The weights in {folder.name}/{source} do not fit {type(model).__name__} "
                        f"({folder.name}/config.json): {'; '.join(problems)}. Check num_labels in "
                        "config.json and that these are the folder's own weights.")
    model.eval()
    return model


class _quiet_transformers:
    """transformers logs loading reports and progress bars; the user gets one line instead."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self.level)
        hf_logging.enable_progress_bar()
