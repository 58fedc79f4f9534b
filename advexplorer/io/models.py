"""Loading a classifier and its model card, safely.

Formats, decided by content rather than trusted file names:

* **TorchScript** (``torch.jit.save``; any suffix) — the archive holds code, not pickled
  Python objects.
* **state_dict** in a ``.pt``/``.pth`` file, loaded with ``torch.load(weights_only=True)``;
  the card names the architecture (``"architecture": "torchvision.resnet18"``, plus
  ``"architecture_kwargs"``). A checkpoint dict holding ``state_dict`` or
  ``model_state_dict`` is accepted too, and a DataParallel ``module.`` prefix is removed.
* **safetensors** (``.safetensors``) — a state_dict, as above.
* **torch.export** programs (``.pt2``). ``torch.export.load`` unpickles some entries with
  ``weights_only=False`` (weights and constants marked ``use_pickle``, opaque objects, sample
  inputs that a weights-only load refuses), loads AOTInductor shared libraries, and parses
  symbolic-shape expressions with sympy, which evaluates them as Python. So the archive is
  read here first, with torch's own zip reader, and refused — naming the entry — unless
  every pickle in it loads with ``weights_only=True``, every expression is arithmetic on
  shape symbols and every graph target is an operator (see :func:`pt2_hazard`).
* A fully **pickled module** is refused unless ``trust_pickle=True`` (``--trust-pickle``):
  unpickling runs arbitrary code from the file. The same opt-in admits the ``.pt2``
  archives above.

The model is wrapped in :class:`advexplorer.core.model.Classifier` (normalisation inside,
[0,1] pixel space outside) and checked by a dry run at the card's size (see
:func:`_check_dry_run`): a model that does not fit its card, returns NaN, or returns
probabilities where logits are expected fails here with a message — or, for probabilities,
is adapted with a note — rather than later as a wrong result.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import tokenize
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from advexplorer.core.model import (
    Classifier, ModelForwardError, is_out_of_memory, last_line, pick_device, select_scores)
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
    #: What the loader decided about the model that a user should know (e.g. "its outputs
    #: are probabilities; their logarithms are used as logits"). Recorded with each run.
    notes: list[str] = field(default_factory=list)

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


# --------------------------------------------------------------------------- torch.export archives
#
# What torch.export.load (torch 2.14, torch/export/pt2_archive/_package.py and
# torch/_export/serde/serialize.py) does with an archive's entries, and so what is checked:
#
# * ``data/weights/<model>_weights_config.json`` / ``..._constants_config.json`` list the
#   payloads; one marked ``use_pickle`` is read with ``torch.load(weights_only=False)``.
# * constants named ``opaque_obj_*`` are read with ``pickle.loads``; ``custom_obj_*`` with
#   TorchScript's object unpickler (TorchBind classes).
# * ``data/sample_inputs/<model>.pt`` and the legacy ``data/weights/<model>.pt`` /
#   ``data/constants/<model>.pt`` — and, in the pre-2.7 layout it falls back to,
#   ``serialized_*.pt`` — go through ``deserialize_torch_artifact``, which retries with
#   ``weights_only=False`` when a weights-only load fails.
# * ``data/aotinductor/`` holds compiled shared libraries that are loaded (native code).
# * ``models/<model>.json`` (the graph) has symbolic-shape expressions parsed by
#   ``sympy.sympify`` — Python ``eval`` — and call targets resolved by attribute lookup
#   from the ``torch``, ``operator`` and ``math`` modules.
# * ``ExportedProgram.module()`` turns the graph's ``guards_code`` strings into a function
#   with ``exec``; it is called with ``check_guards=False``, which skips that.

_OLD_LAYOUT_PICKLES = ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt")
_OLD_LAYOUT_GRAPH = "serialized_exported_program.json"
#: Python operators a graph may call (symbolic shape arithmetic and tuple indexing).
_SAFE_OPERATORS = frozenset({
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
    "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift", "rshift",
})
#: sympy names a shape expression may use besides shape symbols (s0, u1, …) and the
#: functions torch defines in ``torch.utils._sympy.functions``.
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan",
    "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not", "Xor", "ITE",
    "Piecewise", "ExprCondPair", "floor", "ceiling", "sqrt", "oo", "zoo", "nan", "S", "I",
    "true", "false", "True", "False", "None",
    # assumptions passed as keywords, as in Symbol('s0', positive=True, integer=True)
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite",
    "infinite", "zero", "nonzero", "even", "odd", "rational", "extended_real", "commutative",
})
_SHAPE_SYMBOL = re.compile(r"[a-z]+[0-9]+")
_PLAIN_STRING = re.compile(r"""(['"])[A-Za-z0-9_]*\1""")
_EXPRESSION_OPERATORS = frozenset({
    "+", "-", "*", "/", "//", "%", "**", "(", ")", ",", "=", "==", "!=", "<", "<=", ">", ">=",
    "&", "|", "~", "^",
})


def _sympy_function_names() -> frozenset[str]:
    import sympy
    from torch.utils._sympy import functions

    return frozenset(name for name, value in vars(functions).items()
                     if isinstance(value, type) and issubclass(value, sympy.Basic))


def is_shape_expression(text: str, allowed_names: frozenset[str]) -> bool:
    """Whether ``text`` is arithmetic on shape symbols that sympy may evaluate safely.

    sympy parses with Python's ``eval``, so any name, attribute or subscript could reach
    Python itself; only numbers, operators, shape symbols such as ``s0``, plain quoted
    symbol names and the sympy functions torch uses are let through.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.NUMBER):
            continue
        if token.type == tokenize.STRING and _PLAIN_STRING.fullmatch(token.string):
            continue
        if token.type == tokenize.NAME and (token.string in allowed_names
                                            or _SHAPE_SYMBOL.fullmatch(token.string)):
            continue
        if token.type == tokenize.OP and token.string in _EXPRESSION_OPERATORS:
            continue
        return False
    return True


def is_operator_target(target: str) -> bool:
    """Whether a graph node may call ``target``: a registered torch operator or plain arithmetic."""
    parts = target.split(".")
    if any(part.startswith("__") or not part for part in parts):
        return False
    if target.startswith("torch.ops."):
        return True
    if len(parts) == 2 and parts[0] == "_operator":
        return parts[1] in _SAFE_OPERATORS
    if len(parts) == 2 and parts[0] == "math":
        return True
    return bool(re.fullmatch(r"torch\._?sym_[a-z_]+", target))


def _graph_hazard(graph_json: bytes, sympy_names: frozenset[str]) -> str | None:
    """Why a serialized graph could run code when deserialized or called, or None."""
    try:
        graph = json.loads(graph_json)
    except (ValueError, UnicodeDecodeError):
        return None  # torch will refuse it as unreadable; nothing in it is evaluated
    stack = [graph]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        expression = item.get("expr_str")
        if isinstance(expression, str) and not is_shape_expression(expression, sympy_names):
            return f"holds a shape expression that is Python code, not arithmetic ({expression[:60]!r})"
        for key in ("target", "as_operator"):
            target = item.get(key)
            if isinstance(target, str) and ("inputs" in item or key == "as_operator") \
                    and not is_operator_target(target):
                return f"calls {target[:60]!r}, which is not a torch operator"
        stack.extend(item.values())
    return None


def _loads_weights_only(blob: bytes) -> bool:
    """Whether a pickled entry loads with ``torch.load(weights_only=True)`` (tensors only)."""
    if not blob:
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        return True
    except Exception:
        return False


def _payload_hazards(reader, config_name: str, folder: str) -> list[tuple[str, str]]:
    """(entry, why) for each payload of a weights/constants config that would be unpickled."""
    try:
        config = json.loads(reader.get_record(config_name)).get("config", {})
    except Exception:
        return []  # torch cannot read the config either; it loads nothing from it
    from torch.export.pt2_archive import constants as names

    found = []
    for payload in config.values() if isinstance(config, dict) else []:
        path_name = str(payload.get("path_name", "")) if isinstance(payload, dict) else ""
        entry = os.path.join(folder, path_name)  # as torch joins it
        if path_name.startswith(names.OPAQUE_OBJ_FILENAME_PREFIX):
            found.append((entry, "is a Python pickle (an opaque object, read with pickle.loads)"))
        elif path_name.startswith(names.CUSTOM_OBJ_FILENAME_PREFIX):
            found.append((entry, "is a pickled TorchScript object"))
        elif payload.get("use_pickle") and not _loads_weights_only(_record(reader, entry)):
            found.append((entry, "is a pickle that holds more than tensors"))
    return found


def _record(reader, name: str) -> bytes:
    try:
        return reader.get_record(name)
    except Exception:
        return b""


def pt2_hazard(data: bytes) -> tuple[str, str] | None:
    """The first entry of a ``.pt2`` archive that could run code in ``torch.export.load``.

    Returns ``(entry, why)`` or None. Entries are read with torch's own zip reader (the one
    ``torch.export.load`` uses, so duplicate names cannot show one thing here and another
    there) and, for the pre-2.7 layout torch falls back to, with :mod:`zipfile`.
    """
    from torch.export.pt2_archive import constants as names

    sympy_names = _SYMPY_NAMES | _sympy_function_names()
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        records = list(reader.get_all_records())
    except Exception:
        reader, records = None, []
    prefix, suffix = names.MODELS_FILENAME_FORMAT.split("{}")
    for record in records:
        if record.startswith(names.AOTINDUCTOR_DIR):
            return record, "is compiled native code (AOTInductor), which runs when loaded"
    for record in records:
        if not record.startswith(prefix):
            continue
        model = record[len(prefix):-len(suffix)]
        why = _graph_hazard(_record(reader, record), sympy_names)
        if why:
            return record, why
        for entry in (names.SAMPLE_INPUTS_FILENAME_FORMAT.format(model),
                      f"{names.WEIGHTS_DIR}{model}.pt", f"{names.CONSTANTS_DIR}{model}.pt"):
            if entry in records and not _loads_weights_only(_record(reader, entry)):
                return entry, "is a pickle that holds more than tensors"
        for config, folder in ((names.WEIGHTS_CONFIG_FILENAME_FORMAT.format(model), names.WEIGHTS_DIR),
                               (names.CONSTANTS_CONFIG_FILENAME_FORMAT.format(model), names.CONSTANTS_DIR)):
            hazards = _payload_hazards(reader, config, folder) if config in records else []
            if hazards:
                return hazards[0]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.filename in _OLD_LAYOUT_PICKLES and not _loads_weights_only(archive.read(info)):
                    return info.filename, "is a pickle that holds more than tensors"
                if info.filename == _OLD_LAYOUT_GRAPH:
                    why = _graph_hazard(archive.read(info), sympy_names)
                    if why:
                        return info.filename, why
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        pass
    return None


def _load_export_program(path: Path, trust_pickle: bool) -> nn.Module:
    """A ``.pt2`` program, read once into memory so the bytes checked are the bytes loaded."""
    data = path.read_bytes()
    if not trust_pickle:
        hazard = pt2_hazard(data)
        if hazard is not None:
            entry, why = hazard
            raise UserError(
                f"{path.name} is a torch.export archive whose entry {entry} {why}; loading it "
                "could run code from the file, so it is refused by default. Re-export the model "
                "with plain tensors (torch.export.save of an exported nn.Module), or — only if you "
                "trust the file — pass --trust-pickle."
            )
    # torch logs a traceback before it falls back to the pre-2.7 layout; the user gets one line.
    export_log = logging.getLogger("torch.export")
    was_disabled, export_log.disabled = export_log.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(io.BytesIO(data))
    except Exception as exc:
        raise UserError(f"{path.name} is not a readable torch.export program ({last_line(exc)}); "
                        "it may be truncated, or made by another PyTorch version.") from None
    finally:
        export_log.disabled = was_disabled
    # check_guards=False: with guards, module() compiles the archive's ``guards_code``
    # strings with exec and runs them on every call. The input checks that remain (a
    # pre-hook over the program's shape constraints) evaluate nothing from the file.
    return program.module(check_guards=False)


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
        return _load_export_program(path, trust_pickle), "export"
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
        classifier = Classifier(raw, card.mean, card.std, card.classes,
                                output_key=card.output_key).to(target)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"Could not move the model to {target} ({exc}).") from None
    notes = _check_dry_run(classifier, card, path)
    return LoadedModel(
        classifier=classifier, card=card, path=path.resolve(), card_path=card_path.resolve() if card_path else None,
        sha256=sha256_file(path), card_sha256=sha256_file(card_path) if card_path else None,
        device=target, format=fmt, notes=notes,
    )


def _probe_images(card: ModelCard, device: torch.device, path: Path) -> dict[str, torch.Tensor]:
    """The dry run's inputs at the card's size: seeded noise (image-like, varied), then grey,
    black and white (constant images that drive a model's outputs to their extremes)."""
    height, width = card.input_size
    shape = (1, card.channels, height, width)
    try:
        noise = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
        return {"noise": noise, "grey": torch.full_like(noise, 0.5), "black": torch.zeros_like(noise),
                "white": torch.ones_like(noise)}
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise UserError(f"There is not enough memory on {device} for one {'×'.join(map(str, shape))} "
                        f"image, the input size the card of {path.name} gives; check 'input_size'.") from None


def _check_dry_run(classifier: Classifier, card: ModelCard, path: Path) -> list[str]:
    """Run the model on a few images of the card's size; refuse what cannot be attacked.

    Checks, on the noise image: the forward runs (its errors and out-of-memory as one line);
    it returns one row of class scores per image, as many classes as the card lists; the
    scores are finite. Then, on every image the model handles, whether the scores are logits
    or probabilities (see :func:`_output_kind`), which is set on the classifier. A model may
    fail or return NaN on the constant images (per-image standardisation divides by a zero
    spread there) without being refused. Returns notes for the user (e.g. "probabilities").
    """
    height, width = card.input_size
    shape = f"1×{card.channels}×{height}×{width}"
    scores: dict[str, torch.Tensor] = {}
    for name, image in _probe_images(card, classifier.device, path).items():
        try:
            with torch.no_grad():
                scores[name] = select_scores(classifier.raw_output(image), card.output_key)
        except ModelForwardError as exc:
            if name != "noise":
                continue  # constant images only help to tell probabilities from logits
            cause = exc.__cause__ or exc
            if is_out_of_memory(cause):
                raise UserError(f"{path.name} runs out of memory on one {shape} input as its card describes "
                                f"({last_line(cause)}); check 'input_size' in the card, or use "
                                "--device cpu or a device with more memory.") from None
            raise UserError(
                f"{path.name} fails on a {shape} input as its card describes ({last_line(cause)}). "
                "Check 'input_size' and 'channels' in the card."
            ) from None
        if name == "noise":
            _check_scores_shape(scores[name], card, path)
    first = scores["noise"]
    if not bool(torch.isfinite(first).all()):
        what = "NaN" if bool(torch.isnan(first).any()) else "infinite"
        raise UserError(
            f"{path.name} returns {what} outputs on a {shape} test image, so none of its predictions "
            "can be trusted (an attack on it would report nonsense). Check the model's weights (they "
            "may hold NaN) and the card's 'mean' and 'std'."
        )
    kind, notes = _output_kind(card, scores, path)
    classifier.output = kind
    return notes


def _check_scores_shape(scores: torch.Tensor, card: ModelCard, path: Path) -> None:
    if scores.dim() != 2:
        raise UserError(
            f"{path.name}'s output has shape {tuple(scores.shape)}; AdvExplorer needs N×C class "
            "logits from an image classifier."
        )
    if scores.shape[0] != 1:
        raise UserError(f"{path.name} returned {scores.shape[0]} rows for one image; it must return N×C logits.")
    classes = 2 if scores.shape[1] == 1 else scores.shape[1]  # a single sigmoid output is two classes
    if classes != card.num_classes:
        raise UserError(
            f"{path.name} outputs {classes} classes but its card lists {card.num_classes} "
            f"({', '.join(card.classes[:5])}{', …' if card.num_classes > 5 else ''}). Fix 'classes' "
            "in the card or load the matching weights."
        )


#: How far a row of probabilities may sum from 1 (float16 softmax rounds to ~1e-3).
PROBABILITY_SUM_TOLERANCE = 1e-3


def _output_kind(card: ModelCard, scores: dict[str, torch.Tensor], path: Path) -> tuple[str, list[str]]:
    """Whether the model returns logits or probabilities, from the card or the dry run.

    Probabilities read as logits are silently wrong: softmax flattens them (a confident 0.99
    becomes 0.50), and a single sigmoid output in [0, 1] read as a logit always predicts
    class 1, so nothing ever flips and the model looks "robust". Rows in [0, 1] that sum to 1
    on every dry-run image are probabilities beyond reasonable doubt and are used as
    ``log p``; a single output in [0, 1] could be either, so the card must say.
    """
    if card.output == "logits":
        return "logits", []
    rows = torch.cat([s.float() for s in scores.values() if bool(torch.isfinite(s).all())])
    low, high = float(rows.min()), float(rows.max())
    in_unit_interval = low >= 0.0 and high <= 1.0
    as_log = ("their logarithms are used as logits (softmax of log p is p), so every probability "
              "shown is the model's own")
    if card.output == "probabilities":
        if not in_unit_interval:
            raise UserError(
                f'The card of {path.name} says "output": "probabilities", but the model returns values '
                f'from {low:.3g} to {high:.3g}, outside [0, 1]; write "output": "logits" or remove the field.'
            )
        return "probabilities", [f"The card says {path.name} outputs probabilities; {as_log}."]
    if rows.shape[1] >= 2:
        sums_to_one = bool(((rows.sum(dim=1) - 1).abs() <= PROBABILITY_SUM_TOLERANCE).all())
        if in_unit_interval and sums_to_one:
            return "probabilities", [
                f"{path.name} outputs probabilities (every row is in [0, 1] and sums to 1 on the dry "
                f'run); {as_log}. Write "output": "logits" in the card if that is wrong.']
        return "logits", []
    if in_unit_interval:
        raise UserError(
            f"{path.name} has a single output that stays between 0 and 1 on every dry-run image "
            f"({low:.3g} to {high:.3g}): it looks like a sigmoid probability, and read as a logit it "
            'would always predict the same class. Add "output": "probabilities" to the card if it is '
            'one (AdvExplorer then uses the classes [1 - p, p]), or "output": "logits" if it is a logit.'
        )
    return "logits", []
