"""pyqtgraph for the app, imported once without its CUDA-OpenGL interop probe.

``pyqtgraph.widgets.RawImageWidget`` tries ``from cuda.bindings import runtime`` at import
time (for GPU arrays drawn straight into OpenGL, which the app never does). With torch's
CUDA wheels that package is installed and costs about 0.1 s on the path to the first
window. Importing this module first answers that probe "not here" for that one import; the
name is released afterwards, so torch can still import it. ``main_window`` imports it
before any module that uses pyqtgraph.
"""

from __future__ import annotations

import sys


def import_without_cuda_probe():
    """``pyqtgraph``, imported (once) with its CUDA probe answered "not installed"."""
    if "pyqtgraph" in sys.modules or "cuda.bindings.runtime" in sys.modules:
        import pyqtgraph

        return pyqtgraph
    sys.modules["cuda.bindings.runtime"] = None  # an ImportError for this name, for now
    try:
        import pyqtgraph
    finally:
        if "cuda.bindings.runtime" in sys.modules and sys.modules["cuda.bindings.runtime"] is None:
            del sys.modules["cuda.bindings.runtime"]
    return pyqtgraph


pg = import_without_cuda_probe()
