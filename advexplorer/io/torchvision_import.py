"""Import torchvision without paying for ``torch._dynamo`` (2.5 of its 2.7 seconds).

``import torchvision`` imports every sub-package, and one line in it,
``torchvision/ops/roi_align.py``'s ``from torch._dynamo.utils import is_compile_supported``,
imports the whole torch.compile stack (dynamo, sympy, …). That function is only *called*
when ``roi_align`` runs, which no classifier does. On the path to the app's first
attack — where the bundled model is a torchvision MobileNet — it was half the wait.

:func:`import_torchvision` lets that one import bind a forwarder instead: a placeholder
``torch._dynamo.utils`` whose ``is_compile_supported`` imports the real one the first time
it is called. The placeholder exists only while torchvision's package imports and is then
removed, so any later ``import torch._dynamo`` (torch.compile, torch.export, captum) loads
the real module as usual. If torchvision ever needs more of dynamo at import time, the
placeholder is withdrawn and torchvision is imported the ordinary way.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

_LOCK = threading.Lock()
_NAMES = ("torch._dynamo", "torch._dynamo.utils")


def _forwarding_placeholders() -> dict[str, types.ModuleType]:
    package = types.ModuleType("torch._dynamo")
    package.__path__ = []  # a package with no submodules: anything else fails to import
    utils = types.ModuleType("torch._dynamo.utils")

    def is_compile_supported(device_type: Any) -> Any:
        from torch._dynamo.utils import is_compile_supported as real  # the real module, now

        return real(device_type)

    utils.is_compile_supported = is_compile_supported
    package.utils = utils
    return {"torch._dynamo": package, "torch._dynamo.utils": utils}


def _withdraw(placeholders: dict[str, types.ModuleType]) -> None:
    import torch

    for name, module in placeholders.items():
        if sys.modules.get(name) is module:
            del sys.modules[name]
    if torch.__dict__.get("_dynamo") is placeholders["torch._dynamo"]:
        delattr(torch, "_dynamo")


def import_torchvision() -> types.ModuleType:
    """``torchvision``, imported (once) without importing ``torch._dynamo`` when possible."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    with _LOCK:
        if "torchvision" in sys.modules or any(name in sys.modules for name in _NAMES):
            return importlib.import_module("torchvision")  # dynamo already paid for
        import torch  # noqa: F401  (the placeholders hang below a loaded torch)

        placeholders = _forwarding_placeholders()
        sys.modules.update(placeholders)
        try:
            return importlib.import_module("torchvision")
        except ImportError:
            _withdraw(placeholders)  # torchvision wanted more of dynamo: the ordinary way
            return importlib.import_module("torchvision")
        finally:
            _withdraw(placeholders)


def torchvision_models() -> types.ModuleType:
    """``torchvision.models`` (see :func:`import_torchvision`)."""
    return import_torchvision().models


def torchvision_version() -> str | None:
    """torchvision's full ``__version__`` (``0.29.1+cu130``, local label included, as records
    have always stored it) without importing it; None when it is not installed."""
    module = sys.modules.get("torchvision")
    if module is not None:
        return str(module.__version__)
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        try:
            tree = ast.parse((Path(folder) / "version.py").read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets)
                    and isinstance(node.value, ast.Constant)):
                return str(node.value.value)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torchvision")
    except PackageNotFoundError:
        return None
