"""Loading a classifier and its model card, safely.

Formats, decided by content rather than trusted file names:

* **TorchScript** (``torch.jit.save``; any suffix) — the archive holds code, not pickled
  Python objects.
* **state_dict** in a ``.pt``/``.pth`` file, loaded with ``torch.load(weights_only=True)``;
  the card names the architecture (``"architecture": "torchvision.resnet18"``, plus
  ``"architecture_kwargs"``). A checkpoint dict holding ``state_dict`` or
  ``model_state_dict`` is accepted too, and a DataParallel ``module.`` prefix is removed.
* **safetensors** (``.safetensors``) — a state_dict, as above.
* **torch.export** programs (``.pt2``).
* A fully **pickled module** is refused unless ``trust_pickle=True`` (``--trust-pickle``):
  unpickling runs arbitrary code from the file.

The model is wrapped in :class:`advexplorer.core.model.Classifier` (normalisation inside,
[0,1] pixel space outside) and checked with one dry forward pass on a blank image of the
card's size, so a model that does not fit its card fails here with a message, not later.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from advexplorer.core.model import Classifier, pick_device
from advexplorer.errors import UserError
from advexplorer.io.cards import ModelCard, card_path_for, load_card
from advexplorer.io.hashing import sha256_file


@dataclass
class LoadedModel:
    """A ready-to-attack model: the wrapped classifier plus where it came from."""

    classifier: Classifier
    card: ModelCard
    path: Path
    card_path: Path | None
    sha256: str
    card_sha256: str | None
    device: torch.device
    format: str

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.endswith("constants.pkl") for name in names) and \
        any("/code/" in name for name in names)


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(
            f"{path.name} holds a {type(obj).__name__}, not a state_dict of tensors. Save the "
            "weights with torch.save(model.state_dict(), ...) or export TorchScript."
        )
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def build_architecture(card: ModelCard) -> nn.Module:
    """Instantiate ``card.architecture`` (e.g. ``torchvision.resnet18``) with random weights."""
    name = card.architecture
    if not name:
        raise UserError(
            "These weights are a state_dict, so the model card must name the architecture, e.g. "
            '"architecture": "torchvision.resnet18", "architecture_kwargs": {"num_classes": 2}.'
        )
    prefix, _, function = name.rpartition(".")
    if prefix not in ("torchvision", "torchvision.models"):
        raise UserError(
            f"Unknown architecture {name!r}. Name a torchvision model builder such as "
            "'torchvision.resnet18' or 'torchvision.mobilenet_v3_small', or export TorchScript."
        )
    import torchvision.models as tvm

    available = set(tvm.list_models(module=tvm))
    if function not in available:
        close = sorted(m for m in available if function.split("_")[0] in m)[:6]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise UserError(f"torchvision has no classification model {function!r}.{hint}")
    kwargs = dict(card.architecture_kwargs)
    kwargs.setdefault("num_classes", card.num_classes)
    try:
        return tvm.get_model(function, weights=None, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"Cannot build {name} with architecture_kwargs {kwargs}: {exc}") from None


def _fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], card: ModelCard, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} is {list(state[k].shape)} in the file but {list(expected[k].shape)} in the architecture"
        for k in expected if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatch: {few(mismatched)}")
        raise UserError(
            f"The weights in {path.name} do not fit {card.architecture} "
            f"(architecture_kwargs {card.architecture_kwargs}): {'; '.join(parts)}. Check the "
            "card's architecture, its num_classes, and that this is the right weights file."
        )
    model.load_state_dict(state, strict=True)


def _load_raw(path: Path, card: ModelCard, device: torch.device, trust_pickle: bool) -> tuple[nn.Module, str]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise UserError(f"{path.name} is not a readable safetensors file ({exc}).") from None
        model = build_architecture(card)
        _fit_state_dict(model, state, card, path)
        return model, "safetensors"
    if suffix == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise UserError(f"{path.name} is not a readable torch.export program ({exc}).") from None
        return program.module(), "export"
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # TorchScript's deprecation notice is not the user's business
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location=device), "torchscript"
        except Exception as exc:
            raise UserError(f"{path.name} looks like TorchScript but cannot be loaded ({exc}). "
                            "The file may be truncated or made by a newer PyTorch.") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # A refused *global* means real pickled objects; anything else is not a checkpoint at all.
        if "Weights only load failed" not in str(exc) or "global" not in str(exc).lower():
            raise UserError(f"{path.name} is not a PyTorch model file, or it is truncated or "
                            "corrupt (it is neither TorchScript nor a weights-only checkpoint).") from None
        if not trust_pickle:
            raise UserError(
                f"{path.name} contains pickled Python objects (probably a whole model). "
                "Unpickling runs arbitrary code from the file, so it is refused by default. Save "
                "model.state_dict() and name the architecture in the card, export TorchScript, or — "
                "only if you trust the file — pass --trust-pickle."
            ) from None
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise UserError(f"{path.name} could not be unpickled ({exc}).") from None
        if not isinstance(obj, nn.Module):
            raise UserError(f"{path.name} unpickles to a {type(obj).__name__}, not a torch model.")
        return obj, "pickle"
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path.name} is not a PyTorch model file, or it is truncated or corrupt "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
    state = _unwrap_state_dict(obj, path)
    model = build_architecture(card)
    _fit_state_dict(model, state, card, path)
    return model, "state_dict"


def load_model(path: str | Path, card: ModelCard | str | Path | None = None, device: str = "auto",
               trust_pickle: bool = False) -> LoadedModel:
    """Load a classifier and its card, wrap it for pixel space and check it on a dry run."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No model file at {path}. Check the path (--model).")
    if isinstance(card, ModelCard):
        card_path = card.path
    else:
        card_path = Path(card) if card is not None else card_path_for(path)
        if not card_path.is_file():
            raise UserError(
                f"No model card for {path.name}: expected {card_path.name} beside it. A card is a "
                "JSON file giving 'classes', 'input_size', 'channels', 'mean' and 'std' (see README)."
            )
        card = load_card(card_path)
    target = pick_device(device)
    raw, fmt = _load_raw(path, card, target, trust_pickle)
    try:
        classifier = Classifier(raw, card.mean, card.std, card.classes).to(target)
    except Exception as exc:
        raise UserError(f"Could not move the model to {target} ({exc}).") from None
    _check_dry_run(classifier, card, path)
    return LoadedModel(
        classifier=classifier, card=card, path=path.resolve(), card_path=card_path.resolve() if card_path else None,
        sha256=sha256_file(path), card_sha256=sha256_file(card_path) if card_path else None,
        device=target, format=fmt,
    )


def _check_dry_run(classifier: Classifier, card: ModelCard, path: Path) -> None:
    height, width = card.input_size
    blank = torch.full((1, card.channels, height, width), 0.5, device=classifier.device)
    try:
        with torch.no_grad():
            logits = classifier(blank)
    except UserError:
        raise  # the output is not class logits: extract_logits has said why
    except Exception as exc:
        raise UserError(
            f"{path.name} fails on a 1×{card.channels}×{height}×{width} input as its card describes "
            f"({_last_line(exc)}). Check 'input_size' and 'channels' in the card."
        ) from None
    if logits.shape[0] != 1:
        raise UserError(f"{path.name} returned {logits.shape[0]} rows for one image; it must return N×C logits.")
    if logits.shape[1] != card.num_classes:
        raise UserError(
            f"{path.name} outputs {logits.shape[1]} classes but its card lists {card.num_classes} "
            f"({', '.join(card.classes[:5])}{', …' if card.num_classes > 5 else ''}). Fix 'classes' "
            "in the card or load the matching weights."
        )


def _last_line(exc: Exception) -> str:
    """The informative line of an exception (TorchScript puts it last, after a stack)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
