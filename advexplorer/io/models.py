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
from advexplorer.io import architectures
from advexplorer.io.cards import NORMALIZATIONS, ModelCard, card_path_for, load_card
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
    #: ONNX only: the largest |converted torch − onnxruntime| logit on the dry run.
    reference_difference: float | None = None

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


def load_model(path: str | Path, card: ModelCard | str | Path | None = None, device: str = "auto",
               trust_pickle: bool = False) -> LoadedModel:
    """Load a classifier and its card, wrap it for pixel space and check it on a dry run."""
    path = Path(path)
    if not path.is_file() and not path.is_dir():
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
    notes: list[str] = []
    raw, fmt = _load_raw(path, card, target, trust_pickle, notes)
    try:
        classifier = Classifier(raw, card.mean, card.std, card.classes,
                                output_key=card.output_key).to(target)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"Could not move the model to {target} ({exc}).") from None
    notes += _check_dry_run(classifier, card, path)
    difference = _check_onnx_reference(path, classifier, card) if fmt == "onnx" else None
    if difference is not None:
        notes.append(f"{path.name} was converted from ONNX to torch; its logits differ from onnxruntime's "
                     f"by at most {difference:.2g} on the dry run.")
    return LoadedModel(
        classifier=classifier, card=card, path=path.resolve(), card_path=card_path.resolve() if card_path else None,
        sha256=_model_sha256(path), card_sha256=sha256_file(card_path) if card_path else None,
        device=target, format=fmt, notes=notes, reference_difference=difference,
    )


#: Converted ONNX logits may differ from onnxruntime's by float rounding (~1e-5); more
#: than this means the conversion changed what the model computes.
ONNX_TOLERANCE = 1e-3


def _check_onnx_reference(path: Path, classifier: Classifier, card: ModelCard) -> float:
    """Largest |converted − onnxruntime| output on the dry run's noise image; refuse a conversion
    that changed the model."""
    from advexplorer.io import onnx_models

    reference = onnx_models.OnnxReference(onnx_models.read_onnx(path).SerializeToString(), path.name)
    image = _probe_images(card, classifier.device, path)["noise"]
    normalised = image if classifier._identity else (image - classifier.mean) * classifier.inv_std
    difference = onnx_models.reference_difference(classifier.model, reference, normalised)
    if not difference <= ONNX_TOLERANCE:
        raise UserError(f"{path.name} converted to torch gives logits that differ from onnxruntime's by "
                        f"{difference:.3g} on the dry run, so attacks on it would not be attacks on your "
                        "model; export it again with a recent opset, or as TorchScript.")
    return difference


def _model_sha256(path: Path) -> str:
    """SHA-256 of the model file; of a folder, over its files' names and hashes in order."""
    if not path.is_dir():
        return sha256_file(path)
    import hashlib

    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{sha256_file(item)}\n".encode())
    return digest.hexdigest()


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


# --------------------------------------------------------------------------- making a card



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
