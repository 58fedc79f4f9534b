"""Reading a model file into an ``nn.Module``, safely: one loader per format.

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

:func:`_load_raw` picks the loader; :func:`advexplorer.io.models.load_model` wraps and
checks what it returns.
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
from pathlib import Path

import torch
from torch import nn

from advexplorer.core.model import last_line
from advexplorer.errors import UserError
from advexplorer.io import architectures
from advexplorer.io.cards import ModelCard


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
    """The network's state_dict inside a checkpoint (see :func:`architectures.unwrap_state_dict`)."""
    return architectures.unwrap_state_dict(obj, path)


def build_architecture(card: ModelCard) -> nn.Module:
    """Instantiate ``card.architecture`` (``torchvision.resnet18``, ``timm.convnext_tiny``, or
    a bare name) with random weights; ``architecture_kwargs`` are passed on."""
    if not card.architecture:
        raise UserError(
            "These weights are a state_dict, so the model card must name the architecture, e.g. "
            '"architecture": "torchvision.resnet18", "architecture_kwargs": {"num_classes": 2} '
            "(advexplorer card MODEL infers it)."
        )
    return architectures.build_by_name(card.architecture, card.architecture_kwargs, card.num_classes)


def _fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], card, path: Path) -> None:
    what = f"{card.architecture} (architecture_kwargs {card.architecture_kwargs})"
    architectures.fit_state_dict(model, state, what, path)


def _state_dict_model(state: dict[str, torch.Tensor], card: ModelCard, path: Path,
                      notes: list[str]) -> nn.Module:
    """The card's architecture with ``state`` loaded; without one, the inferred architecture."""
    if not card.architecture:
        matches = architectures.infer_architecture(state)
        if not matches:
            build_architecture(card)  # raises: the card must name the architecture
        card_kwargs = dict(matches[0].kwargs)
        notes.append(f"The card names no architecture; the weights fit "
                     f"{architectures.describe_matches(matches)} exactly, so {matches[0].name} is used.")
        model = architectures.build_by_name(matches[0].name, card_kwargs)
        architectures.fit_state_dict(model, state, matches[0].name, path)
        return model
    model = build_architecture(card)
    _fit_state_dict(model, state, card, path)
    return model


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


def _load_raw(path: Path, card: ModelCard, device: torch.device, trust_pickle: bool,
              notes: list[str] | None = None) -> tuple[nn.Module, str]:
    """The user's network (unwrapped) and its format name; notes gathers what was inferred."""
    notes = [] if notes is None else notes
    if path.is_dir():
        from advexplorer.io import hf

        if not hf.is_hf_folder(path):
            raise UserError(f"{path.name} is a folder without config.json; a model folder must be a "
                            "Hugging Face save_pretrained folder (config.json + weights).")
        return hf.load_hf_model(path), "huggingface"
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise UserError(f"{path.name} is not a readable safetensors file ({exc}).") from None
        state = architectures.unwrap_state_dict(state, path)
        return _state_dict_model(state, card, path, notes), "safetensors"
    from advexplorer.io import onnx_models

    if onnx_models.looks_like_onnx(path):
        module, _ = onnx_models.convert(path)
        return module, "onnx"
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
    return _state_dict_model(state, card, path, notes), "state_dict"
