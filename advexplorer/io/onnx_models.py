"""ONNX classifiers, converted to torch so that attacks have gradients.

An ``.onnx`` graph is converted with onnx2torch (https://github.com/ENOT-AutoDL/onnx2torch)
into a ``torch.fx.GraphModule`` whose convolutions and linear layers are ordinary torch
modules: gradients flow, and Grad-CAM can hook them. Operators onnx2torch cannot convert
are named before anything runs. onnxruntime, the reference implementation, is kept beside
the converted module so the loader's dry run can compare the two and report the largest
difference in logits (:func:`reference_difference`).

External data (weights stored beside the graph, ``location`` in the tensor's metadata)
is read only from inside the model's own folder: a location such as ``../../etc/passwd``
or an absolute path is refused, so a model file cannot make AdvExplorer read other files.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from advexplorer.errors import UserError

#: An ONNX file is a protobuf ModelProto; its first field is ir_version (field 1, varint).
_MODEL_PROTO_FIRST_BYTE = 0x08


def looks_like_onnx(path: Path) -> bool:
    """An ``.onnx`` file, or a file that starts like an ONNX ModelProto and parses as one."""
    if path.suffix.lower() == ".onnx":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    if len(head) < 2 or head[0] != _MODEL_PROTO_FIRST_BYTE:
        return False
    try:
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 — not parseable as ONNX: some other kind of file
        return False
    return bool(model.graph.node)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise UserError("onnx is not installed; install AdvExplorer with the 'models' extra "
                        "(pip install 'advexplorer[models]').") from None
    return onnx


def read_onnx(path: Path):
    """The ModelProto of ``path`` with its external data read from inside its folder only."""
    onnx = _onnx()
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 — protobuf's DecodeError and friends
        raise UserError(f"{path.name} is not a readable ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
    folder = path.resolve().parent
    external = [t for t in _all_tensors(model) if uses_external_data(t)]
    for tensor in external:
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or \
                os.path.commonpath([str(target), str(folder)]) != str(folder):
            raise UserError(f"{path.name} stores tensor {tensor.name!r} at {location!r}, outside the model's "
                            "folder; refused (ONNX external data must sit beside the model).")
        if not target.is_file():
            raise UserError(f"{path.name} stores tensor {tensor.name!r} in {location}, which is missing; "
                            "copy it beside the model.")
    if external:
        load_external_data_for_model(model, str(folder))
    return model


def _all_tensors(model):
    from onnx.external_data_helper import _get_all_tensors

    return list(_get_all_tensors(model))


def unconvertible_operators(model) -> list[str]:
    """Operators of the graph (``Op`` or ``domain.Op``, with its version) that onnx2torch
    cannot convert, looked up exactly as its converter does (the operator's schema version
    at the graph's opset)."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {entry.domain: entry.version for entry in model.opset_import}
    missing = []
    for node in _walk_nodes(model.graph):
        label = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
        try:
            get_converter(operation_type=node.op_type, version=opsets.get(node.domain, 0), domain=node.domain)
        except Exception:  # noqa: BLE001 — NotImplementedError, or no schema for a custom domain
            label = f"{label} (opset {opsets.get(node.domain, '?')})"
            if label not in missing:
                missing.append(label)
    return missing


def fold_constant_aliases(model) -> None:
    """Turn ``Identity`` nodes of initializers and ``Constant`` nodes into initializers.

    torch.onnx.export shares equal weights (all-zero biases) through Identity nodes, and
    onnx2torch expects a convolution's weights to be initializers, not node outputs; this
    is the same graph with the aliases resolved.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and not node.domain and node.input[0] in initializers:
            alias = numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[0]]), node.output[0])
        elif node.op_type == "Constant" and not node.domain and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            alias = numpy_helper.from_array(numpy_helper.to_array(helper.get_attribute_value(node.attribute[0])),
                                            node.output[0])
        else:
            kept.append(node)
            continue
        graph.initializer.append(alias)
        initializers[alias.name] = alias
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)


def _walk_nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                yield from _walk_nodes(attribute.g)


def convert(path: Path) -> tuple[nn.Module, bytes]:
    """A differentiable torch module for the ONNX model at ``path``, and the serialized model
    (with its external data inlined) for onnxruntime to run as the reference."""
    model = read_onnx(path)
    try:
        from onnx2torch import convert as onnx2torch_convert
    except ImportError:
        raise UserError("onnx2torch is not installed; install AdvExplorer with the 'models' extra "
                        "(pip install 'advexplorer[models]').") from None
    fold_constant_aliases(model)
    missing = unconvertible_operators(model)
    if missing:
        raise UserError(f"{path.name} uses ONNX operators that cannot be converted to torch (so no "
                        f"gradients): {', '.join(missing[:6])}. Export it again with opset 17 "
                        "(torch.onnx.export(..., opset_version=17, dynamo=False)), "
                        "or as TorchScript or a state_dict.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = onnx2torch_convert(model)
    except NotImplementedError as exc:
        raise UserError(f"{path.name} has an operator onnx2torch cannot convert: {str(exc).splitlines()[0]}. "
                        "Export the model with standard operators, or as TorchScript or a state_dict.") from None
    except Exception as exc:  # noqa: BLE001 — the converter's own failures on odd graphs
        raise UserError(f"{path.name} could not be converted to torch ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}).") from None
    return module, model.SerializeToString()


def input_shape(path: Path) -> tuple[int | None, ...] | None:
    """The first graph input's shape (None for a dynamic dimension), for the card command."""
    try:
        model = _onnx().load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001
        return None
    initializers = {t.name for t in model.graph.initializer}
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return None


class OnnxReference:
    """onnxruntime on the original graph: what the converted module must reproduce."""

    def __init__(self, serialized: bytes, name: str):
        try:
            import onnxruntime
        except ImportError:
            raise UserError("onnxruntime is not installed; install AdvExplorer with the 'models' extra.") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"onnxruntime cannot run {name} ({str(exc).splitlines()[0]}).") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, normalised: torch.Tensor) -> np.ndarray:
        """The graph's first output on an already normalised N×C×H×W batch."""
        array = normalised.detach().float().cpu().numpy()
        return self.session.run(None, {self.input_name: array})[0]


def reference_difference(module: nn.Module, reference: OnnxReference, normalised: torch.Tensor) -> float:
    """Largest absolute difference between the converted module's and onnxruntime's outputs."""
    with torch.no_grad():
        ours = module(normalised)
    if isinstance(ours, (tuple, list)):
        ours = ours[0]
    theirs = reference(normalised)
    return float(np.max(np.abs(ours.detach().float().cpu().numpy() - theirs)))
